// Sum of squares of every element of many tensors (the squared global gradient norm), into one
// device double. One block per chunk writes its sum to a temporary; one block then adds them
// all in chunk order. The schedule depends only on the sizes: the same bits on every run.
#include "multi_tensor.cuh"
#include "reduce.cuh"

namespace fastdl {
namespace cuda {

namespace {

struct NoScalars {};

template <class T>
struct SumSquaresArgs {
  double* partials;  // this launch's first block's output
  TensorTable<1, NoScalars> table;
};

// Squares are summed per piece in the compute type (as the CPU's float lanes), pieces in double.
template <class T>
__global__ void __launch_bounds__(kMultiTensorThreads) sum_squares_kernel(const SumSquaresArgs<T> a) {
  using C = compute_t<T>;
  const BlockRange br = block_range(a.table, kDefaultChunk);
  const T* g = static_cast<const T*>(a.table.ptr[0][br.slot]);
  const bool vec = reinterpret_cast<uintptr_t>(g) % 16 == 0;
  double acc = 0.0;
  for_each_piece<T>(br.begin, br.end, threadIdx.x, kMultiTensorThreads, [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C v[K];
    load_widen<K>(g + i, v, vec);
    C piece = C(0);
#pragma unroll
    for (int j = 0; j < K; ++j) piece += v[j] * v[j];
    acc += (double)piece;
  });
  const double total = block_sum<kMultiTensorThreads>(acc);
  if (threadIdx.x == 0) a.partials[blockIdx.x] = total;
}

}  // namespace

void grad_sum_squares(DType dt, const TensorList<void>& grads, uintptr_t out, Place at) {
  const char* what = "grad_sum_squares";
  require(out != 0, "grad_sum_squares: the output address is null");
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  const int64_t chunks = total_chunks(grads);
  StreamBuffer<double> partials(chunks, stream, what);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto args = std::make_unique<SumSquaresArgs<T>>();
    for_each_launch(
        grads, args,
        [&](SumSquaresArgs<T>& a, int64_t slot, int64_t k) { a.table.ptr[0][slot] = const_cast<void*>(grads.grads[k]); },
        [&](SumSquaresArgs<T>& a, int64_t blocks, int64_t before) {
          a.partials = partials.get() + before;
          sum_squares_kernel<T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          check_launch(what);
        });
  });
  finish_sum(partials.get(), chunks, false, 0, reinterpret_cast<double*>(out), stream, what);
}

}  // namespace cuda
}  // namespace fastdl
