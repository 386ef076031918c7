// Row-wise kernels (softmax, softmax cross-entropy): a row is handled by a group of G threads,
// one warp (G = 32, for short rows: kRowBlock / 32 rows per block) or the whole block (G =
// kRowBlock, for long rows). Row reductions are deterministic trees (reduce.cuh), and every
// thread of the group gets the same reduced bits.
#pragma once

#include <cuda/std/limits>

#include "check.cuh"
#include "pieces.cuh"
#include "reduce.cuh"

#include "../kernels/scalar_math.h"

namespace fastdl {
namespace cuda {

constexpr int kRowBlock = 512;      // threads per block in both modes
constexpr int64_t kWarpRowCols = 1024;  // rows up to this long go one per warp

// Merged over the group; every thread of the group must call it (smem: kRowBlock / 32 values,
// used when the group is the block). Ends with a barrier of the group, so that writes after it
// cannot overtake reads of the same row before it.
template <int G, class V, class M>
__device__ __forceinline__ V group_all_reduce(V v, M merge, V* smem) {
  if constexpr (G == 32) {
    v = warp_reduce(v, merge);
    v = shfl_broadcast(v);
    __syncwarp();
    return v;
  } else {
    static_assert(G == kRowBlock, "a row is handled by a warp or by the whole block");
    return block_all_reduce<G>(v, merge, smem);
  }
}

// The rows of group g in a grid of row groups: r = first, first + step, ...
template <int G>
struct RowLoop {
  static constexpr int kRowsPerBlock = kRowBlock / G;
  __device__ __forceinline__ int lane() const { return threadIdx.x % G; }
  __device__ __forceinline__ int group() const { return threadIdx.x / G; }
  __device__ __forceinline__ int64_t first() const { return (int64_t)blockIdx.x * kRowsPerBlock + group(); }
  __device__ __forceinline__ int64_t step() const { return (int64_t)gridDim.x * kRowsPerBlock; }
};

// Blocks for `rows` rows (rows > 0), at most max_blocks.
inline int64_t row_blocks(int64_t rows, bool per_warp, int64_t max_blocks) {
  const int64_t b = ceil_div(rows, per_warp ? kRowBlock / 32 : 1);
  return b > max_blocks ? max_blocks : b;
}

// ---- the row's max m and s = sum_i exp(x_i - m), found online ---------------------------------------
// Each piece first rescales s to the piece's max when it is larger, then adds its exps: one exp per
// element. -inf elements add exactly 0 (so an all -inf piece leaves (m, s) = (-inf, 0) and no NaN
// from -inf - -inf); NaN elements make s NaN; +inf makes s NaN, as exp(x - max) does.
template <class C>
struct MaxSum {
  C m, s;
};

template <class C>
__device__ __forceinline__ MaxSum<C> max_sum_init() {
  return {-::cuda::std::numeric_limits<C>::infinity(), C(0)};
}

template <int K, class C>
__device__ __forceinline__ void max_sum_add(MaxSum<C>& a, const C (&x)[K]) {
  const C ninf = -::cuda::std::numeric_limits<C>::infinity();
  C piece_max = ninf;
#pragma unroll
  for (int j = 0; j < K; ++j) piece_max = x[j] > piece_max ? x[j] : piece_max;
  if (piece_max > a.m) {
    a.s = a.s * kernels::exp(a.m - piece_max);
    a.m = piece_max;
  }
#pragma unroll
  for (int j = 0; j < K; ++j) a.s += x[j] == ninf ? C(0) : kernels::exp(x[j] - a.m);
}

// (m, s) of two parts of a row. Equal maxima (also both -inf) scale by exactly 1.
template <class C>
__device__ __forceinline__ MaxSum<C> max_sum_merge(const MaxSum<C>& a, const MaxSum<C>& b) {
  const C m = a.m < b.m ? b.m : a.m;
  const C fa = a.m == m ? C(1) : kernels::exp(a.m - m);
  const C fb = b.m == m ? C(1) : kernels::exp(b.m - m);
  return {m, a.s * fa + b.s * fb};
}

template <class C>
__device__ __forceinline__ MaxSum<C> shfl_down(const MaxSum<C>& v, int o) {
  return {shfl_down(v.m, o), shfl_down(v.s, o)};
}
template <class C>
__device__ __forceinline__ MaxSum<C> shfl_broadcast(const MaxSum<C>& v) {
  return {shfl_broadcast(v.m), shfl_broadcast(v.s)};
}

}  // namespace cuda
}  // namespace fastdl
