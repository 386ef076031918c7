// Softmax and log-softmax over the last axis, forward and backward (formulas:
// csrc/kernels/softmax.h). Forward: one read of the row for its online (max, exp-sum), a second
// (usually from cache) to write y. Backward: one read of grad and y for the row's sum, a second
// to write. y may alias x and out may alias grad or y: each element is read and then written by
// the same thread, after the row's reduction.
#include "rows.cuh"

#include "../kernels/softmax.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int64_t kMaxSoftmaxBlocks = int64_t(1) << 20;

template <class T, int G>
__global__ void __launch_bounds__(kRowBlock)
    softmax_kernel(const T* x, T* y, int64_t rows, int64_t cols, bool use_log, bool vec) {
  using C = compute_t<T>;
  __shared__ MaxSum<C> smem[kRowBlock / 32];
  const RowLoop<G> loop;
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    MaxSum<C> ms = max_sum_init<C>();
    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C v[K];
      load_widen<K>(xr + c, v, vec);
      max_sum_add<K>(ms, v);
    });
    ms = group_all_reduce<G>(ms, [](const MaxSum<C>& a, const MaxSum<C>& b) { return max_sum_merge(a, b); }, smem);
    const C m = ms.m, log_s = kernels::log(ms.s), inv_s = C(1) / ms.s;
    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C v[K];
      load_widen<K>(xr + c, v, vec);
#pragma unroll
      for (int j = 0; j < K; ++j)
        v[j] = use_log ? kernels::log_softmax_value(v[j], m, log_s)
                       : kernels::softmax_from_exp(kernels::exp(v[j] - m), inv_s);
      narrow_store<K>(yr + c, v, vec);
    });
  }
}

// dx = y (g - sum g y)   or, for log-softmax,   dx = g - exp(y) sum g
template <class T, int G>
__global__ void __launch_bounds__(kRowBlock)
    softmax_backward_kernel(const T* grad, const T* y, T* out, int64_t rows, int64_t cols, bool use_log, bool vec) {
  using C = compute_t<T>;
  __shared__ C smem[kRowBlock / 32];
  const RowLoop<G> loop;
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T* gr = grad + r * cols;
    const T* yr = y + r * cols;
    T* outr = out + r * cols;
    C sum = C(0);
    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C g[K], yv[K];
      load_widen<K>(gr + c, g, vec);
      if (!use_log) load_widen<K>(yr + c, yv, vec);
#pragma unroll
      for (int j = 0; j < K; ++j) sum += use_log ? g[j] : g[j] * yv[j];
    });
    sum = group_all_reduce<G>(sum, Plus{}, smem);
    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C g[K], yv[K];
      load_widen<K>(gr + c, g, vec);
      load_widen<K>(yr + c, yv, vec);
#pragma unroll
      for (int j = 0; j < K; ++j)
        g[j] = use_log ? kernels::log_softmax_grad(g[j], yv[j], sum) : kernels::softmax_grad(g[j], yv[j], sum);
      narrow_store<K>(outr + c, g, vec);
    });
  }
}

void check_rows(int64_t rows, int64_t cols, const char* what) {
  if (rows < 0 || cols < 0) throw std::invalid_argument(std::string(what) + ": rows and cols must be >= 0");
}

}  // namespace

void softmax(DType dt, uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, bool log, Place at) {
  check_rows(rows, cols, "softmax");
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(at.device, "softmax");
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned16(x, y) && cols % Pack<T>::W == 0;
    const bool per_warp = cols <= kWarpRowCols;
    const int64_t blocks = row_blocks(rows, per_warp, kMaxSoftmaxBlocks);
    auto xp = reinterpret_cast<const T*>(x);
    auto yp = reinterpret_cast<T*>(y);
    if (per_warp) softmax_kernel<T, 32><<<blocks, kRowBlock, 0, stream_of(at)>>>(xp, yp, rows, cols, log, vec);
    else softmax_kernel<T, kRowBlock><<<blocks, kRowBlock, 0, stream_of(at)>>>(xp, yp, rows, cols, log, vec);
    check_launch("softmax");
  });
}

void softmax_backward(DType dt, uintptr_t grad, uintptr_t y, uintptr_t out, int64_t rows, int64_t cols, bool log,
                      Place at) {
  check_rows(rows, cols, "softmax_backward");
  if (rows == 0 || cols == 0) return;
  DeviceGuard guard(at.device, "softmax_backward");
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned16(grad, y, out) && cols % Pack<T>::W == 0;
    const bool per_warp = cols <= kWarpRowCols;
    const int64_t blocks = row_blocks(rows, per_warp, kMaxSoftmaxBlocks);
    auto gp = reinterpret_cast<const T*>(grad);
    auto yp = reinterpret_cast<const T*>(y);
    auto op = reinterpret_cast<T*>(out);
    if (per_warp)
      softmax_backward_kernel<T, 32><<<blocks, kRowBlock, 0, stream_of(at)>>>(gp, yp, op, rows, cols, log, vec);
    else
      softmax_backward_kernel<T, kRowBlock><<<blocks, kRowBlock, 0, stream_of(at)>>>(gp, yp, op, rows, cols, log, vec);
    check_launch("softmax_backward");
  });
}

}  // namespace cuda
}  // namespace fastdl
