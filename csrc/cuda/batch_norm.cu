// BatchNorm forward and backward, and channel_affine (formulas: csrc/kernels/layers.h), over
// (rows, cols) with a column per channel:
//   forward:  column sums of x -> mean (double, on the device); column sums of d = x - mean and d^2
//             -> the exact mean (mean + sum d / M), var, rstd and the factors of y; then y in one
//             elementwise pass. Two reads of x for the statistics: the two-pass formula.
//   backward: column sums of dy and dy (x - mean) -> dbeta, dgamma and the factors of dx; then dx
//             (may be dy) in one elementwise pass.
// Column sums through columns.cuh: deterministic, no atomics.
#include "columns.cuh"
#include "layers_launch.h"
#include "pieces.cuh"

#include "../kernels/layers.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int kEltThreads = 256;

inline unsigned elt_blocks(int64_t n) {
  const int64_t b = ceil_div(n, kEltThreads);
  return (unsigned)(b < 65536 ? (b > 0 ? b : 1) : 65536);
}

template <class T>
struct SumX {
  const T* x;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, double& a, double&) const { a += (double)x[r * cols + c]; }
};
struct MeanOf {
  double* mean;
  int64_t rows;
  __device__ void operator()(int64_t c, double a, double) const { mean[c] = rows > 0 ? a / (double)rows : 0.0; }
};
template <class T>
struct Deviations {
  const T* x;
  const double* mean;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, double& a, double& b) const {
    const double d = (double)x[r * cols + c] - mean[c];
    a += d;
    b += d * d;
  }
};
// The statistics from the sums around the first mean: mean' = mean + s1 / M, m2 = s2 - s1^2 / M.
// factors: [0, C) the mean, [C, 2C) k = rstd gamma, [2C, 3C) beta.
template <class T>
struct BatchNormStats {
  const T *gamma, *beta;
  T *mean, *var, *rstd;
  double* factors;
  int64_t rows, cols;
  double eps;
  __device__ void operator()(int64_t c, double s1, double s2) const {
    const double m0 = factors[c];
    double m = m0, v = 0.0;
    if (rows > 0) {
      const kernels::Moments<double> mo = kernels::moments_from_shifted<double>((double)rows, m0, s1, s2);
      m = mo.mean;
      v = mo.m2 / (double)rows;
    }
    const double rs = kernels::norm_rstd(v, eps);
    mean[c] = T(m);
    var[c] = T(v);
    rstd[c] = T(rs);
    factors[c] = m;
    factors[cols + c] = gamma ? rs * (double)gamma[c] : rs;
    factors[2 * cols + c] = beta ? (double)beta[c] : 0.0;
  }
};

template <class T>
__global__ void __launch_bounds__(kEltThreads)
    batch_norm_apply(const T* x, T* y, const double* factors, int64_t n, int64_t cols) {
  for (int64_t i = global_thread(); i < n; i += global_threads()) {
    const int64_t c = i % cols;
    const kernels::SplitMean<T> sm = kernels::split_mean<T>(factors[c]);
    y[i] = kernels::batch_norm_value(x[i], sm.hi, sm.lo, T(factors[cols + c]), T(factors[2 * cols + c]));
  }
}

template <class T>
struct BackwardTerms {
  const T *dy, *x, *mean;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, double& a, double& b) const {
    const double d = (double)dy[r * cols + c];
    a += d;
    b += d * ((double)x[r * cols + c] - (double)mean[c]);
  }
};
// dbeta = sb, dgamma = rstd sd; factors: k = gamma rstd, sb / M, dgamma / M.
template <class T>
struct BackwardSums {
  const T *gamma, *rstd;
  T *dgamma, *dbeta;
  double* factors;
  int64_t rows, cols;
  __device__ void operator()(int64_t c, double sb, double sd) const {
    const double rs = (double)rstd[c], dg = rs * sd;
    if (dgamma) dgamma[c] = T(dg);
    if (dbeta) dbeta[c] = T(sb);
    factors[c] = gamma ? rs * (double)gamma[c] : rs;
    factors[cols + c] = rows > 0 ? sb / (double)rows : 0.0;
    factors[2 * cols + c] = rows > 0 ? dg / (double)rows : 0.0;
  }
};

