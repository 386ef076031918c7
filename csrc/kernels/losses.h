// Loss functions: per-element (or per-row) value and gradient, the one place their formulas live.
// The loops (csrc/cpu/losses.h, later CUDA) sum the values and scale the gradients by
// 1/n for the batch mean; nothing here knows about batches or threads.
#pragma once

#include "activations.h"
#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// Mean squared error term: l = (p - t)^2,  dl/dp = 2 (p - t).
struct MseTerm {
  template <class V> FASTDL_HD V operator()(V p, V t, V& dldp) const {
    V d = p - t;
    dldp = V(2) * d;
    return d * d;
  }
};

// Binary cross-entropy on probabilities, Keras's definition: p is clipped to [eps, 1 - eps],
// eps = 1e-7, so the loss is finite at p = 0 and p = 1.
//   l = -(t log pc + (1 - t) log(1 - pc)),  pc = clip(p)
//   dl/dp = (pc - t) / (pc (1 - pc)) inside the clip range, 0 outside (the clip is flat there).
struct BceProbTerm {
  template <class V> FASTDL_HD V operator()(V p, V t, V& dldp) const {
    const V lo(1e-7), hi(1 - 1e-7);
    V pc = where(p < lo, lo, where(p > hi, hi, p));
    dldp = where(p < lo, V(0), where(p > hi, V(0), (pc - t) / (pc * (V(1) - pc))));
    return -(t * log(pc) + (V(1) - t) * log(V(1) - pc));
  }
};

// Binary cross-entropy on logits z, stable for any finite z:
//   l = max(z, 0) - z t + log(1 + exp(-|z|)),  dl/dz = sigma(z) - t.
struct BceLogitTerm {
  template <class V> FASTDL_HD V operator()(V z, V t, V& dldz) const {
    dldz = sigmoid_of(z) - t;
    return where(z > V(0), z, V(0)) - z * t + log1p(exp(-abs(z)));
  }
};

// Softmax cross-entropy of one row x (C classes) against a target distribution q, written
// from the row's max m and s = sum_c exp(x_c - m), so nothing overflows for any finite x:
//   lse = m + log s
//   loss = sum_c q_c (lse - x_c) = qsum lse - qx,      qx = sum_c q_c x_c
//   dloss/dx_c = qsum exp(x_c - lse) - q_c = e_c qsum / s - q_c,   e_c = exp(x_c - m)
// Label smoothing eps mixes the target with the uniform one: q = (1 - eps) t + eps / C,
// so qsum = (1 - eps) sum t + eps. With an integer label y, t is one-hot at y.
// The batch mean divides loss and gradient by the row count: the loops fold 1/rows into the
// gradient's factors (ce_grad_factors).
//
// The row reductions each target needs (the loops compute them, in the accumulator type S):
//   class id y:       x_y and, with eps > 0, sum_c x_c
//   probabilities t:  sum_c t_c, sum_c t_c x_c and, with eps > 0, sum_c x_c
template <class S>
struct CeRowTarget {
  S qsum, qx;
};

template <class S>
FASTDL_HD CeRowTarget<S> ce_label_target(S x_label, S sum_x, S eps, S cols) {
  return {S(1), (S(1) - eps) * x_label + eps / cols * sum_x};
}

template <class S>
FASTDL_HD CeRowTarget<S> ce_prob_target(S sum_t, S dot_tx, S sum_x, S eps, S cols) {
  return {(S(1) - eps) * sum_t + eps, (S(1) - eps) * dot_tx + eps / cols * sum_x};
}

// The row's loss from its max m, its exp-sum s and the target sums.
template <class S>
FASTDL_HD S softmax_ce_row_loss(S m, S s, CeRowTarget<S> q) { return q.qsum * (m + log(s)) - q.qx; }

// The gradient's factors for one row, with the batch mean's 1/rows folded in:
//   grad_c = e_c a - (t_c one_minus_eps + uniform),  a = qsum / (s rows),
//   one_minus_eps = (1 - eps) / rows, uniform = eps / (C rows)   (t one-hot for a class id).
template <class S>
struct CeGradFactors {
  S a, one_minus_eps, uniform;
};

template <class S>
FASTDL_HD CeGradFactors<S> ce_grad_factors(S s, CeRowTarget<S> q, S eps, S cols, S rows) {
  return {q.qsum / (s * rows), (S(1) - eps) / rows, eps / (cols * rows)};
}

// Smoothed, mean-scaled target q_c / rows = t_c (1 - eps) / rows + eps / (C rows).
template <class V>
FASTDL_HD V smoothed_target(V t, V one_minus_eps, V uniform) { return one_minus_eps * t + uniform; }

// dloss/dx_c / rows = e_c a - q_c / rows.
template <class V>
FASTDL_HD V softmax_ce_grad(V e, V a, V q) { return e * a - q; }

}  // namespace kernels
}  // namespace fastdl
