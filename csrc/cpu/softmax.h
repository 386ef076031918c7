// Row-wise softmax and log-softmax over the last axis, forward and backward.
// Each row: a max pass, an exp-and-sum pass, a scaling pass; the row stays in L1/L2 between
// passes, so memory sees one read of x and one write of y. Included inside the per-ISA namespace.
#pragma once

template <class T>
FASTDL_VI T row_max(const T* x, int64_t n) {
  constexpr int64_t W = Vec<T>::lanes;
  Vec<T> m(-__builtin_inf());
  int64_t i = 0;
  for (; i + W <= n; i += W) m = max(m, Vec<T>::load(x + i));
  if (i < n) m = max(m, Vec<T>::load_partial(x + i, n - i, -__builtin_inf()));
  return reduce_max(m);
}

// sum_i exp(x_i - m); writes the exponentials to e when e is not null. While the exps are
// computed (this loop is compute-bound), the next row's lines are prefetched (next_x for reading,
// next_out for writing; either may be null), so that its memory traffic overlaps this row's math.
template <class T>
FASTDL_VI double row_sum_exp(const T* x, T m, T* e, int64_t n, const T* next_x = nullptr, T* next_out = nullptr) {
  constexpr int64_t W = Vec<T>::lanes;
  const Vec<T> vm(m);
  LaneSum<T> s;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    if (next_x) __builtin_prefetch(next_x + i, 0, 3);
    if (next_out) __builtin_prefetch(next_out + i, 1, 3);
    Vec<T> v = exp(Vec<T>::load(x + i) - vm);
    if (e) v.store(e + i);
    s.add(v);
  }
  if (i < n) {
    Vec<T> v = exp(Vec<T>::load_partial(x + i, n - i, -__builtin_inf()) - vm);  // pad lanes: exp(-inf) = 0
    if (e) v.store_partial(e + i, n - i);
    s.add(v);
  }
  return s.sum();
}

// sum_i a_i b_i (b null: sum_i a_i).
template <class T>
FASTDL_VI double row_dot(const T* a, const T* b, int64_t n) {
  constexpr int64_t W = Vec<T>::lanes;
  LaneSum<T> s;
  int64_t i = 0;
  for (; i + W <= n; i += W) s.add(b ? Vec<T>::load(a + i) * Vec<T>::load(b + i) : Vec<T>::load(a + i));
  if (i < n) {
    Vec<T> va = Vec<T>::load_partial(a + i, n - i, T(0));
    s.add(b ? va * Vec<T>::load_partial(b + i, n - i, T(0)) : va);
  }
  return s.sum();
}

// out = f(in0, in1, ...) over one row (no threads).
template <class T, class F, class... In>
FASTDL_VI void row_map(F f, T* out, int64_t n, bool stream, const In*... in) {
  map_range(f, out, 0, n, stream, in...);
}

// Rows up to this many bytes stage their exponentials in a stack buffer rather than in the
// output, so that a streamed output row is written once, with streaming stores, and never read.
constexpr int64_t kRowScratchBytes = 16384;

template <class F>
FASTDL_VI void parallel_rows(int64_t rows, int64_t cols, F body) {
  int64_t grain = kGrainTranscendental / (cols > 0 ? cols : 1);
  parallel_ranges(rows, grain > 0 ? grain : 1, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) body(r);
  });
}

// Formulas: csrc/kernels/softmax.h.
template <class T>
void softmax(const T* x, T* y, int64_t rows, int64_t cols, bool log) {
  if (cols == 0) return;
  const bool stream = should_stream<T>(rows * cols, x == y);
  const bool staged = stream && cols * (int64_t)sizeof(T) <= kRowScratchBytes;
  parallel_rows(rows, cols, [&](int64_t r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    T m = row_max(xr, cols);
    if (log) {
      const Vec<T> vm(m), vls(T(__builtin_log(row_sum_exp(xr, m, (T*)nullptr, cols))));
      row_map([&](Vec<T> v) { return kernels::log_softmax_value(v, vm, vls); }, yr, cols, stream, xr);
    } else {
      alignas(64) T scratch[kRowScratchBytes / sizeof(T)];
      T* e = staged ? scratch : yr;
      const Vec<T> inv(T(1.0 / row_sum_exp(xr, m, e, cols)));
      row_map([&](Vec<T> ev) { return kernels::softmax_from_exp(ev, inv); }, yr, cols, staged, (const T*)e);
    }
  });
}

template <class T>
void softmax_backward(const T* g, const T* y, T* out, int64_t rows, int64_t cols, bool log) {
  if (cols == 0) return;
  const bool stream = should_stream<T>(rows * cols, out == g || out == y);
  parallel_rows(rows, cols, [&](int64_t r) {
    const T* gr = g + r * cols;
    const T* yr = y + r * cols;
    T* outr = out + r * cols;
    if (log) {
      const Vec<T> sg(T(row_dot(gr, (const T*)nullptr, cols)));
      row_map([&](Vec<T> gv, Vec<T> yv) { return kernels::log_softmax_grad(gv, yv, sg); }, outr, cols, stream, gr, yr);
    } else {
      const Vec<T> dot(T(row_dot(gr, yr, cols)));
      row_map([&](Vec<T> gv, Vec<T> yv) { return kernels::softmax_grad(gv, yv, dot); }, outr, cols, stream, gr, yr);
    }
  });
}
