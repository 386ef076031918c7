// Activation functions, forward and backward: the one place their formulas live.
//
// Each functor's operator() is a template on V, which is a scalar (float, double: the CUDA
// kernels) or a SIMD vector (csrc/cpu/vec.h: the CPU loops). Forward functors map x -> y.
// Backward functors map (g, s) -> dL/dx, where g = dL/dy and s is the saved tensor named in
// the comment (y, the forward output, or x, the forward input).
//
// Stability: no formula here produces NaN or inf for a finite input. Where the textbook
// form cancels (1 + tanh(u) for u << 0), the form used is the algebraically equal stable one.
#pragma once

#include "../common/activation.h"
#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// sigma(x) = 1 / (1 + exp(-x)). exp(-x) = inf for x << 0 gives exactly 0, never NaN.
template <class V>
FASTDL_HD V sigmoid_of(V x) { return V(1) / (V(1) + exp(-x)); }

// Standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2: accurate in both tails, where the
// form (1 + erf(x / sqrt 2)) / 2 loses all digits for x << 0.
template <class V>
FASTDL_HD V normal_cdf(V x) { return V(0.5) * erfc(V(-0.70710678118654752440) * x); }

struct Identity {  // y = x (a Dense layer without activation)
  template <class V> FASTDL_HD V operator()(V x) const { return x; }
};
struct IdentityBackward {  // dx = g
  template <class V> FASTDL_HD V operator()(V g, V) const { return g; }
};

struct Sigmoid {  // y = 1 / (1 + exp(-x))
  template <class V> FASTDL_HD V operator()(V x) const { return sigmoid_of(x); }
};
struct SigmoidBackward {  // s = y:  dx = g y (1 - y)
  template <class V> FASTDL_HD V operator()(V g, V y) const { return g * y * (V(1) - y); }
};

struct Tanh {  // y = tanh x
  template <class V> FASTDL_HD V operator()(V x) const { return tanh(x); }
};
struct TanhBackward {  // s = y:  dx = g (1 - y^2)
  template <class V> FASTDL_HD V operator()(V g, V y) const { return g * (V(1) - y * y); }
};

struct Relu {  // y = max(x, 0); NaN passes through as in torch.relu
  template <class V> FASTDL_HD V operator()(V x) const { return where(x < V(0), V(0), x); }
};
struct ReluBackward {  // s = x:  dx = g [x > 0]
  template <class V> FASTDL_HD V operator()(V g, V x) const { return where(x > V(0), g, V(0)); }
};

template <class S>
struct LeakyRelu {  // y = x for x >= 0, alpha x otherwise
  S alpha;
  template <class V> FASTDL_HD V operator()(V x) const { return where(x < V(0), V(alpha) * x, x); }
};
template <class S>
struct LeakyReluBackward {  // s = x:  dx = g for x > 0, alpha g otherwise
  S alpha;
  template <class V> FASTDL_HD V operator()(V g, V x) const { return where(x > V(0), g, V(alpha) * g); }
};

struct Gelu {  // exact: y = x Phi(x)
  template <class V> FASTDL_HD V operator()(V x) const { return x * normal_cdf(x); }
};
struct GeluBackward {  // s = x:  dx = g (Phi(x) + x phi(x)),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    V pdf = V(0.39894228040143267794) * exp(V(-0.5) * x * x);
    return g * (normal_cdf(x) + x * pdf);
  }
};