template <class T>
__global__ void __launch_bounds__(kEltThreads)
    batch_norm_backward_apply(const T* dy, const T* x, const T* mean, const T* rstd, T* dx, const double* factors,
                              int64_t n, int64_t cols) {
  for (int64_t i = global_thread(); i < n; i += global_threads()) {
    const int64_t c = i % cols;
    const T xh = kernels::norm_xhat(x[i], mean[c], T(0), rstd[c]);
    dx[i] = kernels::batch_norm_grad(dy[i], xh, T(factors[c]), T(factors[cols + c]), T(factors[2 * cols + c]));
  }
}

template <class T>
__global__ void __launch_bounds__(kEltThreads)
    channel_affine_kernel(const T* x, const T* scale, const T* shift, T* y, int64_t n, int64_t cols) {
  for (int64_t i = global_thread(); i < n; i += global_threads()) {
    const int64_t c = i % cols;
    y[i] = kernels::channel_affine(x[i], scale[c], shift[c]);
  }
}

}  // namespace

void batch_norm(DType dt, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t var,
                uintptr_t rstd, int64_t rows, int64_t cols, double eps, Place at) {
  const char* what = "batch_norm";
  require(rows >= 0 && cols >= 0, "batch_norm: rows and cols must be >= 0");
  if (cols == 0) return;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = [](uintptr_t a) { return reinterpret_cast<T*>(a); };
    StreamBuffer<double> factors(3 * cols, stream, what);
    column_sums(SumX<T>{p(x), cols}, MeanOf{factors.get(), rows}, rows, cols, stream, what);
    column_sums(Deviations<T>{p(x), factors.get(), cols},
                BatchNormStats<T>{p(gamma), p(beta), p(mean), p(var), p(rstd), factors.get(), rows, cols, eps}, rows,
                cols, stream, what);
    const int64_t n = rows * cols;
    if (n == 0) return;
    batch_norm_apply<T><<<elt_blocks(n), kEltThreads, 0, stream>>>(p(x), p(y), factors.get(), n, cols);
    check_launch(what);
  });
}

void batch_norm_backward(DType dt, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                         uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols, Place at) {
  const char* what = "batch_norm_backward";
  require(rows >= 0 && cols >= 0, "batch_norm_backward: rows and cols must be >= 0");
  if (cols == 0) return;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = [](uintptr_t a) { return reinterpret_cast<T*>(a); };
    StreamBuffer<double> factors(3 * cols, stream, what);
    column_sums(BackwardTerms<T>{p(dy), p(x), p(mean), cols},
                BackwardSums<T>{p(gamma), p(rstd), p(dgamma), p(dbeta), factors.get(), rows, cols}, rows, cols, stream,
                what);
    const int64_t n = rows * cols;
    if (!dx || n == 0) return;
    batch_norm_backward_apply<T><<<elt_blocks(n), kEltThreads, 0, stream>>>(p(dy), p(x), p(mean), p(rstd), p(dx),
                                                                           factors.get(), n, cols);
    check_launch(what);
  });
}

void channel_affine(DType dt, uintptr_t x, uintptr_t scale, uintptr_t shift, uintptr_t y, int64_t rows, int64_t cols,
                    Place at) {
  const char* what = "channel_affine";
  require(rows >= 0 && cols >= 0, "channel_affine: rows and cols must be >= 0");
  const int64_t n = rows * cols;
  if (n == 0) return;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = [](uintptr_t a) { return reinterpret_cast<T*>(a); };
    channel_affine_kernel<T><<<elt_blocks(n), kEltThreads, 0, stream>>>(p(x), p(scale), p(shift), p(y), n, cols);
    check_launch(what);
  });
}

}  // namespace cuda
}  // namespace fastdl
