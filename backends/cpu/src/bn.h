// Batch normalization on the CPU with the semantics of mxnet.npx.batch_norm (MXNet 1.9.1).
//
// Math (shared/spec/batch_norm_semantics.md), per channel c over its M = size / C elements:
//   batch statistics:   mean = sum x / M,   var = sum (x - mean)^2 / M          (biased)
//                       invstd = 1 / sqrt(var + DType(eps)),  0 if var + DType(eps) == 0
//   running statistics: mean = running_mean, invstd = 1 / sqrt(running_var + DType(eps))
//   forward:            y = (x - mean) * invstd * g + beta,   g = fix_gamma ? 1 : gamma
//   backward:           sdy = sum dy, dotp = sum (x - mean) dy
//                       batch:   dx = (dy - sdy/M - (x - mean) * dotp invstd^2 / M) * invstd g
//                       running: dx = dy * invstd g
//                       dgamma = fix_gamma ? 0 : dotp invstd,  dbeta = sdy
//   running update (in backward, batch statistics only), m = float32(momentum):
//                       running_mean = running_mean m + mean (1 - m)
//                       running_var  = running_var  m + (1/invstd^2 - eps) (1 - m)
//
// Layout: x is C-contiguous and viewed as [outer, C, inner] around the channel axis.
//   channel-first (inner > 1): a channel is `outer` rows of `inner` contiguous elements.
//   channel-last  (inner == 1): x is [outer, C] rows; a channel is a strided column.
//
// Precision: float64 data accumulate in compensated float64 (TwoSum, two passes per chunk);
// float32 data in float64, one pass per chunk shifted by the chunk's first value (exact for
// float32; kernels_first.inc chunk_stats). Float16/bfloat16 data: channel-first statistics and
// all backward sums in float32 lanes over runs of at most 16 vectors whose totals are added in
// float64 (two passes per chunk for the statistics; chunk_stats_narrow states the error
// budget); channel-last statistics as float32 data. The elementwise passes run in float64 lanes
// for float64 data and in float32 lanes otherwise. Per-channel scalars (mean,
// var, invstd, the running update) are formed in long double from the chunk partials, then
// rounded once.
//
// Determinism: every reduction is cut into chunks fixed by the shape alone (never by the thread
// count or the buffer address) and the chunk partials are merged in chunk order by one helper
// (merge_moments / merge_grads, numerics.cpp). Threads only choose which chunks they compute.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bn {

enum class DType : int { f64 = 0, f32 = 1, f16 = 2, bf16 = 3 };

inline std::size_t itemsize(DType t) {
  return t == DType::f64 ? 8 : t == DType::f32 ? 4 : 2;
}
// Parameters (gamma, beta, running stats, mean/invstd outputs) are float64 for float64 data
// and float32 otherwise.
inline bool params_are_f64(DType t) { return t == DType::f64; }

// --- tunables ---------------------------------------------------------------------------

