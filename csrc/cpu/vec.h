// A 64-byte SIMD vector of float (16 lanes) or double (8 lanes), made of native registers of the
// instruction set this copy is compiled for: 1 zmm (AVX-512), 2 ymm (AVX2) or 4 xmm (SSE2 /
// NEON), written with GCC/Clang vector extensions. Every ISA build therefore runs the same
// algorithm with the same lane layout and the same summation order; the FMA builds (AVX2,
// AVX-512) give the same bits on normal results, the baseline build rounds a*b+c twice where they
// fuse it. (One 64-byte extension
// vector would be simpler, but GCC lowers selects wider than the target's registers to scalar
// code, 7x slower.)
//
// This header must be included inside the per-ISA namespace opened by isa_kernels.cpp (see
// there), so that nothing here is shared between the differently compiled copies.
#pragma once
// (system headers are included by isa_kernels.cpp before the namespace opens)

#define FASTDL_VI inline __attribute__((always_inline))

#if defined(__AVX512F__)
constexpr int kNativeBytes = 64;
#elif defined(__AVX__)
constexpr int kNativeBytes = 32;
#else
constexpr int kNativeBytes = 16;
#endif
constexpr int kParts = 64 / kNativeBytes;

template <class T> struct VecTraits;
template <> struct VecTraits<float> {
  typedef float part __attribute__((vector_size(kNativeBytes)));
  typedef float unaligned_part __attribute__((vector_size(kNativeBytes), aligned(4), may_alias));
  typedef int32_t ipart __attribute__((vector_size(kNativeBytes)));
  typedef int32_t lane_int;
};
template <> struct VecTraits<double> {
  typedef double part __attribute__((vector_size(kNativeBytes)));
  typedef double unaligned_part __attribute__((vector_size(kNativeBytes), aligned(8), may_alias));
  typedef int64_t ipart __attribute__((vector_size(kNativeBytes)));
  typedef int64_t lane_int;
};

#define FASTDL_PARTS(i) _Pragma("GCC unroll 4") for (int i = 0; i < kParts; ++i)

// Integer lanes of the same width as T's: bit patterns, exponents, and the masks comparisons
// return (all ones or zero per lane).
template <class T>
struct IVec {
  typedef typename VecTraits<T>::ipart part;
  typedef typename VecTraits<T>::lane_int lane;
  static constexpr int lanes = 64 / sizeof(T);
  static constexpr int part_lanes = kNativeBytes / sizeof(T);
  part p[kParts];

  FASTDL_VI IVec() = default;
  FASTDL_VI IVec(lane s) { FASTDL_PARTS(i) p[i] = part{} + s; }
  FASTDL_VI lane operator[](int k) const { return p[k / part_lanes][k % part_lanes]; }
};
template <class T> using Mask = IVec<T>;

#define FASTDL_IVEC_BINARY(op)                                                  \
  template <class T> FASTDL_VI IVec<T> operator op(IVec<T> a, IVec<T> b) {      \
    IVec<T> r;                                                                  \
    FASTDL_PARTS(i) r.p[i] = a.p[i] op b.p[i];                                  \
    return r;                                                                   \
  }
FASTDL_IVEC_BINARY(+)
FASTDL_IVEC_BINARY(-)
FASTDL_IVEC_BINARY(&)
FASTDL_IVEC_BINARY(|)
#undef FASTDL_IVEC_BINARY
template <class T> FASTDL_VI IVec<T> operator~(IVec<T> a) { FASTDL_PARTS(i) a.p[i] = ~a.p[i]; return a; }
template <class T> FASTDL_VI IVec<T> operator<<(IVec<T> a, int s) { FASTDL_PARTS(i) a.p[i] = a.p[i] << s; return a; }
template <class T> FASTDL_VI IVec<T> operator>>(IVec<T> a, int s) { FASTDL_PARTS(i) a.p[i] = a.p[i] >> s; return a; }
template <class T> FASTDL_VI IVec<T> operator<(IVec<T> a, IVec<T> b) {
  IVec<T> r;
  FASTDL_PARTS(i) r.p[i] = a.p[i] < b.p[i];
  return r;
}

template <class T>
struct Vec {
  typedef typename VecTraits<T>::part part;
  static constexpr int lanes = 64 / sizeof(T);
  static constexpr int part_lanes = kNativeBytes / sizeof(T);
  part p[kParts];

  FASTDL_VI Vec() = default;
  FASTDL_VI Vec(T s) { FASTDL_PARTS(i) p[i] = part{} + s; }  // broadcast

