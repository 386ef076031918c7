// Deterministic column sums for the layer kernels (LayerNorm's dgamma / dbeta, BatchNorm's
// statistics and sums): over a (rows, cols) problem, two double sums per column of terms f(r, c).
// The rows are cut into chunks whose size depends only on the row count; a block of 32 columns x 8
// row lanes sums one chunk (each lane its rows in order, then the 8 lanes in order) into a partial
// per (chunk, column); a second kernel adds a column's partials in chunk order and hands the two
// totals to a finishing functor. No atomics: the same bits on every run and every GPU.
#pragma once

#include "check.cuh"
#include "types.cuh"

namespace fastdl {
namespace cuda {

constexpr int kColTile = 32, kColLanes = 8;
constexpr int64_t kMaxColChunks = 512;

// Rows per chunk: at least 64, at most kMaxColChunks chunks.
inline int64_t col_chunk_rows(int64_t rows) {
  const int64_t r = ceil_div(rows, kMaxColChunks);
  return r < 64 ? 64 : r;
}
inline int64_t col_chunks(int64_t rows) { return rows > 0 ? ceil_div(rows, col_chunk_rows(rows)) : 0; }

// F: a functor with __device__ void operator()(int64_t r, int64_t c, double& a, double& b) adding
// row r's terms of column c to a and b.
template <class F>
__global__ void __launch_bounds__(kColTile * kColLanes)
    column_sums_kernel(F f, int64_t rows, int64_t cols, int64_t chunk_rows, double2* partials) {
  __shared__ double sa[kColLanes][kColTile], sb[kColLanes][kColTile];
  const int tx = threadIdx.x % kColTile, ty = threadIdx.x / kColTile;
  const int64_t c = (int64_t)blockIdx.x * kColTile + tx;
  const int64_t r0 = (int64_t)blockIdx.y * chunk_rows;
  const int64_t r1 = r0 + chunk_rows < rows ? r0 + chunk_rows : rows;
  double a = 0.0, b = 0.0;
  if (c < cols)
    for (int64_t r = r0 + ty; r < r1; r += kColLanes) f(r, c, a, b);
  sa[ty][tx] = a;
  sb[ty][tx] = b;
  __syncthreads();
  if (ty == 0 && c < cols) {
#pragma unroll
    for (int k = 1; k < kColLanes; ++k) a += sa[k][tx], b += sb[k][tx];
    partials[(int64_t)blockIdx.y * cols + c] = make_double2(a, b);
  }
}

// G: a functor with __device__ void operator()(int64_t c, double a, double b) getting column c's totals.
template <class G>
__global__ void column_finish_kernel(G g, const double2* partials, int64_t chunks, int64_t cols) {
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += (int64_t)gridDim.x * blockDim.x) {
    double a = 0.0, b = 0.0;
    for (int64_t k = 0; k < chunks; ++k) {
      const double2 p = partials[k * cols + c];
      a += p.x;
      b += p.y;
    }
    g(c, a, b);
  }
}

// Both kernels on `stream`: g(c, sum_r a(r, c), sum_r b(r, c)) for every column (sums 0 for no rows).
template <class F, class G>
void column_sums(F f, G g, int64_t rows, int64_t cols, cudaStream_t stream, const char* what) {
  if (cols == 0) return;
  const int64_t chunks = col_chunks(rows);
  StreamBuffer<double2> partials(chunks * cols, stream, what);
  if (chunks > 0) {
    const dim3 grid((unsigned)ceil_div(cols, kColTile), (unsigned)chunks);
    column_sums_kernel<<<grid, kColTile * kColLanes, 0, stream>>>(f, rows, cols, col_chunk_rows(rows), partials.get());
    check_launch(what);
  }
  const int64_t blocks = ceil_div(cols, 256);
  column_finish_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(g, partials.get(), chunks, cols);
  check_launch(what);
}

// Calls f(Tag<T>{}) for float32 / float64; the layer kernels take no 16-bit types.
template <class F>
void with_float_dtype(DType dt, const char* what, F f) {
  if (dt == DType::f32) return f(Tag<float>{});
  if (dt == DType::f64) return f(Tag<double>{});
  throw std::invalid_argument(std::string(what) + ": the layer kernels take float32 or float64 arrays");
}

}  // namespace cuda
}  // namespace fastdl
