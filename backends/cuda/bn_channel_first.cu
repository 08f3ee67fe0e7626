// bn_channel_first.cu: batch-norm kernels for channel-first layouts (inner > 1).
//
// Math: bn_ops.cuh (statistics, normalize, gradients, running-stat updates) and
// bn_common.cuh (Welford/Chan merges, compensated sums, fixed-order reductions).
//
// Layout: x, dy, y, dx: [outer, C, inner] contiguous, any rank and axis reshaped by the host
// (outer = prod(shape[:axis]), inner = prod(shape[axis+1:]) > 1). Channel c's M = outer * inner
// elements are `outer` rows of `inner` contiguous elements; row o starts at (o * C + c) * inner.
//
// Algorithm. A channel's rows are read in packs of VEC elements, VEC dividing inner (so no pack
// crosses a row and each is VEC-aligned: one 128-bit access when inner is a multiple of
// 16 / sizeof(T), else the widest aligned width down to scalar). Packs are numbered
// v = o * (inner / VEC) + i. Work unit (channel c, split s): split s owns a contiguous range of
// v; block b = c * splits + s (1-D grid of C * splits blocks of kBlockThreads). A thread takes
// kPacks packs per step, at v, v + B, v + 2B, ... (B = kBlockThreads), following its (row, pack)
// position by additions only (PackWalk); the step's packs stay raw in registers (a chunk of
// kPacks x VEC elements of channel c).
//   bn_reduce_cf<T, VEC, Reducer>: each step's chunk -> Reducer::chunk, merged into the
//     thread's state -> block_reduce. With splits > 1 (small C, large M: the grid-wide
//     two-stage reduction) the block writes partials[c, s]; the last block of channel c
//     (arrive_last) merges partials[c, 0..splits) in split order. Thread 0 then runs
//     Reducer::finalize for channel c.
//   bn_apply_cf<T, VEC, Op>: per-channel coefficients once per thread, then out = Op(x, dy)
//     along the same walk.
#include "bn_ops.cuh"

namespace bn {

// Position of a thread's next pack in channel c, advanced by B packs without a division.
template <int VEC>
struct PackWalk {
  long long inner_packs;  // packs per row: inner / VEC
  long long step_pack;    // B % inner_packs: pack index advance per step of B packs
  long long step_offset;  // element offset advance per step of B packs, before wrapping
  long long wrap_offset;  // extra offset when the pack index wraps into the next row

