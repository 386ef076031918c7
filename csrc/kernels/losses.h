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
//   loss = sum_c q_c (lse - x_c) = qsum lse - sum_c q_c x_c
//   dloss/dx_c = qsum exp(x_c - lse) - q_c = e_c qsum / s - q_c,   e_c = exp(x_c - m)
// Label smoothing eps mixes the target with the uniform one: q = (1 - eps) t + eps / C,
// so qsum = (1 - eps) sum t + eps. With an integer label y, t is one-hot at y.
template <class S>
FASTDL_HD S softmax_ce_row_loss(S m, S s, S qsum, S qx) { return qsum * (m + log(s)) - qx; }

template <class V>
FASTDL_HD V softmax_ce_grad(V e, V qsum_over_s, V q) { return e * qsum_over_s - q; }

// Smoothed target q_c = (1 - eps) t_c + eps / C.
template <class V>
FASTDL_HD V smoothed_target(V t, V one_minus_eps, V eps_over_c) { return one_minus_eps * t + eps_over_c; }

}  // namespace kernels
}  // namespace fastdl
