// Adagrad step over many tensors in multi-tensor launches: the rule kernels::AdagradRule
// (csrc/kernels/adaptive_optimizers.h) on the shared adaptive kernel (adaptive_step.cuh).
#include "adaptive_step.cuh"

namespace fastdl {
namespace cuda {

void adagrad_step(DType dt, const TensorList<void>& L, const AdagradOptions& o, uintptr_t clip_ptr, uintptr_t found_inf,
                  bool float32_state, Place at) {
  adaptive_step<kernels::AdagradRule>("adagrad_step", dt, L, o, clip_ptr, found_inf, float32_state, at);
}

}  // namespace cuda
}  // namespace fastdl
