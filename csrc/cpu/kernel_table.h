// The CPU kernels' entry points, as a table of function pointers: one table per instruction set
// (built by isa_kernels.cpp), one chosen at import time (dispatch.cpp). Types only: no code here
// is compiled for a particular instruction set.
#pragma once

#include <cstdint>

#include "../common/activation.h"
#include "../common/layer_geometry.h"
#include "../common/loss_terms.h"
#include "../common/optim_options.h"
#include "../common/tensor_list.h"

namespace fastdl {
namespace cpu {

using fastdl::Activation;
using fastdl::AdadeltaOptions;
using fastdl::AdagradOptions;
using fastdl::AdamaxOptions;
using fastdl::AdamOptions;
using fastdl::LionOptions;
using fastdl::NadamOptions;
using fastdl::RmspropOptions;
using fastdl::RowLossOptions;
using fastdl::SgdOptions;
using fastdl::TensorList;
using fastdl::Window;

template <class T>
struct Kernels {
  void (*activation)(Activation op, const T* x, T* y, int64_t n, double alpha);
  // saved = y for sigmoid and tanh, x for the others.
  void (*activation_backward)(Activation op, const T* grad, const T* saved, T* out, int64_t n, double alpha);
  // Dense layer epilogue: y = act(z + bias) (bias broadcast over rows; null = none); writes the
  // pre-activation z + bias to pre when pre is not null. y may alias z.
  void (*bias_activation)(Activation op, const T* z, const T* bias, T* pre, T* y, int64_t rows, int64_t cols,
                          double alpha);
  // Its backward: dz = act'(saved) * grad and dbias = column sums of dz (when dbias is not null).
  void (*bias_activation_backward)(Activation op, const T* grad, const T* saved, T* dz, T* dbias, int64_t rows,
                                   int64_t cols, double alpha);
  void (*softmax)(const T* x, T* y, int64_t rows, int64_t cols, bool log);
  void (*softmax_backward)(const T* grad, const T* y, T* out, int64_t rows, int64_t cols, bool log);
  // Losses return the mean loss and write its gradient (already divided by the count).
  double (*mse)(const T* pred, const T* target, T* grad, int64_t n);
  double (*bce)(const T* pred, const T* target, T* grad, int64_t n, bool from_logits);
  // Keras's other elementwise losses by id (kernels::visit_loss_term), with their parameters a, b.
  double (*loss_term)(int op, double a, double b, const T* pred, const T* target, T* grad, int64_t n);
  // labels: class ids in [0, cols), checked by the caller, or negative for a row to ignore. Both
  // return sum_r loss_r / denom and write the gradient / denom; row_loss (nullable) gets each loss_r.
  double (*softmax_ce_labels)(const T* logits, const int64_t* labels, T* grad, int64_t rows, int64_t cols,
                              double smoothing, double denom, double* row_loss);
  double (*softmax_ce_probs)(const T* logits, const T* target, T* grad, int64_t rows, int64_t cols, double smoothing,
                             double denom, double* row_loss);
  // Keras's row losses by id (kRowLossNames) over (rows, cols) arrays: returns sum_r f_r loss_r and
  // writes grad = f_r dloss_r/dpred, f_r = options.scale * weights[r] (weights nullable); row_losses
  // (nullable) gets each loss_r. grad must not overlap pred or target.
  double (*row_loss)(int op, const T* pred, const T* target, T* grad, int64_t rows, int64_t cols,
                     const RowLossOptions& options, const double* weights, double* row_losses);
  // sum over all tensors of grads[k][i]^2 (the squared global norm); the same bits whatever the thread count
  double (*grad_sum_squares)(const TensorList<T>& tensors);
  void (*sgd)(const TensorList<T>& tensors, const SgdOptions& options);
  void (*adam)(const TensorList<T>& tensors, const AdamOptions& options);
};

// The optimizer steps on 16-bit parameters (bfloat16, float16 bits): float math, each value
// rounded once when stored; state in the parameters' dtype, as torch keeps it, or (the
// *_f32_state entries) float32 state read from the state slots of `state` (its other fields unused).
struct HalfKernels {
  double (*grad_sum_squares)(const TensorList<uint16_t>& tensors);
  void (*sgd)(const TensorList<uint16_t>& tensors, const SgdOptions& options);
  void (*adam)(const TensorList<uint16_t>& tensors, const AdamOptions& options);
  void (*sgd_f32_state)(const TensorList<uint16_t>& tensors, const TensorList<float>& state,
                        const SgdOptions& options);
  void (*adam_f32_state)(const TensorList<uint16_t>& tensors, const TensorList<float>& state,
                         const AdamOptions& options);
};

// The adaptive optimizers (csrc/kernels/adaptive_optimizers.h), one StepKernels per optimizer,
// keyed by its options type O: every storage type, and float32 state beside 16-bit parameters (read
// from the state slots of `state`, its other fields unused). Built by isa_adaptive_optimizers.cpp.
template <class T, class O>
using StepFn = void (*)(const TensorList<T>& tensors, const O& options);
template <class O>
using F32StateStepFn = void (*)(const TensorList<uint16_t>& tensors, const TensorList<float>& state, const O& options);

template <class O>
struct StepKernels {
  StepFn<float, O> f32;
  StepFn<double, O> f64;
  StepFn<uint16_t, O> bf16, f16;
  F32StateStepFn<O> bf16_f32_state, f16_f32_state;
};

struct AdaptiveKernels {
  StepKernels<RmspropOptions> rmsprop;
  StepKernels<AdagradOptions> adagrad;
  StepKernels<AdadeltaOptions> adadelta;
  StepKernels<AdamaxOptions> adamax;
  StepKernels<NadamOptions> nadam;
  StepKernels<LionOptions> lion;

