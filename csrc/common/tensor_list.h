// Many tensors of one dtype, for the multi-tensor optimizer steps, with the optimizer state
// slots named as torch.optim names them. Device-neutral: the CPU kernels read it directly;
// the CUDA launchers cut it into chunks of kernel arguments (csrc/cuda/multi_tensor.h).
#pragma once

#include <cstdint>

namespace fastdl {

// A slot's pointers are null when the configuration does not use it (momentum_buffer without
// momentum, max_exp_avg_sq without amsgrad). offsets[k] = sizes of tensors 0..k-1 summed;
// offsets[count] = the total.
template <class T>
struct TensorList {
  int64_t count;
  const int64_t* offsets;
  T* const* params;
  const T* const* grads;
  T* const* momentum_buffer;  // SGD
  T* const* exp_avg;          // Adam: first moment
  T* const* exp_avg_sq;       // Adam: second moment
  T* const* max_exp_avg_sq;   // Adam with amsgrad
  const int64_t* steps;       // each tensor's step count, already incremented for this step

  int64_t size(int64_t k) const { return offsets[k + 1] - offsets[k]; }
};

}  // namespace fastdl
