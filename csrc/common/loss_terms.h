// Ids of Keras's elementwise losses (issue #11), the same numbers in the CPU module, the CUDA
// module and the NumPy fallback (fastdl.backends.numpy_kernels.LOSS_TERMS). Formulas:
// csrc/kernels/losses.h (visit_loss_term).
#pragma once

namespace fastdl {

constexpr const char* kLossTermNames[] = {"mae", "mape", "msle", "huber", "log_cosh", "poisson", "hinge",
                                          "squared_hinge", "kl_divergence", "binary_focal",
                                          "binary_focal_logits"};
constexpr int kLossTermCount = sizeof(kLossTermNames) / sizeof(kLossTermNames[0]);

}  // namespace fastdl
