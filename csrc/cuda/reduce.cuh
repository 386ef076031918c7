// Deterministic reductions: fixed-order trees whose shape depends only on the launch shape, so
// the same inputs give the same bits on every run (no atomics anywhere).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace fastdl {
namespace cuda {

// Lane 0 gets merge applied down a fixed tree (lane i takes lane i + o, o = 16, 8, ..., 1).
// V is shuffled through shfl_down(V, int), defined for each reduced type.
__device__ __forceinline__ double shfl_down(double v, int o) { return __shfl_down_sync(0xffffffffu, v, o); }
__device__ __forceinline__ float shfl_down(float v, int o) { return __shfl_down_sync(0xffffffffu, v, o); }
__device__ __forceinline__ double shfl_broadcast(double v) { return __shfl_sync(0xffffffffu, v, 0); }
__device__ __forceinline__ float shfl_broadcast(float v) { return __shfl_sync(0xffffffffu, v, 0); }

template <class V, class M>
__device__ __forceinline__ V warp_reduce(V v, M merge) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = merge(v, shfl_down(v, o));
  return v;  // valid in lane 0
}

struct Plus {
  template <class V>
  __device__ __forceinline__ V operator()(V a, V b) const { return a + b; }
};

// Merged over the whole block (kThreads threads, a multiple of 32): each warp's lane 0 holds its
// warp's value, then every thread merges the warps' values in warp order, so every thread returns
// the same bits. smem: kThreads / 32 values. Every thread of the block must call it.
template <int kThreads, class V, class M>
__device__ __forceinline__ V block_all_reduce(V v, M merge, V* smem) {
  constexpr int kWarps = kThreads / 32;
  v = warp_reduce(v, merge);
  if ((threadIdx.x & 31) == 0) smem[threadIdx.x >> 5] = v;
  __syncthreads();
  V total = smem[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) total = merge(total, smem[w]);
  __syncthreads();  // smem may be written again right after
  return total;
}

template <int kThreads>
__device__ __forceinline__ double block_sum(double v) {
  __shared__ double smem[kThreads / 32];
  return block_all_reduce<kThreads>(v, Plus{}, smem);
}

// A reduction's result from its total: the mean over n (NaN for n = 0), or the total itself.
// count (when not null) is a device double that replaces n, written by an earlier kernel.
__device__ __forceinline__ double finish_value(double total, bool mean, int64_t n, const double* count = nullptr) {
  if (!mean) return total;
  const double d = count ? *count : (double)n;
  return d == 0.0 ? __longlong_as_double(0x7ff8000000000000LL) : total / d;
}

// Where a reducing kernel puts its block's total: partials[blockIdx.x], or, when the grid is a
// single block (partials null), the final value straight into *out. A mean divides by *n_dev
// when n_dev is not null (a count only the device knows), else by n.
struct ReduceOut {
  double* partials;
  double* out;
  bool mean;
  int64_t n;
  const double* n_dev = nullptr;
  __device__ __forceinline__ void write(double block_total) const {
    if (partials) partials[blockIdx.x] = block_total;
    else *out = finish_value(block_total, mean, n, n_dev);
  }
};

// *out = the sum of partials[0, count) in a fixed order (one block), divided by n (by *n_dev when
// n_dev is not null) when mean (NaN for a divisor 0). Queued on `stream`; throws on a launch error.
void finish_sum(const double* partials, int64_t count, bool mean, int64_t n, double* out, cudaStream_t stream,
                const char* what, const double* n_dev = nullptr);

// Reductions launch grids whose size depends only on the problem size (never on the device), so
// that a result does not depend on which GPU computed it.
constexpr int64_t kMaxPartials = 1024;

}  // namespace cuda
}  // namespace fastdl
