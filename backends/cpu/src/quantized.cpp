// The quantized batch norm: int8/uint8 in, int8 out. Math, layout and precision: quantized.h.
// Order: checks, the per-channel fold (w, b), the element kernels per layout, the launcher.
#include "quantized.h"

#include "checks.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace bn {
namespace {

// Adding then subtracting this rounds a float of magnitude <= 2^22 to an integer, ties to even.
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
// Rows handed to one thread at a time: about kWorkElems elements.
constexpr std::int64_t kQuantWorkElems = kWorkElems;

// --- checks ------------------------------------------------------------------------------------

Geometry check(const QuantizedArgs& a) {
  if (!((a.x.kind == 'i' || a.x.kind == 'u') && a.x.bits == 8))
    fail("x.dtype must be int8 or uint8 on the quantized path");
  const Geometry g = geometry_of(a.x, a.axis);
  check_contiguous(a.x);
  if (a.out.kind != 'i' || a.out.bits != 8 || a.out.ndim != a.x.ndim)
    fail("out must be an int8 array of x's shape");
  for (int i = 0; i < a.x.ndim; ++i)
    if (a.out.shape[i] != a.x.shape[i]) fail("out must be an int8 array of x's shape");
  check_contiguous(a.out);
  for (const ArrayRef* p : {&a.gamma, &a.beta, &a.running_mean, &a.running_var})
    check_param(*p, g.C, /*f64=*/false);
  if (!(a.output_scale > 0) || !std::isfinite(a.output_scale) || !std::isfinite(a.data_scale))
    fail("the calibration range must be finite and nonzero, the data range finite");
  if (overlaps(a.out, a.x)) fail("out overlaps x");
  return g;
}

// --- the per-channel fold ------------------------------------------------------------------------

// w[c], b[c] as floats: folded in double (see quantized.h), rounded once.
void fold(const QuantizedArgs& a, std::int64_t C, bool is_uint8, std::vector<float>& w,
          std::vector<float>& b) {
  const auto* gamma = static_cast<const float*>(a.gamma.data);         // [C]
  const auto* beta = static_cast<const float*>(a.beta.data);           // [C]
  const auto* rm = static_cast<const float*>(a.running_mean.data);     // [C]
  const auto* rv = static_cast<const float*>(a.running_var.data);      // [C]
  const double ratio = a.data_scale / a.output_scale;
  const double shift_scale = 127.0 / a.output_scale;
  for (std::int64_t c = 0; c < C; ++c) {
    const double r = 1.0 / std::sqrt(static_cast<double>(rv[c]) + a.eps);
    const double g = gamma[c];
    double wc = g * r * ratio;
    if (is_uint8) wc = wc * 127.0 / 255.0;
    w[c] = static_cast<float>(wc);
    b[c] = static_cast<float>((beta[c] - static_cast<double>(rm[c]) * g * r) * shift_scale);
  }
}

// --- element kernels ---------------------------------------------------------------------------

template <class In>
__attribute__((always_inline)) inline std::int8_t quantize(In q, float w, float b) {
  float v = static_cast<float>(q) * w + b;
  v = std::min(127.0f, std::max(-128.0f, v));
  v = (v + kRoundMagic) - kRoundMagic;
  return static_cast<std::int8_t>(static_cast<int>(v));
}

// Channel-first: one row of n elements with a scalar (w, b). q: [n], out: [n].
template <class In>
__attribute__((always_inline)) inline void row_first(const In* __restrict q,
                                                     std::int8_t* __restrict out, std::int64_t n,
                                                     float w, float b) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = quantize(q[i], w, b);
}

// Channel-last: one row of C elements against w[C], b[C]. q: [C], out: [C].
template <class In>
__attribute__((always_inline)) inline void row_last(const In* __restrict q,
                                                    std::int8_t* __restrict out, std::int64_t C,
                                                    const float* __restrict w,
                                                    const float* __restrict b) {
  for (std::int64_t c = 0; c < C; ++c) out[c] = quantize(q[c], w[c], b[c]);
}

// Rows [begin, end) of the [outer, C, inner] view. x: [outer, C, inner], out: same.
template <class In>
__attribute__((always_inline)) inline void rows(const In* x, std::int8_t* out, const Geometry& g,
                                                const float* w, const float* b,
                                                std::int64_t begin, std::int64_t end) {
  if (g.channel_last()) {
    for (std::int64_t o = begin; o < end; ++o) row_last(x + o * g.C, out + o * g.C, g.C, w, b);
  } else {
    for (std::int64_t r = begin; r < end; ++r)  // row r = (o, c), c = r % C
      row_first(x + r * g.inner, out + r * g.inner, g.inner, w[r % g.C], b[r % g.C]);
  }
}

#define BN_QUANT_VARIANT(NAME, TARGET)                                                          \
  template <class In>                                                                           \
  TARGET void NAME(const In* x, std::int8_t* out, const Geometry& g, const float* w,            \
                   const float* b, std::int64_t begin, std::int64_t end) {                      \
    rows(x, out, g, w, b, begin, end);                                                          \
  }

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define BN_QUANT_X86 1
BN_QUANT_VARIANT(rows_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))))
BN_QUANT_VARIANT(rows_avx2, __attribute__((target("avx2,fma"))))
#endif
BN_QUANT_VARIANT(rows_portable, )

// --- launcher ----------------------------------------------------------------------------------

template <class In>
void run(const In* x, std::int8_t* out, const Geometry& g, const float* w, const float* b) {
  using Rows = void (*)(const In*, std::int8_t*, const Geometry&, const float*, const float*,
                        std::int64_t, std::int64_t);
  Rows kernel = rows_portable<In>;
#if defined(BN_QUANT_X86)
  const std::string isa = current_isa();
  if (isa == "avx512") kernel = rows_avx512<In>;
  if (isa == "avx2") kernel = rows_avx2<In>;
#endif
  const std::int64_t row_len = g.channel_last() ? g.C : g.inner;
  const std::int64_t n_rows = g.channel_last() ? g.outer : g.outer * g.C;
  const std::int64_t per_item = std::max<std::int64_t>(1, kQuantWorkElems / std::max<std::int64_t>(1, row_len));
  const std::int64_t items = (n_rows + per_item - 1) / per_item;
  const int threads = g.size() < kMinParallelElems ? 1 : std::max(1, get_num_threads());
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
  for (std::int64_t item = 0; item < items; ++item) {
    const std::int64_t begin = item * per_item;
    kernel(x, out, g, w, b, begin, std::min(n_rows, begin + per_item));
  }
  (void)threads;
}

}  // namespace

void op_quantized(const QuantizedArgs& a) {
  const Geometry g = check(a);
  if (g.size() == 0) return;
  const bool is_uint8 = a.x.kind == 'u';
  std::vector<float> w(g.C), b(g.C);
  fold(a, g.C, is_uint8, w, b);
  auto* out = static_cast<std::int8_t*>(a.out.data);
  if (is_uint8) {
    run(static_cast<const std::uint8_t*>(a.x.data), out, g, w.data(), b.data());
  } else {
    run(static_cast<const std::int8_t*>(a.x.data), out, g, w.data(), b.data());
  }
}

}  // namespace bn
