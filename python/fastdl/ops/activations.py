"""Activation functions, forward and backward, on NumPy or CuPy arrays.

Every function takes float32 or float64 arrays of any shape (CuPy: also float16, computed in
float32) (non-contiguous inputs are copied), computes in the input's dtype, and writes into
``out`` when given (same shape, dtype and device, C-contiguous; ``out=x`` works in place).
Results are on the input's device. Backward functions take ``grad`` = dL/dy and
the tensor the formula needs (the forward output ``y``, or its input ``x``) and return dL/dx.
"""

from .. import _backend
from .._checks import array_module, axis_index, float_array, output, real, same_as

_IDS = _backend.ACTIVATIONS


def _forward(op, x, out, alpha=0.0):
    x = float_array(x, "x")
    out, (x,) = output(out, x, "x", (x,))
    _backend.kernels_for(x).activation(op, x, out, alpha)
    return out


def _backward(op, grad, saved, saved_name, out, alpha=0.0):
    grad = float_array(grad, "grad")
    saved = same_as(saved, grad, saved_name, "grad")
    out, (grad, saved) = output(out, grad, "grad", (grad, saved))
    _backend.kernels_for(grad).activation_backward(op, grad, saved, out, alpha)
    return out


def sigmoid(x, out=None):
    """Logistic sigmoid: y = 1 / (1 + exp(-x)). Exact 0 and 1 in the tails, never NaN."""
    return _forward(_IDS["sigmoid"], x, out)


def sigmoid_backward(grad, y, out=None):
    """dL/dx = grad * y * (1 - y), with y = sigmoid(x)."""
    return _backward(_IDS["sigmoid"], grad, y, "y", out)


def tanh(x, out=None):
    """Hyperbolic tangent: y = tanh(x) = (exp(x) - exp(-x)) / (exp(x) + exp(-x))."""
    return _forward(_IDS["tanh"], x, out)


def tanh_backward(grad, y, out=None):
    """dL/dx = grad * (1 - y^2), with y = tanh(x)."""
    return _backward(_IDS["tanh"], grad, y, "y", out)


def relu(x, out=None):
    """Rectified linear unit: y = max(x, 0) (NaN stays NaN)."""
    return _forward(_IDS["relu"], x, out)


def relu_backward(grad, x, out=None):
    """dL/dx = grad where x > 0, else 0."""
    return _backward(_IDS["relu"], grad, x, "x", out)


def _alpha(alpha):
    return real(alpha, "alpha")  # finite: a NaN slope would silently zero the negative side


def leaky_relu(x, alpha=0.01, out=None):
    """Leaky ReLU: y = x for x >= 0, alpha * x for x < 0."""
    return _forward(_IDS["leaky_relu"], x, out, _alpha(alpha))


def leaky_relu_backward(grad, x, alpha=0.01, out=None):
    """dL/dx = grad where x > 0, else alpha * grad."""
    return _backward(_IDS["leaky_relu"], grad, x, "x", out, _alpha(alpha))


def _gelu_id(approximate):
    if approximate in (False, None, "none"):
        return _IDS["gelu"]
    if approximate in (True, "tanh"):
        return _IDS["gelu_tanh"]
    raise ValueError(f"approximate must be False/'none' or True/'tanh', got {approximate!r}")


def gelu(x, approximate=False, out=None):
    """Gaussian error linear unit.

    Exact (approximate=False):  y = x * Phi(x) = x * erfc(-x / sqrt(2)) / 2.
    Tanh form (approximate=True or 'tanh'):  y = x/2 * (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
    computed as x * sigmoid(2u), which is equal and does not cancel for x << 0.
    """
    return _forward(_gelu_id(approximate), x, out)


def gelu_backward(grad, x, approximate=False, out=None):
    """dL/dx for gelu.

    Exact:  grad * (Phi(x) + x * phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi).
    Tanh form:  grad * (s + x * u2' * s * (1 - s)), s = sigmoid(2u), u2' = 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """
    return _backward(_gelu_id(approximate), grad, x, "x", out)


def silu(x, out=None):
    """SiLU / swish: y = x * sigmoid(x)."""
    return _forward(_IDS["silu"], x, out)


def silu_backward(grad, x, out=None):
    """dL/dx = grad * s * (1 + x * (1 - s)), s = sigmoid(x)."""
    return _backward(_IDS["silu"], grad, x, "x", out)


def elu(x, alpha=1.0, out=None):
    """ELU: y = x for x > 0, alpha (exp(x) - 1) otherwise (exp(x) - 1 without cancellation)."""
    return _forward(_IDS["elu"], x, out, _alpha(alpha))


def elu_backward(grad, x, alpha=1.0, out=None):
    """dL/dx = grad for x > 0, grad * alpha * exp(x) otherwise."""
    return _backward(_IDS["elu"], grad, x, "x", out, _alpha(alpha))


