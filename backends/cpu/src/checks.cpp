// Argument checks shared by the float operations and the quantized path (checks.h).
#include "checks.h"

#include <cstddef>
#include <functional>
#include <stdexcept>
#include <string>

namespace bn {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument(msg); }

std::string shape_str(const ArrayRef& a) {
  std::string s = "(";
  for (int i = 0; i < a.ndim; ++i) s += std::to_string(a.shape[i]) + (a.ndim == 1 || i + 1 < a.ndim ? "," : "");
  return s + ")";
}

std::int64_t numel(const ArrayRef& a) {
  std::int64_t n = 1;
  for (int i = 0; i < a.ndim; ++i) n *= a.shape[i];
  return n;
}

void check_contiguous(const ArrayRef& a) {
  std::int64_t expect = 1;
  for (int i = a.ndim - 1; i >= 0; --i) {
    if (a.shape[i] != 1 && a.strides[i] != expect)
      fail(std::string(a.name) + " is not C-contiguous (shape " + shape_str(a) +
           "): pass np.ascontiguousarray(" + a.name + ")");
    expect *= a.shape[i];
  }
  if (a.data == nullptr && numel(a) > 0) fail(std::string(a.name) + " has no data");
}

void check_storage(const ArrayRef& a, char kind, int bits, const char* what) {
  if (a.kind != kind || a.bits != bits)
    fail(std::string(a.name) + ": storage of kind '" + a.kind + "' with " + std::to_string(a.bits) +
         " bits, expected " + what);
}

void check_param(const ArrayRef& a, std::int64_t C, bool f64) {
  if (a.ndim != 1 || a.shape[0] != C)
    fail(std::string(a.name) + ".shape=" + shape_str(a) + " must be (" + std::to_string(C) + ",)");
  check_storage(a, 'f', f64 ? 64 : 32, f64 ? "float64" : "float32");
  check_contiguous(a);
}

bool overlaps(const ArrayRef& a, const ArrayRef& b) {
  const auto* a0 = static_cast<const char*>(a.data);
  const auto* b0 = static_cast<const char*>(b.data);
  const std::size_t na = static_cast<std::size_t>(numel(a)) * static_cast<std::size_t>(a.bits / 8);
  const std::size_t nb = static_cast<std::size_t>(numel(b)) * static_cast<std::size_t>(b.bits / 8);
  if (na == 0 || nb == 0) return false;
  return std::less<const char*>()(a0, b0 + nb) && std::less<const char*>()(b0, a0 + na);
}

Geometry geometry_of(const ArrayRef& x, int axis) {
  if (x.ndim < 2) fail("x.ndim=" + std::to_string(x.ndim) + ": batch_norm needs rank >= 2");
  if (axis < 0 || axis >= x.ndim)
    fail("axis=" + std::to_string(axis) + " is out of range for x of rank " + std::to_string(x.ndim));
  Geometry g;
  g.C = x.shape[axis];
  for (int i = 0; i < axis; ++i) g.outer *= x.shape[i];
  for (int i = axis + 1; i < x.ndim; ++i) g.inner *= x.shape[i];
  return g;
}

}  // namespace bn
