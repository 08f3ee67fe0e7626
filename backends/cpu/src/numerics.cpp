// Scalar numerics shared by every instruction set: the one moment-merge helper, the gradient-sum
// merge, the inverse square root, and 16-bit float conversions (round to nearest even).
//
// Compiled once, without instruction-set flags, so every kernel table merges and finalises with
// the same code. Long double (x87 extended on x86-64: 64-bit significand) holds the per-channel
// totals: adding a few thousand float64 partials in it loses nothing visible at float64.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "bn.h"

namespace bn {

Moments merge_moments(const Partial* parts, std::int64_t count, std::int64_t stride) {
  // Chan, Golub & LeVeque: for chunks k with n_k elements, sums s_k and centred M2_k,
  //   sum (x - mean)^2 = sum_k M2_k + sum_k n_k (s_k / n_k - mean)^2,  mean = sum_k s_k / n.
  // Non-finite data: the sum follows IEEE arithmetic on the chunk sums (inf, or NaN for
  // inf - inf), and the variance is NaN whenever the mean is not finite.
  long double n = 0, s = 0;
  double s_ieee = 0, amax = 0;
  bool finite = true;
  for (std::int64_t k = 0; k < count; ++k) {
    const Partial& p = parts[k * stride];
    n += p.n;
    amax = std::max(amax, p.amax);
    s += static_cast<long double>(p.s_hi) + p.s_lo;
    s_ieee += p.s_hi;
    finite = finite && std::isfinite(p.s_hi);
  }
  Moments out;
  out.amax = amax;
  if (!finite) {
    out.mean = static_cast<long double>(s_ieee) / n;
    out.var = std::numeric_limits<long double>::quiet_NaN();
    return out;
  }
  out.mean = s / n;
  if (!std::isfinite(out.mean)) {
    out.var = std::numeric_limits<long double>::quiet_NaN();
    return out;
  }
  long double m2 = 0;
  for (std::int64_t k = 0; k < count; ++k) {
    const Partial& p = parts[k * stride];
    const long double d = (static_cast<long double>(p.s_hi) + p.s_lo) / p.n - out.mean;
    m2 += static_cast<long double>(p.m2) + p.n * d * d;
  }
  out.var = m2 / n;
  return out;
}

GradSums merge_grads(const GradPartial* parts, std::int64_t count, std::int64_t stride) {
  // Non-finite chunk sums: IEEE arithmetic on the chunk sums (inf, or NaN for inf - inf).
  long double a = 0, b = 0;
  double a_ieee = 0, b_ieee = 0;
  GradSums out;
  out.dmax = out.gmax = 0;
  for (std::int64_t k = 0; k < count; ++k) {
    const GradPartial& p = parts[k * stride];
    a += static_cast<long double>(p.sdy_hi) + p.sdy_lo;
    b += static_cast<long double>(p.dot_hi) + p.dot_lo;
    a_ieee += p.sdy_hi;
    b_ieee += p.dot_hi;
    out.dmax = std::max(out.dmax, p.dmax);
    out.gmax = std::max(out.gmax, p.gmax);
  }
  out.sdy = std::isfinite(a_ieee) ? a : a_ieee;
  out.dotp = std::isfinite(b_ieee) ? b : b_ieee;
  return out;
}

long double recentre_dotp(long double dotp, long double sdy, long double mean) {
  const long double delta = mean - static_cast<long double>(static_cast<double>(mean));
  if (delta == 0 || !std::isfinite(sdy) || !std::isfinite(mean)) return dotp;
  return dotp - delta * sdy;
}

bool needs_exact_stats(double amax) {
  return std::isfinite(amax) && amax != 0 && (amax < 0x1p-460 || amax > 0x1p460);
}

bool needs_exact_grads(double dmax, double gmax) {
  const double p = dmax * gmax;  // may under/overflow: then certainly needed
  return std::isfinite(dmax) && std::isfinite(gmax) && dmax != 0 && gmax != 0 &&
         (!(p >= 0x1p-900) || !(p <= 0x1p960));
}

long double inv_sqrt(long double v, long double e, bool zero_if_zero) {
  const long double s = v + e;
  if (zero_if_zero && s == 0) return 0;
  return 1.0L / std::sqrt(s);
}

// --- 16-bit conversions -------------------------------------------------------------------

std::uint16_t f32_to_bf16(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  if (std::isnan(f)) return static_cast<std::uint16_t>((b >> 16) | 0x40);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return static_cast<std::uint16_t>(b >> 16);
}

float bf16_to_f32(std::uint16_t h) {
  const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu;
  const std::uint32_t man = h & 0x3FFu;
  std::uint32_t b;
  if (exp == 0x1F) {
    b = sign | 0x7F800000u | (man << 13) | (man ? 0x00400000u : 0u);
  } else if (exp != 0) {
    b = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    b = sign;
  } else {  // subnormal: value man * 2^-24, exact in float32
    const float v = std::ldexp(static_cast<float>(man), -24);
    std::memcpy(&b, &v, 4);
    b |= sign;
  }
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, 4);
  const std::uint16_t sign = static_cast<std::uint16_t>((b >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>(sign | 0x7E00u | ((b >> 13) & 0x3FFu));
  if (a >= 65520.0f) return static_cast<std::uint16_t>(sign | 0x7C00u);  // rounds to inf
  if (a < 6.103515625e-05f) {
    // subnormal range: units of 2^-24; nearbyint rounds half to even in the default mode
    const float q = std::nearbyint(std::ldexp(a, 24));
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(q));
  }
  std::uint32_t ab = b & 0x7FFFFFFFu;
  ab += 0x0FFFu + ((ab >> 13) & 1u);  // round the 13 dropped bits to nearest even
  const std::uint32_t exp = (ab >> 23) - 112u;
  return static_cast<std::uint16_t>(sign | (exp << 10) | ((ab >> 13) & 0x3FFu));
}

}  // namespace bn

namespace bn {

ChannelScalars forward_scalars(const ForwardCall& call, std::int64_t c, const Moments* mo) {
  long double mean, invstd;
  if (mo) {
    mean = mo->mean;
    invstd = inv_sqrt(mo->var, call.eps_dtype, /*zero_if_zero=*/true);
    if (call.var) call.var[c] = mo->var;
  } else {
    mean = call.running_mean[c];
    invstd = inv_sqrt(call.running_var[c], call.eps_dtype, /*zero_if_zero=*/false);
  }
  call.mean[c] = mean;
  call.invstd[c] = invstd;
  const long double g = call.fix_gamma ? 1.0L : static_cast<long double>(call.gamma[c]);
  ChannelScalars s;
  s.mean = static_cast<double>(mean);
  s.scale = static_cast<double>(invstd * g);
  s.shift = call.beta[c];
  return s;
}

ChannelScalars backward_scalars(const BackwardCall& call, std::int64_t c, long double sdy,
                                long double dotp) {
  call.sdy[c] = sdy;
  call.dotp[c] = dotp;
  const long double invstd = call.invstd[c];
  const long double g = call.fix_gamma ? 1.0L : static_cast<long double>(call.gamma[c]);
  const long double M = static_cast<long double>(call.g.M());
  ChannelScalars s;
  s.mean = static_cast<double>(call.mean[c]);
  s.scale = static_cast<double>(invstd * g);
  if (call.batch_stats) {
    s.shift = static_cast<double>(sdy / M);
    s.k = static_cast<double>(dotp * invstd * invstd / M);
  }
  return s;
}

}  // namespace bn
