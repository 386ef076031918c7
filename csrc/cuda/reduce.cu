// The last step of every reduction: one block adds the per-block partial sums in a fixed order.
#include "check.cuh"
#include "reduce.cuh"

namespace fastdl {
namespace cuda {

namespace {

constexpr int kFinishThreads = 1024;

__global__ void __launch_bounds__(kFinishThreads)
    finish_sum_kernel(const double* partials, int64_t count, bool mean, int64_t n, double* out, const double* n_dev) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kFinishThreads) acc += partials[i];
  const double total = block_sum<kFinishThreads>(acc);
  if (threadIdx.x == 0) *out = finish_value(total, mean, n, n_dev);
}

}  // namespace

void finish_sum(const double* partials, int64_t count, bool mean, int64_t n, double* out, cudaStream_t stream,
                const char* what, const double* n_dev) {
  finish_sum_kernel<<<1, kFinishThreads, 0, stream>>>(partials, count, mean, n, out, n_dev);
  check_launch(what);
}

}  // namespace cuda
}  // namespace fastdl
