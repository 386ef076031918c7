// Loss functions: per-element (or per-row) value and gradient, the one place their formulas live.
// The loops (csrc/cpu/losses.h, later CUDA) sum the values and scale the gradients by
// 1/n for the batch mean; nothing here knows about batches or threads.
#pragma once

#include "../common/loss_terms.h"
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

// ---- Keras's other elementwise losses (issue #11): value and dl/dp of one element ----------------
// A loss's batch value is the mean of its terms (Keras's per-sample mean over the last axis, then
// the mean over samples); kl_divergence sums over the last axis, its caller scales by the width.
constexpr double kLossEps = 1e-7;  // Keras's backend epsilon

struct MaeTerm {  // |p - t|,  sign(p - t) (0 at p = t)
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V e = p - t;
    d = where(e > V(0), V(1), where(e < V(0), V(-1), V(0)));
    return abs(e);
  }
};

struct MapeTerm {  // 100 |t - p| / max(|t|, eps)
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V e = p - t, den = where(abs(t) < V(kLossEps), V(kLossEps), abs(t));
    d = V(100) * where(e > V(0), V(1), where(e < V(0), V(-1), V(0))) / den;
    return V(100) * abs(e) / den;
  }
};

struct MsleTerm {  // (log(max(p, eps) + 1) - log(max(t, eps) + 1))^2
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V pc = where(p < V(kLossEps), V(kLossEps), p), tc = where(t < V(kLossEps), V(kLossEps), t);
    V diff = log(pc + V(1)) - log(tc + V(1));
    d = where(p < V(kLossEps), V(0), V(2) * diff / (pc + V(1)));
    return diff * diff;
  }
};

template <class S>
struct HuberTerm {  // e = p - t: e^2 / 2 for |e| <= delta, delta (|e| - delta / 2) beyond
  S delta;
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V e = p - t, a = abs(e), dl = V(delta);
    // where(), not masks times values: e^2 overflows beyond the quadratic zone, and 0 * inf is NaN
    d = where(a > dl, dl * where(e > V(0), V(1), V(-1)), e);
    return where(a > dl, dl * (a - V(0.5) * dl), V(0.5) * e * e);
  }
};

struct LogCoshTerm {  // log(cosh(x)) = x + softplus(-2x) - log 2, x = p - t;  d = tanh(x)
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V x = p - t;
    d = tanh(x);
    return x + softplus_of(V(-2) * x) - V(0.69314718055994530942);
  }
};

struct PoissonTerm {  // p - t log(p + eps);  d = 1 - t / (p + eps)
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    d = V(1) - t / (p + V(kLossEps));
    return p - t * log(p + V(kLossEps));
  }
};

struct HingeTerm {  // max(1 - t p, 0) with t in {-1, 1};  d = -t where 1 - t p > 0
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V m = V(1) - t * p;
    d = where(m > V(0), -t, V(0));
    return where(m > V(0), m, V(0));
  }
};

struct SquaredHingeTerm {  // max(1 - t p, 0)^2;  d = -2 t max(1 - t p, 0)
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V m = V(1) - t * p, h = where(m > V(0), m, V(0));
    d = V(-2) * t * h;
    return h * h;
  }
};

struct KlTerm {  // tc log(tc / pc), both clipped to [eps, 1];  d = -tc / pc inside the clip, 0 outside
  template <class V> FASTDL_HD V operator()(V p, V t, V& d) const {
    V pc = where(p < V(kLossEps), V(kLossEps), where(p > V(1), V(1), p));
    V tc = where(t < V(kLossEps), V(kLossEps), where(t > V(1), V(1), t));
    d = where(p < V(kLossEps), V(0), where(p > V(1), V(0), -tc / pc));
    return tc * log(tc / pc);
  }
};

// Keras's binary focal cross-entropy on probabilities p (the sigmoid of the logits first when
// from_logits): bce(p) (p clipped as BceProbTerm) times (1 - p_t)^gamma, p_t = t p + (1 - t)(1 - p),
// times t alpha + (1 - t)(1 - alpha) with class balancing (alpha < 0: none).
//   d/dp = w ((1 - p_t)^gamma dbce/dp - gamma (1 - p_t)^(gamma - 1) (2t - 1) bce)
// and, from logits z, d/dz = d/dp p (1 - p).
template <class S>
struct BinaryFocalTerm {
  S alpha, gamma;
  bool from_logits;
  template <class V> FASTDL_HD V operator()(V x, V t, V& d) const {
    V p = from_logits ? sigmoid_of(x) : x;
    V dbce;
    V bce = BceProbTerm{}(p, t, dbce);
    V q = V(1) - (t * p + (V(1) - t) * (V(1) - p));  // 1 - p_t
    V factor = where(q > V(0), exp(V(gamma) * log(where(q > V(0), q, V(1)))), gamma == S(0) ? V(1) : V(0));
    V dfactor = where(q > V(0), V(gamma) * factor / where(q > V(0), q, V(1)), V(0)) * (V(1) - V(2) * t);
    V w = alpha < S(0) ? V(1) : t * V(alpha) + (V(1) - t) * V(1 - alpha);
    d = w * (factor * dbce + dfactor * bce);
    if (from_logits) d = d * p * (V(1) - p);
    return w * factor * bce;
  }
};

