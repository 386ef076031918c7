// The adaptive optimizers' updates, per element: RMSprop, Adagrad, Adadelta, Adamax, NAdam (torch.optim's
// single-tensor rules, operation for operation, as optimizers.h does for SGD and Adam) and Lion (the
// paper's rule, as Keras 3 has it); flags select Keras 3's variant where it differs from torch's.
//
// Each optimizer is a Rule, one struct that every implementation reads the same way (the CPU loop in
// csrc/cpu/adaptive_optimizers.h, the CUDA kernel in csrc/cuda/adaptive_step.cuh, the glue):
//   Options                        its options struct (csrc/common/optim_options.h)
//   Scalars<V>                     the step's scalars in the value type V (compute type or SIMD vector)
//   scalars<V, C>(options)         them, converted from double as torch converts its Python floats
//   kStates, slot<T>(j), uses(o, j), state_names[j]
//                                  its state slots in TensorList (j < kStates), whether the
//                                  configuration uses slot j, and the Python name of its list
//   Tensor<C>                      the per-tensor scalars (from the tensor's step count, and NAdam's
//   tensor<C>(o, step, mu_product) mu_product), computed once per tensor in double, then converted
//   set_tensor<V, C>(s, t)         ... and put into the step's scalars
//   update(p, g, state[kStates], s)
//                                  one element (a slot the configuration does not use holds 0 and
//                                  is not stored)
#pragma once

#include "../common/optim_options.h"
#include "../common/tensor_list.h"
#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// ---- shared pieces -----------------------------------------------------------------------------

// The gradient as every rule first sees it: g <- g * clip_coef (when not 1; on CUDA the factor may
// be read on the device instead), g <- -g if maximize, g <- g + wd p (L2 weight decay, when the
// rule's decay is not decoupled).
template <class V>
struct GradPrep {
  V clip_coef, weight_decay;
  bool has_clip, maximize, has_weight_decay;
};

template <class V, class C>
FASTDL_HD GradPrep<V> grad_prep(double clip_coef, bool maximize, double l2_weight_decay) {
  return {V(C(clip_coef)), V(C(l2_weight_decay)), clip_coef != 1.0, maximize, l2_weight_decay != 0.0};
}

template <class V>
FASTDL_HD V prepare_grad(V g, V p, const GradPrep<V>& s) {
  if (s.has_clip) g = g * s.clip_coef;
  if (s.maximize) g = -g;
  if (s.has_weight_decay) g = g + s.weight_decay * p;
  return g;
}

// torch's lerp(a, b, w) = a + w (b - a), computed as b - (b - a)(1 - w) when w >= 0.5.
template <class V>
struct Lerp {
  V w, one_minus_w;
  bool low;  // w < 0.5
};

template <class V, class C>
FASTDL_HD Lerp<V> lerp_weight(double w) { return {V(C(w)), V(C(1.0 - w)), w < 0.5}; }

template <class V>
FASTDL_HD V lerp(V a, V b, const Lerp<V>& l) { return l.low ? a + l.w * (b - a) : b - (b - a) * l.one_minus_w; }

// max(a, b) that is NaN when either is (torch.maximum / amax propagate NaN).
template <class V>
FASTDL_HD V max_nan(V a, V b) {
  V m = where(a < b, b, a);  // a when a is NaN
  return where(b == b, m, b);
}

// sign(x): 1, -1, x itself for zeros and NaN (sign(0) = 0, sign(NaN) = NaN).
template <class V>
FASTDL_HD V sign_of(V x) {
  return where(x > V(0), V(1), where(x < V(0), V(-1), x));
}

// Per-tensor scalars for the rules that have none.
template <class C>
struct NoTensorScalars {};

template <class T>
using StateSlot = T* const* TensorList<T>::*;

// ---- RMSprop ---------------------------------------------------------------------------------------
// g <- prepare_grad(g)
// sa <- alpha sa + (1 - alpha) g^2                          (sa.mul_(alpha).addcmul_(g, g, value=1-alpha))
// centered:  ga <- lerp(ga, g, 1 - alpha);  d2 = sa - ga^2   else  d2 = sa
// d = sqrt(d2) + eps           (eps_inside_sqrt, Keras:  d = sqrt(d2 + eps))
// momentum mu > 0:  b <- mu b + g / d;  p <- p - lr b     (lr_in_momentum, Keras:  b <- mu b + lr g / d;  p <- p - b)
// else:             p <- p - lr g / d                      (addcdiv: p + (-lr g) / d)
template <class V>
struct RmspropScalars {
  GradPrep<V> grad;
  V alpha, one_minus_alpha, eps, momentum, lr, neg_lr;
  Lerp<V> avg;
  bool centered, has_momentum, eps_inside_sqrt, lr_in_momentum;
};

