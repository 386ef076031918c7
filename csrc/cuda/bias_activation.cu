// The element-wise work around a Dense layer's matmul on (rows, cols) activations:
//   forward:  y = act(z + bias[col]), pre = z + bias        (one pass)
//   backward: dz = act'(saved) grad, dbias = column sums of dz (one pass over grad and saved,
//             then, for many rows, a pass over one partial sum per (row chunk, column))
// Formulas: csrc/kernels/activations.h. The column sums are deterministic: fixed row chunks,
// each summed by a fixed 32 x 8 thread tile in a fixed order; no atomics.
#include "map.cuh"

#include "../kernels/activations.h"

namespace fastdl {
namespace cuda {

namespace {

// ---- forward --------------------------------------------------------------------------------------
// Pieces of W columns when vec (then cols % W == 0, so a pack never crosses a row). A thread's
// column is tracked incrementally: it advances by the grid stride modulo cols, with no 64-bit
// division inside the loop.
template <class T, class F>
__global__ void __launch_bounds__(kMapThreads)
    bias_activation_kernel(F f, const T* z, const T* bias, T* pre, T* y, int64_t n, int64_t cols, bool vec) {
  using C = compute_t<T>;
  constexpr int W = Pack<T>::W;
  auto run = [&](auto width) {  // run(Width<W>) only when vec: packs are then vector accesses
    constexpr int K = decltype(width)::value;
    const int64_t pieces = n / K, stride = global_threads();
    int64_t col = global_thread() * K % cols;
    const int64_t step = stride * K % cols;
    for (int64_t j = global_thread(); j < pieces; j += stride) {
      const int64_t i = j * K;
      C x[K], out[K];
      load_widen<K>(z + i, x, true);
      if (bias) {
        C b[K];
        load_widen<K>(bias + col, b, true);
        // rounded to T first, so that y = act(pre) exactly for 16-bit types too
#pragma unroll
        for (int k = 0; k < K; ++k) x[k] = widen(narrow<T>(x[k] + b[k]));
      }
      if (pre) narrow_store<K>(pre + i, x, true);
#pragma unroll
      for (int k = 0; k < K; ++k) out[k] = f(x[k]);
      narrow_store<K>(y + i, out, true);
      col += step;
      if (col >= cols) col -= cols;
    }
  };
  if (vec) run(Width<W>{});
  else run(Width<1>{});
}

// ---- backward -----------------------------------------------------------------------------------
constexpr int kTileCols = 32, kTileRows = 8;  // a 256-thread block: 32 columns x 8 row lanes
constexpr int64_t kRowsPerChunk = 256;
constexpr int64_t kMaxChunks = 65535;  // gridDim.y

// Sums in A: float for float/half/bf16 storage, double for double.
template <class T>
using Acc = compute_t<T>;

// Block (column tile bx, row chunk by): dz for those rows and columns, and the tile's column sums
// of dz as stored (each row lane sums its rows in order, then the 8 lanes are added in order).
// partial == null: one chunk, the sums go to dbias; else to partial[by * cols + c].
template <class T, class F>
__global__ void __launch_bounds__(kTileCols* kTileRows)
    bias_backward_kernel(F bwd, const T* grad, const T* saved, T* dz, T* dbias, double* partial, int64_t rows,
                         int64_t cols, int64_t rows_per_chunk) {
  using A = Acc<T>;
  __shared__ A sums[kTileRows][kTileCols + 1];
  const int tx = threadIdx.x % kTileCols, ty = threadIdx.x / kTileCols;
  const int64_t c = (int64_t)blockIdx.x * kTileCols + tx;
  const int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk;
  const int64_t r1 = rows - r0 < rows_per_chunk ? rows : r0 + rows_per_chunk;
  A acc = A(0);
  if (c < cols) {
    for (int64_t r = r0 + ty; r < r1; r += kTileRows) {
      const int64_t i = r * cols + c;
      const T d = narrow<T>(bwd(widen(grad[i]), widen(saved[i])));
      dz[i] = d;
      acc += widen(d);
    }
  }
  sums[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && c < cols) {
    A total = sums[0][tx];
#pragma unroll
    for (int k = 1; k < kTileRows; ++k) total += sums[k][tx];
    if (partial) partial[(int64_t)blockIdx.y * cols + c] = (double)total;
    else dbias[c] = narrow<T>(total);
  }
}

// dbias[c] = sum over chunks of partial[chunk * cols + c], chunks in order.
template <class T>
__global__ void __launch_bounds__(kMapThreads)
    column_sum_kernel(const double* partial, int64_t chunks, int64_t cols, T* dbias) {
  for (int64_t c = global_thread(); c < cols; c += global_threads()) {
    double total = 0.0;
    for (int64_t k = 0; k < chunks; ++k) total += partial[k * cols + c];
    dbias[c] = narrow<T>(static_cast<compute_t<T>>(total));
  }
}

}  // namespace

void bias_activation(Activation op, DType dt, uintptr_t z, uintptr_t bias, uintptr_t pre, uintptr_t y, int64_t rows,
                     int64_t cols, double alpha, Place at) {
  require(rows >= 0 && cols >= 0, "bias_activation: rows and cols must be >= 0");
  const int64_t n = rows * cols;
  if (n == 0) return;
  DeviceGuard guard(at.device, "bias_activation");
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    constexpr int W = Pack<T>::W;
    const bool vec = aligned16(z, bias, pre, y) && cols % W == 0;
    kernels::visit_activation<compute_t<T>>(op, alpha, [&](auto fwd, auto, bool) {
      bias_activation_kernel<<<map_blocks(n, vec ? W : 1), kMapThreads, 0, stream_of(at)>>>(
          fwd, reinterpret_cast<const T*>(z), reinterpret_cast<const T*>(bias), reinterpret_cast<T*>(pre),
          reinterpret_cast<T*>(y), n, cols, vec);
      check_launch("bias_activation");
    });
  });
}

