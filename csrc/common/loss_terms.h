// Ids of Keras's elementwise losses (issue #11), the same numbers in the CPU module, the CUDA
// module and the NumPy fallback (fastdl.backends.numpy_kernels.LOSS_TERMS). Formulas:
// csrc/kernels/losses.h (visit_loss_term).
#pragma once

namespace fastdl {

constexpr const char* kLossTermNames[] = {"mae", "mape", "msle", "huber", "log_cosh", "poisson", "hinge",
                                          "squared_hinge", "kl_divergence", "binary_focal",
                                          "binary_focal_logits"};
constexpr int kLossTermCount = sizeof(kLossTermNames) / sizeof(kLossTermNames[0]);

// Ids of Keras's row losses (a value per row over the last axis; csrc/kernels/losses.h), the same
// in every implementation (fastdl.backends.numpy_kernels.ROW_LOSSES).
constexpr const char* kRowLossNames[] = {"categorical_hinge", "categorical_focal"};
constexpr int kRowLossCount = sizeof(kRowLossNames) / sizeof(kRowLossNames[0]);

// A row loss's parameters. Row r's loss and gradient are multiplied by f_r = scale * w_r (w_r the
// row's weight, 1 without weights): the mean is scale = 1 / rows, Keras's reductions and sample
// weights are other scales and weights. alpha, gamma, from_logits and label_smoothing: the focal loss's.
struct RowLossOptions {
  double alpha = 0.25, gamma = 2.0, label_smoothing = 0.0, scale = 1.0;
  bool from_logits = false;
};

}  // namespace fastdl
