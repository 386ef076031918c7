// Fused loss loops: one pass computes each term's value and gradient, writes the gradient
// (scaled for the mean) and sums the values. Formulas: csrc/kernels/losses.h.
// Included inside the per-ISA namespace.
#pragma once

// mean_i l(p_i, t_i) and grad_i = dl/dp_i / n; NaN for n = 0.
template <class T, class Term>
FASTDL_VI double elementwise_loss(Term term, const T* p, const T* t, T* grad, int64_t n) {
  if (n == 0) return __builtin_nan("");
  constexpr int64_t W = Vec<T>::lanes;
  const Vec<T> scale(T(1.0 / (double)n));
  double total = deterministic_sum(n, kGrainTranscendental, [&](int64_t b, int64_t e) {
    LaneSum<T> acc;
    Vec<T> dl;
    int64_t i = b;
    for (; i + W <= e; i += W) {
      acc.add(term(Vec<T>::load(p + i), Vec<T>::load(t + i), dl));
      (dl * scale).store(grad + i);
    }
    if (i < e) {
      Vec<T> l = term(Vec<T>::load_partial(p + i, e - i, T(0.5)), Vec<T>::load_partial(t + i, e - i, T(0.5)), dl);
      acc.add(where(first_lanes<T>(e - i), l, Vec<T>(T(0))));
      (dl * scale).store_partial(grad + i, e - i);
    }
    return acc.sum();
  });
  return total / (double)n;
}

template <class T>
double mse(const T* p, const T* t, T* grad, int64_t n) {
  return elementwise_loss(kernels::MseTerm{}, p, t, grad, n);
}

template <class T>
double loss_term(int op, double a, double b, const T* p, const T* t, T* grad, int64_t n) {
  return kernels::visit_loss_term<T>(op, a, b, [&](auto term) { return elementwise_loss(term, p, t, grad, n); });
}

template <class T>
double bce(const T* p, const T* t, T* grad, int64_t n, bool from_logits) {
  if (from_logits) return elementwise_loss(kernels::BceLogitTerm{}, p, t, grad, n);
  return elementwise_loss(kernels::BceProbTerm{}, p, t, grad, n);
}

// Softmax cross-entropy, one fused pass per row over the logits: (1) max (and the sums the
// target needs), (2) e = exp(x - max) while summing it, into a stack buffer (or the gradient row
// when the row is long or the output small), (3) the gradient from e. No probabilities are
// materialised beyond the gradient output, and a large gradient is written with streaming stores.
// Labels: Label = int64_t class ids (validated by the caller; a negative id marks a row to ignore:
// its loss is 0 and its gradient row 0), or T for a (rows, cols) probability target.
// Returns sum_r loss_r / denom and writes dloss/dx / denom (denom: the rows for a mean, the rows
// not ignored for torch's mean with ignore_index, 1 for a sum); row_loss[r] = loss_r when given.
template <class T, class Label>
double softmax_ce(const T* x, const Label* target, T* g, int64_t rows, int64_t cols, double smoothing, double denom,
                  double* row_loss) {
  if (rows == 0) return denom != 0.0 ? 0.0 : __builtin_nan("");  // a sum over no rows is 0, a mean NaN
  constexpr bool probs = std::is_same<Label, T>::value;
  const double eps = smoothing, C = (double)cols, R = denom;
  const bool stream = should_stream<T>(rows * cols, g == x || (const void*)g == (const void*)target);
  const bool staged = stream && cols * (int64_t)sizeof(T) <= kRowScratchBytes;
  int64_t grain = kGrainTranscendental / (cols > 0 ? cols : 1);
  double total = deterministic_sum(rows, grain > 0 ? grain : 1, [&](int64_t b, int64_t e) {
    double part = 0.0;
    alignas(64) T scratch[kRowScratchBytes / sizeof(T)];
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * cols;
      T* gr = g + r * cols;
      if constexpr (!probs) {
        if (target[r] < 0) {  // ignored
          memset(gr, 0, (size_t)cols * sizeof(T));
          if (row_loss) row_loss[r] = 0.0;
          continue;
        }
      }
      T* er = staged ? scratch : gr;
      T m = row_max(xr, cols);
      double sum_x = eps != 0.0 ? row_dot(xr, (const T*)nullptr, cols) : 0.0;
      kernels::CeRowTarget<double> q;
      if constexpr (probs) {
        const T* tr = (const T*)target + r * cols;
        q = kernels::ce_prob_target<double>(row_dot(tr, (const T*)nullptr, cols), row_dot(tr, xr, cols), sum_x, eps, C);
      } else {
        q = kernels::ce_label_target<double>((double)xr[target[r]], sum_x, eps, C);
      }
      const bool more = r + 1 < e;
      double s = row_sum_exp(xr, m, er, cols, more ? xr + cols : nullptr, more && !staged ? gr + cols : nullptr);
      const double loss_r = kernels::softmax_ce_row_loss<double>(m, s, q);
      if (row_loss) row_loss[r] = loss_r;
      part += loss_r;
      const kernels::CeGradFactors<double> f = kernels::ce_grad_factors<double>(s, q, eps, C, R);
      const Vec<T> a(T(f.a)), uniform(T(f.uniform));
      if constexpr (probs) {
        const T* tr = (const T*)target + r * cols;
        const Vec<T> one_minus_eps(T(f.one_minus_eps));
        row_map([&](Vec<T> ev, Vec<T> tv) {
          return kernels::softmax_ce_grad(ev, a, kernels::smoothed_target(tv, one_minus_eps, uniform));
        }, gr, cols, staged, (const T*)er, tr);
      } else {
        // The label's class also has q = (1 - eps) / rows: folded into its e as e - (1 - eps) s
        // (then e a - uniform is its gradient, since qsum = 1), so that the row is written in one
        // pass and a streamed row is never read back.
        er[target[r]] = T((double)er[target[r]] - (1.0 - eps) * s);
        row_map([&](Vec<T> ev) { return kernels::softmax_ce_grad(ev, a, uniform); }, gr, cols, staged, (const T*)er);
      }
    }
    return part;
  });
  return total / R;
}