// Elements of one channel-first statistics chunk: the two passes over a float64 chunk (sum,
// then squared deviations) run while it sits in L1 (2048 float64 = 16 KiB of a 32-48 KiB L1d);
// it also bounds the one-pass error of narrower data (chunk_stats).
constexpr std::int64_t kChunkElems = 2048;
// Channel-last blocks: rows x tile columns of about this many elements, re-read from L2 by
// the second statistics pass (64 Ki float32 = 256 KiB, a quarter of a 1 MiB L2).
constexpr std::int64_t kBlockElems = 65536;
// Channel-last column tile: a block spans at most this many channels, so that a block of
// kBlockElems elements still has kBlockElems / kTileCols = 64 rows or more.
constexpr std::int64_t kTileCols = 1024;
// Rows of a channel-last block never fall below this, so a wide tensor still merges few blocks.
constexpr std::int64_t kMinBlockRows = 16;
// Elementwise work items hold about this many elements: small enough to balance 2-3 threads
// on a 25 MB tensor, large enough that scheduling costs nothing.
constexpr std::int64_t kWorkElems = 32768;
// Outputs at least this large may be written with non-temporal stores (streaming_allowed):
// they cannot stay in a 32 MiB L3 next to their inputs, and skipping the read-for-ownership
// saves a third of the write traffic.
constexpr std::size_t kStreamMinBytes = std::size_t(8) << 20;
// ... and only when each contiguous run of the output (a channel-first row of `inner` elements)
// is at least this long: a non-temporal store fills a whole cache line in a write-combining
// buffer, and short rows (ResNet's 7x7 and 14x14 planes) leave most lines partial, each
// written back on its own (measured: 32x2048x7x7 float32 inference 8x slower than PyTorch).
constexpr std::size_t kStreamMinRunBytes = 2048;
// Whether those outputs use non-temporal stores: only with the environment variable
// BN_CPU_STREAM=1 (read once, dispatch.cpp). They brought the big rows to the floor on the
// quiet Zen 4 bench machine of an earlier round, but on the 2-core Zen 2 virtual machines of
// this project they made NCHW float32 forward training 2.0x and inference 2.3x slower than
// ordinary stores (1 thread, same run: 8.25 -> 4.09 ms and 6.38 -> 2.76 ms, PyTorch 14.6 and
// 3.3 ms), so ordinary stores are the default and a benchmark can compare both. The cause is
// the buffers' placement, not the machine alone: with y - x = 64 bytes modulo 4096 (what
// np.empty_like gave the benchmark), each load of x 4K-aliases a non-temporal store to y still
// in flight: NCHW float32 inference 1.65-3.2 ms streamed against 1.5 ordinary; with y placed at
// 0, 256, 1024, 2048 or 3072 bytes from x modulo 4096, streamed 1.13-1.17 ms against 1.48-1.51
// ordinary (2 threads, one run). Loading each group of vectors before storing the previous one
// cured it for channel-first rows (streamed NCHW float32 inference 1.66 -> 1.13 ms, ordinary
// 1.68) but not for channel-last ones (streamed NHWC float32 inference 10.0 ms against 3.0
// ordinary at 1 thread; 30 of 72 ResNet-50 float32 rows 1.1-3.1x slower streamed), so
// streaming stays opt-in and unpipelined.
bool streaming_allowed();
// Below this many elements a call runs on one thread: waking a team costs more than it saves.
constexpr std::int64_t kMinParallelElems = std::int64_t(1) << 15;
// A thread owns whole channels (so a channel's slab stays in its L2 between the statistics
// and the normalisation) when there are at least this many channels per thread.
constexpr std::int64_t kMinChannelsPerThread = 4;

// Channels whose merges and scalars one thread finishes in a row (for_channels): a wide
// channel-last tensor (C = 1024) spends as long on them as on its elementwise pass.
constexpr std::int64_t kChannelRun = 128;

// --- the problem --------------------------------------------------------------------------

struct Geometry {
  std::int64_t outer = 1, C = 1, inner = 1;
  std::int64_t M() const { return outer * inner; }
  std::int64_t size() const { return outer * C * inner; }
  bool channel_last() const { return inner == 1; }
};

// Per-channel scalars handed to the kernels, in float64 (the kernels round them to their
// accumulation type).
struct ChannelScalars {
  double mean = 0;    // subtracted from x
  double scale = 0;   // forward: invstd * g;  backward: invstd * g
  double shift = 0;   // forward: beta;        backward (batch): sdy / M
  double k = 0;       // backward (batch): dotp invstd^2 / M
};

// One chunk's contribution to a channel's moments: n elements with sum s_hi + s_lo, centred
// sum of squares m2 = sum (x - s/n)^2, and amax = max |x| (float64 data only, else 1).
struct Partial {
  double n = 0, s_hi = 0, s_lo = 0, m2 = 0, amax = 1;
};

// One chunk's contribution to the backward sums; dmax = max |x - mean|, gmax = max |dy|
// (float64 data only, else 1).
struct GradPartial {
  double sdy_hi = 0, sdy_lo = 0, dot_hi = 0, dot_lo = 0, dmax = 1, gmax = 1;
};

struct Moments {
  long double mean = 0, var = 0;  // var: biased, NaN when the mean is not finite
  double amax = 1;
};

struct GradSums {
  long double sdy = 0, dotp = 0;
  double dmax = 1, gmax = 1;
};