  // One native load / store per register (a single 64-byte memcpy goes through the stack).
  typedef typename VecTraits<T>::unaligned_part unaligned_part;
  FASTDL_VI static Vec load(const T* src) {
    Vec r;
    FASTDL_PARTS(i) r.p[i] = *reinterpret_cast<const unaligned_part*>(src + i * part_lanes);
    return r;
  }
  FASTDL_VI void store(T* dst) const {
    FASTDL_PARTS(i) *reinterpret_cast<unaligned_part*>(dst + i * part_lanes) = p[i];
  }
  // The first n (0 <= n < lanes) elements from src, the other lanes set to fill; never reads
  // past src + n. Masked loads on AVX-512 / AVX2, a scalar loop otherwise.
  FASTDL_VI static Vec load_partial(const T* src, int64_t n, T fill);
  // Stores the first n (< lanes) lanes to dst; never writes past dst + n.
  FASTDL_VI void store_partial(T* dst, int64_t n) const;
  // Non-temporal store to a 64-byte aligned address: the line bypasses the cache, which saves
  // the read-for-ownership of a plain store when a large output will not be read again soon.
  FASTDL_VI void stream(T* dst) const;

  FASTDL_VI T operator[](int k) const { return p[k / part_lanes][k % part_lanes]; }
};

#define FASTDL_VEC_BINARY(op)                                                   \
  template <class T> FASTDL_VI Vec<T> operator op(Vec<T> a, Vec<T> b) {         \
    Vec<T> r;                                                                   \
    FASTDL_PARTS(i) r.p[i] = a.p[i] op b.p[i];                                  \
    return r;                                                                   \
  }
FASTDL_VEC_BINARY(+)
FASTDL_VEC_BINARY(-)
FASTDL_VEC_BINARY(*)
FASTDL_VEC_BINARY(/)
#undef FASTDL_VEC_BINARY

#define FASTDL_VEC_COMPARE(op)                                                  \
  template <class T> FASTDL_VI Mask<T> operator op(Vec<T> a, Vec<T> b) {        \
    Mask<T> r;                                                                  \
    FASTDL_PARTS(i) r.p[i] = a.p[i] op b.p[i];                                  \
    return r;                                                                   \
  }
FASTDL_VEC_COMPARE(<)
FASTDL_VEC_COMPARE(>)
FASTDL_VEC_COMPARE(==)
FASTDL_VEC_COMPARE(!=)
#undef FASTDL_VEC_COMPARE

template <class T> FASTDL_VI Vec<T> operator-(Vec<T> a) { FASTDL_PARTS(i) a.p[i] = -a.p[i]; return a; }

template <class T> FASTDL_VI Vec<T> where(Mask<T> c, Vec<T> a, Vec<T> b) {
  Vec<T> r;
  FASTDL_PARTS(i) r.p[i] = c.p[i] ? a.p[i] : b.p[i];
  return r;
}
template <class T> FASTDL_VI Vec<T> max(Vec<T> a, Vec<T> b) { return where(a < b, b, a); }
template <class T> FASTDL_VI Vec<T> min(Vec<T> a, Vec<T> b) { return where(b < a, b, a); }

template <class T> FASTDL_VI IVec<T> as_bits(Vec<T> a) {
  IVec<T> r;
  FASTDL_PARTS(i) r.p[i] = (typename IVec<T>::part)a.p[i];
  return r;
}
template <class T> FASTDL_VI Vec<T> from_bits(IVec<T> b) {
  Vec<T> r;
  FASTDL_PARTS(i) r.p[i] = (typename Vec<T>::part)b.p[i];
  return r;
}
// Value conversions (float -> int truncates toward zero).
template <class T> FASTDL_VI IVec<T> to_int(Vec<T> a) {
  IVec<T> r;
  FASTDL_PARTS(i) r.p[i] = __builtin_convertvector(a.p[i], typename IVec<T>::part);
  return r;
}
template <class T> FASTDL_VI Vec<T> to_float(IVec<T> a) {
  Vec<T> r;
  FASTDL_PARTS(i) r.p[i] = __builtin_convertvector(a.p[i], typename Vec<T>::part);
  return r;
}