// tanh form: y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3).
// Written as y = x sigma(2u), the same value, since 1 + tanh u = 2 sigma(2u); the tanh
// spelling cancels to nothing for x << 0.
template <class V>
FASTDL_HD V gelu_tanh_2u(V x) {
  return V(1.5957691216057307117) * (x + V(0.044715) * x * x * x);  // 2 sqrt(2/pi) (x + c x^3)
}
struct GeluTanh {
  template <class V> FASTDL_HD V operator()(V x) const { return x * sigmoid_of(gelu_tanh_2u(x)); }
};
// s = x:  dx = g (s2 + x d(2u)/dx s2 (1 - s2)),  s2 = sigma(2u),  d(2u)/dx = 2 sqrt(2/pi) (1 + 3c x^2).
// For |x| > 30, s2 (1 - s2) is exactly 0 in float and in double, so clamping x to +-30 inside
// that term changes nothing, while the unclamped x d(2u)/dx overflows to inf for huge |x|
// (|x| > 1e13 in float) and inf * 0 would be NaN.
struct GeluTanhBackward {
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    V s2 = sigmoid_of(gelu_tanh_2u(x));
    V xc = where(x > V(30), V(30), where(x < V(-30), V(-30), x));
    V slope = V(1.5957691216057307117) * (V(1) + V(0.134145) * xc * xc);
    return g * (s2 + xc * slope * s2 * (V(1) - s2));
  }
};

struct Silu {  // y = x sigma(x)
  template <class V> FASTDL_HD V operator()(V x) const { return x * sigmoid_of(x); }
};
struct SiluBackward {  // s = x:  dx = g sigma(x) (1 + x (1 - sigma(x)))
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    V s = sigmoid_of(x);
    return g * s * (V(1) + x * (V(1) - s));
  }
};

// exp(x) - 1 for x <= 0 without the cancellation of the plain form near 0 (Kahan):
// (u - 1) x / log u with u = exp(x), which is x where u rounds to 1 and -1 where u underflows.
template <class V>
FASTDL_HD V expm1_nonpositive(V x) {
  V u = exp(x);
  return where(u == V(1), x, where(u == V(0), V(-1), (u - V(1)) * x / log(u)));
}

// log(1 + z) for 0 <= z <= 1 without losing small z (Goldberg): log(w) z / (w - 1), w = 1 + z,
// which is z where w rounds to 1.
template <class V>
FASTDL_HD V log1p_unit(V z) {
  V w = V(1) + z;
  return where(w == V(1), z, log(w) * z / (w - V(1)));
}

// softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow, and the tiny values
// of x << 0 (exp(x)) are kept.
template <class V>
FASTDL_HD V softplus_of(V x) { return where(x < V(0), V(0), x) + log1p_unit(exp(-abs(x))); }

template <class S>
struct Elu {  // y = x for x > 0, alpha (exp(x) - 1) otherwise
  S alpha;
  template <class V> FASTDL_HD V operator()(V x) const {
    return where(x > V(0), x, V(alpha) * expm1_nonpositive(where(x > V(0), V(0), x)));  // NaN stays NaN
  }
};
template <class S>
struct EluBackward {  // s = x:  dx = g for x > 0, g alpha exp(x) otherwise
  S alpha;
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    return where(x > V(0), g, g * V(alpha) * exp(where(x > V(0), V(0), x)));
  }
};

// SELU's constants (Klambauer et al.), as Keras and torch use them.
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
struct Selu {  // y = scale elu_alpha(x)
  template <class V> FASTDL_HD V operator()(V x) const { return V(kSeluScale) * Elu<double>{kSeluAlpha}(x); }
};
struct SeluBackward {  // s = x
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    return V(kSeluScale) * EluBackward<double>{kSeluAlpha}(g, x);
  }
};

struct Softplus {  // y = log(1 + exp(x))
  template <class V> FASTDL_HD V operator()(V x) const { return softplus_of(x); }
};
struct SoftplusBackward {  // s = x:  dx = g sigma(x)
  template <class V> FASTDL_HD V operator()(V g, V x) const { return g * sigmoid_of(x); }
};

struct Softsign {  // y = x / (1 + |x|)
  template <class V> FASTDL_HD V operator()(V x) const { return x / (V(1) + abs(x)); }
};
struct SoftsignBackward {  // s = x:  dx = g / (1 + |x|)^2
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    V d = V(1) + abs(x);
    return g / (d * d);
  }
};