  const StepKernels<RmspropOptions>& of(const RmspropOptions&) const { return rmsprop; }
  const StepKernels<AdagradOptions>& of(const AdagradOptions&) const { return adagrad; }
  const StepKernels<AdadeltaOptions>& of(const AdadeltaOptions&) const { return adadelta; }
  const StepKernels<AdamaxOptions>& of(const AdamaxOptions&) const { return adamax; }
  const StepKernels<NadamOptions>& of(const NadamOptions&) const { return nadam; }
  const StepKernels<LionOptions>& of(const LionOptions&) const { return lion; }
};

// The layer kernels (issue #13; the contract: python/fastdl/backends/numpy_layers.py, same names
// and arguments), channels-last and C-contiguous, outputs written (not added to); optional arrays
// are null pointers. Built by isa_layers.cpp. `work`: norm_work_doubles(rows, cols) doubles of
// scratch from the caller (the kernels never allocate).
template <class T>
struct LayerKernels {
  // x (rows, cols): each row normalized over its cols values; writes y, mean and rstd (rows,).
  void (*layer_norm)(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                     double eps);
  // dx (may be dy; null: not computed), dgamma, dbeta (each null: not computed).
  void (*layer_norm_backward)(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx, T* dgamma,
                              T* dbeta, int64_t rows, int64_t cols, double* work);
  // x (rows, cols), each column normalized over the rows: y (rows, cols), mean, var, rstd (cols,).
  void (*batch_norm)(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* var, T* rstd, int64_t rows,
                     int64_t cols, double eps, double* work);
  void (*batch_norm_backward)(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx, T* dgamma,
                              T* dbeta, int64_t rows, int64_t cols, double* work);
  // y = x scale + shift (scale, shift: (cols,)); y may be x.
  void (*channel_affine)(const T* x, const T* scale, const T* shift, T* y, int64_t rows, int64_t cols);
  // x (n, h, w, c) -> cols (n, oh, ow, kh kw c), and its adjoint (dx written, deterministic).
  void (*im2col)(const T* x, T* cols, const Window& g);
  void (*col2im)(const T* cols, T* dx, const Window& g);
  // Pooling (g.dh = g.dw = 1): y, argmax (n, oh, ow, c). max_pool_backward returns how many argmax
  // entries lie outside [-1, h w) (skipped).
  void (*max_pool)(const T* x, T* y, int64_t* argmax, const Window& g);
  int64_t (*max_pool_backward)(const T* dy, const int64_t* argmax, T* dx, const Window& g);
  void (*avg_pool)(const T* x, T* y, const Window& g);
  void (*avg_pool_backward)(const T* dy, T* dx, const Window& g);
  // dw (vocab, dim) = per id the sum of scale[t / steps] dy[t / steps] over its tokens t (scale null:
  // 1), in token order, leaving out id `ignore` (-1: none); ids in [0, vocab) (checked by the caller);
  // order (tokens) and start (vocab + 1): scratch.
  void (*embedding_backward)(const int64_t* ids, const T* dy, const T* scale, T* dw, int64_t tokens, int64_t steps,
                             int64_t vocab, int64_t dim, int64_t ignore, int64_t* order, int64_t* start);
  // out (bags, dim) = scale[b] * the sum of table's rows for bag b's `steps` ids other than `ignore`.
  void (*embedding_bag)(const int64_t* ids, const T* table, const T* scale, T* out, int64_t bags, int64_t steps,
                        int64_t dim, int64_t ignore);
};

struct LayerTable {
  LayerKernels<float> f32;
  LayerKernels<double> f64;
};

// The deterministic partition of rows used by the layer reductions: blocks of this many rows (a
// function of the row count only), and the scratch those reductions need.
int64_t norm_block_rows(int64_t rows);
int64_t norm_work_doubles(int64_t rows, int64_t cols);

struct KernelTable {
  const char* isa;
  Kernels<float> f32;
  Kernels<double> f64;
  HalfKernels bf16, f16;
  const AdaptiveKernels* adaptive;
  const LayerTable* layers;
};

// Outputs at least this large (bytes) that do not alias an input are written with streaming
// stores: half the last-level cache, so that data that would stay cached is not pushed out to
// DRAM. Set once from the cache size (dispatch.cpp); read by the kernels.
extern int64_t stream_threshold_bytes;

// The most threads a kernel uses: one process-wide setting (fastdl.set_num_threads), where
// omp_set_num_threads would only affect the calling thread.
extern int thread_limit;

// Per-ISA tables; null where the build does not include that ISA.
const KernelTable* baseline_table();
const KernelTable* avx2_table();
const KernelTable* avx512_table();

}  // namespace cpu
}  // namespace fastdl
