"""Activations, forward and backward, on every backend against float64 references."""

import numpy as np
import pytest

from fastdl import ops
import reference as ref
from conftest import EXTREMES, SIZES, assert_close, random_array

# name -> (fastdl forward, reference forward, fastdl backward, saved tensor, reference dL/dx)
FORWARD = {
    "sigmoid": (ops.sigmoid, ref.sigmoid),
    "tanh": (ops.tanh, ref.tanh),
    "relu": (ops.relu, ref.relu),
    "leaky_relu": (lambda x, out=None: ops.leaky_relu(x, 0.2, out=out), lambda x: ref.leaky_relu(x, 0.2)),
    "gelu": (ops.gelu, ref.gelu),
    "gelu_tanh": (lambda x, out=None: ops.gelu(x, approximate=True, out=out), ref.gelu_tanh),
    "silu": (ops.silu, ref.silu),
    "elu": (lambda x, out=None: ops.elu(x, 0.7, out=out), lambda x: ref.elu(x, 0.7)),
    "selu": (ops.selu, ref.selu),
    "softplus": (ops.softplus, ref.softplus),
    "softsign": (ops.softsign, ref.softsign),
    "relu6": (ops.relu6, ref.relu6),
    "hard_sigmoid": (ops.hard_sigmoid, ref.hard_sigmoid),
    "mish": (ops.mish, ref.mish),
    "exponential": (ops.exponential, ref.exponential),
}
UNBOUNDED = {"exponential"}  # exp overflows to inf beyond ln(max): not a finite-extremes case

# Backward functions take (grad, saved); the reference is the formula in terms of the same saved array.
BACKWARD = {
    "sigmoid": (ops.sigmoid_backward, "y", lambda g, y: g * y * (1 - y)),
    "tanh": (ops.tanh_backward, "y", lambda g, y: g * (1 - y * y)),
    "relu": (ops.relu_backward, "x", lambda g, x: np.where(x > 0, g, 0.0)),
    "leaky_relu": (lambda g, x, out=None: ops.leaky_relu_backward(g, x, 0.2, out=out), "x",
                   lambda g, x: np.where(x > 0, g, 0.2 * g)),
    "gelu": (ops.gelu_backward, "x", lambda g, x: g * ref.d_gelu(x)),
    "gelu_tanh": (lambda g, x, out=None: ops.gelu_backward(g, x, approximate="tanh", out=out), "x",
                  lambda g, x: g * ref.d_gelu_tanh(x)),
    "silu": (ops.silu_backward, "x", lambda g, x: g * ref.d_silu(x)),
    "elu": (lambda g, x, out=None: ops.elu_backward(g, x, 0.7, out=out), "x", lambda g, x: g * ref.d_elu(x, 0.7)),
    "selu": (ops.selu_backward, "x", lambda g, x: g * ref.d_selu(x)),
    "softplus": (ops.softplus_backward, "x", lambda g, x: g * ref.sigmoid(x)),
    "softsign": (ops.softsign_backward, "x", lambda g, x: g * ref.d_softsign(x)),
    "relu6": (ops.relu6_backward, "x", lambda g, x: np.where((x > 0) & (x < 6), g, 0.0)),
    "hard_sigmoid": (ops.hard_sigmoid_backward, "x", lambda g, x: np.where((x > -3) & (x < 3), g / 6, 0.0)),
    "mish": (ops.mish_backward, "x", lambda g, x: g * ref.d_mish(x)),
    "exponential": (ops.exponential_backward, "y", lambda g, y: g * y),
}


def _rtol(name, dtype):
    # GELU's float32 tail (x < -8) is exp(-v) with v = x^2/2 (exact form) or 2u (tanh form) up to
    # ~70: the float32 roundings in forming v move exp(-v) by |v| * 1e-7 relative, ~1.5e-5 at
    # worst. (torch 2.13's float32 GELU returns 0 there, a relative error of 1.)
    if name in ("gelu", "gelu_tanh") and dtype == np.float32:
        return 2e-5
    return None


def _atol(name, dtype):
    # hard_sigmoid = x / 6 + 1/2 near 0 (x near -3) cancels: an absolute error of an ulp of 1/2, as
    # in every implementation computing in the input's dtype
    return float(np.finfo(dtype).eps) if name == "hard_sigmoid" else None


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("n", SIZES)
def test_forward_matches_reference(arrays, name, n, dtype, rng):
    fwd, reference = FORWARD[name]
    x = random_array(rng, n, dtype)
    y = arrays.run(fwd, x)
    assert y.dtype == dtype and y.shape == x.shape
    assert_close(y, reference(x), dtype, rtol=_rtol(name, dtype), atol=_atol(name, dtype))


@pytest.mark.parametrize("name", [n for n in FORWARD if n not in UNBOUNDED])
def test_forward_extremes_finite_and_exact(arrays, name, dtype):
    fwd, reference = FORWARD[name]
    x = EXTREMES.astype(dtype)
    y = arrays.run(fwd, x)
    assert np.all(np.isfinite(y)), y
    # Near the float32 underflow threshold results may flush to zero: absolute 1e-36 there.
    assert_close(y, reference(x), dtype, rtol=_rtol(name, dtype), atol=1e-36 if dtype == np.float32 else None)