struct RmspropRule {
  using Options = RmspropOptions;
  template <class V>
  using Scalars = RmspropScalars<V>;
  template <class C>
  using Tensor = NoTensorScalars<C>;
  static constexpr int kStates = 3;
  template <class T>
  static constexpr StateSlot<T> slot(int j) {
    return j == 0 ? &TensorList<T>::square_avg : j == 1 ? &TensorList<T>::momentum_buffer : &TensorList<T>::grad_avg;
  }
  static constexpr const char* state_names[kStates] = {"square_avgs", "momentum_buffers", "grad_avgs"};
  static bool uses(const Options& o, int j) { return j == 0 || (j == 1 ? o.momentum != 0.0 : o.centered); }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    return {grad_prep<V, C>(o.clip_coef, o.maximize, o.weight_decay),
            V(C(o.alpha)), V(C(1.0 - o.alpha)), V(C(o.eps)), V(C(o.momentum)), V(C(o.lr)), V(C(-o.lr)),
            lerp_weight<V, C>(1.0 - o.alpha), o.centered, o.momentum != 0.0, o.eps_inside_sqrt, o.lr_in_momentum};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options&, int64_t, double) { return {}; }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>&, const Tensor<C>&) {}

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& sa = st[0];
    V& buf = st[1];
    V& ga = st[2];
    g = prepare_grad(g, p, s.grad);
    sa = sa * s.alpha + s.one_minus_alpha * g * g;
    V d2 = sa;
    if (s.centered) {
      ga = lerp(ga, g, s.avg);
      d2 = sa - ga * ga;
    }
    const V d = s.eps_inside_sqrt ? sqrt(d2 + s.eps) : sqrt(d2) + s.eps;
    if (!s.has_momentum) {
      p = p + (s.neg_lr * g) / d;
    } else if (s.lr_in_momentum) {
      buf = buf * s.momentum + (s.lr * g) / d;
      p = p - buf;
    } else {
      buf = buf * s.momentum + g / d;
      p = p + s.neg_lr * buf;
    }
  }
};

// ---- Adagrad ---------------------------------------------------------------------------------------
// g <- prepare_grad(g);  clr = lr / (1 + (step - 1) lr_decay)  (per tensor)
// sum <- sum + g^2;  std = sqrt(sum) + eps  (eps_inside_sqrt, Keras: sqrt(sum + eps));  p <- p + (-clr g) / std
template <class V>
struct AdagradScalars {
  GradPrep<V> grad;
  V eps, neg_clr;  // neg_clr: per tensor
  bool eps_inside_sqrt;
};

template <class C>
struct AdagradTensorScalars {
  C neg_clr;
};

struct AdagradRule {
  using Options = AdagradOptions;
  template <class V>
  using Scalars = AdagradScalars<V>;
  template <class C>
  using Tensor = AdagradTensorScalars<C>;
  static constexpr int kStates = 1;
  template <class T>
  static constexpr StateSlot<T> slot(int) { return &TensorList<T>::sum; }
  static constexpr const char* state_names[kStates] = {"sums"};
  static bool uses(const Options&, int) { return true; }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    return {grad_prep<V, C>(o.clip_coef, o.maximize, o.weight_decay), V(C(o.eps)), V(C(0)), o.eps_inside_sqrt};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options& o, int64_t step, double) {
    const double clr = o.lr / (1.0 + (double)(step - 1) * o.lr_decay);
    return {C(-clr)};
  }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>& s, const Tensor<C>& t) { s.neg_clr = V(t.neg_clr); }

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& sum = st[0];
    g = prepare_grad(g, p, s.grad);
    sum = sum + g * g;
    const V std = s.eps_inside_sqrt ? sqrt(sum + s.eps) : sqrt(sum) + s.eps;
    p = p + (s.neg_clr * g) / std;
  }
};

// ---- Adadelta --------------------------------------------------------------------------------------
// g <- prepare_grad(g)
// sa <- rho sa + (1 - rho) g^2;  std = sqrt(sa + eps);  delta = sqrt(acc + eps) / std * g
// acc <- rho acc + (1 - rho) delta^2;  p <- p - lr delta
template <class V>
struct AdadeltaScalars {
  GradPrep<V> grad;
  V rho, one_minus_rho, eps, neg_lr;
};

