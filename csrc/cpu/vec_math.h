// Elementary functions on Vec<float> (vectorized, ~1-2 ulp) and Vec<double> (lane by lane
// through libm: double precision is not a speed target, exactness is).
// Found by argument-dependent lookup from the formulas in csrc/kernels/.
// Included inside the per-ISA namespace, after vec.h.
#pragma once

// ---- float ---------------------------------------------------------------------------------

// Round to nearest integer (ties to even) for |x| < 2^22: adding 1.5 * 2^23 pushes the
// fraction bits out of the mantissa.
FASTDL_VI Vec<float> round_small(Vec<float> x) {
#if defined(__AVX512F__)
  x.p[0] = (Vec<float>::part)_mm512_roundscale_ps((__m512)x.p[0], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return x;
#else
  const Vec<float> magic(12582912.0f);
  return (x + magic) - magic;
#endif
}

// x = n ln 2 + r with n = round(x / ln 2) and r in [-ln2/2, ln2/2]; the Cody-Waite split of
// ln 2 keeps r exact. x is first clamped to [lo, hi] (NaN passes).
struct ExpReduced {
  Vec<float> n, r;
};
FASTDL_VI ExpReduced exp_reduce(Vec<float> x, float lo, float hi) {
  Vec<float> xc = clamp(x, lo, hi);
  Vec<float> n = round_small(xc * Vec<float>(1.44269504088896341f));
  Vec<float> r = xc - n * Vec<float>(0.693359375f);  // ln 2, high bits: n * this is exact
  return {n, r - n * Vec<float>(-2.12194440e-4f)};   // ln 2, the rest
}

// e^r - 1 on [-ln2/2, ln2/2]: r times a degree-5 minimax polynomial (tools/fit_exp_poly.py 6;
// relative error < 2e-9), written without the constant term so that it keeps full relative
// accuracy for tiny r.
FASTDL_VI Vec<float> expm1_reduced(Vec<float> r) {
  Vec<float> p(0.0013843651f);
  p = p * r + Vec<float>(0.0083741555f);
  p = p * r + Vec<float>(0.041668f);
  p = p * r + Vec<float>(0.16666432f);
  p = p * r + Vec<float>(0.49999994f);
  p = p * r + Vec<float>(1.0f);
  return p * r;
}

// p 2^n for integral n in [-125, 128] (AVX-512: any n), with IEEE overflow: formed as
// (p 2^(n-1)) 2 so that n = 128 (x near ln FLT_MAX, p < 1) does not overflow before p scales it.
FASTDL_VI Vec<float> scale_by_pow2(Vec<float> p, Vec<float> n) {
#if defined(__AVX512F__)
  p.p[0] = (Vec<float>::part)_mm512_scalef_ps((__m512)p.p[0], (__m512)n.p[0]);
  return p;
#else
  return (p * from_bits<float>((to_int(n) + IVec<float>(126)) << 23)) * Vec<float>(2.0f);
#endif
}

// exp(x) = 2^n e^r. Overflow gives inf, NaN gives NaN. AVX-512's scalef forms the result with
// IEEE overflow and underflow (subnormal results kept); the other builds flush results below
// 2.5e-38 (x < -86.6) to 0.
FASTDL_VI Vec<float> exp(Vec<float> x) {
#if defined(__AVX512F__)
  ExpReduced e = exp_reduce(x, -104.0f, 89.0f);  // beyond: 0 and inf; keeps n finite for +-inf
  return scale_by_pow2(expm1_reduced(e.r) + Vec<float>(1.0f), e.n);
#else
  const float lo = -86.6f, hi = 88.72283905f;  // n in [-125, 128]
  ExpReduced e = exp_reduce(x, lo, hi);
  Vec<float> y = scale_by_pow2(expm1_reduced(e.r) + Vec<float>(1.0f), e.n);
  y = where(x > Vec<float>(hi), Vec<float>(__builtin_inff()), y);
  return where(x < Vec<float>(lo), Vec<float>(0.0f), y);
#endif
}

// exp(x) - 1 for x <= 0 (all tanh needs): 2^n (e^r - 1) + (2^n - 1), exact to ~1 ulp relative
// also where x is tiny; -1 below x = -86.6.
FASTDL_VI Vec<float> expm1_nonpositive(Vec<float> x) {
  ExpReduced e = exp_reduce(x, -86.6f, 0.0f);
  Vec<float> s = scale_by_pow2(Vec<float>(1.0f), e.n);  // 2^n, n in [-125, 0]
  return expm1_reduced(e.r) * s + (s - Vec<float>(1.0f));
}

// log(x) = k ln 2 + log(m), x = 2^k m with m in [sqrt(1/2), sqrt 2); log m = 2 atanh(f),
// f = (m - 1)/(m + 1), |f| <= 0.172, by its series through f^9 (error < 1e-9).
// log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, log(NaN) = NaN; subnormals are rescaled first.
FASTDL_VI Vec<float> log(Vec<float> x) {
  typedef IVec<float> B;
  Mask<float> tiny = x < Vec<float>(1.17549435e-38f);
  Vec<float> xs = where(tiny, x * Vec<float>(8388608.0f), x);  // * 2^23
  B b = as_bits(xs);
  B k = ((b >> 23) & B(0xff)) - B(127);
  Vec<float> m = from_bits<float>((b & B(0x007fffff)) | B(0x3f800000));  // [1, 2)
  Mask<float> big = m > Vec<float>(1.41421356f);
  m = where(big, m * Vec<float>(0.5f), m);
  k = k + (big & B(1));
  k = k - (tiny & B(23));
  Vec<float> f = (m - Vec<float>(1.0f)) / (m + Vec<float>(1.0f));
  Vec<float> f2 = f * f;
  Vec<float> s(1.0f / 9);
  s = s * f2 + Vec<float>(1.0f / 7);
  s = s * f2 + Vec<float>(1.0f / 5);
  s = s * f2 + Vec<float>(1.0f / 3);
  s = s * f2 + Vec<float>(1.0f);
  Vec<float> y = to_float(k) * Vec<float>(0.693147180559945309f) + Vec<float>(2.0f) * f * s;
  y = where(x == Vec<float>(__builtin_inff()), x, y);
  y = where(x == Vec<float>(0.0f), Vec<float>(-__builtin_inff()), y);
  y = where(x < Vec<float>(0.0f), Vec<float>(__builtin_nanf("")), y);
  return where(x == x, y, x);  // NaN in, NaN out
}

// log(1 + u) without losing u when u is tiny: log(w) * u / (w - 1), w = 1 + u, corrects the
// rounding of w (exact to ~1 ulp); w == 1 means log1p(u) = u to float precision.
FASTDL_VI Vec<float> log1p(Vec<float> u) {
  Vec<float> w = u + Vec<float>(1.0f);
  Vec<float> d = w - Vec<float>(1.0f);
  Vec<float> y = log(w) * (u / where(d == Vec<float>(0.0f), Vec<float>(1.0f), d));
  y = where(d == Vec<float>(0.0f), u, y);
  return where(w == Vec<float>(__builtin_inff()), w, y);
}

// tanh x = -sign(x) t / (2 + t), t = expm1(-2|x|): no cancellation anywhere, so no separate
// small-|x| branch is needed.
FASTDL_VI Vec<float> tanh(Vec<float> x) {
  Vec<float> t = expm1_nonpositive(Vec<float>(-2.0f) * abs(x));
  return copysign(t / (Vec<float>(2.0f) + t), x);  // copysign takes only the magnitude of its first argument
}

// erfc(x), Numerical Recipes' Chebyshev fit (erfcc), fractional error < 1.2e-7 for all x:
// erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2), z = |x|;  erfc(-z) = 2 - erfc(z).
FASTDL_VI Vec<float> erfc(Vec<float> x) {
  Vec<float> z = abs(x);
  Vec<float> t = Vec<float>(1.0f) / (Vec<float>(1.0f) + Vec<float>(0.5f) * z);
  Vec<float> p(0.17087277f);
  p = p * t + Vec<float>(-0.82215223f);
  p = p * t + Vec<float>(1.48851587f);
  p = p * t + Vec<float>(-1.13520398f);
  p = p * t + Vec<float>(0.27886807f);
  p = p * t + Vec<float>(-0.18628806f);
  p = p * t + Vec<float>(0.09678418f);
  p = p * t + Vec<float>(0.37409196f);
  p = p * t + Vec<float>(1.00002368f);
  p = p * t + Vec<float>(-1.26551223f);
  Vec<float> r = t * exp(p - z * z);
  return where(x < Vec<float>(0.0f), Vec<float>(2.0f) - r, r);
}

// ---- double: lane by lane through libm ---------------------------------------------------
template <class F>
FASTDL_VI Vec<double> lanewise(Vec<double> x, F f) {
  double buf[Vec<double>::lanes];
  x.store(buf);
  for (double& v : buf) v = f(v);
  return Vec<double>::load(buf);
}
FASTDL_VI Vec<double> exp(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_exp(a); }); }
FASTDL_VI Vec<double> log(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_log(a); }); }
FASTDL_VI Vec<double> log1p(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_log1p(a); }); }
FASTDL_VI Vec<double> tanh(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_tanh(a); }); }
FASTDL_VI Vec<double> erfc(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_erfc(a); }); }
