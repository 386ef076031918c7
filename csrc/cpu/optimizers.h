// Multi-tensor optimizer steps: all tensors of a step in one call, the total element count
// split evenly across threads whatever the tensor sizes (a thread's range may cover the tail
// of one tensor, many small ones, and the head of the next). Formulas: csrc/kernels/optimizers.h.
// Included inside the per-ISA namespace.
#pragma once

// f(k, begin, end) for every piece of tensor k inside this thread's share of the total.
template <class T, class F>
FASTDL_VI void for_each_piece(const TensorList<T>& L, F f) {
  const int64_t* off = L.offsets;
  parallel_ranges(off[L.count], kGrainCheap, 16, [&](int64_t b, int64_t e) {
    int64_t lo = 0, hi = L.count;  // first tensor k with off[k + 1] > b
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (off[mid + 1] > b) hi = mid; else lo = mid + 1;
    }
    for (int64_t k = lo; k < L.count && off[k] < e; ++k) {
      int64_t pb = b > off[k] ? b - off[k] : 0;
      int64_t pe = (e < off[k + 1] ? e : off[k + 1]) - off[k];
      if (pe > pb) f(k, pb, pe);
    }
  });
}

// Loads the tensors' elements [i, i + n) (n < lanes: a partial vector), applies update, stores back.
template <class T>
struct Lanes {
  int64_t i, n;
  FASTDL_VI Vec<T> load(const T* p) const { return n == Vec<T>::lanes ? Vec<T>::load(p + i) : Vec<T>::load_partial(p + i, n, T(0)); }
  FASTDL_VI void store(Vec<T> v, T* p) const { if (n == Vec<T>::lanes) v.store(p + i); else v.store_partial(p + i, n); }
};

template <class T, class F>
FASTDL_VI void for_each_vector(int64_t b, int64_t e, F f) {
  constexpr int64_t W = Vec<T>::lanes;
  int64_t i = b;
  for (; i + W <= e; i += W) f(Lanes<T>{i, W});
  if (i < e) f(Lanes<T>{i, e - i});
}

// Sum of squares of every gradient element. Blocks of the global index space have sizes that
// depend only on the total, so the result does not depend on the thread count.
template <class T>
double grad_sum_squares(const TensorList<T>& L) {
  constexpr int64_t W = Vec<T>::lanes;
  const int64_t* off = L.offsets;
  return deterministic_sum(off[L.count], kGrainCheap, [&](int64_t b, int64_t e) {
    LaneSum<T> acc;
    int64_t k = 0;
    while (off[k + 1] <= b) ++k;
    for (; k < L.count && off[k] < e; ++k) {
      const T* g = L.grads[k];
      int64_t i = (b > off[k] ? b : off[k]) - off[k], end = (e < off[k + 1] ? e : off[k + 1]) - off[k];
      for (; i + W <= end; i += W) {
        Vec<T> v = Vec<T>::load(g + i);
        acc.add(v * v);
      }
      if (i < end) {
        Vec<T> v = Vec<T>::load_partial(g + i, end - i, T(0));
        acc.add(v * v);
      }
    }
    return acc.sum();
  });
}

template <class T>
void sgd(const TensorList<T>& L, const SgdOptions& o) {
  typedef Vec<T> V;
  const kernels::SgdScalars<V> s = kernels::sgd_scalars<V, T>(o);
  for_each_piece(L, [&](int64_t k, int64_t b, int64_t e) {
    T* p = L.params[k];
    const T* g = L.grads[k];
    T* buf = s.has_momentum ? L.momentum_buffer[k] : nullptr;
    const bool first = L.steps[k] == 1;
    for_each_vector<T>(b, e, [&](Lanes<T> at) {
      V pv = at.load(p), bv = buf ? at.load(buf) : V(T(0));
      kernels::sgd_update(pv, at.load(g), bv, first, s);
      at.store(pv, p);
      if (buf) at.store(bv, buf);
    });
  });
}

template <class T>
void adam(const TensorList<T>& L, const AdamOptions& o) {
  typedef Vec<T> V;
  const kernels::AdamScalars<V> base = kernels::adam_scalars<V, T>(o);
  for_each_piece(L, [&](int64_t k, int64_t b, int64_t e) {
    kernels::AdamScalars<V> s = base;
    kernels::set_adam_tensor<V, T>(s, kernels::adam_tensor_scalars(o.lr, o.beta1, o.beta2, L.steps[k]));
    T *p = L.params[k], *m = L.exp_avg[k], *v = L.exp_avg_sq[k], *vmax = o.amsgrad ? L.max_exp_avg_sq[k] : nullptr;
    const T* g = L.grads[k];
    for_each_vector<T>(b, e, [&](Lanes<T> at) {
      V pv = at.load(p), mv = at.load(m), vv = at.load(v), vmaxv = vmax ? at.load(vmax) : V(T(0));
      kernels::adam_update(pv, at.load(g), mv, vv, vmaxv, s);
      at.store(pv, p);
      at.store(mv, m);
      at.store(vv, v);
      if (vmax) at.store(vmaxv, vmax);
    });
  });
}
