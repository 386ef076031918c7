// The layer kernels' formulas (issue #13), the one place they live: LayerNorm / BatchNorm forward
// and backward, the window geometry of im2col / col2im and pooling, and max pooling's "takes"
// rule. The contract, in NumPy: python/fastdl/backends/numpy_layers.py. The loops (csrc/cpu/
// layers.h, csrc/cuda/*.cu) supply the reductions: means and variances in double accumulators.
#pragma once

#include "../common/layer_geometry.h"
#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// ---- normalization ---------------------------------------------------------------------------------
// Statistics (double):  mean = sum x / n,  var = sum (x - mean)^2 / n (biased),  rstd = 1 / sqrt(var + eps).
template <class D>
FASTDL_HD D norm_rstd(D var, double eps) { return D(1) / sqrt(var + D(eps)); }

// The mean as a sum of two values of the storage type, hi + lo = mean to about twice its
// precision, so that x - mean is (x - hi) - lo: x - hi is exact for x near the mean, and a mean
// large next to the spread (|mean| >> std) costs no accuracy.
template <class T>
struct SplitMean {
  T hi, lo;
};
template <class T>
FASTDL_HD SplitMean<T> split_mean(double mean) {
  const T hi = T(mean);
  return {hi, T(mean - (double)hi)};
}

// xhat = (x - mean) rstd
template <class V>
FASTDL_HD V norm_xhat(V x, V mean_hi, V mean_lo, V rstd) { return ((x - mean_hi) - mean_lo) * rstd; }

// y = xhat gamma + beta
template <class V>
FASTDL_HD V norm_affine(V xhat, V gamma, V beta) { return xhat * gamma + beta; }

// BatchNorm forward with the column's factors folded, k = rstd gamma:  y = (x - mean) k + beta
template <class V>
FASTDL_HD V batch_norm_value(V x, V mean_hi, V mean_lo, V k, V beta) { return ((x - mean_hi) - mean_lo) * k + beta; }

// LayerNorm backward over one row, g = dy gamma, a = mean_c(g), b = mean_c(g xhat):
//   dx = rstd (g - a - xhat b)
template <class V>
FASTDL_HD V layer_norm_grad(V g, V xhat, V a, V b, V rstd) { return rstd * ((g - a) - xhat * b); }

// BatchNorm backward over one column c (M rows), k = gamma_c rstd_c, sb = sum_r dy, sg = sum_r dy xhat:
//   dx = k (dy - sb / M - xhat sg / M)
template <class V>
FASTDL_HD V batch_norm_grad(V dy, V xhat, V k, V mean_db, V mean_dg) { return k * ((dy - mean_db) - xhat * mean_dg); }

// BatchNorm's statistics of a column are merged from parts of its rows (Chan, Golub and LeVeque):
// a part is (n, mean, m2), m2 = sum (x - mean)^2 over its rows. Merging in a fixed order gives the
// same bits whatever the thread count.
template <class D>
struct Moments {
  D n, mean, m2;
};
template <class D>
FASTDL_HD Moments<D> merge_moments(const Moments<D>& a, const Moments<D>& b) {
  const D n = a.n + b.n;
  if (n == D(0)) return a;
  const D delta = b.mean - a.mean, f = b.n / n;
  return {n, a.mean + delta * f, a.m2 + b.m2 + delta * delta * a.n * f};
}
// The moments of a part from sums around a shift c (c near the part's values): s1 = sum (x - c),
// s2 = sum (x - c)^2:  mean = c + s1 / n,  m2 = s2 - s1^2 / n.
template <class D>
FASTDL_HD Moments<D> moments_from_shifted(D n, D c, D s1, D s2) {
  const D m2 = s2 - s1 * s1 / n;
  return {n, c + s1 / n, m2 > D(0) ? m2 : D(0)};
}

// channel_affine:  y = x scale + shift  (BatchNorm at inference: scale = gamma rstd, shift = beta - mean scale)
template <class V>
FASTDL_HD V channel_affine(V x, V scale, V shift) { return x * scale + shift; }

// ---- windows (im2col / col2im, pooling) -------------------------------------------------------------
// Output position (p, q), window tap (i, j) reads image row p sh + i dh - pad_top and column
// q sw + j dw - pad_left; outside [0, h) x [0, w) it reads padding.
FASTDL_FN int64_t window_row(const Window& g, int64_t p, int64_t i) { return p * g.sh + i * g.dh - g.pad_top; }
FASTDL_FN int64_t window_col(const Window& g, int64_t q, int64_t j) { return q * g.sw + j * g.dw - g.pad_left; }

// The taps [i0, i1) of a window that fall inside [0, extent) along one axis: start s = p stride -
// pad, tap i at s + i dil. (Pooling has dil 1.)
FASTDL_FN void taps_inside(int64_t s, int64_t dil, int64_t taps, int64_t extent, int64_t& i0, int64_t& i1) {
  // first i with s + i dil >= 0, first i with s + i dil >= extent
  i0 = s >= 0 ? 0 : (-s + dil - 1) / dil;
  i1 = s >= extent ? 0 : (extent - s + dil - 1) / dil;
  if (i1 > taps) i1 = taps;
  if (i0 > i1) i0 = i1;
}

// The output positions p whose window tap i reads image row y: p sh + i dh - pad = y, i.e. p =
// (y + pad - i dh) / sh when that divides exactly and 0 <= p < out. Returns -1 when none.
FASTDL_FN int64_t output_of_tap(int64_t y, int64_t i, int64_t stride, int64_t dil, int64_t pad, int64_t out) {
  const int64_t t = y + pad - i * dil;
  if (t < 0 || t % stride != 0) return -1;
  const int64_t p = t / stride;
  return p < out ? p : -1;
}

// Max pooling: after the window's first position inside the image, a value v replaces the best
// so far when it is larger, or when it is NaN and the best is not (NaN wins and stays; on ties the
// first maximum in window order is kept). Scalars (a bool as 0 / 1) or SIMD vectors (a lane mask).
template <class V>
FASTDL_HD auto max_pool_takes(V v, V best) {
  return (v > best) | ((v != v) & (best == best));
}

// Average pooling: the number of a window's positions inside the image (padding not counted);
// a window with none divides by 1 (its sum is 0).
FASTDL_FN int64_t avg_pool_count(int64_t rows_in, int64_t cols_in) {
  const int64_t n = rows_in * cols_in;
  return n > 0 ? n : 1;
}

}  // namespace kernels
}  // namespace fastdl
