// Optimizer updates, per element: the one place their formulas live.
//
// These are torch.optim's single-tensor (foreach=False) updates, operation for operation, so
// that fastdl.torch reproduces torch.optim's trajectory. The per-tensor scalars (bias
// corrections, which depend on the tensor's own step count) are computed once per tensor in
// double by the *_tensor_scalars functions and passed in; the loops convert them to the
// parameter's type, as torch does with its Python-float hyperparameters.
#pragma once

#include "../common/optim_options.h"
#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// Every update first multiplies the gradient by clip_coef when it is not 1: the coefficient of
// global-norm gradient clipping, applied on the fly so the gradients are not rewritten. The
// coefficient comes from the global norm, a reduction over every tensor, so it is computed
// between the two calls, in Python (fastdl.optim.optimizer.clip_coefficient; on a GPU, on the
// device, and the kernel reads it from there).

// ---- SGD --------------------------------------------------------------------------------
// g <- g * clip_coef;  g <- -g if maximize;  g <- g + wd p
// momentum mu != 0:  b <- g on the tensor's first step, else b <- mu b + (1 - dampening) g
//                    g <- g + mu b (nesterov) or g <- b
// p <- p - lr g
template <class V>
struct SgdScalars {
  V lr, weight_decay, momentum, one_minus_dampening, clip_coef;
  bool has_weight_decay, has_momentum, nesterov, maximize, has_clip;
};

// The step's scalars in the value type V (a compute type or a SIMD vector of one), from the
// options in double, converted as torch converts its Python-float hyperparameters.
template <class V, class C>
FASTDL_HD SgdScalars<V> sgd_scalars(const SgdOptions& o) {
  return {V(C(o.lr)), V(C(o.weight_decay)), V(C(o.momentum)), V(C(1.0 - o.dampening)), V(C(o.clip_coef)),
          o.weight_decay != 0.0, o.momentum != 0.0, o.nesterov, o.maximize, o.clip_coef != 1.0};
}

template <class V>
FASTDL_HD void sgd_update(V& p, V g, V& buf, bool first_step, const SgdScalars<V>& s) {
  if (s.has_clip) g = g * s.clip_coef;
  if (s.maximize) g = -g;
  if (s.has_weight_decay) g = g + s.weight_decay * p;
  if (s.has_momentum) {
    buf = first_step ? g : buf * s.momentum + s.one_minus_dampening * g;
    g = s.nesterov ? g + s.momentum * buf : buf;
  }
  p = p - s.lr * g;
}

// ---- Adam / AdamW -------------------------------------------------------------------------
// g <- g * clip_coef;  g <- -g if maximize
// AdamW (decoupled):  p <- p (1 - lr wd)          Adam (L2):  g <- g + wd p
// m <- lerp(m, g, 1 - beta1)        (torch's lerp: m + w (g - m) for w < 0.5, else g - (g - m)(1 - w))
// v <- beta2 v + (1 - beta2) g^2
// vmax <- max(vmax, v) and use vmax for v   (amsgrad)
// p <- p + (-step_size m) / (sqrt(v) / sqrt(bc2) + eps),  step_size = lr / bc1,  bck = 1 - beta_k^step
template <class V>
struct AdamScalars {
  V beta2, one_minus_beta2, lerp_weight, one_minus_lerp_weight, eps, weight_decay, decay_factor, clip_coef;
  V neg_step_size, bc2_sqrt;  // per tensor: depend on its step count
  bool lerp_low;          // lerp weight < 0.5
  bool has_weight_decay, decoupled, amsgrad, maximize, has_clip;
};

// Per-tensor scalars, in double, from the tensor's step count (>= 1).
struct AdamTensorScalars {
  double step_size, bc2_sqrt;
};
FASTDL_FN AdamTensorScalars adam_tensor_scalars(double lr, double beta1, double beta2, int64_t step) {
  double bc1 = 1.0 - ::pow(beta1, (double)step);
  double bc2 = 1.0 - ::pow(beta2, (double)step);
  return {lr / bc1, ::sqrt(bc2)};
}

// The step's scalars without the per-tensor ones (set_adam_tensor fills those in).
template <class V, class C>
FASTDL_HD AdamScalars<V> adam_scalars(const AdamOptions& o) {
  const double w = 1.0 - o.beta1;  // lerp weight
  return {V(C(o.beta2)), V(C(1.0 - o.beta2)), V(C(w)), V(C(1.0 - w)), V(C(o.eps)), V(C(o.weight_decay)),
          V(C(1.0 - o.lr * o.weight_decay)), V(C(o.clip_coef)), V(C(0)), V(C(0)), w < 0.5,
          o.weight_decay != 0.0, o.decoupled, o.amsgrad, o.maximize, o.clip_coef != 1.0};
}

template <class V, class C>
FASTDL_HD void set_adam_tensor(AdamScalars<V>& s, const AdamTensorScalars& t) {
  s.neg_step_size = V(C(-t.step_size));
  s.bc2_sqrt = V(C(t.bc2_sqrt));
}

template <class V>
FASTDL_HD void adam_update(V& p, V g, V& m, V& v, V& vmax, const AdamScalars<V>& s) {
  if (s.has_clip) g = g * s.clip_coef;
  if (s.maximize) g = -g;
  if (s.has_weight_decay) {
    if (s.decoupled) p = p * s.decay_factor;
    else g = g + s.weight_decay * p;
  }
  m = s.lerp_low ? m + s.lerp_weight * (g - m) : g - (g - m) * s.one_minus_lerp_weight;
  v = v * s.beta2 + s.one_minus_beta2 * g * g;
  V second = v;
  if (s.amsgrad) {
    vmax = where(vmax < v, v, vmax);
    second = vmax;
  }
  V denom = sqrt(second) / s.bc2_sqrt + s.eps;
  p = p + (s.neg_step_size * m) / denom;  // torch's addcdiv_(m, denom, value=-step_size) order
}

}  // namespace kernels
}  // namespace fastdl
