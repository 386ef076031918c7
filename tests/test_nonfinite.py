"""NaN and inf in, the same answer from every backend: NaN in, NaN out where a formula meets it
(no backend quietly turns a NaN into 0), and each backend agrees with the NumPy fallback on
which elements are NaN and on the finite ones."""

import numpy as np
import pytest

from fastdl import ops
from fastdl import _backend

# The NumPy fallback warns (RuntimeWarning) on NaN arithmetic; the answers are what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SPECIALS = np.array([np.nan, np.inf, -np.inf, 0.5, -0.5, 2.0, 1e-9, 1.0 - 1e-9, 0.0, 1.0])

ELEMENTWISE = {
    "sigmoid": ops.sigmoid, "tanh": ops.tanh, "relu": ops.relu, "leaky_relu": ops.leaky_relu,
    "gelu": ops.gelu, "gelu_tanh": lambda x: ops.gelu(x, approximate=True), "silu": ops.silu,
}
BACKWARD = {
    "sigmoid": ops.sigmoid_backward, "tanh": ops.tanh_backward, "relu": ops.relu_backward,
    "leaky_relu": ops.leaky_relu_backward, "gelu": ops.gelu_backward,
    "gelu_tanh": lambda g, x: ops.gelu_backward(g, x, approximate=True), "silu": ops.silu_backward,
}


def _on_each_backend(monkeypatch, fn):
    """fn() on the NumPy fallback and on the C++ extension (if present): {name: result}."""
    results = {}
    with _backend.use_host("numpy"):
        results["numpy"] = fn()
    if _backend.cpu_extension() is not None:
        with _backend.use_host("cpu"):
            results["cpu"] = fn()
    return results


def _agree(results):
    ref = results["numpy"]
    for name, got in results.items():
        for g, r in zip(np.atleast_1d(*got) if isinstance(got, tuple) else [got],
                        np.atleast_1d(*ref) if isinstance(ref, tuple) else [ref]):
            g, r = np.asarray(g, np.float64), np.asarray(r, np.float64)
            np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{name}: NaN positions")
            np.testing.assert_allclose(g[~np.isnan(g)], r[~np.isnan(r)], rtol=1e-5, atol=1e-30, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", sorted(ELEMENTWISE))
def test_activations_nan_in_nan_out(monkeypatch, op, dtype):
    x = SPECIALS.astype(dtype)
    results = _on_each_backend(monkeypatch, lambda: ELEMENTWISE[op](x))
    _agree(results)
    assert np.isnan(results["numpy"][0])  # NaN in, NaN out
    grad = np.ones_like(x)
    saved = ELEMENTWISE[op](x) if op in ("sigmoid", "tanh") else x
    results = _on_each_backend(monkeypatch, lambda: BACKWARD[op](grad, saved))
    _agree(results)
    if op not in ("relu", "leaky_relu"):  # their backward masks the gradient (0 at NaN, as torch's)
        assert np.isnan(results["numpy"][0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_with_nan_and_inf(monkeypatch, dtype):
    x = np.array([[np.nan, 1.0, 2.0], [np.inf, 0.0, 1.0], [1.0, 2.0, 3.0]], dtype=dtype)
    for fn in (ops.softmax, ops.log_softmax):
        results = _on_each_backend(monkeypatch, lambda: fn(x))
        _agree(results)
        assert np.all(np.isnan(results["numpy"][0])) and np.all(np.isfinite(results["numpy"][2]))


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_crossentropy_nan_prediction(monkeypatch, from_logits, dtype):
    """A NaN prediction gives a NaN loss and a NaN gradient at that element on every backend
    (the NumPy fallback used to answer 0.0 for the gradient of a NaN probability)."""
    pred = np.array([np.nan, 0.5, 0.2, 1.0, 0.0], dtype=dtype)
    target = np.array([1.0, 0.0, 1.0, 1.0, 0.0], dtype=dtype)
    results = _on_each_backend(monkeypatch, lambda: ops.binary_crossentropy(pred, target, from_logits=from_logits))
    _agree(results)
    loss, grad = results["numpy"]
    assert np.isnan(loss) and np.isnan(grad[0]) and np.all(np.isfinite(grad[1:]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_and_softmax_ce_nan(monkeypatch, dtype):
    pred = np.array([np.nan, 1.0, 2.0], dtype=dtype)
    target = np.zeros(3, dtype=dtype)
    results = _on_each_backend(monkeypatch, lambda: ops.mse(pred, target))
    _agree(results)
    assert np.isnan(results["numpy"][0]) and np.isnan(results["numpy"][1][0])
    logits = np.array([[np.nan, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype=dtype)
    results = _on_each_backend(monkeypatch, lambda: ops.softmax_cross_entropy(logits, np.array([1, 2])))
    _agree(results)
    loss, grad = results["numpy"]
    assert np.isnan(loss) and np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))
