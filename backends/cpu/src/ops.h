// The operations the bindings expose. Arrays arrive as ArrayRef (pointer, storage kind, shape and
// strides in elements); every check runs before anything is written. Errors are
// std::invalid_argument (ValueError in Python) naming the argument. No Python here: the bindings
// release the GIL around these calls.
#pragma once

#include <cstdint>
#include <string>

#include "bn.h"

namespace bn {

struct ArrayRef {
  const char* name = "";
  void* data = nullptr;   // null: argument absent
  char kind = 'f';        // 'f' float, 'u' unsigned, 'i' signed, 'b' bfloat, '?' other
  int bits = 0;
  int ndim = 0;
  std::int64_t shape[16] = {};
  std::int64_t strides[16] = {};  // in elements
};

struct ForwardArgs {
  DType dtype = DType::f32;
  ArrayRef x, gamma, beta, running_mean, running_var;
  ArrayRef y;                     // optional: statistics only when absent
  ArrayRef mean_out, invstd_out;  // [C], parameter dtype
  int axis = 1;                   // normalised, 0 <= axis < ndim
  double eps = 1e-3;
  bool fix_gamma = true, batch_stats = true;
};

// Forward then backward (a training step). With saved_mean/saved_invstd the forward statistics
// are taken from them (the benchmark's backward-only call).
struct TrainArgs {
  DType dtype = DType::f32;
  ArrayRef x, dy, gamma, beta, running_mean, running_var;
  ArrayRef saved_mean, saved_invstd;  // optional
  ArrayRef dx, dgamma, dbeta;
  int axis = 1;
  double eps = 1e-3, momentum = 0.9;
  bool fix_gamma = true, batch_stats = true, update_running = true;
};

void op_forward(const ForwardArgs& a);
void op_train_step(const TrainArgs& a);
void op_triad(const ArrayRef& a, const ArrayRef& b, const ArrayRef& c, double s, bool stream);

void set_isa(const std::string& name);
std::string current_isa();
std::string available_isas();
void set_num_threads(int n);
int get_num_threads();
bool has_openmp();

}  // namespace bn