template <class T> FASTDL_VI typename IVec<T>::lane sign_bit() {
  typedef typename IVec<T>::lane I;
  return (I)((typename std::make_unsigned<I>::type)1 << (sizeof(I) * 8 - 1));
}
template <class T> FASTDL_VI Vec<T> abs(Vec<T> a) { return from_bits<T>(as_bits(a) & IVec<T>(~sign_bit<T>())); }
// |mag| with the sign of sgn.
template <class T> FASTDL_VI Vec<T> copysign(Vec<T> mag, Vec<T> sgn) {
  const IVec<T> s(sign_bit<T>());
  return from_bits<T>((as_bits(mag) & ~s) | (as_bits(sgn) & s));
}

// Lanes 0..n-1 set: the valid lanes of a partial vector.
template <class T> FASTDL_VI Mask<T> first_lanes(int64_t n) {
  IVec<T> idx;
  for (int k = 0; k < IVec<T>::lanes; ++k) idx.p[k / IVec<T>::part_lanes][k % IVec<T>::part_lanes] = k;
  return idx < IVec<T>((typename IVec<T>::lane)n);
}

// Horizontal reductions as a pairwise tree over lane indices (lane i with lane i + w for
// w = lanes/2, ..., 1): depth log2(lanes) instead of a lanes-long dependency chain, and the same
// order on every ISA build.
template <class T, class A, class F>
FASTDL_VI A tree_reduce(Vec<T> a, F combine) {
  T lanes_[Vec<T>::lanes];
  a.store(lanes_);
  A buf[Vec<T>::lanes];
  for (int k = 0; k < Vec<T>::lanes; ++k) buf[k] = (A)lanes_[k];
  for (int w = Vec<T>::lanes / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) buf[k] = combine(buf[k], buf[k + w]);
  return buf[0];
}
template <class T> FASTDL_VI T reduce_add(Vec<T> a) { return tree_reduce<T, T>(a, [](T x, T y) { return x + y; }); }
// The lanes summed in double (exact for float lanes up to the final roundings of the tree).
template <class T> FASTDL_VI double reduce_add_double(Vec<T> a) {
  return tree_reduce<T, double>(a, [](double x, double y) { return x + y; });
}
template <class T> FASTDL_VI T reduce_max(Vec<T> a) {
  return tree_reduce<T, T>(a, [](T x, T y) { return x < y ? y : x; });
}

// ---- instruction-set specific pieces: sqrt and streaming stores, per native register ---------
#if defined(__AVX512F__)
#define FASTDL_MAX_PS _mm512_max_ps
#define FASTDL_MIN_PS _mm512_min_ps
#define FASTDL_SQRT_PS _mm512_sqrt_ps
#define FASTDL_SQRT_PD _mm512_sqrt_pd
#define FASTDL_STREAM_PS _mm512_stream_ps
#define FASTDL_STREAM_PD _mm512_stream_pd
typedef __m512 native_ps;
typedef __m512d native_pd;
#elif defined(__AVX__)
#define FASTDL_MAX_PS _mm256_max_ps
#define FASTDL_MIN_PS _mm256_min_ps
#define FASTDL_SQRT_PS _mm256_sqrt_ps
#define FASTDL_SQRT_PD _mm256_sqrt_pd
#define FASTDL_STREAM_PS _mm256_stream_ps
#define FASTDL_STREAM_PD _mm256_stream_pd
typedef __m256 native_ps;
typedef __m256d native_pd;
#elif defined(__SSE2__)
#define FASTDL_MAX_PS _mm_max_ps
#define FASTDL_MIN_PS _mm_min_ps
#define FASTDL_SQRT_PS _mm_sqrt_ps
#define FASTDL_SQRT_PD _mm_sqrt_pd
#define FASTDL_STREAM_PS _mm_stream_ps
#define FASTDL_STREAM_PD _mm_stream_pd
typedef __m128 native_ps;
typedef __m128d native_pd;
#endif

