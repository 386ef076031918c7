// LayerNorm forward and backward (formulas: csrc/kernels/layers.h), a row per warp (rows up to
// kWarpRowCols) or per block, as softmax.cu:
//   forward:  read 1: sum x; read 2: sum (x - mean)^2 (both in double, deterministic group trees);
//             read 3 + write: y.
//   backward: the column sums dgamma = sum_r dy xhat, dbeta = sum_r dy first (columns.cuh; before
//             dx, which may overwrite dy), then per row sum g and sum g xhat (g = dy gamma) and dx.
#include "columns.cuh"
#include "layers_launch.h"
#include "rows.cuh"

#include "../kernels/layers.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int64_t kMaxNormBlocks = 65535;

template <class T, int G>
__global__ void __launch_bounds__(kRowBlock)
    layer_norm_kernel(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                      double eps) {
  __shared__ double smem[kRowBlock / 32];
  const RowLoop<G> loop;
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    double s = 0.0;
    for (int64_t c = loop.lane(); c < cols; c += G) s += (double)xr[c];
    const double m = group_all_reduce<G>(s, Plus{}, smem) / (double)cols;
    double v = 0.0;
    for (int64_t c = loop.lane(); c < cols; c += G) {
      const double d = (double)xr[c] - m;
      v += d * d;
    }
    const double rs = kernels::norm_rstd(group_all_reduce<G>(v, Plus{}, smem) / (double)cols, eps);
    if (loop.lane() == 0) {
      mean[r] = T(m);
      rstd[r] = T(rs);
    }
    const kernels::SplitMean<T> sm = kernels::split_mean<T>(m);
    const T rt = T(rs);
    for (int64_t c = loop.lane(); c < cols; c += G)
      yr[c] = kernels::norm_affine(kernels::norm_xhat(xr[c], sm.hi, sm.lo, rt), gamma ? gamma[c] : T(1),
                                   beta ? beta[c] : T(0));
  }
}

template <class T, int G>
__global__ void __launch_bounds__(kRowBlock)
    layer_norm_backward_kernel(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx,
                               int64_t rows, int64_t cols) {
  __shared__ double smem[kRowBlock / 32];
  const RowLoop<G> loop;
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T *dyr = dy + r * cols, *xr = x + r * cols;
    T* dxr = dx + r * cols;
    const T m = mean[r], rs = rstd[r];
    double sa = 0.0, sx = 0.0;
    for (int64_t c = loop.lane(); c < cols; c += G) {
      const T g = gamma ? dyr[c] * gamma[c] : dyr[c];
      sa += (double)g;
      sx += (double)(g * kernels::norm_xhat(xr[c], m, T(0), rs));
    }
    const T a = T(group_all_reduce<G>(sa, Plus{}, smem) / (double)cols);
    const T b = T(group_all_reduce<G>(sx, Plus{}, smem) / (double)cols);
    for (int64_t c = loop.lane(); c < cols; c += G) {
      const T g = gamma ? dyr[c] * gamma[c] : dyr[c];
      dxr[c] = kernels::layer_norm_grad(g, kernels::norm_xhat(xr[c], m, T(0), rs), a, b, rs);  // dxr may be dyr
    }
  }
}

// dgamma_c = sum_r dy xhat, dbeta_c = sum_r dy
template <class T>
struct LayerNormColumnTerms {
  const T *dy, *x, *mean, *rstd;
  int64_t cols;
  __device__ void operator()(int64_t r, int64_t c, double& a, double& b) const {
    const double d = (double)dy[r * cols + c];
    a += d * (((double)x[r * cols + c] - (double)mean[r]) * (double)rstd[r]);
    b += d;
  }
};
template <class T>
struct WriteTwo {
  T *first, *second;
  __device__ void operator()(int64_t c, double a, double b) const {
    if (first) first[c] = T(a);
    if (second) second[c] = T(b);
  }
};

template <class T, int G, class K, class... A>
void launch_rows(K kernel, int64_t rows, cudaStream_t stream, const char* what, A... args) {
  const int64_t blocks = row_blocks(rows, G == 32, kMaxNormBlocks);
  kernel<<<(unsigned)blocks, kRowBlock, 0, stream>>>(args...);
  check_launch(what);
}

}  // namespace

void layer_norm(DType dt, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t rstd,
                int64_t rows, int64_t cols, double eps, Place at) {
  const char* what = "layer_norm";
  require(rows >= 0 && cols >= 0, "layer_norm: rows and cols must be >= 0");
  if (rows == 0) return;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = [](uintptr_t a) { return reinterpret_cast<T*>(a); };
    if (cols <= kWarpRowCols)
      launch_rows<T, 32>(layer_norm_kernel<T, 32>, rows, stream, what, (const T*)p(x), (const T*)p(gamma),
                         (const T*)p(beta), p(y), p(mean), p(rstd), rows, cols, eps);
    else
      launch_rows<T, kRowBlock>(layer_norm_kernel<T, kRowBlock>, rows, stream, what, (const T*)p(x),
                                (const T*)p(gamma), (const T*)p(beta), p(y), p(mean), p(rstd), rows, cols, eps);
  });
}

void layer_norm_backward(DType dt, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                         uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols, Place at) {
  const char* what = "layer_norm_backward";
  require(rows >= 0 && cols >= 0, "layer_norm_backward: rows and cols must be >= 0");
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_float_dtype(dt, what, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto p = [](uintptr_t a) { return reinterpret_cast<T*>(a); };
    if (dgamma || dbeta)  // before dx, which may overwrite dy
      column_sums(LayerNormColumnTerms<T>{p(dy), p(x), p(mean), p(rstd), cols}, WriteTwo<T>{p(dgamma), p(dbeta)},
                  rows, cols, stream, what);
    if (!dx || rows == 0) return;
    if (cols <= kWarpRowCols)
      launch_rows<T, 32>(layer_norm_backward_kernel<T, 32>, rows, stream, what, (const T*)p(dy), (const T*)p(x),
                         (const T*)p(gamma), (const T*)p(mean), (const T*)p(rstd), p(dx), rows, cols);
    else
      launch_rows<T, kRowBlock>(layer_norm_backward_kernel<T, kRowBlock>, rows, stream, what, (const T*)p(dy),
                                (const T*)p(x), (const T*)p(gamma), (const T*)p(mean), (const T*)p(rstd), p(dx), rows,
                                cols);
  });
}

}  // namespace cuda
}  // namespace fastdl
