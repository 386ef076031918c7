// The CUDA layer kernels' launchers (issue #13), as the pybind11 glue sees them: plain C++, the
// conventions of launch.h (device addresses as integers, 0 = absent; asynchronous on `stream`;
// std::runtime_error for CUDA errors, std::invalid_argument for refused arguments). Apart from
// launch.h so that the other kernels do not rebuild when these change.
#pragma once

#include "../common/layer_geometry.h"
#include "launch.h"

namespace fastdl {
namespace cuda {

// Formulas: csrc/kernels/layers.h; contract: python/fastdl/backends/numpy_layers.py.
// float32 / float64 only (std::invalid_argument otherwise). Arrays C-contiguous, channels-last;
// optional arrays are 0; outputs written, not added to. Reductions are deterministic (no atomics).
// x (rows, cols), each row normalized: y, mean and rstd (rows) written; y may be x.
void layer_norm(DType dt, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t rstd,
                int64_t rows, int64_t cols, double eps, Place at);
// dx (may be dy), dgamma, dbeta: each 0 = not computed.
void layer_norm_backward(DType dt, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                         uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols, Place at);

// x (rows, cols), each column normalized over the rows (training): y (may be x), mean, var, rstd
// (cols) written; rows = 0 gives mean 0, var 0.
void batch_norm(DType dt, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t var,
                uintptr_t rstd, int64_t rows, int64_t cols, double eps, Place at);
void batch_norm_backward(DType dt, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                         uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols, Place at);
// y = x scale + shift per column; y may be x.
void channel_affine(DType dt, uintptr_t x, uintptr_t scale, uintptr_t shift, uintptr_t y, int64_t rows, int64_t cols,
                    Place at);

// Windows (geometry: csrc/common/layer_geometry.h; pooling has dh = dw = 1).
// x (n, h, w, c) -> cols (n, oh, ow, kh kw c); col2im: its adjoint into dx (written).
void im2col(DType dt, uintptr_t x, uintptr_t cols, const Window& g, Place at);
void col2im(DType dt, uintptr_t cols, uintptr_t dx, const Window& g, Place at);
// y, argmax (int64) (n, oh, ow, c); the backward skips argmax entries outside [-1, h w).
void max_pool(DType dt, uintptr_t x, uintptr_t y, uintptr_t argmax, const Window& g, Place at);
void max_pool_backward(DType dt, uintptr_t dy, uintptr_t argmax, uintptr_t dx, const Window& g, Place at);
void avg_pool(DType dt, uintptr_t x, uintptr_t y, const Window& g, Place at);
void avg_pool_backward(DType dt, uintptr_t dy, uintptr_t dx, const Window& g, Place at);
// dw (vocab, dim): row v = the sum over k in [start[v], start[v + 1]) of scale[b] dy[b], b = order[k] /
// steps, in that order (int64 device arrays: the tokens grouped by id, stably; scale 0: 1).
void embedding_backward(DType dt, uintptr_t order, uintptr_t start, uintptr_t dy, uintptr_t scale, uintptr_t dw,
                        int64_t vocab, int64_t dim, int64_t steps, Place at);
// out (bags, dim): row b = scale[b] * the sum of table's rows ids[b steps + s] (int64) other than `ignore`.
void embedding_bag(DType dt, uintptr_t ids, uintptr_t table, uintptr_t scale, uintptr_t out, int64_t bags,
                   int64_t steps, int64_t dim, int64_t ignore, Place at);

}  // namespace cuda
}  // namespace fastdl