#if defined(__SSE2__)
FASTDL_VI Vec<float> sqrt(Vec<float> a) { FASTDL_PARTS(i) a.p[i] = (Vec<float>::part)FASTDL_SQRT_PS((native_ps)a.p[i]); return a; }
FASTDL_VI Vec<double> sqrt(Vec<double> a) { FASTDL_PARTS(i) a.p[i] = (Vec<double>::part)FASTDL_SQRT_PD((native_pd)a.p[i]); return a; }
template <> FASTDL_VI void Vec<float>::stream(float* dst) const {
  FASTDL_PARTS(i) FASTDL_STREAM_PS(dst + i * part_lanes, (native_ps)p[i]);
}
template <> FASTDL_VI void Vec<double>::stream(double* dst) const {
  FASTDL_PARTS(i) FASTDL_STREAM_PD(dst + i * part_lanes, (native_pd)p[i]);
}
FASTDL_VI void stream_fence() { _mm_sfence(); }
// lo <= x <= hi, and NaN stays NaN: x86 min/max return their second operand when either is NaN.
FASTDL_VI Vec<float> clamp(Vec<float> x, float lo, float hi) {
  FASTDL_PARTS(i) {
    native_ps v = FASTDL_MAX_PS((native_ps)Vec<float>(lo).p[i], (native_ps)x.p[i]);
    x.p[i] = (Vec<float>::part)FASTDL_MIN_PS((native_ps)Vec<float>(hi).p[i], v);
  }
  return x;
}
#else  // portable: the compiler vectorizes what it can
template <class T> FASTDL_VI Vec<T> clamp(Vec<T> x, T lo, T hi) {
  x = where(x < Vec<T>(lo), Vec<T>(lo), x);
  return where(x > Vec<T>(hi), Vec<T>(hi), x);
}
template <class T> FASTDL_VI Vec<T> sqrt(Vec<T> a) {
  for (int k = 0; k < Vec<T>::lanes; ++k) a.p[k / Vec<T>::part_lanes][k % Vec<T>::part_lanes] = __builtin_sqrt(a[k]);
  return a;
}
template <class T> FASTDL_VI void Vec<T>::stream(T* dst) const { store(dst); }
FASTDL_VI void stream_fence() {}
#endif

// ---- partial loads and stores -----------------------------------------------------------------
#if defined(__AVX512F__)
template <> FASTDL_VI Vec<float> Vec<float>::load_partial(const float* src, int64_t n, float fill) {
  Vec r;
  r.p[0] = (part)_mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << n) - 1), src);
  return r;
}
template <> FASTDL_VI void Vec<float>::store_partial(float* dst, int64_t n) const {
  _mm512_mask_storeu_ps(dst, (__mmask16)((1u << n) - 1), (__m512)p[0]);
}
template <> FASTDL_VI Vec<double> Vec<double>::load_partial(const double* src, int64_t n, double fill) {
  Vec r;
  r.p[0] = (part)_mm512_mask_loadu_pd(_mm512_set1_pd(fill), (__mmask8)((1u << n) - 1), src);
  return r;
}
template <> FASTDL_VI void Vec<double>::store_partial(double* dst, int64_t n) const {
  _mm512_mask_storeu_pd(dst, (__mmask8)((1u << n) - 1), (__m512d)p[0]);
}
#elif defined(__AVX2__)
// Part i covers lanes [8i, 8i + 8) (float) / [4i, 4i + 4) (double); lanes >= n are masked off.
template <> FASTDL_VI Vec<float> Vec<float>::load_partial(const float* src, int64_t n, float fill) {
  Vec r;
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  FASTDL_PARTS(i) {
    __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i * 8)), iota);
    __m256 v = _mm256_maskload_ps(src + i * 8, m);
    r.p[i] = (part)_mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(m));
  }
  return r;
}
template <> FASTDL_VI void Vec<float>::store_partial(float* dst, int64_t n) const {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  FASTDL_PARTS(i) _mm256_maskstore_ps(dst + i * 8, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n - i * 8)), iota),
                                      (__m256)p[i]);
}
template <> FASTDL_VI Vec<double> Vec<double>::load_partial(const double* src, int64_t n, double fill) {
  Vec r;
  const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
  FASTDL_PARTS(i) {
    __m256i m = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - i * 4), iota);
    __m256d v = _mm256_maskload_pd(src + i * 4, m);
    r.p[i] = (part)_mm256_blendv_pd(_mm256_set1_pd(fill), v, _mm256_castsi256_pd(m));
  }
  return r;
}
template <> FASTDL_VI void Vec<double>::store_partial(double* dst, int64_t n) const {
  const __m256i iota = _mm256_setr_epi64x(0, 1, 2, 3);
  FASTDL_PARTS(i) _mm256_maskstore_pd(dst + i * 4, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n - i * 4), iota),
                                      (__m256d)p[i]);
}
#else
template <class T> FASTDL_VI Vec<T> Vec<T>::load_partial(const T* src, int64_t n, T fill) {
  T buf[lanes];
  for (int k = 0; k < lanes; ++k) buf[k] = k < n ? src[k] : fill;
  return load(buf);
}
template <class T> FASTDL_VI void Vec<T>::store_partial(T* dst, int64_t n) const {
  T buf[lanes];
  store(buf);
  for (int64_t k = 0; k < n; ++k) dst[k] = buf[k];
}
#endif
