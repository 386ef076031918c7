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

// Access to the tensors' elements [i, i + n) (n < lanes: a partial vector) as one vector of the
// compute type: Lanes for float / double storage, HalfLanes for 16-bit storage (bfloat16, float16),
// widened to float on load and rounded once on store.
template <class T>
struct Lanes {
  typedef T storage;
  typedef T compute;
  int64_t i, n;
  FASTDL_VI Vec<T> load(const T* p) const { return n == Vec<T>::lanes ? Vec<T>::load(p + i) : Vec<T>::load_partial(p + i, n, T(0)); }
  FASTDL_VI void store(Vec<T> v, T* p) const { if (n == Vec<T>::lanes) v.store(p + i); else v.store_partial(p + i, n); }
};

// 16 bit <-> float for a whole vector (load / store) and for one value (widen / narrow, the tails).
// bfloat16 converts in registers: a widening shift, and a rounding add with a select for NaN.
typedef uint16_t half_part __attribute__((vector_size(kNativeBytes / 2)));
typedef uint16_t unaligned_half_part __attribute__((vector_size(kNativeBytes / 2), aligned(2), may_alias));
typedef uint32_t word_part __attribute__((vector_size(kNativeBytes)));

struct Bf16Bits {
  static FASTDL_VI float widen(uint16_t h) { return bf16_to_float(h); }
  static FASTDL_VI uint16_t narrow(float f) { return bf16_from_float(f); }
  static FASTDL_VI Vec<float> load(const uint16_t* src) {
    Vec<float> r;
    FASTDL_PARTS(i) {
      half_part h = *reinterpret_cast<const unaligned_half_part*>(src + i * Vec<float>::part_lanes);
      r.p[i] = (typename Vec<float>::part)(__builtin_convertvector(h, word_part) << 16);
    }
    return r;
  }
  static FASTDL_VI void store(Vec<float> v, uint16_t* dst) {
    FASTDL_PARTS(i) {
      const word_part u = (word_part)v.p[i];
      const word_part rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // as bf16_from_float
      const word_part quiet_nan = (u >> 16) | 0x40u;
      const word_part r = (u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded;
      *reinterpret_cast<unaligned_half_part*>(dst + i * Vec<float>::part_lanes) = __builtin_convertvector(r, half_part);
    }
  }
};

// float16 converts with the AVX-512 instructions (vcvtph2ps / vcvtps2ph, nearest-even) where this
// build has them, else value by value (the AVX2 build may run where F16C is absent). The two
// agree on every value but NaN payloads.
struct F16Bits {
  static constexpr int64_t W = Vec<float>::lanes;
  static FASTDL_VI float widen(uint16_t h) { return f16_to_float(h); }
  static FASTDL_VI uint16_t narrow(float f) { return f16_from_float(f); }
#if defined(__AVX512F__)
  static FASTDL_VI Vec<float> load(const uint16_t* src) {
    Vec<float> r;
    r.p[0] = (typename Vec<float>::part)_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    return r;
  }
  static FASTDL_VI void store(Vec<float> v, uint16_t* dst) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                        _mm512_cvtps_ph((__m512)v.p[0], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
#else
  static FASTDL_VI Vec<float> load(const uint16_t* src) {
    alignas(64) float b[W];
    for (int64_t j = 0; j < W; ++j) b[j] = widen(src[j]);
    return Vec<float>::load(b);
  }
  static FASTDL_VI void store(Vec<float> v, uint16_t* dst) {
    alignas(64) float b[W];
    v.store(b);
    for (int64_t j = 0; j < W; ++j) dst[j] = narrow(b[j]);
  }
#endif
};

template <class H>
struct HalfLanes {
  typedef uint16_t storage;
  typedef float compute;
  static constexpr int64_t W = Vec<float>::lanes;
  int64_t i, n;
  FASTDL_VI Vec<float> load(const uint16_t* p) const {
    if (n == W) return H::load(p + i);
    alignas(64) float b[W];
    for (int64_t j = 0; j < W; ++j) b[j] = j < n ? H::widen(p[i + j]) : 0.0f;
    return Vec<float>::load(b);
  }
  FASTDL_VI void store(Vec<float> v, uint16_t* p) const {
    if (n == W) return H::store(v, p + i);
    alignas(64) float b[W];
    v.store(b);
    for (int64_t j = 0; j < n; ++j) p[i + j] = H::narrow(b[j]);
  }
};

template <class A, class F>
FASTDL_VI void for_each_vector(int64_t b, int64_t e, F f) {
  constexpr int64_t W = Vec<typename A::compute>::lanes;
  int64_t i = b;
  for (; i + W <= e; i += W) f(A{i, W});
  if (i < e) f(A{i, e - i});
}

// Sum of squares of every gradient element. Blocks of the global index space have sizes that
// depend only on the total, so the result does not depend on the thread count.
template <class A>
double grad_sum_squares_with(const TensorList<typename A::storage>& L) {
  typedef typename A::compute C;
  const int64_t* off = L.offsets;
  return deterministic_sum(off[L.count], kGrainCheap, [&](int64_t b, int64_t e) {
    LaneSum<C> acc;
    int64_t k = 0;
    while (off[k + 1] <= b) ++k;
    for (; k < L.count && off[k] < e; ++k) {
      const typename A::storage* g = L.grads[k];
      int64_t i = (b > off[k] ? b : off[k]) - off[k], end = (e < off[k + 1] ? e : off[k + 1]) - off[k];
      for_each_vector<A>(i, end, [&](A at) {
        Vec<C> v = at.load(g);
        acc.add(v * v);  // a partial vector's padding lanes are 0
      });
    }
    return acc.sum();
  });
}

// The steps read parameters and gradients through accessor A and the state (momentum buffer,
// moments) through accessor S, from the state slots of St: S = A and St = L keep the state in the
// parameters' dtype (torch's way); S = Lanes<float> keeps float32 state beside 16-bit parameters.
template <class A, class S>
void sgd_with(const TensorList<typename A::storage>& L, const TensorList<typename S::storage>& St,
              const SgdOptions& o) {
  typedef typename A::storage T;
  typedef typename S::storage ST;
  typedef typename A::compute C;
  static_assert(std::is_same<C, typename S::compute>::value, "state and parameters share the compute type");
  typedef Vec<C> V;
  const kernels::SgdScalars<V> s = kernels::sgd_scalars<V, C>(o);
  for_each_piece(L, [&](int64_t k, int64_t b, int64_t e) {
    T* p = L.params[k];
    const T* g = L.grads[k];
    ST* buf = s.has_momentum ? St.momentum_buffer[k] : nullptr;
    const bool first = L.steps[k] == 1;
    for_each_vector<A>(b, e, [&](A at) {
      const S st{at.i, at.n};
      V pv = at.load(p), bv = buf ? st.load(buf) : V(C(0));
      kernels::sgd_update(pv, at.load(g), bv, first, s);
      at.store(pv, p);
      if (buf) st.store(bv, buf);
    });
  });
}

template <class A, class S>
void adam_with(const TensorList<typename A::storage>& L, const TensorList<typename S::storage>& St,
               const AdamOptions& o) {
  typedef typename A::storage T;
  typedef typename S::storage ST;
  typedef typename A::compute C;
  static_assert(std::is_same<C, typename S::compute>::value, "state and parameters share the compute type");
  typedef Vec<C> V;
  const kernels::AdamScalars<V> base = kernels::adam_scalars<V, C>(o);
  for_each_piece(L, [&](int64_t k, int64_t b, int64_t e) {
    kernels::AdamScalars<V> s = base;
    kernels::set_adam_tensor<V, C>(s, kernels::adam_tensor_scalars(o.lr, o.beta1, o.beta2, L.steps[k]));
    T* p = L.params[k];
    ST *m = St.exp_avg[k], *v = St.exp_avg_sq[k], *vmax = o.amsgrad ? St.max_exp_avg_sq[k] : nullptr;
    const T* g = L.grads[k];
    for_each_vector<A>(b, e, [&](A at) {
      const S st{at.i, at.n};
      V pv = at.load(p), mv = st.load(m), vv = st.load(v), vmaxv = vmax ? st.load(vmax) : V(C(0));
      kernels::adam_update(pv, at.load(g), mv, vv, vmaxv, s);
      at.store(pv, p);
      st.store(mv, m);
      st.store(vv, v);
      if (vmax) st.store(vmaxv, vmax);
    });
  });
}

// State in the parameters' dtype.
template <class A>
void sgd_same(const TensorList<typename A::storage>& L, const SgdOptions& o) { sgd_with<A, A>(L, L, o); }
template <class A>
void adam_same(const TensorList<typename A::storage>& L, const AdamOptions& o) { adam_with<A, A>(L, L, o); }

template <class T>
double grad_sum_squares(const TensorList<T>& L) { return grad_sum_squares_with<Lanes<T>>(L); }
template <class T>
void sgd(const TensorList<T>& L, const SgdOptions& o) { sgd_same<Lanes<T>>(L, o); }
template <class T>
void adam(const TensorList<T>& L, const AdamOptions& o) { adam_same<Lanes<T>>(L, o); }