  __device__ PackWalk(long long channels, long long inner) {
    inner_packs = inner / VEC;
    step_pack = kBlockThreads % inner_packs;
    step_offset = (kBlockThreads / inner_packs) * channels * inner + step_pack * VEC;
    wrap_offset = (channels - 1) * inner;
  }
  __device__ void start(long long v, int c, long long channels, long long inner, long long& pack,
                        long long& offset) const {
    const long long row = v / inner_packs;
    pack = v - row * inner_packs;
    offset = (row * channels + c) * inner + pack * VEC;
  }
  __device__ void advance(long long& pack, long long& offset) const {
    pack += step_pack;
    offset += step_offset;
    if (pack >= inner_packs) {
      pack -= inner_packs;
      offset += wrap_offset;
    }
  }
};

// Range [begin, end) of packs that split `split` of `splits` owns among `total`.
__device__ __forceinline__ void split_range(long long total, int splits, int split,
                                            long long& begin, long long& end) {
  const long long per_split = ceil_div(total, static_cast<long long>(splits));
  begin = split * per_split;
  end = begin + per_split < total ? begin + per_split : total;
}

template <typename T, int VEC, template <typename> class Reducer>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSM)
bn_reduce_cf(const T* __restrict__ x,   // [outer, C, inner]
             const T* __restrict__ dy,  // [outer, C, inner]; read by GradReducer only
             long long outer, long long inner, int splits,
             typename Reducer<acc_t<T>>::State* __restrict__ partials,  // [C, splits]
             unsigned* __restrict__ arrivals,                           // [C], 0 between launches
             BN_CHANNEL_PARAMS(acc_t<T>)) {
  using Acc = acc_t<T>;
  using State = typename Reducer<Acc>::State;
  const ChannelParams<Acc> p = BN_CHANNEL_ARGS(Acc);
  const int c = blockIdx.x / splits;
  const int split = blockIdx.x % splits;
  const PackWalk<VEC> walk(channels, inner);
  long long begin, end;
  split_range(outer * walk.inner_packs, splits, split, begin, end);
  const Acc pivot = Reducer<Acc>::pivot(to_acc(x[static_cast<long long>(c) * inner]), c, p);

  State s{};
  long long v = begin + threadIdx.x, pack, offset;
  walk.start(v, c, channels, inner, pack, offset);
  for (; v < end; v += kBlockThreads * kPacks) {
    Pack<T, VEC> xp[kPacks] = {}, dp[kPacks] = {};
    int rows = 0;
#pragma unroll
    for (int u = 0; u < kPacks; ++u) {
      if (v + u * kBlockThreads < end) {
        xp[u] = load_pack<T, VEC>(x + offset);
        if constexpr (Reducer<Acc>::kReadsDy) dp[u] = load_pack<T, VEC>(dy + offset);
        ++rows;
      }
      walk.advance(pack, offset);
    }
    s = merge(s, Reducer<Acc>::template chunk<kPacks, VEC>(
                     [&](int u, int k) { return to_acc(xp[u].v[k]); },
                     [&](int u, int k) { return to_acc(dp[u].v[k]); }, rows, pivot));
  }

  s = block_reduce(s);
  if (splits > 1) {
    if (threadIdx.x == 0) partials[static_cast<long long>(c) * splits + split] = s;
    if (!arrive_last(arrivals + c, static_cast<unsigned>(splits))) return;
    s = State{};
    for (int k = threadIdx.x; k < splits; k += kBlockThreads) {
      s = merge(s, load_coherent(partials + static_cast<long long>(c) * splits + k));
    }
    s = block_reduce(s);
  }
  if (threadIdx.x == 0) Reducer<Acc>::finalize(c, s, pivot, p);
}

template <typename T, int VEC, template <typename> class Op>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSM)
bn_apply_cf(const T* __restrict__ x,   // [outer, C, inner]; unread where Op does not need it
            const T* __restrict__ dy,  // [outer, C, inner]; read by InputGradOp only
            T* __restrict__ out,       // [outer, C, inner]: y or dx
            long long outer, long long inner, int splits, BN_CHANNEL_PARAMS(acc_t<T>)) {
  using Acc = acc_t<T>;
  const ChannelParams<Acc> p = BN_CHANNEL_ARGS(Acc);
  const int c = blockIdx.x / splits;
  const int split = blockIdx.x % splits;
  const Op<Acc> op(c, p);
  if (split == 0 && threadIdx.x == 0) Op<Acc>::write_stats(c, p);
  const bool reads_x = op.reads_x();
  const PackWalk<VEC> walk(channels, inner);
  long long begin, end;
  split_range(outer * walk.inner_packs, splits, split, begin, end);

  long long v = begin + threadIdx.x, pack, offset;
  walk.start(v, c, channels, inner, pack, offset);
  for (; v < end; v += kBlockThreads * kPacks) {
    Pack<T, VEC> xp[kPacks] = {}, dp[kPacks] = {};
    long long offsets[kPacks];
#pragma unroll
    for (int u = 0; u < kPacks; ++u) {
      offsets[u] = offset;
      const bool valid = v + u * kBlockThreads < end;
      if (valid && reads_x) xp[u] = load_pack<T, VEC>(x + offset);
      if constexpr (Op<Acc>::kReadsDy) {
        if (valid) dp[u] = load_pack<T, VEC>(dy + offset);
      }
      walk.advance(pack, offset);
    }
#pragma unroll
    for (int u = 0; u < kPacks; ++u) {
      if (v + u * kBlockThreads < end) {
        Acc r[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) r[k] = op(to_acc(xp[u].v[k]), to_acc(dp[u].v[k]));
        store_pack<T, VEC>(out + offsets[u], r);
      }
    }
  }
}

}  // namespace bn
