// bn_common.cuh: what every batch-norm kernel shares.
//
// Math. Per channel c, over its M elements (every axis but the channel axis):
//   mean = sum(x) / M,  m2 = sum((x - mean)^2),  var = m2 / M (biased)
// computed as a tree of Welford/Chan merges of (n, mean, m2):
//   n = na + nb,  delta = mean_b - mean_a,
//   mean = mean_a + delta * nb / n,  m2 = m2a + m2b + delta^2 * na * nb / n
// The merges run on x - s, s a per-channel shift (the channel's first element, read by every
// thread): the means being merged are then of the size of the spread, not of the offset, and
// their rounding does not leak into m2 through delta (a channel at 1e4 +- 1 in float32 would
// lose ~10 bits of its variance otherwise); mean = s + mean(x - s) at the end, and a
// constant channel gives m2 = 0 exactly. The leaves are register-resident chunks (a step's
// kPacks packs) whose (mean, m2) come from two passes over the registers, both sums pairwise
// (tree_sum). The
// gradient sums (sum dy, sum (x - mean) dy, sum (x - mean)) are pairwise within a chunk and
// compensated (two_sum) across chunks, threads and blocks.
//
// Non-finite data. A NaN or +-Inf anywhere in a channel makes its variance NaN and its mean
// the IEEE value sum(x)/M (+-Inf or NaN). Chan's update would turn Inf into NaN (Inf - Inf),
// so each Welford state also carries `nonfinite`, the IEEE sum of the non-finite elements
// (0 while every element is finite); the finalize step uses it instead of the mean.
//
// Reduction order. Thread -> warp (__shfl_down tree, lane i merges lane i + d) -> block
// (warp results through shared memory, merged by warp 0) -> grid (partials in global memory,
// merged in split order by the block that arrives last: arrive_last). Every order is fixed
// by the launch geometry, never by timing, so results are bitwise reproducible; the only
// atomic is the integer arrival counter.
//
// Types. Data T: double, float, half_t, bf16_t (16-bit data as raw bits, converted by PTX
// cvt so that the sources need neither cuda_fp16.h nor cuda_bf16.h and compile unchanged
// under nvcc and NVRTC). Accumulation Acc = acc_t<T>: double for double, float otherwise.
// Parameters, running statistics and per-channel workspace are Acc (float32 for 16-bit data).
#pragma once

namespace bn {

// ---- tunables ------------------------------------------------------------------------------
constexpr int kWarpSize = 32;
// 8 warps: enough independent warps per block to hide latency, and 256 threads keep the
// per-block shared-memory tree (kBlockThreads states) small. The host launches exactly this.
constexpr int kBlockThreads = 256;
[[maybe_unused]] constexpr int kWarps = kBlockThreads / kWarpSize;  // unused by channel-last
// Packs per thread per step, all loaded before the first use: 4 x 16 bytes per input in flight
// per thread, i.e. >= 32 KB per SM at 512 resident threads, above the ~25 KB that Little's law
// asks of an H100 (3.35 TB/s x ~1 us / 132 SMs). A step's packs are also the leaf chunk of the
// statistics tree.
constexpr int kPacks = 4;
// Register cap: 65536 / (256 * 2) = 128 registers per thread, so that the chunk's raw packs,
// its pairwise partials and the 64-bit walk never spill, with 2 blocks (512 threads, see
// kPacks) resident per SM at least.
constexpr int kMinBlocksPerSM = 2;
[[maybe_unused]] constexpr unsigned kFullMask = 0xffffffffu;  // unused by channel-last

// ---- storage types and conversions ----------------------------------------------------------
struct half_t { unsigned short bits; };  // IEEE binary16
struct bf16_t { unsigned short bits; };  // bfloat16

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <typename T> using acc_t = typename AccOf<T>::type;

__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(float v) { return v; }
// 16-bit conversions: PTX cvt on the GPU; portable C++ in the CPU emulation of the kernels
// (backends/cuda/emulation.h), which runs these sources on machines without a GPU.
__device__ __forceinline__ float to_acc(half_t v) {
#ifdef BN_CPU_EMULATION
  return emulation::half_bits_to_float(v.bits);
#else
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.bits));
  return f;
#endif
}
__device__ __forceinline__ float to_acc(bf16_t v) {
  return __uint_as_float(static_cast<unsigned>(v.bits) << 16);
}

