// bn_ops.cuh: the per-channel math of mxnet.npx.batch_norm, shared by both layouts.
//
// Math (shared/spec/batch_norm_semantics.md). Per channel c, M elements, g = 1 if fix_gamma
// else gamma[c], e = eps_data (DType(eps) on MXNet's own path, eps in Acc on the cuDNN path):
//   batch statistics:   mean, var = m2 / M,  invstd = 1 / sqrt(var + e)
//                       (0 where var == 0 and eps == 0: kEpsZero; IEEE otherwise)
//   running statistics: mean = running_mean,  invstd = 1 / sqrt(running_var + e)
//   forward:            y = (x - mean) * (invstd * g) + beta
//   backward:           sdy = sum(dy), dotp = sum((x - mean) * dy), the rounding of mean taken out
//                       with sum(x - mean) (see GradSums)
//     batch:            dx = (dy - (x - mean) * k - a) * w,  a = sdy / M, k = dotp invstd^2 / M
//     running:          dx = dy * w,                          w = invstd * g
//     dgamma = dotp * invstd (0 with fix_gamma),  dbeta = sdy
//   running-stat update (batch statistics only), r <- r * keep + stat * take:
//     kUpdateInBackward (MXNet's own kernels): stat = mean and var + eps_shift, i.e. the
//       variance recovered as 1/invstd^2 - eps with eps_shift = DType(eps) - eps (+Inf where
//       invstd == 0); keep = float32(momentum), take = 1 - keep; done by the gradient finalize.
//     kUpdateInForward (cuDNN path): stat = mean and the unbiased m2 / (M - 1); take = cuDNN's
//       exponential-average factor 1 - momentum, keep = 1 - take; done by the statistics finalize.
//
// Per-channel workspace `chan` [kChanFields, C] (Acc): the statistics finalize writes kMean,
// kInvstd, kVar; the gradient finalize writes kGradMean (a), kProj (k), kScale (w); the
// normalize kernel writes kMean and kInvstd in running-statistics mode (kWriteStats).
#pragma once

#include "bn_common.cuh"

namespace bn {

enum Flags : unsigned {
  kFixGamma = 1u << 0,          // g = 1
  kBatchStats = 1u << 1,        // batch statistics (else running statistics)
  kUpdateInForward = 1u << 2,   // cuDNN path: the statistics finalize updates running stats
  kUpdateInBackward = 1u << 3,  // own-kernel path: the gradient finalize updates running stats
  kWriteStats = 1u << 4,        // running-stats normalize: also write chan[kMean], chan[kInvstd]
  kEpsZero = 1u << 5,           // eps == 0 (the double): a zero batch variance gives invstd = 0
};

enum ChanField : int { kMean = 0, kInvstd, kVar, kGradMean, kProj, kScale, kChanFields };

template <typename Acc>
struct ChannelParams {
  const Acc* gamma;   // [C]
  const Acc* beta;    // [C]
  const Acc* center;  // [C]: chan + kMean * C (batch statistics) or running_mean
  Acc* running_mean;  // [C], updated in place
  Acc* running_var;   // [C], updated in place
  Acc* chan;          // [kChanFields, C]
  Acc* dgamma;        // [C] (gradient kernels only)
  Acc* dbeta;         // [C] (gradient kernels only)
  Acc eps_data;       // e
  Acc eps_shift;      // DType(eps) - eps
  Acc keep;           // weight of the old running statistic
  Acc take;           // weight of the batch statistic
  long long count;    // M
  int channels;       // C
  unsigned flags;

  __device__ Acc& at(ChanField f, int c) const {
    return chan[static_cast<long long>(f) * channels + c];
  }
  __device__ Acc g(int c) const { return (flags & kFixGamma) ? Acc(1) : gamma[c]; }
  __device__ bool batch() const { return (flags & kBatchStats) != 0; }
  __device__ Acc running_invstd(int c) const {
    return Acc(1) / acc_sqrt(running_var[c] + eps_data);
  }
};

// Kernel parameter list and the ChannelParams built from it: every kernel takes the same list,
// so the host passes one argument tuple (backends/cuda/launch.py) to each of them.
#define BN_CHANNEL_PARAMS(Acc)                                                            \
  const Acc *__restrict__ gamma, const Acc *__restrict__ beta, const Acc *__restrict__ center, \
      Acc *__restrict__ running_mean, Acc *__restrict__ running_var, Acc *__restrict__ chan,   \
      Acc *__restrict__ dgamma, Acc *__restrict__ dbeta, Acc eps_data, Acc eps_shift, Acc keep, \
      Acc take, long long count, int channels, unsigned flags
#define BN_CHANNEL_ARGS(Acc)                                                                 \
  ChannelParams<Acc> {                                                                       \
    gamma, beta, center, running_mean, running_var, chan, dgamma, dbeta, eps_data, eps_shift, \
        keep, take, count, channels, flags                                                   \
  }

// ---- reductions: a chunk's state, and what the last block does with a channel's total ----
// A reducer's pivot is the per-channel value its chunks are taken about: the statistics'
// shift (the channel's first element x0) and the gradients' mean.
template <typename Acc>
struct StatsReducer {
  using State = Welford<Acc>;
  static constexpr bool kReadsDy = false;

