// The CUDA module's launchers, as the pybind11 glue (compiled by g++) sees them: plain C++, no
// CUDA headers. Device addresses are integers (0 = absent), the stream is a cudaStream_t passed
// as an integer, the device an ordinal. Every launcher switches to `device` for the call,
// launches asynchronously on `stream` (never synchronises) and throws std::runtime_error
// ("CUDA error cudaErrorX (text) in what") when a CUDA call or a launch fails, or
// std::invalid_argument for arguments it refuses. The caller checks shapes and dtypes.
#pragma once

#include <cstdint>
#include <string>

#include "../common/activation.h"
#include "../common/loss_terms.h"
#include "../common/optim_options.h"
#include "../common/tensor_list.h"

namespace fastdl {
namespace cuda {

// Storage types: float and double compute in themselves, float16 and bfloat16 in float.
enum class DType : int { f32, f64, f16, bf16 };

// "float32", "float64", "float16", "bfloat16"; false for anything else.
inline bool parse_dtype(const std::string& name, DType& out) {
  if (name == "float32") out = DType::f32;
  else if (name == "float64") out = DType::f64;
  else if (name == "float16") out = DType::f16;
  else if (name == "bfloat16") out = DType::bf16;
  else return false;
  return true;
}
inline int64_t itemsize(DType dt) { return dt == DType::f64 ? 8 : dt == DType::f32 ? 4 : 2; }

// Where a call runs.
struct Place {
  int device;
  uintptr_t stream;  // a cudaStream_t; 0 is the legacy default stream
};

// ---- the device ---------------------------------------------------------------------------------
struct Status {
  int devices;            // 0 when CUDA cannot run here
  bool has_reason;
  std::string reason;     // why not (has_reason), e.g. "no NVIDIA driver"
  int runtime_version;    // CUDA runtime linked into the module (e.g. 13000)
  int driver_version;     // CUDA version the driver supports; 0 without a driver
};
Status probe();
std::string device_name(int device);

// ---- activations (csrc/kernels/activations.h) ----------------------------------------------------
// y = act(x); y may alias x.
void activation(Activation op, DType dt, uintptr_t x, uintptr_t y, int64_t n, double alpha, Place at);
// out = act'(saved) * grad; saved = y for sigmoid and tanh, x otherwise. out may alias either.
void activation_backward(Activation op, DType dt, uintptr_t grad, uintptr_t saved, uintptr_t out, int64_t n,
                         double alpha, Place at);
// (rows, cols): y = act(z + bias[col]) (bias 0: none); pre = z + bias when pre != 0. y may alias z.
void bias_activation(Activation op, DType dt, uintptr_t z, uintptr_t bias, uintptr_t pre, uintptr_t y, int64_t rows,
                     int64_t cols, double alpha, Place at);
// dz = act'(saved) * grad; dbias[c] = sum over rows of dz[r, c] when dbias != 0 (deterministic).
void bias_activation_backward(Activation op, DType dt, uintptr_t grad, uintptr_t saved, uintptr_t dz,
                              uintptr_t dbias, int64_t rows, int64_t cols, double alpha, Place at);

// ---- softmax over the last axis (csrc/kernels/softmax.h); y may alias x ----------------------------
void softmax(DType dt, uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, bool log, Place at);
void softmax_backward(DType dt, uintptr_t grad, uintptr_t y, uintptr_t out, int64_t rows, int64_t cols, bool log,
                      Place at);

// ---- losses (csrc/kernels/losses.h) ----------------------------------------------------------------
// grad = dl/dpred / n; *loss (one device double) = the mean, NaN for n = 0.
void mse(DType dt, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, uintptr_t loss, Place at);
// Keras's other elementwise losses by id (csrc/common/loss_terms.h), parameters a, b.
void loss_term(DType dt, int op, double a, double b, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n,
               uintptr_t loss, Place at);
void bce(DType dt, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, bool from_logits, uintptr_t loss,
         Place at);

// Softmax cross-entropy of (rows, cols) logits. target: `rows` class ids (int32 or int64), or a
// (rows, cols) probability array of the logits' dtype. grad may alias logits. A class id outside
// [0, cols) makes its row's loss and gradient NaN (checking it would need a synchronisation).
// Class ids equal to ignore_index (when has_ignore; not for probabilities) give loss 0 and gradient
// row 0. reduction: mean (divided by the rows not ignored, counted on the device; NaN when none are
// left), sum, or none (the sum's gradient and loss, and each row's loss into the `rows` device
// doubles at row_losses). *loss (one device double) = the reduced loss; no rows: NaN for mean, 0
// otherwise.
enum class TargetKind : int { int32, int64, probs };
enum class Reduction : int { mean, sum, none };
void softmax_ce(DType dt, uintptr_t logits, uintptr_t target, TargetKind kind, uintptr_t grad, int64_t rows,
                int64_t cols, double smoothing, bool has_ignore, int64_t ignore_index, Reduction reduction,
                uintptr_t row_losses, uintptr_t loss, Place at);

// Keras's row losses by id (kRowLossNames, csrc/common/loss_terms.h) over (rows, cols) pred and
// target: grad = f_r dloss_r/dpred, f_r = options.scale * weights[r] (weights: `rows` device doubles,
// or 0: options.scale); *loss (one device double) = sum_r f_r loss_r (0 for no rows); row_losses
// (`rows` device doubles, or 0) gets each loss_r. grad must not overlap pred or target.
void row_loss(DType dt, int op, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t rows, int64_t cols,
              const RowLossOptions& options, uintptr_t weights, uintptr_t row_losses, uintptr_t loss, Place at);

// ---- multi-tensor optimizer steps (csrc/kernels/optimizers.h) -------------------------------------
// The list's pointers are device addresses stored as void*; offsets are the prefix sums of the
// sizes. clip_ptr != 0: the gradients' clipping factor is read on the device from that double,
// overriding options.clip_coef. found_inf != 0: the address of a device float; where it is not 0
// (torch.amp.GradScaler found an inf or NaN) the step changes nothing. step_counts (Adam; null:
// tensors.steps): each tensor's step count, this step included, read on the device from a float
// (torch's fused 'step' tensors), so that no count passes through the host. float32_state: the
// state slots (momentum buffers, moments) hold float32 beside bfloat16 / float16 parameters.
void grad_sum_squares(DType dt, const TensorList<void>& grads, uintptr_t out, Place at);
void sgd_step(DType dt, const TensorList<void>& tensors, const SgdOptions& options, uintptr_t clip_ptr,
              uintptr_t found_inf, bool float32_state, Place at);
void adam_step(DType dt, const TensorList<void>& tensors, const AdamOptions& options, uintptr_t clip_ptr,
               const float* const* step_counts, uintptr_t found_inf, bool float32_state, Place at);

// The adaptive optimizers (csrc/kernels/adaptive_optimizers.h), one launcher each, as sgd_step: the
// state slots of `tensors` their rule names, per-tensor scalars from tensors.steps (and, for NAdam,
// tensors.mu_products) computed on the host in double.
void rmsprop_step(DType dt, const TensorList<void>& tensors, const RmspropOptions& options, uintptr_t clip_ptr,
                  uintptr_t found_inf, bool float32_state, Place at);
void adagrad_step(DType dt, const TensorList<void>& tensors, const AdagradOptions& options, uintptr_t clip_ptr,
                  uintptr_t found_inf, bool float32_state, Place at);
void adadelta_step(DType dt, const TensorList<void>& tensors, const AdadeltaOptions& options, uintptr_t clip_ptr,
                   uintptr_t found_inf, bool float32_state, Place at);
void adamax_step(DType dt, const TensorList<void>& tensors, const AdamaxOptions& options, uintptr_t clip_ptr,
                 uintptr_t found_inf, bool float32_state, Place at);
void nadam_step(DType dt, const TensorList<void>& tensors, const NadamOptions& options, uintptr_t clip_ptr,
                uintptr_t found_inf, bool float32_state, Place at);
void lion_step(DType dt, const TensorList<void>& tensors, const LionOptions& options, uintptr_t clip_ptr,
               uintptr_t found_inf, bool float32_state, Place at);

}  // namespace cuda
}  // namespace fastdl
