// The windowed layer kernels on CUDA (geometry and rules: csrc/kernels/layers.h): im2col / col2im,
// max and average pooling with their backward passes, the embedding's gradient and its bag. A thread per
// output element (grid-stride, 64-bit indices); every adjoint is a gather or owns its outputs, so
// no atomics and the same bits on every run:
//   col2im, avg_pool_backward: each image position sums the entries that read it, in window order,
//     in double;
//   max_pool_backward: dx zeroed (cudaMemsetAsync), then a thread per (image, channel) adds dy in
//     output order (argmax entries outside [-1, h w) are skipped: raising would need a synchronisation);
//   embedding_backward: the tokens grouped by id by the caller (a stable sort: order, start), a
//     thread per (id, column) sums its tokens (or their bags' scaled rows) in token order in double;
//   embedding_bag: a thread per (bag, column) sums the bag's table rows in step order in double.
#include <cuda/std/limits>

#include "layers_launch.h"
#include "columns.cuh"
#include "pieces.cuh"

#include "../kernels/layers.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int kThreads = 256;

inline unsigned grid_for(int64_t n) {
  const int64_t b = ceil_div(n, kThreads);
  return (unsigned)(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

template <class T>
__global__ void __launch_bounds__(kThreads) im2col_kernel(const T* x, T* cols, Window g, int64_t total) {
  const int64_t kc = g.kh * g.kw * g.c;
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t k = e % kc, npq = e / kc;
    const int64_t c = k % g.c, tap = k / g.c, j = tap % g.kw, i = tap / g.kw;
    const int64_t q = npq % g.ow, np = npq / g.ow, p = np % g.oh, n = np / g.oh;
    const int64_t y = kernels::window_row(g, p, i), xx = kernels::window_col(g, q, j);
    cols[e] = (y >= 0 && y < g.h && xx >= 0 && xx < g.w) ? x[((n * g.h + y) * g.w + xx) * g.c + c] : T(0);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) col2im_kernel(const T* cols, T* dx, Window g, int64_t total) {
  const int64_t kc = g.kh * g.kw * g.c;
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t c = e % g.c, xx = (e / g.c) % g.w, y = (e / (g.c * g.w)) % g.h, n = e / (g.c * g.w * g.h);
    double acc = 0.0;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t p = kernels::output_of_tap(y, i, g.sh, g.dh, g.pad_top, g.oh);
      if (p < 0) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t q = kernels::output_of_tap(xx, j, g.sw, g.dw, g.pad_left, g.ow);
        if (q >= 0) acc += (double)cols[((n * g.oh + p) * g.ow + q) * kc + (i * g.kw + j) * g.c + c];
      }
    }
    dx[e] = T(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) max_pool_kernel(const T* x, T* y, int64_t* argmax, Window g, int64_t total) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t c = e % g.c, q = (e / g.c) % g.ow, p = (e / (g.c * g.ow)) % g.oh, n = e / (g.c * g.ow * g.oh);
    int64_t i0, i1, j0, j1;
    kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
    kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
    T best = -::cuda::std::numeric_limits<T>::infinity();
    int64_t at = -1;
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t yy = kernels::window_row(g, p, i), xx = kernels::window_col(g, q, j);
        const T v = x[((n * g.h + yy) * g.w + xx) * g.c + c];
        if (at < 0 || kernels::max_pool_takes(v, best)) {
          best = v;
          at = yy * g.w + xx;
        }
      }
    y[e] = best;
    argmax[e] = at;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    max_pool_backward_kernel(const T* dy, const int64_t* argmax, T* dx, Window g) {
  const int64_t hw = g.h * g.w, outs = g.oh * g.ow;
  for (int64_t e = global_thread(); e < g.n * g.c; e += global_threads()) {
    const int64_t c = e % g.c, n = e / g.c;
    T* img = dx + n * hw * g.c + c;  // zeroed by the launcher (cudaMemsetAsync)
    for (int64_t o = 0; o < outs; ++o) {
      const int64_t k = argmax[(n * outs + o) * g.c + c];
      if (k >= 0 && k < hw) img[k * g.c] += dy[(n * outs + o) * g.c + c];
    }
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) avg_pool_kernel(const T* x, T* y, Window g, int64_t total) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t c = e % g.c, q = (e / g.c) % g.ow, p = (e / (g.c * g.ow)) % g.oh, n = e / (g.c * g.ow * g.oh);
    int64_t i0, i1, j0, j1;
    kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
    kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
    double acc = 0.0;
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t j = j0; j < j1; ++j)
        acc += (double)x[((n * g.h + kernels::window_row(g, p, i)) * g.w + kernels::window_col(g, q, j)) * g.c + c];
    y[e] = T(acc / (double)kernels::avg_pool_count(i1 - i0, j1 - j0));
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) avg_pool_backward_kernel(const T* dy, T* dx, Window g, int64_t total) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t c = e % g.c, xx = (e / g.c) % g.w, y = (e / (g.c * g.w)) % g.h, n = e / (g.c * g.w * g.h);
    double acc = 0.0;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t p = kernels::output_of_tap(y, i, g.sh, 1, g.pad_top, g.oh);
      if (p < 0) continue;
      int64_t i0, i1;
      kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t q = kernels::output_of_tap(xx, j, g.sw, 1, g.pad_left, g.ow);
        if (q < 0) continue;
        int64_t j0, j1;
        kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
        acc += (double)dy[((n * g.oh + p) * g.ow + q) * g.c + c] / (double)kernels::avg_pool_count(i1 - i0, j1 - j0);
      }
    }
    dx[e] = T(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    embedding_backward_kernel(const int64_t* order, const int64_t* start, const T* dy, const T* scale, T* dw,
                              int64_t vocab, int64_t dim, int64_t steps) {
  for (int64_t e = global_thread(); e < vocab * dim; e += global_threads()) {
    const int64_t d = e % dim, v = e / dim;
    double acc = 0.0;
    for (int64_t k = start[v]; k < start[v + 1]; ++k) {
      const int64_t bag = order[k] / steps;
      acc += (double)dy[bag * dim + d] * (scale ? (double)scale[bag] : 1.0);
    }
    dw[e] = T(acc);
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    embedding_bag_kernel(const int64_t* ids, const T* table, const T* scale, T* out, int64_t bags, int64_t steps,
                         int64_t dim, int64_t ignore) {
  for (int64_t e = global_thread(); e < bags * dim; e += global_threads()) {
    const int64_t d = e % dim, bag = e / dim;
    double acc = 0.0;
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t id = ids[bag * steps + s];
      if (id != ignore) acc += (double)table[id * dim + d];
    }
    out[e] = T(acc * (double)scale[bag]);
  }
}

// Queues kernel<<<...>>> for `total` elements on the place's device and stream, for float / double.
template <class L>
void run(DType dt, int64_t total, Place at, const char* what, L launch) {
  if (total <= 0) return;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    launch(tag, grid_for(total), stream);
    (void)sizeof(T);
  });
  check_launch(what);
}

