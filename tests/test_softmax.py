"""softmax / log_softmax and their backward passes against float64 references."""

import numpy as np
import pytest

from fastdl import ops
import reference as ref
from conftest import assert_close

SHAPES = [(0, 5), (3, 0), (1, 1), (1, 17), (7, 33), (64, 1000), (2, 3, 40), (5,), (2, 100_003)]


def _logits(rng, shape, dtype, scale=5.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_softmax_forward(arrays, shape, dtype, rng):
    x = _logits(rng, shape, dtype)
    y = arrays.run(ops.softmax, x)
    assert y.dtype == dtype and y.shape == x.shape
    # float32: exp(x - m) carries the rounding of x - m, |x - m| * 6e-8 relative (~3e-6 here)
    assert_close(y, ref.softmax(x), dtype, rtol=2e-5 if dtype == np.float32 else None)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_log_softmax_forward(arrays, shape, dtype, rng):
    x = _logits(rng, shape, dtype)
    y = arrays.run(ops.log_softmax, x)
    # log-probabilities near 0 are absolute quantities: a few ulp of the row's max |x|
    atol = 8 * np.finfo(dtype).eps * np.max(np.abs(x), initial=1.0)
    assert_close(y, ref.log_softmax(x), dtype, atol=atol)


@pytest.mark.parametrize("axis", [0, 1, -2])
def test_other_axes(arrays, axis, dtype, rng):
    x = _logits(rng, (6, 7, 8), dtype)
    assert_close(arrays.run(ops.softmax, x, axis=axis), ref.softmax(x, axis=axis), dtype, rtol=2e-5 if dtype == np.float32 else None)
    atol = 8 * np.finfo(dtype).eps * np.max(np.abs(x))
    assert_close(arrays.run(ops.log_softmax, x, axis=axis), ref.log_softmax(x, axis=axis), dtype, atol=atol)
    g = _logits(rng, (6, 7, 8), dtype, 1.0)
    y = arrays.run(ops.softmax, x, axis=axis)
    expected = y * (g - (g.astype(np.float64) * y).sum(axis=axis, keepdims=True))
    assert_close(arrays.run(ops.softmax_backward, g, y, axis=axis), expected, dtype, atol=8 * np.finfo(dtype).eps)


def test_extreme_logits_give_no_nan(arrays, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [3e38, -3e38, 1.0], [88.0, 89.0, -100.0]], dtype=dtype)
    y = arrays.run(ops.softmax, x)
    assert np.all(np.isfinite(y))
    assert_close(y, ref.softmax(x), dtype, atol=1e-37)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    # log_softmax of the 3e38 row is -6e38 there: -inf is its correct float32 value, so not that row
    ly = arrays.run(ops.log_softmax, x[[0, 1, 3]])
    assert np.all(np.isfinite(ly))
    assert_close(ly, ref.log_softmax(x[[0, 1, 3]]), dtype)


@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (9, 31), (16, 1000)], ids=str)
def test_softmax_backward(arrays, shape, dtype, rng):
    x = _logits(rng, shape, dtype)
    g = _logits(rng, shape, dtype, 1.0)
    y = arrays.run(ops.softmax, x)
    yd, gd = y.astype(np.float64), g.astype(np.float64)
    expected = yd * (gd - (gd * yd).sum(axis=-1, keepdims=True))
    atol = 8 * np.finfo(dtype).eps * np.abs(yd) * np.abs(gd).sum(axis=-1, keepdims=True) + 1e-37
    assert_close(arrays.run(ops.softmax_backward, g, y), expected, dtype, atol=atol)


@pytest.mark.parametrize("shape", [(0, 4), (1, 1), (9, 31), (16, 1000)], ids=str)
def test_log_softmax_backward(arrays, shape, dtype, rng):
    x = _logits(rng, shape, dtype)
    g = _logits(rng, shape, dtype, 1.0)
    y = arrays.run(ops.log_softmax, x)
    gd = g.astype(np.float64)
    expected = gd - np.exp(y.astype(np.float64)) * gd.sum(axis=-1, keepdims=True)
    atol = 8 * np.finfo(dtype).eps * np.abs(gd).sum(axis=-1, keepdims=True)
    assert_close(arrays.run(ops.log_softmax_backward, g, y), expected, dtype, atol=atol)


@pytest.mark.parametrize("log", [False, True])
def test_backward_matches_finite_differences(backend, log, rng):
    x = rng.standard_normal((4, 9))
    w = rng.standard_normal((4, 9))  # L = sum(w * f(x))
    f = ops.log_softmax if log else ops.softmax
    h = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (np.sum(w * f(xp)) - np.sum(w * f(xm))) / (2 * h)
    bwd = ops.log_softmax_backward if log else ops.softmax_backward
    np.testing.assert_allclose(bwd(w, f(x)), numeric, rtol=1e-6, atol=1e-8)


def test_in_place(backend, dtype, rng):
    x = _logits(rng, (10, 50), dtype)
    expected = ref.softmax(x)
    assert ops.softmax(x, out=x) is x
    assert_close(x, expected, dtype, rtol=2e-5 if dtype == np.float32 else None)