struct AdadeltaRule {
  using Options = AdadeltaOptions;
  template <class V>
  using Scalars = AdadeltaScalars<V>;
  template <class C>
  using Tensor = NoTensorScalars<C>;
  static constexpr int kStates = 2;
  template <class T>
  static constexpr StateSlot<T> slot(int j) { return j == 0 ? &TensorList<T>::square_avg : &TensorList<T>::acc_delta; }
  static constexpr const char* state_names[kStates] = {"square_avgs", "acc_deltas"};
  static bool uses(const Options&, int) { return true; }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    return {grad_prep<V, C>(o.clip_coef, o.maximize, o.weight_decay), V(C(o.rho)), V(C(1.0 - o.rho)), V(C(o.eps)),
            V(C(-o.lr))};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options&, int64_t, double) { return {}; }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>&, const Tensor<C>&) {}

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& sa = st[0];
    V& acc = st[1];
    g = prepare_grad(g, p, s.grad);
    sa = sa * s.rho + s.one_minus_rho * g * g;
    const V std = sqrt(sa + s.eps);
    const V delta = sqrt(acc + s.eps) / std * g;
    acc = acc * s.rho + s.one_minus_rho * delta * delta;
    p = p + s.neg_lr * delta;
  }
};

// ---- Adamax ----------------------------------------------------------------------------------------
// g <- prepare_grad(g);  m <- lerp(m, g, 1 - beta1)
// u <- max(beta2 u, |g| + eps);  p <- p + (-clr m) / u              clr = lr / (1 - beta1^step)  (per tensor)
// eps_outside_max (Keras):  u <- max(beta2 u, |g|);  p <- p + (-clr m) / (u + eps)
// max propagates NaN (torch.maximum): a NaN gradient makes u and p NaN.
template <class V>
struct AdamaxScalars {
  GradPrep<V> grad;
  Lerp<V> avg;
  V beta2, eps, neg_clr;  // neg_clr: per tensor
  bool eps_outside_max;
};

template <class C>
struct AdamaxTensorScalars {
  C neg_clr;
};

struct AdamaxRule {
  using Options = AdamaxOptions;
  template <class V>
  using Scalars = AdamaxScalars<V>;
  template <class C>
  using Tensor = AdamaxTensorScalars<C>;
  static constexpr int kStates = 2;
  template <class T>
  static constexpr StateSlot<T> slot(int j) { return j == 0 ? &TensorList<T>::exp_avg : &TensorList<T>::exp_inf; }
  static constexpr const char* state_names[kStates] = {"exp_avgs", "exp_infs"};
  static bool uses(const Options&, int) { return true; }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    return {grad_prep<V, C>(o.clip_coef, o.maximize, o.weight_decay), lerp_weight<V, C>(1.0 - o.beta1),
            V(C(o.beta2)), V(C(o.eps)), V(C(0)), o.eps_outside_max};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options& o, int64_t step, double) {
    const double clr = o.lr / (1.0 - ::pow(o.beta1, (double)step));
    return {C(-clr)};
  }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>& s, const Tensor<C>& t) { s.neg_clr = V(t.neg_clr); }

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& m = st[0];
    V& u = st[1];
    g = prepare_grad(g, p, s.grad);
    m = lerp(m, g, s.avg);
    if (s.eps_outside_max) {
      u = max_nan(u * s.beta2, abs(g));
      p = p + (s.neg_clr * m) / (u + s.eps);
    } else {
      u = max_nan(u * s.beta2, abs(g) + s.eps);
      p = p + (s.neg_clr * m) / u;
    }
  }
};

// ---- NAdam / NAdamW --------------------------------------------------------------------------------
// g <- clip, maximize;  decoupled: p <- p (1 - lr wd)  else  g <- g + wd p
// per tensor, in double from its step t and mu_product (mu_1 ... mu_t, kept by the caller):
//   mu_t = beta1 (1 - 0.5 * 0.96^(t momentum_decay)),  mu_next = beta1 (1 - 0.5 * 0.96^((t + 1) momentum_decay))
//   bc2 = 1 - beta2^t,  coef_g = -lr (1 - mu_t) / (1 - mu_product),  coef_m = (-lr mu_next) / (1 - mu_product mu_next)
// m <- lerp(m, g, 1 - beta1);  v <- beta2 v + (1 - beta2) g^2;  denom = sqrt(v / bc2) + eps
// p <- p + (coef_g g) / denom;  p <- p + (coef_m m) / denom        (torch's two addcdivs, in its order)
template <class V>
struct NadamScalars {
  GradPrep<V> grad;
  Lerp<V> avg;
  V beta2, one_minus_beta2, eps, decay_factor;
  V bc2, coef_g, coef_m;  // per tensor
  bool decoupled_decay;
};