template <class T>
T* ptr(uintptr_t a) { return reinterpret_cast<T*>(a); }

}  // namespace

void im2col(DType dt, uintptr_t x, uintptr_t cols, const Window& g, Place at) {
  const int64_t total = g.n * g.oh * g.ow * g.kh * g.kw * g.c;
  run(dt, total, at, "im2col", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    im2col_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(x), ptr<T>(cols), g, total);
  });
}

void col2im(DType dt, uintptr_t cols, uintptr_t dx, const Window& g, Place at) {
  const int64_t total = g.n * g.h * g.w * g.c;
  run(dt, total, at, "col2im", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    col2im_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(cols), ptr<T>(dx), g, total);
  });
}

void max_pool(DType dt, uintptr_t x, uintptr_t y, uintptr_t argmax, const Window& g, Place at) {
  const int64_t total = g.n * g.oh * g.ow * g.c;
  run(dt, total, at, "max_pool", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    max_pool_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(x), ptr<T>(y), ptr<int64_t>(argmax), g, total);
  });
}

void max_pool_backward(DType dt, uintptr_t dy, uintptr_t argmax, uintptr_t dx, const Window& g, Place at) {
  if (g.h * g.w == 0) return;
  run(dt, g.n * g.c, at, "max_pool_backward", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    check(cudaMemsetAsync(ptr<T>(dx), 0, sizeof(T) * g.n * g.h * g.w * g.c, s), "max_pool_backward");
    max_pool_backward_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(dy), ptr<const int64_t>(argmax), ptr<T>(dx), g);
  });
}

void avg_pool(DType dt, uintptr_t x, uintptr_t y, const Window& g, Place at) {
  const int64_t total = g.n * g.oh * g.ow * g.c;
  run(dt, total, at, "avg_pool", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    avg_pool_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(x), ptr<T>(y), g, total);
  });
}

void avg_pool_backward(DType dt, uintptr_t dy, uintptr_t dx, const Window& g, Place at) {
  const int64_t total = g.n * g.h * g.w * g.c;
  run(dt, total, at, "avg_pool_backward", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    avg_pool_backward_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const T>(dy), ptr<T>(dx), g, total);
  });
}

void embedding_backward(DType dt, uintptr_t order, uintptr_t start, uintptr_t dy, uintptr_t scale, uintptr_t dw,
                        int64_t vocab, int64_t dim, int64_t steps, Place at) {
  run(dt, vocab * dim, at, "embedding_backward", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    embedding_backward_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const int64_t>(order), ptr<const int64_t>(start),
                                                           ptr<const T>(dy), ptr<const T>(scale), ptr<T>(dw), vocab,
                                                           dim, steps);
  });
}

void embedding_bag(DType dt, uintptr_t ids, uintptr_t table, uintptr_t scale, uintptr_t out, int64_t bags,
                   int64_t steps, int64_t dim, int64_t ignore, Place at) {
  run(dt, bags * dim, at, "embedding_bag", [&](auto tag, unsigned grid, cudaStream_t s) {
    using T = typename decltype(tag)::type;
    embedding_bag_kernel<T><<<grid, kThreads, 0, s>>>(ptr<const int64_t>(ids), ptr<const T>(table),
                                                      ptr<const T>(scale), ptr<T>(out), bags, steps, dim, ignore);
  });
}

}  // namespace cuda
}  // namespace fastdl
