// Loading and storing "pieces": K consecutive elements widened to the compute type, K = the
// pack width (one 16-byte access) or 1 (a scalar access). Loops written once over pieces serve
// the vector path (every address 16-byte aligned) and the scalar one.
#pragma once

#include <type_traits>

#include "types.cuh"

namespace fastdl {
namespace cuda {

template <int K>
using Width = std::integral_constant<int, K>;

template <int K, class T>
__device__ __forceinline__ void load_widen(const T* p, compute_t<T> (&out)[K]) {
  static_assert(K == 1 || K == Pack<T>::W, "a piece is one element or one pack");
  if constexpr (K == 1) {
    out[0] = widen(p[0]);
  } else {
    const Pack<T> pk = load_pack(p);
#pragma unroll
    for (int j = 0; j < K; ++j) out[j] = widen(pk.v[j]);
  }
}

template <int K, class T>
__device__ __forceinline__ void narrow_store(T* p, const compute_t<T> (&in)[K]) {
  static_assert(K == 1 || K == Pack<T>::W, "a piece is one element or one pack");
  if constexpr (K == 1) {
    p[0] = narrow<T>(in[0]);
  } else {
    Pack<T> pk;
#pragma unroll
    for (int j = 0; j < K; ++j) pk.v[j] = narrow<T>(in[j]);
    store_pack(p, pk);
  }
}

// Calls f(Width<K>{}, i) for the first element i of each piece of [begin, end) that thread
// `lane` of `lanes` threads owns: packs of W when vec (begin and the addresses then aligned to
// 16 bytes), the tail after the last whole pack and everything else one element at a time.
// 64-bit indices throughout.
template <class T, class F>
__device__ __forceinline__ void for_each_piece(int64_t begin, int64_t end, int64_t lane, int64_t lanes, bool vec,
                                               F&& f) {
  constexpr int W = Pack<T>::W;
  int64_t tail = begin;
  if (vec) {
    const int64_t packs = (end - begin) / W;
#pragma unroll 2  // two packs in flight per thread: enough for HBM, half the code of 4
    for (int64_t j = lane; j < packs; j += lanes) f(Width<W>{}, begin + j * W);
    tail = begin + packs * W;
  }
  for (int64_t i = tail + lane; i < end; i += lanes) f(Width<1>{}, i);
}

// The global thread index and count of a 1-D grid, in 64 bits.
__device__ __forceinline__ int64_t global_thread() { return (int64_t)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t global_threads() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace cuda
}  // namespace fastdl
