"""float64 references, written from the textbook formulas, independent of fastdl's code."""

import math

import numpy as np

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def f64(a):
    return np.asarray(a, dtype=np.float64)


def sigmoid(x):
    x = f64(x)
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def tanh(x):
    return np.tanh(f64(x))


def relu(x):
    x = f64(x)
    return np.where(x > 0, x, 0.0)


def leaky_relu(x, alpha):
    x = f64(x)
    return np.where(x >= 0, x, alpha * x)


def gelu(x):
    x = f64(x)
    return x * 0.5 * _erfc(-x / math.sqrt(2))


def _one_plus_tanh(u):
    """1 + tanh(u); for u < 0 as 2 e^{2u} / (1 + e^{2u}), where 1 + tanh(u) would cancel."""
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(2 * np.minimum(u, 0))
        return np.where(u >= 0, 1 + np.tanh(u), 2 * e / (1 + e))


def _sech2(u):
    with np.errstate(over="ignore"):
        return 1.0 / np.cosh(u) ** 2


def gelu_tanh(x):
    x = f64(x)
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * _one_plus_tanh(u)


def silu(x):
    return f64(x) * sigmoid(x)


def d_sigmoid(x):
    s = sigmoid(x)
    return s * (1 - s)


def d_tanh(x):
    return _sech2(f64(x))


def d_gelu(x):
    x = f64(x)
    return 0.5 * _erfc(-x / math.sqrt(2)) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def d_gelu_tanh(x):
    x = f64(x)
    k = math.sqrt(2 / math.pi)
    u = k * (x + 0.044715 * x ** 3)
    with np.errstate(under="ignore"):
        return 0.5 * _one_plus_tanh(u) + 0.5 * x * _sech2(u) * k * (1 + 3 * 0.044715 * x * x)


def d_silu(x):
    x = f64(x)
    s = sigmoid(x)
    return s + x * s * (1 - s)


def softmax(x, axis=-1):
    x = f64(x)
    if x.size == 0:
        return x.copy()
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    x = f64(x)
    if x.size == 0:
        return x.copy()
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


# ---- issue #11's activations ------------------------------------------------------------------------

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def elu(x, alpha=1.0):
    x = f64(x)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def d_elu(x, alpha=1.0):
    x = f64(x)
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def d_selu(x):
    return SELU_SCALE * d_elu(x, SELU_ALPHA)


def softplus(x):
    return np.logaddexp(0.0, f64(x))


def softsign(x):
    x = f64(x)
    return x / (1 + np.abs(x))


def d_softsign(x):
    return 1 / (1 + np.abs(f64(x))) ** 2


def relu6(x):
    return np.clip(f64(x), 0, 6)


def hard_sigmoid(x):
    return np.clip(f64(x) / 6 + 0.5, 0, 1)


def mish(x):
    x = f64(x)
    return x * np.tanh(softplus(x))


def d_mish(x):
    x = f64(x)
    t = np.tanh(softplus(x))
    return t + x * (1 - t * t) * sigmoid(x)


def exponential(x):
    with np.errstate(over="ignore"):
        return np.exp(f64(x))
