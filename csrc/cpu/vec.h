// A 64-byte SIMD vector of float (16 lanes) or double (8 lanes), written with GCC/Clang vector
// extensions and compiled once per instruction set: the same source becomes 4 SSE2 ops, 2 AVX2
// ops or 1 AVX-512 op per vector op. Every ISA build therefore runs the same algorithm with the
// same lane layout and summation order.
//
// This header must be included inside the per-ISA namespace opened by isa_kernels.cpp (see
// there), so that nothing here is shared between the differently compiled copies.
#pragma once
// (system headers are included by isa_kernels.cpp before the namespace opens)

#define FASTDL_VI inline __attribute__((always_inline))

template <class T> struct VecTraits;
template <> struct VecTraits<float> {
  typedef float raw __attribute__((vector_size(64)));
  typedef int32_t bits __attribute__((vector_size(64)));
  typedef int32_t lane_int;
  static constexpr int lanes = 16;
};
template <> struct VecTraits<double> {
  typedef double raw __attribute__((vector_size(64)));
  typedef int64_t bits __attribute__((vector_size(64)));
  typedef int64_t lane_int;
  static constexpr int lanes = 8;
};

template <class T> struct Mask {
  typename VecTraits<T>::bits m;  // all-ones or zero per lane
};
template <class T> FASTDL_VI Mask<T> operator&(Mask<T> a, Mask<T> b) { return {a.m & b.m}; }
template <class T> FASTDL_VI Mask<T> operator|(Mask<T> a, Mask<T> b) { return {a.m | b.m}; }

template <class T>
struct Vec {
  typedef typename VecTraits<T>::raw raw;
  typedef typename VecTraits<T>::bits bits;
  static constexpr int lanes = VecTraits<T>::lanes;
  raw v;

  FASTDL_VI Vec() = default;
  FASTDL_VI Vec(raw r) : v(r) {}
  FASTDL_VI Vec(T s) : v(raw{} + s) {}  // broadcast

  FASTDL_VI static Vec load(const T* p) { Vec r; __builtin_memcpy(&r.v, p, sizeof(raw)); return r; }
  FASTDL_VI void store(T* p) const { __builtin_memcpy(p, &v, sizeof(raw)); }
  // The first n (< lanes) elements from p, the other lanes set to fill.
  FASTDL_VI static Vec load_partial(const T* p, int64_t n, T fill) {
    Vec r(fill);
    for (int64_t i = 0; i < n; ++i) r.v[i] = p[i];
    return r;
  }
  FASTDL_VI void store_partial(T* p, int64_t n) const {
    for (int64_t i = 0; i < n; ++i) p[i] = v[i];
  }
  // Non-temporal store to a 64-byte aligned address: the line bypasses the cache, which saves
  // the read-for-ownership of a plain store when a large output will not be read again soon.
  FASTDL_VI void stream(T* p) const;

  FASTDL_VI T operator[](int i) const { return v[i]; }
};

template <class T> FASTDL_VI Vec<T> operator+(Vec<T> a, Vec<T> b) { return a.v + b.v; }
template <class T> FASTDL_VI Vec<T> operator-(Vec<T> a, Vec<T> b) { return a.v - b.v; }
template <class T> FASTDL_VI Vec<T> operator*(Vec<T> a, Vec<T> b) { return a.v * b.v; }
template <class T> FASTDL_VI Vec<T> operator/(Vec<T> a, Vec<T> b) { return a.v / b.v; }
template <class T> FASTDL_VI Vec<T> operator-(Vec<T> a) { return -a.v; }
template <class T> FASTDL_VI Mask<T> operator<(Vec<T> a, Vec<T> b) { return {a.v < b.v}; }
template <class T> FASTDL_VI Mask<T> operator>(Vec<T> a, Vec<T> b) { return {a.v > b.v}; }
template <class T> FASTDL_VI Mask<T> operator==(Vec<T> a, Vec<T> b) { return {a.v == b.v}; }

template <class T> FASTDL_VI Vec<T> where(Mask<T> c, Vec<T> a, Vec<T> b) { return c.m ? a.v : b.v; }
template <class T> FASTDL_VI Vec<T> max(Vec<T> a, Vec<T> b) { return where(a < b, b, a); }
template <class T> FASTDL_VI Vec<T> min(Vec<T> a, Vec<T> b) { return where(b < a, b, a); }

template <class T> FASTDL_VI typename Vec<T>::bits as_bits(Vec<T> a) { return (typename Vec<T>::bits)a.v; }
template <class T> FASTDL_VI Vec<T> from_bits(typename Vec<T>::bits b) { return (typename Vec<T>::raw)b; }