// Round-to-nearest-even stores.
template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ half_t from_acc<half_t>(float v) {
  half_t h;
#ifdef BN_CPU_EMULATION
  h.bits = emulation::float_to_half_bits(v);
#else
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
#endif
  return h;
}
template <> __device__ __forceinline__ bf16_t from_acc<bf16_t>(float v) {
  bf16_t h;
#ifdef BN_CPU_EMULATION
  h.bits = emulation::float_to_bf16_bits(v);
#else
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h.bits) : "f"(v));
#endif
  return h;
}

__device__ __forceinline__ bool is_finite(float v) {
  return (__float_as_uint(v) & 0x7f800000u) != 0x7f800000u;
}
__device__ __forceinline__ bool is_finite(double v) {
  return (__double_as_longlong(v) & 0x7ff0000000000000LL) != 0x7ff0000000000000LL;
}
template <typename Acc> __device__ __forceinline__ Acc quiet_nan();
template <> __device__ __forceinline__ float quiet_nan<float>() {
  return __uint_as_float(0x7fc00000u);
}
template <> __device__ __forceinline__ double quiet_nan<double>() {
  return __longlong_as_double(0x7ff8000000000000LL);
}
template <typename Acc> __device__ __forceinline__ Acc infinity();
template <> __device__ __forceinline__ float infinity<float>() {
  return __uint_as_float(0x7f800000u);
}
template <> __device__ __forceinline__ double infinity<double>() {
  return __longlong_as_double(0x7ff0000000000000LL);
}
__device__ __forceinline__ float acc_sqrt(float v) { return sqrtf(v); }  // IEEE: correctly rounded
__device__ __forceinline__ double acc_sqrt(double v) { return sqrt(v); }