@pytest.mark.parametrize("name", ["sigmoid", "silu"])
def test_near_the_float32_exp_overflow(backend, name):
    """exp(x) for x just below ln(FLT_MAX) = 88.72 is finite: sigmoid(-88.5) = 3.7e-39, not 0."""
    fwd, reference = FORWARD[name]
    x = np.array([-86.0, -87.0, -88.0, -88.4, -88.5, -88.7], dtype=np.float32)
    # the results are subnormal for x < -87.3: about 2^-23 / (result / 2^-149) relative precision
    assert_close(fwd(x), reference(x), np.float32, rtol=1e-5, atol=2e-45 * np.abs(x))


@pytest.mark.parametrize("name", BACKWARD)
@pytest.mark.parametrize("n", SIZES)
def test_backward_matches_reference(arrays, name, n, dtype, rng):
    bwd, saved_kind, reference = BACKWARD[name]
    x = random_array(rng, n, dtype)
    g = random_array(rng, n, dtype, scale=1.0)
    saved = arrays.run(FORWARD[name][0], x) if saved_kind == "y" else x
    got = arrays.run(bwd, g, saved)
    assert got.dtype == dtype
    # 1 - y^2 and y (1 - y) cancel near |y| = 1: the float32 error is absolute, a few ulp of |g|.
    atol = 4 * np.finfo(dtype).eps * np.abs(g.astype(np.float64)) + 1e-37
    assert_close(got, reference(ref.f64(g), ref.f64(saved)), dtype, rtol=_rtol(name, dtype), atol=atol)


@pytest.mark.parametrize("name", [n for n in BACKWARD if n not in UNBOUNDED])
def test_backward_extremes_finite(arrays, name, dtype):
    bwd, saved_kind, reference = BACKWARD[name]
    x = EXTREMES.astype(dtype)
    saved = arrays.run(FORWARD[name][0], x) if saved_kind == "y" else x
    g = np.ones_like(x)
    got = arrays.run(bwd, g, saved)
    assert np.all(np.isfinite(got)), got
    assert_close(got, reference(ref.f64(g), ref.f64(saved)), dtype, rtol=_rtol(name, dtype),
                 atol=4 * np.finfo(dtype).eps + 1e-36)


@pytest.mark.parametrize("name", FORWARD)
def test_backward_matches_finite_differences(backend, name, rng):
    """The backward formula is the derivative of the forward one (central differences, float64)."""
    fwd, _ = FORWARD[name]
    bwd, saved_kind, _ = BACKWARD[name]
    x = rng.uniform(-4, 4, 257)
    x = x[(np.abs(x) > 1e-3) & (np.abs(np.abs(x) - 3) > 1e-3)]  # kinks: relu-like at 0, hard_sigmoid at +-3
    h = 1e-6
    numeric = (fwd(x + h) - fwd(x - h)) / (2 * h)
    saved = fwd(x) if saved_kind == "y" else x
    analytic = bwd(np.ones_like(x), saved)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", FORWARD)
def test_out_and_in_place(backend, name, dtype, rng):
    fwd, reference = FORWARD[name]
    x = random_array(rng, 1001, dtype)
    expected = reference(x)
    out = np.empty_like(x)
    assert fwd(x, out=out) is out
    assert_close(out, expected, dtype, rtol=_rtol(name, dtype))
    y = x.copy()
    assert fwd(y, out=y) is y
    assert_close(y, expected, dtype, rtol=_rtol(name, dtype))


@pytest.mark.parametrize("name", FORWARD)
def test_non_contiguous_and_nd_input(backend, name, dtype, rng):
    fwd, reference = FORWARD[name]
    base = random_array(rng, 6 * 40, dtype).reshape(6, 40)
    view = base[:, ::3].T  # strided, transposed
    y = fwd(view)
    assert y.shape == view.shape
    assert_close(y, reference(view), dtype, rtol=_rtol(name, dtype))


@pytest.mark.parametrize("name", FORWARD)
def test_overlapping_out_reads_input_first(backend, name, rng):
    fwd, reference = FORWARD[name]
    buf = rng.standard_normal(200)
    x = buf[:150]
    expected = reference(x.copy())
    out = buf[50:]  # overlaps x, shifted
    fwd(x, out=out)
    assert_close(out, expected, np.float64)


def test_nan_propagates(backend, dtype):
    x = np.array([np.nan, 1.0], dtype=dtype)
    for name, (fwd, _) in FORWARD.items():
        assert np.isnan(fwd(x)[0]), name


def test_gelu_approximate_spellings(backend):
    x = np.linspace(-3, 3, 13)
    np.testing.assert_array_equal(ops.gelu(x, approximate="tanh"), ops.gelu(x, approximate=True))
    np.testing.assert_array_equal(ops.gelu(x, approximate="none"), ops.gelu(x))
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu(x, approximate="erf")


def test_zero_dim_input(backend):
    y = ops.sigmoid(np.float64(0.0))
    assert y.shape == () and y == 0.5


def test_exponential_overflows_where_exp_does(arrays, dtype):
    """exp's own range: finite up to ln(max), inf beyond; never NaN for a finite input."""
    big = np.log(np.finfo(dtype).max)
    x = np.array([-1e4, -100.0, 0.0, big * 0.999, big * 1.001, 1e4], dtype=dtype)
    y = arrays.run(ops.exponential, x)
    assert not np.isnan(y).any() and np.isinf(y[-2:]).all() and np.isfinite(y[:-2]).all()