// Calls f(term) for loss id op with its parameters a, b (Huber: delta = a; focal: alpha = a
// (< 0: no class balancing), gamma = b). The ids: fastdl.backends.numpy_kernels.LOSS_TERMS.
template <class C, class F>
FASTDL_HD double visit_loss_term(int op, double a, double b, F f) {
  switch (op) {
    case 0: return f(MaeTerm{});
    case 1: return f(MapeTerm{});
    case 2: return f(MsleTerm{});
    case 3: return f(HuberTerm<C>{C(a)});
    case 4: return f(LogCoshTerm{});
    case 5: return f(PoissonTerm{});
    case 6: return f(HingeTerm{});
    case 7: return f(SquaredHingeTerm{});
    case 8: return f(KlTerm{});
    case 9: return f(BinaryFocalTerm<C>{C(a), C(b), false});
    case 10: return f(BinaryFocalTerm<C>{C(a), C(b), true});
    default: return f(MaeTerm{});  // not reached: the glue checks op < kLossTermCount
  }
}

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

// ---- Keras's categorical losses: one value per row (the last axis, C classes) ---------------------
// The loops reduce each row, compute the row's scalars here (in double), then write the gradient
// row. Each row's loss and gradient are multiplied by its factor f (RowLossOptions: scale times
// the row's weight).
//
// categorical_hinge(t, p): pos = sum_j t_j p_j, neg = max_j (1 - t_j) p_j, j* its first index
//   loss = max(neg - pos + 1, 0)
//   dloss/dp_j = -t_j + (1 - t_j) [j = j*]   where neg - pos + 1 > 0, else 0.
// A NaN margin (NaN in the row) gives a NaN loss and a zero gradient, as NumPy's maximum / where.
template <class V>
FASTDL_HD V hinge_masked(V p, V t) { return (V(1) - t) * p; }

template <class S>
FASTDL_HD S hinge_margin(S pos, S neg) { return neg - pos + S(1); }

template <class S>
FASTDL_HD S categorical_hinge_loss(S margin) { return margin < S(0) ? S(0) : margin; }

// The gradient of element j, f the row's factor (0 when the margin is not > 0).
template <class V>
FASTDL_HD V categorical_hinge_grad(V t, bool is_argmax, V f) {
  return is_argmax ? (V(1) - t - t) * f : -t * f;
}

// categorical_focal_crossentropy(t, x; alpha, gamma, from_logits, label_smoothing s), per row:
//   t'_c = t_c (1 - s) + s / C
//   q = softmax(x) (logits: from m = max x, e = exp(x - m), S = sum e) or x / sum(x)
//   qc = clip(q, eps, 1 - eps), eps = 1e-7;  loss = sum_c alpha (1 - qc_c)^gamma (-t'_c log qc_c)
// Element c's term l_c and its derivative in q_c (0 where the clip is flat: q <= eps or >= 1 - eps):
//   dl_c/dq_c = alpha (-gamma (1 - qc)^(gamma - 1) (-t' log qc) + (1 - qc)^gamma (-t' / qc))
// ((1 - qc) >= eps > 0, so every power is finite, also for gamma < 1). Through the normalisation,
// with inner = sum_c q_c dl_c/dq_c:
//   logits:         dloss/dx_c = q_c (dl_c/dq_c - inner)
//   probabilities:  dloss/dx_c = (dl_c/dq_c - inner) / sum(x)
template <class S>
struct FocalRowTerm {
  S alpha, gamma, keep, uniform;  // keep = 1 - s, uniform = s / C

  template <class V> FASTDL_HD V target(V t) const { return t * V(keep) + V(uniform); }

  // q: the row's probability (not clipped), ts: the smoothed target. Returns l_c; dq = dl_c/dq_c.
  template <class V> FASTDL_HD V operator()(V q, V ts, V& dq) const {
    const V lo(kLossEps), hi(S(1) - S(kLossEps));
    V qc = where(q < lo, lo, where(hi < q, hi, q));
    V rest = V(1) - qc;
    V ce = -ts * log(qc);
    V mod = gamma == S(0) ? V(1) : gamma == S(1) ? rest : gamma == S(2) ? rest * rest : exp(V(gamma) * log(rest));
    V d = V(alpha) * (gamma == S(0) ? -ts / qc : -V(gamma) * (mod / rest) * ce - mod * ts / qc);
    dq = where(lo < q, where(q < hi, d, V(0)), V(0));
    return V(alpha) * mod * ce;
  }
};

template <class S>
FASTDL_HD FocalRowTerm<S> focal_row_term(double alpha, double gamma, double smoothing, int64_t cols) {
  return {S(alpha), S(gamma), S(1.0 - smoothing), S(smoothing / (double)cols)};
}

// The gradient of element c from dl_c/dq_c, f the row's factor: from logits (q the softmax),
// or from probabilities (f_total = f / sum(x)).
template <class V>
FASTDL_HD V focal_grad_logits(V q, V dq, V inner, V f) { return q * (dq - inner) * f; }
template <class V>
FASTDL_HD V focal_grad_probs(V dq, V inner, V f_total) { return (dq - inner) * f_total; }

}  // namespace kernels
}  // namespace fastdl
