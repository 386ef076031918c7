// Elementary functions on Vec<float> (vectorized, ~1-2 ulp) and Vec<double> (lane by lane
// through libm: double precision is not a speed target, exactness is).
// Found by argument-dependent lookup from the formulas in csrc/kernels/.
// Included inside the per-ISA namespace, after vec.h.
#pragma once

// ---- float ---------------------------------------------------------------------------------

// Round to nearest integer (ties to even) for |x| < 2^22: adding 1.5 * 2^23 pushes the
// fraction bits out of the mantissa.
FASTDL_VI Vec<float> round_small(Vec<float> x) {
  const Vec<float> magic(12582912.0f);
  return (x + magic) - magic;
}

// exp(x) = 2^n e^r, n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (Cody-Waite split of
// ln 2 keeps r exact), e^r by its Taylor series through r^7 (truncation error < 6e-9).
// Results below 2.5e-38 flush to 0 (x < -86.6), above FLT_MAX give inf, NaN gives NaN.
FASTDL_VI Vec<float> exp(Vec<float> x) {
  const Vec<float> hi(88.72283905f), lo(-86.6f);
  Vec<float> xc = where(x > hi, hi, x);
  xc = where(xc < lo, lo, xc);
  Vec<float> n = round_small(xc * Vec<float>(1.44269504088896341f));
  Vec<float> r = xc - n * Vec<float>(0.693359375f);  // ln 2, high bits: n * this is exact
  r = r - n * Vec<float>(-2.12194440e-4f);           // ln 2, the rest
  Vec<float> p(1.0f / 5040);
  p = p * r + Vec<float>(1.0f / 720);
  p = p * r + Vec<float>(1.0f / 120);
  p = p * r + Vec<float>(1.0f / 24);
  p = p * r + Vec<float>(1.0f / 6);
  p = p * r + Vec<float>(0.5f);
  p = p * r + Vec<float>(1.0f);
  p = p * r + Vec<float>(1.0f);
  // 2^(n-1) then * 2: keeps the exponent field in range for n = 128 (x near ln FLT_MAX).
  Vec<float>::bits e = __builtin_convertvector(n.v, Vec<float>::bits);
  Vec<float> scale = from_bits<float>((e + 126) << 23);
  Vec<float> y = p * scale * Vec<float>(2.0f);
  y = where(x > hi, Vec<float>(__builtin_inff()), y);
  return where(x < lo, Vec<float>(0.0f), y);
}

// log(x) = k ln 2 + log(m), x = 2^k m with m in [sqrt(1/2), sqrt 2); log m = 2 atanh(f),
// f = (m - 1)/(m + 1), |f| <= 0.172, by its series through f^9 (error < 1e-9).
// log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, log(NaN) = NaN; subnormals are rescaled first.
FASTDL_VI Vec<float> log(Vec<float> x) {
  typedef Vec<float>::bits B;
  Mask<float> tiny = x < Vec<float>(1.17549435e-38f);
  Vec<float> xs = where(tiny, x * Vec<float>(8388608.0f), x);  // * 2^23
  B b = as_bits(xs);
  B k = ((b >> 23) & 0xff) - 127;
  Vec<float> m = from_bits<float>((b & 0x007fffff) | 0x3f800000);  // [1, 2)
  Mask<float> big = m > Vec<float>(1.41421356f);
  m = where(big, m * Vec<float>(0.5f), m);
  k = k + (big.m & 1);
  k = k - (tiny.m & 23);
  Vec<float> f = (m - Vec<float>(1.0f)) / (m + Vec<float>(1.0f));
  Vec<float> f2 = f * f;
  Vec<float> s(1.0f / 9);
  s = s * f2 + Vec<float>(1.0f / 7);
  s = s * f2 + Vec<float>(1.0f / 5);
  s = s * f2 + Vec<float>(1.0f / 3);
  s = s * f2 + Vec<float>(1.0f);
  Vec<float> kf = __builtin_convertvector(k, Vec<float>::raw);
  Vec<float> y = kf * Vec<float>(0.693147180559945309f) + Vec<float>(2.0f) * f * s;
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

// tanh: |x| < 0.4 by its odd Taylor series through x^13 (relative error < 5e-9);
// otherwise (1 - e) / (1 + e) with e = exp(-2|x|), well conditioned there, sign restored.
FASTDL_VI Vec<float> tanh(Vec<float> x) {
  Vec<float> a = abs(x);
  Vec<float> e = exp(Vec<float>(-2.0f) * a);
  Vec<float> big = copysign((Vec<float>(1.0f) - e) / (Vec<float>(1.0f) + e), x);
  Vec<float> x2 = x * x;
  Vec<float> p(21844.0f / 6081075);
  p = p * x2 + Vec<float>(-1382.0f / 155925);
  p = p * x2 + Vec<float>(62.0f / 2835);
  p = p * x2 + Vec<float>(-17.0f / 315);
  p = p * x2 + Vec<float>(2.0f / 15);
  p = p * x2 + Vec<float>(-1.0f / 3);
  Vec<float> small = x + x * x2 * p;
  return where(a < Vec<float>(0.4f), small, big);
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
  for (int i = 0; i < Vec<double>::lanes; ++i) x.v[i] = f(x.v[i]);
  return x;
}
FASTDL_VI Vec<double> exp(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_exp(a); }); }
FASTDL_VI Vec<double> log(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_log(a); }); }
FASTDL_VI Vec<double> log1p(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_log1p(a); }); }
FASTDL_VI Vec<double> tanh(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_tanh(a); }); }
FASTDL_VI Vec<double> erfc(Vec<double> x) { return lanewise(x, [](double a) { return __builtin_erfc(a); }); }