struct Relu6 {  // y = min(max(x, 0), 6); NaN passes through
  template <class V> FASTDL_HD V operator()(V x) const { return where(x < V(0), V(0), where(x > V(6), V(6), x)); }
};
struct Relu6Backward {  // s = x:  dx = g for 0 < x < 6
  template <class V> FASTDL_HD V operator()(V g, V x) const { return where(x > V(0), where(x < V(6), g, V(0)), V(0)); }
};

struct HardSigmoid {  // Keras 3's: y = clip(x / 6 + 1/2, 0, 1) = relu6(x + 3) / 6
  template <class V> FASTDL_HD V operator()(V x) const {
    V v = x * V(1.0 / 6.0) + V(0.5);
    return where(v < V(0), V(0), where(v > V(1), V(1), v));
  }
};
struct HardSigmoidBackward {  // s = x:  dx = g / 6 for -3 < x < 3
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    return where(x > V(-3), where(x < V(3), g * V(1.0 / 6.0), V(0)), V(0));
  }
};

struct Mish {  // y = x tanh(softplus(x))
  template <class V> FASTDL_HD V operator()(V x) const { return x * tanh(softplus_of(x)); }
};
// s = x:  dx = g (t + x (1 - t^2) sigma(x)), t = tanh(softplus(x)). For x >> 0, 1 - t^2 is 0 before
// x could overflow the product; for x << 0, sigma(x) is 0.
struct MishBackward {
  template <class V> FASTDL_HD V operator()(V g, V x) const {
    V t = tanh(softplus_of(x));
    return g * (t + x * (V(1) - t * t) * sigmoid_of(x));
  }
};

struct Exponential {  // y = exp(x) (inf for x > 88.7 in float, as exp itself)
  template <class V> FASTDL_HD V operator()(V x) const { return exp(x); }
};
struct ExponentialBackward {  // s = y:  dx = g y
  template <class V> FASTDL_HD V operator()(V g, V y) const { return g * y; }
};

// Calls f(forward functor, backward functor, cheap) for the activation op, in the compute type
// C (leaky ReLU's slope is converted to it). cheap: no transcendental function per element
// (the CPU loops give such maps larger pieces per thread). The one op -> formula table.
template <class C, class F>
FASTDL_HD void visit_activation(Activation op, double alpha, F f) {
  switch (op) {
    case Activation::sigmoid: return f(Sigmoid{}, SigmoidBackward{}, false);
    case Activation::tanh: return f(Tanh{}, TanhBackward{}, false);
    case Activation::relu: return f(Relu{}, ReluBackward{}, true);
    case Activation::leaky_relu: return f(LeakyRelu<C>{C(alpha)}, LeakyReluBackward<C>{C(alpha)}, true);
    case Activation::gelu: return f(Gelu{}, GeluBackward{}, false);
    case Activation::gelu_tanh: return f(GeluTanh{}, GeluTanhBackward{}, false);
    case Activation::silu: return f(Silu{}, SiluBackward{}, false);
    case Activation::identity: return f(Identity{}, IdentityBackward{}, true);
    case Activation::elu: return f(Elu<C>{C(alpha)}, EluBackward<C>{C(alpha)}, false);
    case Activation::selu: return f(Selu{}, SeluBackward{}, false);
    case Activation::softplus: return f(Softplus{}, SoftplusBackward{}, false);
    case Activation::softsign: return f(Softsign{}, SoftsignBackward{}, true);
    case Activation::relu6: return f(Relu6{}, Relu6Backward{}, true);
    case Activation::hard_sigmoid: return f(HardSigmoid{}, HardSigmoidBackward{}, true);
    case Activation::mish: return f(Mish{}, MishBackward{}, false);
    case Activation::exponential: return f(Exponential{}, ExponentialBackward{}, false);
    case Activation::count: return;
  }
}

}  // namespace kernels
}  // namespace fastdl