template <class T> FASTDL_VI Vec<T> abs(Vec<T> a) {
  typedef typename VecTraits<T>::lane_int I;
  I all_but_sign = ~((I)1 << (sizeof(I) * 8 - 1));
  return from_bits<T>(as_bits(a) & all_but_sign);
}
// |mag| with the sign of sgn.
template <class T> FASTDL_VI Vec<T> copysign(Vec<T> mag, Vec<T> sgn) {
  typedef typename VecTraits<T>::lane_int I;
  I sign = (I)1 << (sizeof(I) * 8 - 1);
  return from_bits<T>((as_bits(mag) & ~sign) | (as_bits(sgn) & sign));
}

// Lanes 0..n-1 set: the valid lanes of a partial vector.
template <class T> FASTDL_VI Mask<T> first_lanes(int64_t n) {
  typename Vec<T>::bits idx;
  for (int i = 0; i < Vec<T>::lanes; ++i) idx[i] = i;
  return {idx < (typename VecTraits<T>::lane_int)n};
}

template <class T> FASTDL_VI T reduce_add(Vec<T> a) {
  T s = 0;
  for (int i = 0; i < Vec<T>::lanes; ++i) s += a.v[i];
  return s;
}
template <class T> FASTDL_VI T reduce_max(Vec<T> a) {
  T m = a.v[0];
  for (int i = 1; i < Vec<T>::lanes; ++i) m = m < a.v[i] ? a.v[i] : m;
  return m;
}

// ---- instruction-set specific pieces: sqrt and streaming stores ---------------------------
#if defined(__AVX512F__)
template <> FASTDL_VI void Vec<float>::stream(float* p) const { _mm512_stream_ps(p, (__m512)v); }
template <> FASTDL_VI void Vec<double>::stream(double* p) const { _mm512_stream_pd(p, (__m512d)v); }
FASTDL_VI Vec<float> sqrt(Vec<float> a) { return (Vec<float>::raw)_mm512_sqrt_ps((__m512)a.v); }
FASTDL_VI Vec<double> sqrt(Vec<double> a) { return (Vec<double>::raw)_mm512_sqrt_pd((__m512d)a.v); }
#elif defined(__AVX__)
template <class T, class H, class F>
FASTDL_VI Vec<T> by_halves(Vec<T> a, F f) {
  H h[2];
  __builtin_memcpy(h, &a.v, 64);
  h[0] = f(h[0]);
  h[1] = f(h[1]);
  Vec<T> r;
  __builtin_memcpy(&r.v, h, 64);
  return r;
}
template <> FASTDL_VI void Vec<float>::stream(float* p) const {
  __m256 h[2];
  __builtin_memcpy(h, &v, 64);
  _mm256_stream_ps(p, h[0]);
  _mm256_stream_ps(p + 8, h[1]);
}
template <> FASTDL_VI void Vec<double>::stream(double* p) const {
  __m256d h[2];
  __builtin_memcpy(h, &v, 64);
  _mm256_stream_pd(p, h[0]);
  _mm256_stream_pd(p + 4, h[1]);
}
FASTDL_VI Vec<float> sqrt(Vec<float> a) { return by_halves<float, __m256>(a, [](__m256 x) { return _mm256_sqrt_ps(x); }); }
FASTDL_VI Vec<double> sqrt(Vec<double> a) { return by_halves<double, __m256d>(a, [](__m256d x) { return _mm256_sqrt_pd(x); }); }
#elif defined(__SSE2__)
template <> FASTDL_VI void Vec<float>::stream(float* p) const {
  __m128 q[4];
  __builtin_memcpy(q, &v, 64);
  for (int i = 0; i < 4; ++i) _mm_stream_ps(p + 4 * i, q[i]);
}
template <> FASTDL_VI void Vec<double>::stream(double* p) const {
  __m128d q[4];
  __builtin_memcpy(q, &v, 64);
  for (int i = 0; i < 4; ++i) _mm_stream_pd(p + 2 * i, q[i]);
}
FASTDL_VI Vec<float> sqrt(Vec<float> a) {
  __m128 q[4];
  __builtin_memcpy(q, &a.v, 64);
  for (int i = 0; i < 4; ++i) q[i] = _mm_sqrt_ps(q[i]);
  Vec<float> r;
  __builtin_memcpy(&r.v, q, 64);
  return r;
}
FASTDL_VI Vec<double> sqrt(Vec<double> a) {
  __m128d q[4];
  __builtin_memcpy(q, &a.v, 64);
  for (int i = 0; i < 4; ++i) q[i] = _mm_sqrt_pd(q[i]);
  Vec<double> r;
  __builtin_memcpy(&r.v, q, 64);
  return r;
}
#else  // portable: the compiler vectorizes what it can
template <class T> FASTDL_VI void Vec<T>::stream(T* p) const { store(p); }
template <class T> FASTDL_VI Vec<T> sqrt(Vec<T> a) {
  for (int i = 0; i < Vec<T>::lanes; ++i) a.v[i] = __builtin_sqrt(a.v[i]);
  return a;
}
#endif

#if defined(__SSE2__)
FASTDL_VI void stream_fence() { _mm_sfence(); }
#else
FASTDL_VI void stream_fence() {}
#endif