// Float64 data whose squares or products leave the normal float64 range (|x| < 2^-460 or
// > 2^460 over a whole channel, |x - mean| |dy| < 2^-900 or > 2^960) lose digits in the vector
// kernels; such channels are recomputed by a scalar long-double pass (exact_stats/exact_grads).
bool needs_exact_stats(double amax);
bool needs_exact_grads(double dmax, double gmax);

// The one merge helper (Chan et al.'s pairwise/parallel formula, numerics.cpp):
//   mean = sum_k s_k / n,  M2 = sum_k m2_k + sum_k n_k (s_k/n_k - mean)^2
// over count partials at parts[0], parts[stride], ... in that order.
Moments merge_moments(const Partial* parts, std::int64_t count, std::int64_t stride);
GradSums merge_grads(const GradPartial* parts, std::int64_t count, std::int64_t stride);
// dotp was accumulated around mean rounded to float64; return it around the exact mean:
// sum (x - mean) dy = sum (x - mean_used) dy - (mean - mean_used) sdy.
long double recentre_dotp(long double dotp, long double sdy, long double mean);

// 1/sqrt(v + e) in long double, rounded once; zero_if_zero: return 0 when v + e == 0.
long double inv_sqrt(long double v, long double e, bool zero_if_zero);

// Scalar conversions with round-to-nearest-even (used by the portable path and the tests).
std::uint16_t f32_to_f16(float f);
float f16_to_f32(std::uint16_t h);
std::uint16_t f32_to_bf16(float f);
float bf16_to_f32(std::uint16_t h);

struct ForwardCall;
struct BackwardCall;
// Per-channel scalars of the elementwise pass; also writes the call's per-channel outputs.
// Forward: mo = merged batch moments, or null for running statistics.
ChannelScalars forward_scalars(const ForwardCall& call, std::int64_t c, const Moments* mo);
// Backward: from the channel's merged sums (dotp around the exact mean).
ChannelScalars backward_scalars(const BackwardCall& call, std::int64_t c, long double sdy,
                                long double dotp);

// --- calls --------------------------------------------------------------------------------

struct ForwardCall {
  DType dtype = DType::f32;
  Geometry g;
  const void* x = nullptr;      // [outer, C, inner], dtype
  void* y = nullptr;            // [outer, C, inner], dtype; null: statistics only
  const double* gamma = nullptr;  // [C] as float64 (copied by the caller)
  const double* beta = nullptr;   // [C]
  const double* running_mean = nullptr;  // [C]
  const double* running_var = nullptr;   // [C]
  bool batch_stats = true;
  bool fix_gamma = true;
  double eps = 1e-3;       // as given (float64)
  double eps_dtype = 1e-3; // DType(eps): eps rounded to the data dtype, as float64
  int threads = 1;
  // outputs, [C] each
  long double* mean = nullptr;
  long double* var = nullptr;     // batch variance (batch mode only)
  long double* invstd = nullptr;
};

struct BackwardCall {
  DType dtype = DType::f32;
  Geometry g;
  const void* x = nullptr;   // [outer, C, inner]
  const void* dy = nullptr;  // [outer, C, inner]
  void* dx = nullptr;        // [outer, C, inner]; null: sums only
  const double* gamma = nullptr;
  const long double* mean = nullptr;    // [C] as used in forward
  const long double* invstd = nullptr;  // [C]
  bool batch_stats = true;
  bool fix_gamma = true;
  int threads = 1;
  // outputs, [C]
  long double* sdy = nullptr;
  long double* dotp = nullptr;
};

// The kernels of one instruction set.
struct KernelTable {
  const char* name;
  void (*forward)(const ForwardCall&);
  void (*backward)(const BackwardCall&);
  // a[i] = b[i] + s * c[i] over n float32, threads threads; stream: non-temporal stores
  void (*triad)(float* a, const float* b, const float* c, float s, std::int64_t n, int threads,
                bool stream);
};

const KernelTable* table_portable();
const KernelTable* table_avx2();    // null when not compiled in
const KernelTable* table_avx512();  // null when not compiled in

}  // namespace bn
