// Many tensors of one dtype, for the multi-tensor optimizer steps, with the optimizer state
// slots named as torch.optim names them. Device-neutral: the CPU kernels read it directly;
// the CUDA launchers cut it into chunks of kernel arguments (csrc/cuda/multi_tensor.h).
#pragma once

#include <cstdint>

namespace fastdl {

// A slot's pointers are null when the configuration does not use it (momentum_buffer without
// momentum, max_exp_avg_sq without amsgrad), and for the optimizers that have no such state.
// offsets[k] = sizes of tensors 0..k-1 summed; offsets[count] = the total. The adaptive
// optimizers' slots come after `steps`, so the SGD / Adam code that fills the list up to there
// leaves them null.
template <class T>
struct TensorList {
  int64_t count;
  const int64_t* offsets;
  T* const* params;
  const T* const* grads;
  T* const* momentum_buffer;  // SGD, RMSprop with momentum
  T* const* exp_avg;          // Adam, Adamax, NAdam, Lion: first moment
  T* const* exp_avg_sq;       // Adam, NAdam: second moment
  T* const* max_exp_avg_sq;   // Adam with amsgrad
  const int64_t* steps;       // each tensor's step count, already incremented for this step
  T* const* square_avg;       // RMSprop, Adadelta
  T* const* grad_avg;         // RMSprop centered
  T* const* acc_delta;        // Adadelta
  T* const* sum;              // Adagrad
  T* const* exp_inf;          // Adamax
  const double* mu_products;  // NAdam: per tensor mu_1 ... mu_t, this step's mu_t included

  int64_t size(int64_t k) const { return offsets[k + 1] - offsets[k]; }
};

}  // namespace fastdl
