// The operations behind the bindings: argument checks that Python cannot make (contiguity,
// overlap, sizes against the data pointer), instruction-set and thread-count selection, and
// the per-channel outputs (mean, invstd, dgamma, dbeta, running statistics) rounded once to
// the parameter dtype. Everything is checked before anything is written.
#include "ops.h"
#include "checks.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace bn {
namespace {

// --- instruction set and threads -------------------------------------------------------------

bool cpu_has_avx512() {
#if defined(BN_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx2() {
#if defined(BN_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const KernelTable* table_by_name(const std::string& name) {
  if (name == "portable") return table_portable();
#if defined(BN_HAVE_AVX2)
  if (name == "avx2") return cpu_has_avx2() ? table_avx2() : nullptr;
#endif
#if defined(BN_HAVE_AVX512)
  if (name == "avx512") return cpu_has_avx512() ? table_avx512() : nullptr;
#endif
  return nullptr;
}

const KernelTable* best_table() {
  if (const char* env = std::getenv("BN_CPU_ISA")) {
    if (const KernelTable* t = table_by_name(env)) return t;
  }
#if defined(BN_HAVE_AVX512)
  if (cpu_has_avx512()) return table_avx512();
#endif
#if defined(BN_HAVE_AVX2)
  if (cpu_has_avx2()) return table_avx2();
#endif
  return table_portable();
}

std::atomic<const KernelTable*> g_table{nullptr};
std::atomic<int> g_threads{0};

const KernelTable* table() {
  const KernelTable* t = g_table.load();
  if (!t) {
    t = best_table();
    g_table.store(t);
  }
  return t;
}

int default_threads() {
#if defined(_OPENMP)
  return std::max(1, omp_get_max_threads());
#else
  return 1;
#endif
}

// --- checks ------------------------------------------------------------------------------------

void check_data(const ArrayRef& a, DType dt) {
  switch (dt) {
    case DType::f64: check_storage(a, 'f', 64, "float64"); break;
    case DType::f32: check_storage(a, 'f', 32, "float32"); break;
    default: check_storage(a, 'u', 16, "16-bit storage viewed as uint16"); break;
  }
  check_contiguous(a);
}

// Every written array must not overlap any other array of the call.
void check_no_overlap(const std::vector<const ArrayRef*>& all,
                      const std::vector<const ArrayRef*>& written) {
  for (const ArrayRef* w : written)
    for (const ArrayRef* o : all)
      if (w != o && overlaps(*w, *o))
        fail(std::string(w->name) + " overlaps " + o->name +
             ": the arrays written by batch_norm must not share memory with any other argument");
}

// x viewed as [outer, C, inner]; the float operations also refuse an empty x.
Geometry nonempty_geometry_of(const ArrayRef& x, int axis) {
  const Geometry g = geometry_of(x, axis);
  if (g.size() <= 0) fail("x.shape=" + shape_str(x) + " is empty: batch_norm needs at least one element");
  return g;
}

std::vector<double> param_values(const ArrayRef& a, std::int64_t C) {
  std::vector<double> v(static_cast<std::size_t>(C));
  if (a.bits == 64) {
    std::memcpy(v.data(), a.data, static_cast<std::size_t>(C) * 8);
  } else {
    for (std::int64_t c = 0; c < C; ++c) {
      float f;
      std::memcpy(&f, static_cast<const char*>(a.data) + c * 4, 4);
      v[c] = f;
    }
  }
  return v;
}

void put_param(const ArrayRef& a, std::int64_t c, long double value) {
  char* p = static_cast<char*>(a.data);
  if (a.bits == 64) {
    const double d = static_cast<double>(value);
    std::memcpy(p + c * 8, &d, 8);
  } else {
    const float f = static_cast<float>(value);  // one rounding from long double
    std::memcpy(p + c * 4, &f, 4);
  }
}

// DType(eps): eps rounded to the data dtype (round to nearest even), as float64.
double eps_in_dtype(double eps, DType dt) {
  switch (dt) {
    case DType::f64: return eps;
    case DType::f32: return static_cast<float>(eps);
    case DType::f16: {
      // round float64 -> float16 directly: float32 first could double-round
      const float f = static_cast<float>(eps);
      std::uint16_t h = f32_to_f16(f);
      const double back = f16_to_f32(h);
      if (back != eps) {
        // re-round from the float64 value: pick the nearer of the two float16 neighbours
        const std::uint16_t other = static_cast<std::uint16_t>(back < eps ? h + 1 : h - 1);
        const double ob = f16_to_f32(other);
        if (std::fabs(ob - eps) < std::fabs(back - eps) ||
            (std::fabs(ob - eps) == std::fabs(back - eps) && (other & 1) == 0))
          h = other;
      }
      return f16_to_f32(h);
    }
    case DType::bf16: {
      const float f = static_cast<float>(eps);
      std::uint16_t h = f32_to_bf16(f);
      const double back = bf16_to_f32(h);
      if (back != eps && eps > 0) {
        const std::uint16_t other = static_cast<std::uint16_t>(back < eps ? h + 1 : h - 1);
        const double ob = bf16_to_f32(other);
        if (std::fabs(ob - eps) < std::fabs(back - eps) ||
            (std::fabs(ob - eps) == std::fabs(back - eps) && (other & 1) == 0))
          h = other;
      }
      return bf16_to_f32(h);
    }
  }
  return eps;
}

void check_scalars(double eps, double momentum) {
  if (!(eps >= 0)) fail("eps=" + std::to_string(eps) + " must be a number >= 0");
  if (!std::isfinite(momentum)) fail("momentum=" + std::to_string(momentum) + " must be a finite number");
}

}  // namespace