// ---- vector loads and stores ----------------------------------------------------------------
// VEC consecutive elements; 16 bytes (one 128-bit access) when VEC * sizeof(T) == 16. The host
// picks VEC so that every pack starts at a multiple of its own size.
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Pack<T, VEC> load_pack(const T* __restrict__ p) {
  return *reinterpret_cast<const Pack<T, VEC>*>(p);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_pack(T* __restrict__ p, const acc_t<T> (&in)[VEC]) {
  Pack<T, VEC> pk;
#pragma unroll
  for (int i = 0; i < VEC; ++i) pk.v[i] = from_acc<T>(in[i]);
  *reinterpret_cast<Pack<T, VEC>*>(p) = pk;
}

// ---- pairwise sums of register arrays -------------------------------------------------------
template <int N, typename Acc>
__device__ __forceinline__ Acc tree_sum(Acc (&v)[N]) {
  static_assert(N > 0 && (N & (N - 1)) == 0, "tree_sum needs a power-of-two length");
#pragma unroll
  for (int width = N / 2; width >= 1; width /= 2) {
#pragma unroll
    for (int i = 0; i < width; ++i) v[i] += v[i + width];
  }
  return v[0];
}

// ---- Welford / Chan -------------------------------------------------------------------------
template <typename Acc>
struct Welford {
  Acc mean;       // mean of the elements (meaningless where nonfinite != 0)
  Acc m2;         // sum of squared deviations from mean
  Acc nonfinite;  // IEEE sum of the non-finite elements; 0 while all are finite
  long long n;    // number of elements; 0 is the identity
};

// The one Chan merge of the project: a then b (the order is part of the result's bits).
template <typename Acc>
__device__ __forceinline__ Welford<Acc> welford_merge(const Welford<Acc>& a,
                                                     const Welford<Acc>& b) {
  if (b.n == 0) return a;
  if (a.n == 0) return b;
  const long long n = a.n + b.n;
  const Acc fraction_b = static_cast<Acc>(b.n) / static_cast<Acc>(n);
  const Acc delta = b.mean - a.mean;
  Welford<Acc> r;
  r.mean = a.mean + delta * fraction_b;
  r.m2 = (a.m2 + b.m2) + delta * delta * static_cast<Acc>(a.n) * fraction_b;
  r.nonfinite = a.nonfinite + b.nonfinite;
  r.n = n;
  return r;
}

// Statistics of a chunk held in registers, about a per-channel shift: the values
// value(u, k) - shift for rows u < rows (1 <= rows <= P) and lanes k < W, by two passes (their
// mean, then the squared deviations from it), each a pairwise sum over k and then over u.
// `nonfinite` looks at the unshifted values.
template <int P, int W, typename Acc, typename Get>
__device__ __forceinline__ Welford<Acc> welford_of_chunk(Get value, int rows, Acc shift) {
  Acc part[P];
  Acc nonfinite = Acc(0);
#pragma unroll
  for (int u = 0; u < P; ++u) {
    Acc t[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const Acc v = value(u, k);
      t[k] = u < rows ? v - shift : Acc(0);
      nonfinite += (u < rows && !is_finite(v)) ? v : Acc(0);
    }
    part[u] = tree_sum(t);
  }
  Welford<Acc> w;
  w.n = static_cast<long long>(rows) * W;
  w.mean = tree_sum(part) / static_cast<Acc>(w.n);
#pragma unroll
  for (int u = 0; u < P; ++u) {
    Acc t[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const Acc d = (value(u, k) - shift) - w.mean;
      t[k] = u < rows ? d * d : Acc(0);
    }
    part[u] = tree_sum(t);
  }
  w.m2 = tree_sum(part);
  w.nonfinite = nonfinite;
  return w;
}

// ---- compensated sums -----------------------------------------------------------------------
template <typename Acc>
struct SumPair {
  Acc hi;  // the IEEE running sum (so Inf and NaN behave as in a plain sum)
  Acc lo;  // the rounding errors of hi, summed
};

template <typename Acc>
__device__ __forceinline__ SumPair<Acc> sum_merge(const SumPair<Acc>& a, const SumPair<Acc>& b) {
  const Acc s = a.hi + b.hi;  // two_sum(a.hi, b.hi): s + err == a.hi + b.hi exactly
  const Acc bb = s - a.hi;
  const Acc err = (a.hi - (s - bb)) + (b.hi - bb);
  return SumPair<Acc>{s, (a.lo + b.lo) + err};
}

template <typename Acc>
__device__ __forceinline__ Acc sum_value(const SumPair<Acc>& p) {
  return is_finite(p.hi) ? p.hi + p.lo : p.hi;
}

// The gradient reductions' state for one channel: sum(dy), sum((x - m) * dy) and sum(x - m),
// m the mean as rounded. The last one measures the rounding of m (sum(x - m) = M (mean - m)),
// so that the finalize can take its effect (mean - m) * sum(dy) out of the dot product.
template <typename Acc>
struct GradSums {
  SumPair<Acc> sdy;
  SumPair<Acc> dotp;
  SumPair<Acc> sxc;
};

template <typename Acc>
__device__ __forceinline__ GradSums<Acc> grad_merge(const GradSums<Acc>& a,
                                                    const GradSums<Acc>& b) {
  return GradSums<Acc>{sum_merge(a.sdy, b.sdy), sum_merge(a.dotp, b.dotp), sum_merge(a.sxc, b.sxc)};
}

// sum(dy), sum((x - mean) * dy) and sum(x - mean) of a chunk held in registers (rows u < rows
// of P, lanes k < W, as welford_of_chunk): pairwise over k, then over u.
template <int P, int W, typename Acc, typename GetX, typename GetDy>
__device__ __forceinline__ GradSums<Acc> grad_sums_of_chunk(GetX x, GetDy dy, int rows, Acc mean) {
  Acc part_dy[P], part_dot[P], part_xc[P];
#pragma unroll
  for (int u = 0; u < P; ++u) {
    Acc s[W], d[W], e[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
      const Acc g = dy(u, k);
      const Acc xc = x(u, k) - mean;
      s[k] = u < rows ? g : Acc(0);
      d[k] = u < rows ? xc * g : Acc(0);
      e[k] = u < rows ? xc : Acc(0);
    }
    part_dy[u] = tree_sum(s);
    part_dot[u] = tree_sum(d);
    part_xc[u] = tree_sum(e);
  }
  return GradSums<Acc>{SumPair<Acc>{tree_sum(part_dy), Acc(0)},
                       SumPair<Acc>{tree_sum(part_dot), Acc(0)},
                       SumPair<Acc>{tree_sum(part_xc), Acc(0)}};
}

// ---- merge, shuffle and coherent load per state type (the generic reductions use these) ----
template <typename Acc>
__device__ __forceinline__ Welford<Acc> merge(const Welford<Acc>& a, const Welford<Acc>& b) {
  return welford_merge(a, b);
}
template <typename Acc>
__device__ __forceinline__ GradSums<Acc> merge(const GradSums<Acc>& a, const GradSums<Acc>& b) {
  return grad_merge(a, b);
}

template <typename Acc>
__device__ __forceinline__ Welford<Acc> shfl_down(const Welford<Acc>& s, int d) {
  Welford<Acc> r;
  r.mean = __shfl_down_sync(kFullMask, s.mean, d);
  r.m2 = __shfl_down_sync(kFullMask, s.m2, d);
  r.nonfinite = __shfl_down_sync(kFullMask, s.nonfinite, d);
  r.n = __shfl_down_sync(kFullMask, s.n, d);
  return r;
}
template <typename Acc>
__device__ __forceinline__ GradSums<Acc> shfl_down(const GradSums<Acc>& s, int d) {
  GradSums<Acc> r;
  r.sdy.hi = __shfl_down_sync(kFullMask, s.sdy.hi, d);
  r.sdy.lo = __shfl_down_sync(kFullMask, s.sdy.lo, d);
  r.dotp.hi = __shfl_down_sync(kFullMask, s.dotp.hi, d);
  r.dotp.lo = __shfl_down_sync(kFullMask, s.dotp.lo, d);
  r.sxc.hi = __shfl_down_sync(kFullMask, s.sxc.hi, d);
  r.sxc.lo = __shfl_down_sync(kFullMask, s.sxc.lo, d);
  return r;
}

// Partials written by other blocks of this launch: read past L1 (volatile), after arrive_last.
template <typename Acc>
__device__ __forceinline__ Welford<Acc> load_coherent(const Welford<Acc>* p) {
  const volatile Welford<Acc>* v = p;
  Welford<Acc> r;
  r.mean = v->mean;
  r.m2 = v->m2;
  r.nonfinite = v->nonfinite;
  r.n = v->n;
  return r;
}
template <typename Acc>
__device__ __forceinline__ GradSums<Acc> load_coherent(const GradSums<Acc>* p) {
  const volatile GradSums<Acc>* v = p;
  GradSums<Acc> r;
  r.sdy.hi = v->sdy.hi;
  r.sdy.lo = v->sdy.lo;
  r.dotp.hi = v->dotp.hi;
  r.dotp.lo = v->dotp.lo;
  r.sxc.hi = v->sxc.hi;
  r.sxc.lo = v->sxc.lo;
  return r;
}

// ---- fixed-order reductions -----------------------------------------------------------------
// Lane 0 returns the merge of lanes 0..31, as the tree ((0,16),(1,17),...) then (0,8), ...
template <typename State>
__device__ __forceinline__ State warp_reduce(State s) {
#pragma unroll
  for (int d = kWarpSize / 2; d >= 1; d /= 2) s = merge(s, shfl_down(s, d));
  return s;
}

// Thread 0 of a 1-D block of kBlockThreads returns the merge of every thread's state.
template <typename State>
__device__ __forceinline__ State block_reduce(State s) {
  __shared__ State warp_results[kWarps];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  s = warp_reduce(s);
  __syncthreads();  // warp_results may still be read by a previous call
  if (lane == 0) warp_results[warp] = s;
  __syncthreads();
  if (warp == 0) s = warp_reduce(lane < kWarps ? warp_results[lane] : State{});
  return s;
}

// Threads (x, y) of a 2-D block of kBlockThreads, blockDim.y a power of two: returns, in the
// threads with y == 0, the merge over y of column x's states (tree: y with y + stride).
template <typename State>
__device__ __forceinline__ State column_reduce(State s) {
  __shared__ State cells[kBlockThreads];  // [blockDim.y, blockDim.x]
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  __syncthreads();  // cells may still be read by a previous call
  cells[t] = s;
  __syncthreads();
  for (int stride = blockDim.y / 2; stride >= 1; stride /= 2) {
    if (threadIdx.y < stride) cells[t] = merge(cells[t], cells[t + stride * blockDim.x]);
    __syncthreads();
  }
  return cells[threadIdx.x];
}

// Stage two of a grid-wide reduction. Every block of a group calls this after writing its
// partial; it returns true, in all threads, in the one block that arrives last, which may then
// read every partial of the group. The counter is reset for the next launch.
__device__ __forceinline__ bool arrive_last(unsigned* __restrict__ arrivals, unsigned group_size) {
  __shared__ bool last;
  __threadfence();  // this block's partial is visible device-wide before it is counted
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    last = atomicAdd(arrivals, 1u) + 1u == group_size;
    if (last) *arrivals = 0u;
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// Bytes the host reserves per partial state (the largest state, GradSums<double>).
constexpr int kStateBytes = 48;
static_assert(sizeof(Welford<double>) <= kStateBytes && sizeof(GradSums<double>) <= kStateBytes,
              "a partial state outgrew kStateBytes");

template <typename T>
__host__ __device__ __forceinline__ T ceil_div(T a, T b) {
  return (a + b - 1) / b;
}

}  // namespace bn