void bias_activation_backward(Activation op, DType dt, uintptr_t grad, uintptr_t saved, uintptr_t dz,
                              uintptr_t dbias, int64_t rows, int64_t cols, double alpha, Place at) {
  require(rows >= 0 && cols >= 0, "bias_activation_backward: rows and cols must be >= 0");
  if (!dbias) return activation_backward(op, dt, grad, saved, dz, rows * cols, alpha, at);
  if (cols == 0) return;
  const char* what = "bias_activation_backward";
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  if (rows == 0) {  // the sum over no rows
    check(cudaMemsetAsync(reinterpret_cast<void*>(dbias), 0, cols * itemsize(dt), stream), what);
    return;
  }
  // Row chunks: a function of rows only, so dbias has the same bits on every GPU.
  int64_t per_chunk = kRowsPerChunk;
  if (ceil_div(rows, per_chunk) > kMaxChunks) per_chunk = ceil_div(rows, kMaxChunks);
  const int64_t chunks = ceil_div(rows, per_chunk);
  require(ceil_div(cols, kTileCols) <= INT32_MAX, "bias_activation_backward: too many columns");
  StreamBuffer<double> partial(chunks > 1 ? chunks * cols : 0, stream, what);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::visit_activation<compute_t<T>>(op, alpha, [&](auto, auto bwd, bool) {
      const dim3 grid(static_cast<unsigned>(ceil_div(cols, kTileCols)), static_cast<unsigned>(chunks));
      bias_backward_kernel<<<grid, kTileCols * kTileRows, 0, stream>>>(
          bwd, reinterpret_cast<const T*>(grad), reinterpret_cast<const T*>(saved), reinterpret_cast<T*>(dz),
          reinterpret_cast<T*>(dbias), partial.get(), rows, cols, per_chunk);
      check_launch(what);
    });
    if (chunks > 1) {
      column_sum_kernel<<<map_blocks(cols, 1), kMapThreads, 0, stream>>>(partial.get(), chunks, cols,
                                                                         reinterpret_cast<T*>(dbias));
      check_launch(what);
    }
  });
}

}  // namespace cuda
}  // namespace fastdl
