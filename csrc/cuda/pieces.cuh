// Loading and storing "pieces": K consecutive elements widened to the compute type, K = 1 or a
// multiple of the pack width W (16 bytes): K = W of the parameters' type, which is two packs of
// float32 state beside 16-bit parameters. A pack is one 16-byte access when `vec` (its address is
// 16-byte aligned), else W scalar accesses: the same elements and the same arithmetic either way,
// so a result (a reduction's bits included) does not depend on the addresses' alignment.
#pragma once

#include <type_traits>

#include "types.cuh"

namespace fastdl {
namespace cuda {

template <int K>
using Width = std::integral_constant<int, K>;

template <int K, class T>
__device__ __forceinline__ void load_widen(const T* p, compute_t<T> (&out)[K], bool vec) {
  constexpr int W = Pack<T>::W;
  static_assert(K == 1 || K % W == 0, "a piece is one element or whole packs");
  if constexpr (K == 1) {
    out[0] = widen(p[0]);
  } else if (vec) {
#pragma unroll
    for (int q = 0; q < K / W; ++q) {
      const Pack<T> pk = load_pack(p + q * W);
#pragma unroll
      for (int j = 0; j < W; ++j) out[q * W + j] = widen(pk.v[j]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < K; ++j) out[j] = widen(p[j]);
  }
}

template <int K, class T>
__device__ __forceinline__ void narrow_store(T* p, const compute_t<T> (&in)[K], bool vec) {
  constexpr int W = Pack<T>::W;
  static_assert(K == 1 || K % W == 0, "a piece is one element or whole packs");
  if constexpr (K == 1) {
    p[0] = narrow<T>(in[0]);
  } else if (vec) {
#pragma unroll
    for (int q = 0; q < K / W; ++q) {
      Pack<T> pk;
#pragma unroll
      for (int j = 0; j < W; ++j) pk.v[j] = narrow<T>(in[q * W + j]);
      store_pack(p + q * W, pk);
    }
  } else {
#pragma unroll
    for (int j = 0; j < K; ++j) p[j] = narrow<T>(in[j]);
  }
}

// Calls f(Width<K>{}, i) for the first element i of each piece of [begin, end) that thread
// `lane` of `lanes` threads owns: packs of W elements from begin, then the tail (fewer than W)
// one element at a time. The partition depends only on the range, never on alignment.
// 64-bit indices throughout.
template <class T, class F>
__device__ __forceinline__ void for_each_piece(int64_t begin, int64_t end, int64_t lane, int64_t lanes, F&& f) {
  constexpr int W = Pack<T>::W;
  const int64_t packs = (end - begin) / W;
#pragma unroll 2  // two packs in flight per thread: enough for HBM, half the code of 4
  for (int64_t j = lane; j < packs; j += lanes) f(Width<W>{}, begin + j * W);
  for (int64_t i = begin + packs * W + lane; i < end; i += lanes) f(Width<1>{}, i);
}

// The global thread index and count of a 1-D grid, in 64 bits.
__device__ __forceinline__ int64_t global_thread() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t global_threads() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace cuda
}  // namespace fastdl