template <class C>
struct NadamTensorScalars {
  C bc2, coef_g, coef_m;
};

struct NadamRule {
  using Options = NadamOptions;
  template <class V>
  using Scalars = NadamScalars<V>;
  template <class C>
  using Tensor = NadamTensorScalars<C>;
  static constexpr int kStates = 2;
  template <class T>
  static constexpr StateSlot<T> slot(int j) { return j == 0 ? &TensorList<T>::exp_avg : &TensorList<T>::exp_avg_sq; }
  static constexpr const char* state_names[kStates] = {"exp_avgs", "exp_avg_sqs"};
  static bool uses(const Options&, int) { return true; }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    const bool decoupled = o.decoupled && o.weight_decay != 0.0;
    return {grad_prep<V, C>(o.clip_coef, o.maximize, o.decoupled ? 0.0 : o.weight_decay),
            lerp_weight<V, C>(1.0 - o.beta1), V(C(o.beta2)), V(C(1.0 - o.beta2)), V(C(o.eps)),
            V(C(1.0 - o.lr * o.weight_decay)), V(C(1)), V(C(0)), V(C(0)), decoupled};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options& o, int64_t step, double mu_product) {
    const double t = (double)step;
    const double mu = o.beta1 * (1.0 - 0.5 * ::pow(0.96, t * o.momentum_decay));
    const double mu_next = o.beta1 * (1.0 - 0.5 * ::pow(0.96, (t + 1.0) * o.momentum_decay));
    const double bc2 = 1.0 - ::pow(o.beta2, t);
    return {C(bc2), C(-o.lr * (1.0 - mu) / (1.0 - mu_product)), C((-o.lr * mu_next) / (1.0 - mu_product * mu_next))};
  }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>& s, const Tensor<C>& t) {
    s.bc2 = V(t.bc2);
    s.coef_g = V(t.coef_g);
    s.coef_m = V(t.coef_m);
  }

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& m = st[0];
    V& v = st[1];
    g = prepare_grad(g, p, s.grad);
    if (s.decoupled_decay) p = p * s.decay_factor;
    m = lerp(m, g, s.avg);
    v = v * s.beta2 + s.one_minus_beta2 * g * g;
    const V denom = sqrt(v / s.bc2) + s.eps;
    p = p + (s.coef_g * g) / denom;
    p = p + (s.coef_m * m) / denom;
  }
};

// ---- Lion ------------------------------------------------------------------------------------------
// g <- clip, maximize;  p <- p (1 - lr wd) when wd != 0
// c = lerp(m, g, 1 - beta1);  p <- p + (-lr) sign(c);  m <- lerp(m, g, 1 - beta2)
template <class V>
struct LionScalars {
  GradPrep<V> grad;
  Lerp<V> update_avg, momentum_avg;
  V neg_lr, decay_factor;
  bool has_weight_decay;
};

struct LionRule {
  using Options = LionOptions;
  template <class V>
  using Scalars = LionScalars<V>;
  template <class C>
  using Tensor = NoTensorScalars<C>;
  static constexpr int kStates = 1;
  template <class T>
  static constexpr StateSlot<T> slot(int) { return &TensorList<T>::exp_avg; }
  static constexpr const char* state_names[kStates] = {"exp_avgs"};
  static bool uses(const Options&, int) { return true; }

  template <class V, class C>
  FASTDL_HD static Scalars<V> scalars(const Options& o) {
    return {grad_prep<V, C>(o.clip_coef, o.maximize, 0.0), lerp_weight<V, C>(1.0 - o.beta1),
            lerp_weight<V, C>(1.0 - o.beta2), V(C(-o.lr)), V(C(1.0 - o.lr * o.weight_decay)), o.weight_decay != 0.0};
  }
  template <class C>
  FASTDL_HD static Tensor<C> tensor(const Options&, int64_t, double) { return {}; }
  template <class V, class C>
  FASTDL_HD static void set_tensor(Scalars<V>&, const Tensor<C>&) {}

  template <class V>
  FASTDL_HD static void update(V& p, V g, V (&st)[kStates], const Scalars<V>& s) {
    V& m = st[0];
    g = prepare_grad(g, p, s.grad);
    if (s.has_weight_decay) p = p * s.decay_factor;
    const V c = lerp(m, g, s.update_avg);
    p = p + s.neg_lr * sign_of(c);
    m = lerp(m, g, s.momentum_avg);
  }
};

}  // namespace kernels
}  // namespace fastdl
