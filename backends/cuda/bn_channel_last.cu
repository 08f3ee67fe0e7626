// bn_channel_last.cu: batch-norm kernels for channel-last layouts (inner == 1).
//
// Math: bn_ops.cuh (statistics, normalize, gradients, running-stat updates) and
// bn_common.cuh (Welford/Chan merges, compensated sums, fixed-order reductions).
//
// Layout: x, dy, y, dx: [rows, C] contiguous (the host's [outer, C, inner] reshape with
// inner == 1, e.g. NHWC with axis -1 or a 2-D (N, C) input with axis 1). Channel c's M = rows
// elements are the column c, one per row of C contiguous elements.
//
// Algorithm. Block (blockDim.x, blockDim.y) = (tx, kBlockThreads / tx), both powers of two.
// Thread column (blockIdx.x * tx + threadIdx.x) covers the VEC channels c0 .. c0 + VEC - 1,
// c0 = column * VEC, read as one pack per row (VEC divides C, so every pack is VEC-aligned:
// 128-bit when C is a multiple of 16 / sizeof(T)); a warp reads 32 / tx whole tile rows, each
// tx * VEC contiguous elements. Grid (column tiles, splits): split blockIdx.y owns a contiguous
// range of rows, and thread row threadIdx.y takes kPacks rows per step (half that in the
// reduction of 8-lane packs), at r, r + blockDim.y, ...
// (one raw pack per row in registers). Each of a thread's VEC channels has its own state, and
// its chunk per step is its lane of those kPacks packs.
//   bn_reduce_cl<T, VEC, Reducer>: per channel, each step's column chunk -> Reducer::chunk,
//     merged into the thread's state -> column_reduce over threadIdx.y. With splits > 1 (few
//     tiles, many rows: the grid-wide two-stage reduction) row 0 writes partials[s, c]; the
//     last block of the tile (arrive_last) merges partials[0..splits, c] in split order, and its
//     row 0 runs Reducer::finalize for each of its channels.
//   bn_apply_cl<T, VEC, Op>: per-channel coefficients once per thread, then out = Op(x, dy)
//     over the same rows.
#include "bn_ops.cuh"

namespace bn {

// Rows [begin, end) that split `split` of `splits` owns among `rows`.
__device__ __forceinline__ void row_range(long long rows, int split, int splits, long long& begin,
                                          long long& end) {
  const long long per_split = ceil_div(rows, static_cast<long long>(splits));
  begin = split * per_split;
  end = begin + per_split < rows ? begin + per_split : rows;
}

template <typename T, int VEC, template <typename> class Reducer>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSM)
bn_reduce_cl(const T* __restrict__ x,   // [rows, C]
             const T* __restrict__ dy,  // [rows, C]; read by GradReducer only
             long long rows,
             typename Reducer<acc_t<T>>::State* __restrict__ partials,  // [splits, C]
             unsigned* __restrict__ arrivals,  // [gridDim.x], 0 between launches
             BN_CHANNEL_PARAMS(acc_t<T>)) {
  using Acc = acc_t<T>;
  using State = typename Reducer<Acc>::State;
  // Rows per step: kPacks, halved for 8-lane packs (16-bit data), whose 8 per-channel states
  // per thread would otherwise not fit the register cap (kMinBlocksPerSM) without spilling.
  constexpr int kRows = VEC > 4 ? kPacks / 2 : kPacks;
  const ChannelParams<Acc> p = BN_CHANNEL_ARGS(Acc);
  const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
  const bool active = c0 < channels;
  const int splits = gridDim.y;
  long long begin, end;
  row_range(rows, blockIdx.y, splits, begin, end);
  Acc pivot[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) {
    pivot[k] = active ? Reducer<Acc>::pivot(to_acc(x[c0 + k]), c0 + k, p) : Acc(0);
  }

  State lanes[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) lanes[k] = State{};
  const long long step = static_cast<long long>(blockDim.y) * kRows;
  for (long long r0 = begin + threadIdx.y; active && r0 < end; r0 += step) {
    Pack<T, VEC> xp[kRows] = {}, dp[kRows] = {};
    int rows_read = 0;
#pragma unroll
    for (int u = 0; u < kRows; ++u) {
      const long long r = r0 + static_cast<long long>(u) * blockDim.y;
      if (r < end) {
        xp[u] = load_pack<T, VEC>(x + r * channels + c0);
        if constexpr (Reducer<Acc>::kReadsDy) dp[u] = load_pack<T, VEC>(dy + r * channels + c0);
        ++rows_read;
      }
    }
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      const State chunk = Reducer<Acc>::template chunk<kRows, 1>(
          [&](int u, int) { return to_acc(xp[u].v[k]); },
          [&](int u, int) { return to_acc(dp[u].v[k]); }, rows_read, pivot[k]);
      lanes[k] = merge(lanes[k], chunk);
    }
  }

