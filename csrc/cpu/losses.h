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

// ---- Keras's categorical losses, a value per row (formulas: csrc/kernels/losses.h) ---------------
// Threads over rows, SIMD inside each row. Row r's loss and gradient are multiplied by
// f_r = o.scale * weights[r] (weights null: o.scale); returns sum_r f_r loss_r (in a fixed order:
// the same bits whatever the thread count) and writes row_losses[r] = loss_r when it is not null.
// grad must not overlap pred or target (the caller copies an input that does).

// categorical_hinge of one row: (1) pos = sum t p and neg = max (1 - t) p, (2) the first index of
// neg (a vector compare per chunk, lanes only in the chunk that holds it), (3) the gradient row.
template <class T>
FASTDL_VI double categorical_hinge_row(const T* p, const T* t, T* g, int64_t n, double f) {
  constexpr int64_t W = Vec<T>::lanes;
  const T ninf = -__builtin_inf();
  LaneSum<T> pos;
  Vec<T> mx(ninf);
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    const Vec<T> pv = Vec<T>::load(p + i), tv = Vec<T>::load(t + i);
    pos.add(tv * pv);
    mx = max(mx, kernels::hinge_masked(pv, tv));
  }
  if (i < n) {
    const Vec<T> pv = Vec<T>::load_partial(p + i, n - i, T(0)), tv = Vec<T>::load_partial(t + i, n - i, T(0));
    pos.add(tv * pv);
    mx = max(mx, where(first_lanes<T>(n - i), kernels::hinge_masked(pv, tv), Vec<T>(ninf)));
  }
  const T neg = reduce_max(mx);
  const double margin = kernels::hinge_margin<double>(pos.sum(), (double)neg);
  const double loss = kernels::categorical_hinge_loss(margin);
  if (!(margin > 0.0)) {  // also NaN: no gradient, as NumPy's where
    memset(g, 0, (size_t)n * sizeof(T));
    return loss;
  }
  int64_t j = -1;  // the first index of neg: whole chunks compared at once
  const Vec<T> vneg(neg), one(T(1)), zero(T(0));
  for (int64_t c = 0; c < n && j < 0; c += W) {
    const int64_t w = n - c < W ? n - c : W;
    // pad lanes hold NaN, equal to nothing
    const Vec<T> pv = Vec<T>::load_partial(p + c, w, T(__builtin_nan(""))), tv = Vec<T>::load_partial(t + c, w, T(0));
    const Vec<T> hit = where(kernels::hinge_masked(pv, tv) == vneg, one, zero);
    if (reduce_max(hit) > T(0))
      for (int64_t k = 0; k < w; ++k)
        if (hit[k] > T(0)) {
          j = c + k;
          break;
        }
  }
  const Vec<T> vf{T(f)};
  row_map([&](Vec<T> tv) { return kernels::categorical_hinge_grad(tv, false, vf); }, g, n, false, t);
  if (j >= 0) g[j] = kernels::categorical_hinge_grad(t[j], true, T(f));
  return loss;
}

// categorical_focal_crossentropy of one row: (1) max and exp-sum (logits; the exps kept in scratch
// when it is not null) or the sum, (2) each element's term and dl/dq (written to the gradient row)
// with the sums of the terms and of q dl/dq, (3) the gradient from dl/dq and q.
template <class T>
FASTDL_VI double categorical_focal_row(const T* x, const T* t, T* g, int64_t n, const kernels::FocalRowTerm<T>& term,
                                       bool logits, double f, T* scratch) {
  constexpr int64_t W = Vec<T>::lanes;
  const T pad = logits ? T(-__builtin_inf()) : T(0);  // q = 0 in the pad lanes
  T m = T(0);
  double inv;
  if (logits) {
    m = row_max(x, n);
    inv = 1.0 / row_sum_exp(x, m, scratch, n);
  } else {
    inv = 1.0 / row_dot(x, (const T*)nullptr, n);
  }
  const Vec<T> vm{m}, vinv{T(inv)};
  auto prob = [&](int64_t i, int64_t w) {  // q of elements [i, i + w), w <= W
    Vec<T> v = w == W ? Vec<T>::load(scratch && logits ? scratch + i : x + i)
                      : Vec<T>::load_partial(scratch && logits ? scratch + i : x + i, w, scratch && logits ? T(0) : pad);
    if (logits && !scratch) v = exp(v - vm);
    return v * vinv;
  };
  LaneSum<T> loss, inner;
  for (int64_t i = 0; i < n; i += W) {
    const int64_t w = n - i < W ? n - i : W;
    const Vec<T> q = prob(i, w);
    Vec<T> dq;
    const Vec<T> l = term(q, term.target(w == W ? Vec<T>::load(t + i) : Vec<T>::load_partial(t + i, w, T(0))), dq);
    if (w == W) {
      loss.add(l);
      dq.store(g + i);
    } else {
      loss.add(where(first_lanes<T>(w), l, Vec<T>(T(0))));
      dq.store_partial(g + i, w);
    }
    inner.add(dq * q);  // dq = 0 in the pad lanes (q = 0 is clipped)
  }
  const Vec<T> vinner{T(inner.sum())};
  if (logits) {
    const Vec<T> vf{T(f)};
    for (int64_t i = 0; i < n; i += W) {
      const int64_t w = n - i < W ? n - i : W;
      const Vec<T> q = prob(i, w);
      if (w == W) kernels::focal_grad_logits(q, Vec<T>::load(g + i), vinner, vf).store(g + i);
      else kernels::focal_grad_logits(q, Vec<T>::load_partial(g + i, w, T(0)), vinner, vf).store_partial(g + i, w);
    }
  } else {
    const Vec<T> vft{T(f * inv)};
    row_map([&](Vec<T> dq) { return kernels::focal_grad_probs(dq, vinner, vft); }, g, n, false, (const T*)g);
  }
  return loss.sum();
}

template <class T>
double row_loss(int op, const T* p, const T* t, T* g, int64_t rows, int64_t cols, const RowLossOptions& o,
                const double* weights, double* row_losses) {
  if (rows == 0 || cols == 0) return 0.0;
  const kernels::FocalRowTerm<T> focal = kernels::focal_row_term<T>(o.alpha, o.gamma, o.label_smoothing, cols);
  const bool staged = o.from_logits && cols * (int64_t)sizeof(T) <= kRowScratchBytes;
  int64_t grain = kGrainTranscendental / cols;
  return deterministic_sum(rows, grain > 0 ? grain : 1, [&](int64_t b, int64_t e) {
    alignas(64) T scratch[kRowScratchBytes / sizeof(T)];
    double part = 0.0;
    for (int64_t r = b; r < e; ++r) {
      const double f = weights ? o.scale * weights[r] : o.scale;
      const T *pr = p + r * cols, *tr = t + r * cols;
      T* gr = g + r * cols;
      const double loss_r = op == 0 ? categorical_hinge_row(pr, tr, gr, cols, f)
                                    : categorical_focal_row(pr, tr, gr, cols, focal, o.from_logits, f,
                                                            staged ? scratch : (T*)nullptr);
      if (row_losses) row_losses[r] = loss_r;
      part += f * loss_r;
    }
    return part;
  });
}
