// emulation.h: runs the CUDA kernel sources on a CPU, for tests on machines without a GPU.
//
// Included before bn_channel_first.cu / bn_channel_last.cu in a host C++20 translation unit
// (backends/cuda/emulation.py writes and builds it). It maps the CUDA constructs the kernels
// use onto one OS thread:
//   - a block's threads are coroutines (ucontext) run round-robin by a scheduler; blocks run
//     one after another, in an order the caller chooses (a permutation of the grid);
//   - __syncthreads() waits for every live thread of the block, __shfl_down_sync for the 32
//     lanes of the warp (values exchanged through per-warp slots);
//   - __shared__ variables become function-local statics: one instance per kernel
//     instantiation, shared by the block that is running (blocks never overlap);
//   - atomicAdd and __threadfence are trivial on one OS thread;
//   - float16/bfloat16 conversions round to nearest even in portable C++.
// What it cannot show: timing, memory-ordering bugs that need real concurrency between blocks,
// and differences in the GPU's floating-point contraction (the host compiler is told not to
// contract: -ffp-contract=off; nvcc contracts a * b + c into FMA, so last-bit differences
// against a GPU run are expected).
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#define BN_CPU_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __restrict__ __restrict

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

namespace emulation {

template <typename To, typename From>
inline To bit_cast(From v) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast needs equal sizes");
  To r;
  std::memcpy(&r, &v, sizeof(To));
  return r;
}

inline float half_bits_to_float(unsigned short bits) {
  return static_cast<float>(bit_cast<_Float16>(bits));
}
inline unsigned short float_to_half_bits(float v) {  // nearest even
  return bit_cast<unsigned short>(static_cast<_Float16>(v));
}
inline unsigned short float_to_bf16_bits(float v) {
  const unsigned u = bit_cast<unsigned>(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a (quiet) NaN
    return static_cast<unsigned short>((u >> 16) | 0x40u);
  }
  return static_cast<unsigned short>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // nearest even
}

struct Thread {
  dim3 index;
  int linear = 0;
  bool done = false;
  const long long* waiting_generation = nullptr;  // barrier generation this thread waits past
  long long waited_value = 0;
  ucontext_t context;
  std::vector<char> stack;
};

struct Barrier {
  int arrived = 0;
  long long generation = 0;
};

struct Warp {
  Barrier barrier;
  unsigned long long slots[32];
};

struct Block {
  dim3 index, dim, grid;
  std::vector<Thread> threads;
  Barrier barrier;
  std::vector<Warp> warps;
  int live = 0;
  ucontext_t scheduler;
  std::function<void()> body;
};

inline Block*& current_block() {
  static Block* block = nullptr;
  return block;
}
inline Thread*& current_thread() {
  static Thread* thread = nullptr;
  return thread;
}

inline void yield() { swapcontext(&current_thread()->context, &current_block()->scheduler); }

// Waits until `expected` threads have arrived (or, for the block barrier, every live thread).
inline void wait(Barrier& b, int expected) {
  const long long generation = b.generation;
  if (++b.arrived >= expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  Thread* self = current_thread();
  self->waiting_generation = &b.generation;
  self->waited_value = generation;
  yield();
  self->waiting_generation = nullptr;
}

inline void thread_entry() {
  current_block()->body();
  current_thread()->done = true;
  --current_block()->live;
  Barrier& b = current_block()->barrier;  // a thread that exits no longer holds the block back
  if (b.arrived > 0 && b.arrived >= current_block()->live) {
    b.arrived = 0;
    ++b.generation;
  }
}

constexpr std::size_t kStackBytes = 256 * 1024;

// Runs one block of `dim` threads executing body to completion.
inline void run_block(const dim3& index, const dim3& dim, const dim3& grid,
                      std::function<void()> body) {
  static Block block;
  block.index = index;
  block.dim = dim;
  block.grid = grid;
  block.body = std::move(body);
  const int n = static_cast<int>(dim.x * dim.y * dim.z);
  block.threads.resize(n);
  block.warps.assign((n + 31) / 32, Warp{});
  block.barrier = Barrier{};
  block.live = n;
  current_block() = &block;
  for (int t = 0; t < n; ++t) {
    Thread& th = block.threads[t];
    th.linear = t;
    th.index = dim3{static_cast<unsigned>(t) % dim.x, (static_cast<unsigned>(t) / dim.x) % dim.y,
                    static_cast<unsigned>(t) / (dim.x * dim.y)};
    th.done = false;
    th.waiting_generation = nullptr;
    th.stack.resize(kStackBytes);
    getcontext(&th.context);
    th.context.uc_stack.ss_sp = th.stack.data();
    th.context.uc_stack.ss_size = th.stack.size();
    th.context.uc_link = &block.scheduler;
    makecontext(&th.context, thread_entry, 0);
  }
  for (bool progress = true; block.live > 0;) {
    if (!progress) {
      throw std::runtime_error("emulated block deadlocked (a barrier some threads never reach)");
    }
    progress = false;
    for (Thread& th : block.threads) {
      if (th.done) continue;
      if (th.waiting_generation && *th.waiting_generation == th.waited_value) continue;
      progress = true;
      current_thread() = &th;
      swapcontext(&block.scheduler, &th.context);
    }
  }
}

template <typename T>
inline T shuffle_down(T v, unsigned delta) {
  static_assert(sizeof(T) <= sizeof(unsigned long long), "shuffle of a value wider than 8 bytes");
  Thread* self = current_thread();
  Warp& warp = current_block()->warps[self->linear / 32];
  const unsigned lane = static_cast<unsigned>(self->linear) % 32u;
  std::memcpy(&warp.slots[lane], &v, sizeof(T));
  wait(warp.barrier, 32);
  T r = v;
  if (lane + delta < 32u) std::memcpy(&r, &warp.slots[lane + delta], sizeof(T));
  wait(warp.barrier, 32);
  return r;
}

}  // namespace emulation

#define threadIdx (emulation::current_thread()->index)
#define blockIdx (emulation::current_block()->index)
#define blockDim (emulation::current_block()->dim)
#define gridDim (emulation::current_block()->grid)

inline void __syncthreads() {
  emulation::Block* block = emulation::current_block();
  emulation::wait(block->barrier, block->live);
}
inline void __threadfence() {}
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
template <typename T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int = 32) {
  return emulation::shuffle_down(v, delta);
}
inline float __uint_as_float(unsigned v) { return emulation::bit_cast<float>(v); }
inline unsigned __float_as_uint(float v) { return emulation::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) { return emulation::bit_cast<double>(v); }
inline long long __double_as_longlong(double v) { return emulation::bit_cast<long long>(v); }
using std::sqrt;

namespace emulation {

// Calls kernel(args...) with each argument read from args[i] (a pointer to its value), as
// cuLaunchKernel does with kernelParams.
template <typename... A, std::size_t... I>
inline void call_kernel(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(args[I])...);
}

template <typename... A>
inline void launch(void (*kernel)(A...), const dim3& grid, const dim3& block, void** args,
                   const unsigned long long* order, unsigned long long blocks) {
  for (unsigned long long k = 0; k < blocks; ++k) {
    const unsigned long long b = order ? order[k] : k;
    const dim3 index{static_cast<unsigned>(b % grid.x),
                     static_cast<unsigned>((b / grid.x) % grid.y),
                     static_cast<unsigned>(b / (static_cast<unsigned long long>(grid.x) * grid.y))};
    run_block(index, block, grid,
              [=] { call_kernel(kernel, args, std::index_sequence_for<A...>{}); });
  }
}

}  // namespace emulation