#pragma unroll
  for (int k = 0; k < VEC; ++k) lanes[k] = column_reduce(lanes[k]);
  if (splits > 1) {
    if (threadIdx.y == 0 && active) {
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        partials[static_cast<long long>(blockIdx.y) * channels + c0 + k] = lanes[k];
      }
    }
    if (!arrive_last(arrivals + blockIdx.x, static_cast<unsigned>(splits))) return;
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      State s{};
      for (int q = threadIdx.y; active && q < splits; q += blockDim.y) {
        s = merge(s, load_coherent(partials + static_cast<long long>(q) * channels + c0 + k));
      }
      lanes[k] = column_reduce(s);
    }
  }
  if (threadIdx.y == 0 && active) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) Reducer<Acc>::finalize(c0 + k, lanes[k], pivot[k], p);
  }
}

template <typename T, int VEC, template <typename> class Op>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocksPerSM)
bn_apply_cl(const T* __restrict__ x,   // [rows, C]; unread where Op does not need it
            const T* __restrict__ dy,  // [rows, C]; read by InputGradOp only
            T* __restrict__ out,       // [rows, C]: y or dx
            long long rows, BN_CHANNEL_PARAMS(acc_t<T>)) {
  using Acc = acc_t<T>;
  const ChannelParams<Acc> p = BN_CHANNEL_ARGS(Acc);
  const int c0 = (blockIdx.x * blockDim.x + threadIdx.x) * VEC;
  if (c0 >= channels) return;  // no barrier below
  Op<Acc> ops[VEC];
#pragma unroll
  for (int k = 0; k < VEC; ++k) ops[k] = Op<Acc>(c0 + k, p);
  if (blockIdx.y == 0 && threadIdx.y == 0) {
#pragma unroll
    for (int k = 0; k < VEC; ++k) Op<Acc>::write_stats(c0 + k, p);
  }
  const bool reads_x = ops[0].reads_x();
  long long begin, end;
  row_range(rows, blockIdx.y, gridDim.y, begin, end);

  const long long step = static_cast<long long>(blockDim.y) * kPacks;
  for (long long r0 = begin + threadIdx.y; r0 < end; r0 += step) {
    Pack<T, VEC> xp[kPacks] = {}, dp[kPacks] = {};
#pragma unroll
    for (int u = 0; u < kPacks; ++u) {
      const long long r = r0 + static_cast<long long>(u) * blockDim.y;
      if (r < end && reads_x) xp[u] = load_pack<T, VEC>(x + r * channels + c0);
      if constexpr (Op<Acc>::kReadsDy) {
        if (r < end) dp[u] = load_pack<T, VEC>(dy + r * channels + c0);
      }
    }
#pragma unroll
    for (int u = 0; u < kPacks; ++u) {
      const long long r = r0 + static_cast<long long>(u) * blockDim.y;
      if (r < end) {
        Acc result[VEC];
#pragma unroll
        for (int k = 0; k < VEC; ++k) result[k] = ops[k](to_acc(xp[u].v[k]), to_acc(dp[u].v[k]));
        store_pack<T, VEC>(out + r * channels + c0, result);
      }
    }
  }
}

}  // namespace bn