def selu(x, out=None):
    """SELU: y = scale * elu(x, alpha), alpha = 1.67326..., scale = 1.05070... (Klambauer et al.)."""
    return _forward(_IDS["selu"], x, out)


def selu_backward(grad, x, out=None):
    """dL/dx = scale * grad for x > 0, scale * grad * alpha * exp(x) otherwise."""
    return _backward(_IDS["selu"], grad, x, "x", out)


def softplus(x, out=None):
    """Softplus: y = log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|)) (no overflow)."""
    return _forward(_IDS["softplus"], x, out)


def softplus_backward(grad, x, out=None):
    """dL/dx = grad * sigmoid(x)."""
    return _backward(_IDS["softplus"], grad, x, "x", out)


def softsign(x, out=None):
    """Softsign: y = x / (1 + |x|)."""
    return _forward(_IDS["softsign"], x, out)


def softsign_backward(grad, x, out=None):
    """dL/dx = grad / (1 + |x|)^2."""
    return _backward(_IDS["softsign"], grad, x, "x", out)


def relu6(x, out=None):
    """ReLU6: y = min(max(x, 0), 6)."""
    return _forward(_IDS["relu6"], x, out)


def relu6_backward(grad, x, out=None):
    """dL/dx = grad for 0 < x < 6, else 0."""
    return _backward(_IDS["relu6"], grad, x, "x", out)


def hard_sigmoid(x, out=None):
    """Keras 3's hard sigmoid: y = clip(x / 6 + 1/2, 0, 1)."""
    return _forward(_IDS["hard_sigmoid"], x, out)


def hard_sigmoid_backward(grad, x, out=None):
    """dL/dx = grad / 6 for -3 < x < 3, else 0."""
    return _backward(_IDS["hard_sigmoid"], grad, x, "x", out)


def mish(x, out=None):
    """Mish: y = x * tanh(softplus(x))."""
    return _forward(_IDS["mish"], x, out)


def mish_backward(grad, x, out=None):
    """dL/dx = grad * (t + x (1 - t^2) sigmoid(x)), t = tanh(softplus(x))."""
    return _backward(_IDS["mish"], grad, x, "x", out)


def exponential(x, out=None):
    """y = exp(x) (inf beyond the dtype's range, as exp)."""
    return _forward(_IDS["exponential"], x, out)


def exponential_backward(grad, y, out=None):
    """dL/dx = grad * y, y = exp(x)."""
    return _backward(_IDS["exponential"], grad, y, "y", out)


# ---- softmax family: along one axis ------------------------------------------------------------

def _along_last(run, arrays, axis, out, like_name):
    """Runs a last-axis row kernel for any axis: moves `axis` last (a copy) when it is not."""
    ref = arrays[0]
    if ref.ndim == 0:
        raise ValueError(f"{like_name} must have at least one dimension")
    ax = axis_index(axis, ref.ndim)
    if ax == ref.ndim - 1:
        out, arrays = output(out, ref, like_name, arrays)
        run(*arrays, out)
        return out
    out, _ = output(out, ref, like_name)
    moved = [float_array(a.swapaxes(ax, -1), like_name) for a in arrays]
    result = array_module(ref).empty_like(moved[0])
    run(*moved, result)
    out[...] = result.swapaxes(ax, -1)
    return out


def softmax(x, axis=-1, out=None):
    """Softmax along `axis`: y_i = exp(x_i - m) / sum_j exp(x_j - m), m = max_j x_j (stable for any finite x)."""
    x = float_array(x, "x")
    return _along_last(lambda a, o: _backend.kernels_for(a).softmax(a, o, False), (x,), axis, out, "x")


def softmax_backward(grad, y, axis=-1, out=None):
    """dL/dx_i = y_i * (grad_i - sum_j grad_j y_j), with y = softmax(x) along `axis`."""
    grad = float_array(grad, "grad")
    y = same_as(y, grad, "y", "grad")
    return _along_last(lambda g, s, o: _backend.kernels_for(g).softmax_backward(g, s, o, False), (grad, y), axis, out, "grad")


def log_softmax(x, axis=-1, out=None):
    """Log-softmax along `axis`: y_i = (x_i - m) - log(sum_j exp(x_j - m)), m = max_j x_j."""
    x = float_array(x, "x")
    return _along_last(lambda a, o: _backend.kernels_for(a).softmax(a, o, True), (x,), axis, out, "x")


def log_softmax_backward(grad, y, axis=-1, out=None):
    """dL/dx_i = grad_i - exp(y_i) * sum_j grad_j, with y = log_softmax(x) along `axis`."""
    grad = float_array(grad, "grad")
    y = same_as(y, grad, "y", "grad")
    return _along_last(lambda g, s, o: _backend.kernels_for(g).softmax_backward(g, s, o, True), (grad, y), axis, out, "grad")