  static __device__ Acc pivot(Acc x0, int, const ChannelParams<Acc>&) { return x0; }

  template <int P, int W, typename GetX, typename GetDy>
  static __device__ State chunk(GetX x, GetDy, int rows, Acc shift) {
    return welford_of_chunk<P, W, Acc>(x, rows, shift);
  }

  static __device__ void finalize(int c, const State& total, Acc shift,
                                  const ChannelParams<Acc>& p) {
    const Acc n = static_cast<Acc>(total.n);
    const bool finite = total.nonfinite == Acc(0);
    const Acc mean = finite ? shift + total.mean : total.nonfinite;  // IEEE sum(x)/M if not finite
    const Acc var = finite ? total.m2 / n : quiet_nan<Acc>();
    const bool defined_zero = var == Acc(0) && (p.flags & kEpsZero);  // spec: invstd = 0
    const Acc invstd = defined_zero ? Acc(0) : Acc(1) / acc_sqrt(var + p.eps_data);
    p.at(kMean, c) = mean;
    p.at(kInvstd, c) = invstd;
    p.at(kVar, c) = var;
    if (p.flags & kUpdateInForward) {
      const Acc unbiased = finite ? total.m2 / (n - Acc(1)) : quiet_nan<Acc>();  // M = 1: NaN
      p.running_mean[c] = p.running_mean[c] * p.keep + mean * p.take;
      p.running_var[c] = p.running_var[c] * p.keep + unbiased * p.take;
    }
  }
};

template <typename Acc>
struct GradReducer {
  using State = GradSums<Acc>;
  static constexpr bool kReadsDy = true;

  static __device__ Acc pivot(Acc, int c, const ChannelParams<Acc>& p) { return p.center[c]; }

  template <int P, int W, typename GetX, typename GetDy>
  static __device__ State chunk(GetX x, GetDy dy, int rows, Acc mean) {
    return grad_sums_of_chunk<P, W, Acc>(x, dy, rows, mean);
  }

  static __device__ void finalize(int c, const State& total, Acc, const ChannelParams<Acc>& p) {
    const Acc n = static_cast<Acc>(p.count);
    const Acc sdy = sum_value(total.sdy);
    // Batch statistics: sum((x - mean) dy) = sum((x - m) dy) - (sum(x - m) / M) sum(dy) for the
    // rounded mean m. Running statistics: m is running_mean itself, exact by definition.
    const Acc dotp = p.batch() ? sum_value(total.dotp) - sum_value(total.sxc) / n * sdy
                               : sum_value(total.dotp);
    const Acc invstd = p.batch() ? p.at(kInvstd, c) : p.running_invstd(c);
    p.at(kScale, c) = invstd * p.g(c);
    p.at(kGradMean, c) = sdy / n;
    p.at(kProj, c) = dotp * invstd * invstd / n;
    p.dgamma[c] = (p.flags & kFixGamma) ? Acc(0) : dotp * invstd;
    p.dbeta[c] = sdy;
    if (p.flags & kUpdateInBackward) {
      const Acc var = invstd == Acc(0) ? infinity<Acc>() : p.at(kVar, c) + p.eps_shift;
      p.running_mean[c] = p.running_mean[c] * p.keep + p.at(kMean, c) * p.take;
      p.running_var[c] = p.running_var[c] * p.keep + var * p.take;
    }
  }
};

// ---- elementwise passes ---------------------------------------------------------------------
template <typename Acc>
struct NormalizeOp {  // y = (x - mean) * scale + beta
  static constexpr bool kReadsDy = false;
  Acc mean, scale, shift;

  NormalizeOp() = default;
  __device__ NormalizeOp(int c, const ChannelParams<Acc>& p) {
    const Acc invstd = p.batch() ? p.at(kInvstd, c) : p.running_invstd(c);
    mean = p.center[c];
    scale = invstd * p.g(c);
    shift = p.beta[c];
  }
  // Running statistics with output_mean_var: one thread per channel records mean and invstd.
  static __device__ void write_stats(int c, const ChannelParams<Acc>& p) {
    if (p.flags & kWriteStats) {
      p.at(kMean, c) = p.running_mean[c];
      p.at(kInvstd, c) = p.running_invstd(c);
    }
  }
  __device__ bool reads_x() const { return true; }
  __device__ Acc operator()(Acc x, Acc) const { return (x - mean) * scale + shift; }
};

template <typename Acc>
struct InputGradOp {  // batch: dx = (dy - (x - mean) * k - a) * w;  running: dx = dy * w
  static constexpr bool kReadsDy = true;
  Acc mean, proj, grad_mean, scale;
  bool batch;

  InputGradOp() = default;
  __device__ InputGradOp(int c, const ChannelParams<Acc>& p) {
    batch = p.batch();
    mean = p.center[c];
    proj = p.at(kProj, c);
    grad_mean = p.at(kGradMean, c);
    scale = p.at(kScale, c);
  }
  static __device__ void write_stats(int, const ChannelParams<Acc>&) {}
  __device__ bool reads_x() const { return batch; }
  __device__ Acc operator()(Acc x, Acc dy) const {
    return batch ? (dy - (x - mean) * proj - grad_mean) * scale : dy * scale;
  }
};

}  // namespace bn