// --- public -------------------------------------------------------------------------------------

bool streaming_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("BN_CPU_STREAM");
    return env != nullptr && std::string(env) == "1";
  }();
  return allowed;
}

void set_isa(const std::string& name) {
  const KernelTable* t = name == "auto" ? best_table() : table_by_name(name);
  if (!t) fail("isa='" + name + "' is not available on this CPU/build (available: " + available_isas() + ")");
  g_table.store(t);
}

std::string current_isa() { return table()->name; }

std::string available_isas() {
  std::string s = "portable";
  if (table_by_name("avx2")) s += ",avx2";
  if (table_by_name("avx512")) s += ",avx512";
  return s;
}

void set_num_threads(int n) {
  if (n < 0) fail("num_threads=" + std::to_string(n) + " must be >= 0 (0: the OpenMP default)");
  g_threads.store(n);
}

int get_num_threads() {
  const int n = g_threads.load();
  return n > 0 ? n : default_threads();
}

bool has_openmp() {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

void op_forward(const ForwardArgs& a) {
  // checks
  const Geometry g = nonempty_geometry_of(a.x, a.axis);
  check_data(a.x, a.dtype);
  const bool f64 = params_are_f64(a.dtype);
  for (const ArrayRef* p : {&a.gamma, &a.beta, &a.running_mean, &a.running_var, &a.mean_out, &a.invstd_out})
    check_param(*p, g.C, f64);
  check_scalars(a.eps, 0.0);
  if (a.y.data) {
    check_data(a.y, a.dtype);
    if (numel(a.y) != g.size()) fail("y must have the size of x");
  }
  std::vector<const ArrayRef*> all = {&a.x, &a.gamma, &a.beta, &a.running_mean, &a.running_var,
                                      &a.mean_out, &a.invstd_out};
  std::vector<const ArrayRef*> written = {&a.mean_out, &a.invstd_out};
  if (a.y.data) { all.push_back(&a.y); written.push_back(&a.y); }
  if (a.fix_gamma) written.push_back(&a.gamma);
  check_no_overlap(all, written);

  // compute
  const std::vector<double> gamma = param_values(a.gamma, g.C), beta = param_values(a.beta, g.C),
                            rm = param_values(a.running_mean, g.C), rv = param_values(a.running_var, g.C);
  std::vector<long double> mean(g.C), var(g.C), invstd(g.C);
  ForwardCall call;
  call.dtype = a.dtype;
  call.g = g;
  call.x = a.x.data;
  call.y = a.y.data;
  call.gamma = gamma.data();
  call.beta = beta.data();
  call.running_mean = rm.data();
  call.running_var = rv.data();
  call.batch_stats = a.batch_stats;
  call.fix_gamma = a.fix_gamma;
  call.eps = a.eps;
  call.eps_dtype = eps_in_dtype(a.eps, a.dtype);
  call.threads = g.size() < kMinParallelElems ? 1 : get_num_threads();
  call.mean = mean.data();
  call.var = var.data();
  call.invstd = invstd.data();
  const KernelTable* t = table();
  t->forward(call);
  for (std::int64_t c = 0; c < g.C; ++c) {
    put_param(a.mean_out, c, mean[c]);
    put_param(a.invstd_out, c, invstd[c]);
    if (a.fix_gamma) put_param(a.gamma, c, 1.0L);
  }
}

void op_train_step(const TrainArgs& a) {
  const Geometry g = nonempty_geometry_of(a.x, a.axis);
  check_data(a.x, a.dtype);
  check_data(a.dy, a.dtype);
  if (a.dy.ndim != a.x.ndim || !std::equal(a.x.shape, a.x.shape + a.x.ndim, a.dy.shape))
    fail("dy.shape=" + shape_str(a.dy) + " must equal x.shape=" + shape_str(a.x));
  check_data(a.dx, a.dtype);
  if (numel(a.dx) != g.size()) fail("dx must have the size of x");
  const bool f64 = params_are_f64(a.dtype);
  for (const ArrayRef* p : {&a.gamma, &a.beta, &a.running_mean, &a.running_var, &a.dgamma, &a.dbeta})
    check_param(*p, g.C, f64);
  if (a.saved_mean.data) check_param(a.saved_mean, g.C, f64);
  if (a.saved_invstd.data) check_param(a.saved_invstd, g.C, f64);
  const bool from_saved = a.saved_mean.data != nullptr;
  if (from_saved != (a.saved_invstd.data != nullptr)) fail("saved_mean and saved_invstd go together");
  check_scalars(a.eps, a.momentum);
  std::vector<const ArrayRef*> all = {&a.x, &a.dy, &a.dx, &a.gamma, &a.beta, &a.running_mean,
                                      &a.running_var, &a.dgamma, &a.dbeta};
  if (from_saved) { all.push_back(&a.saved_mean); all.push_back(&a.saved_invstd); }
  std::vector<const ArrayRef*> written = {&a.dx, &a.dgamma, &a.dbeta};
  const bool update = a.batch_stats && a.update_running;
  if (update) { written.push_back(&a.running_mean); written.push_back(&a.running_var); }
  if (a.fix_gamma && !from_saved) written.push_back(&a.gamma);
  check_no_overlap(all, written);

  const std::vector<double> gamma = param_values(a.gamma, g.C), beta = param_values(a.beta, g.C),
                            rm = param_values(a.running_mean, g.C), rv = param_values(a.running_var, g.C);
  const double eps_d = eps_in_dtype(a.eps, a.dtype);
  std::vector<long double> mean(g.C), var(g.C, 0.0L), invstd(g.C), sdy(g.C), dotp(g.C);
  const KernelTable* t = table();
  const int threads = g.size() < kMinParallelElems ? 1 : get_num_threads();
  {
    if (from_saved) {
      const std::vector<double> sm = param_values(a.saved_mean, g.C), si = param_values(a.saved_invstd, g.C);
      for (std::int64_t c = 0; c < g.C; ++c) {
        mean[c] = sm[c];
        invstd[c] = si[c];
        var[c] = 1.0L / (invstd[c] * invstd[c]) - eps_d;
      }
    } else {
      ForwardCall f;
      f.dtype = a.dtype;
      f.g = g;
      f.x = a.x.data;
      f.gamma = gamma.data();
      f.beta = beta.data();
      f.running_mean = rm.data();
      f.running_var = rv.data();
      f.batch_stats = a.batch_stats;
      f.fix_gamma = a.fix_gamma;
      f.eps = a.eps;
      f.eps_dtype = eps_d;
      f.threads = threads;
      f.mean = mean.data();
      f.var = var.data();
      f.invstd = invstd.data();
      t->forward(f);
    }
    BackwardCall b;
    b.dtype = a.dtype;
    b.g = g;
    b.x = a.x.data;
    b.dy = a.dy.data;
    b.dx = a.dx.data;
    b.gamma = gamma.data();
    b.mean = mean.data();
    b.invstd = invstd.data();
    b.batch_stats = a.batch_stats;
    b.fix_gamma = a.fix_gamma;
    b.threads = threads;
    b.sdy = sdy.data();
    b.dotp = dotp.data();
    t->backward(b);
  }
  const long double m = static_cast<float>(a.momentum);  // MXNet keeps momentum as a float
  for (std::int64_t c = 0; c < g.C; ++c) {
    put_param(a.dgamma, c, a.fix_gamma ? 0.0L : dotp[c] * invstd[c]);
    put_param(a.dbeta, c, sdy[c]);
    if (update) {
      // var = 1/invstd^2 - eps, with invstd = 1/sqrt(var + DType(eps)): (var + DType(eps)) - eps,
      // and +inf where invstd was defined as 0.
      const long double v = invstd[c] == 0 ? HUGE_VALL : (var[c] + eps_d) - a.eps;
      put_param(a.running_mean, c, rm[c] * m + mean[c] * (1.0L - m));
      put_param(a.running_var, c, rv[c] * m + v * (1.0L - m));
    }
    if (a.fix_gamma && !from_saved) put_param(a.gamma, c, 1.0L);
  }
}

void op_triad(const ArrayRef& a, const ArrayRef& b, const ArrayRef& c, double s, bool stream) {
  for (const ArrayRef* p : {&a, &b, &c}) {
    check_storage(*p, 'f', 32, "float32");
    check_contiguous(*p);
  }
  const std::int64_t n = numel(a);
  if (numel(b) != n || numel(c) != n) fail("triad arrays must have equal sizes");
  const KernelTable* t = table();
  const int threads = get_num_threads();
  t->triad(static_cast<float*>(a.data), static_cast<const float*>(b.data),
           static_cast<const float*>(c.data), static_cast<float>(s), n, threads, stream);
}

}  // namespace bn
