// The type a kernel computes in, per storage type: float and double compute in themselves;
// the 16-bit floats (CUDA's __half and __nv_bfloat16) are loaded, widened to float, computed
// in float and rounded once when stored, as PyTorch and apex do. The formulas in this folder
// are written for the compute type only: they never see a 16-bit value.
#pragma once

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fastdl {
namespace kernels {

template <class T>
struct ComputeType {
  using type = T;
};

#if defined(__CUDACC__)
template <>
struct ComputeType<__half> {
  using type = float;
};
template <>
struct ComputeType<__nv_bfloat16> {
  using type = float;
};
#endif

template <class T>
using compute_t = typename ComputeType<T>::type;

}  // namespace kernels
}  // namespace fastdl
