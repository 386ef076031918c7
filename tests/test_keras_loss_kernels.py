"""Keras's elementwise losses as fused kernels (fastdl.ops.elementwise_loss) on every backend and
ISA against float64 references written here; the training-level results against Keras 3 itself
are in tests/keras_swap/losses_zoo.py."""

import numpy as np
import pytest

from fastdl import ops
from conftest import assert_close

EPS = 1e-7


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _bce(p, t):
    pc = np.clip(p, EPS, 1 - EPS)
    return -(t * np.log(pc) + (1 - t) * np.log(1 - pc))


def _focal(p, t, alpha, gamma, balance):
    q = 1 - (t * p + (1 - t) * (1 - p))
    w = t * alpha + (1 - t) * (1 - alpha) if balance else 1.0
    return w * q ** gamma * _bce(p, t)


# name -> (value per element, its derivative with respect to the prediction), float64 textbook forms
REFS = {
    "mae": (lambda p, t: np.abs(p - t), lambda p, t: np.sign(p - t)),
    "mape": (lambda p, t: 100 * np.abs(t - p) / np.maximum(np.abs(t), EPS),
             lambda p, t: 100 * np.sign(p - t) / np.maximum(np.abs(t), EPS)),
    "msle": (lambda p, t: (np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(t, EPS))) ** 2,
             lambda p, t: np.where(p < EPS, 0, 2 * (np.log1p(np.maximum(p, EPS)) - np.log1p(np.maximum(t, EPS)))
                                   / (1 + np.maximum(p, EPS)))),
    "huber": (lambda p, t: np.where(np.abs(p - t) <= 0.7, 0.5 * (p - t) ** 2, 0.7 * (np.abs(p - t) - 0.35)),
              lambda p, t: np.clip(p - t, -0.7, 0.7)),
    "log_cosh": (lambda p, t: np.log(np.cosh(p - t)), lambda p, t: np.tanh(p - t)),
    "poisson": (lambda p, t: p - t * np.log(p + EPS), lambda p, t: 1 - t / (p + EPS)),
    "hinge": (lambda p, t: np.maximum(1 - t * p, 0), lambda p, t: np.where(1 - t * p > 0, -t, 0)),
    "squared_hinge": (lambda p, t: np.maximum(1 - t * p, 0) ** 2, lambda p, t: -2 * t * np.maximum(1 - t * p, 0)),
    "kl_divergence": (lambda p, t: np.clip(t, EPS, 1) * np.log(np.clip(t, EPS, 1) / np.clip(p, EPS, 1)),
                      lambda p, t: np.where((p < EPS) | (p > 1), 0, -np.clip(t, EPS, 1) / np.clip(p, EPS, 1))),
}


def _inputs(name, n, dtype, rng):
    t = rng.random(n)
    if name in ("hinge", "squared_hinge"):
        t = np.where(t > 0.5, 1.0, -1.0)
    p = rng.random(n) * 1.5 + 0.01 if name in ("poisson", "msle", "mape", "kl_divergence") else rng.standard_normal(n)
    return p.astype(dtype), t.astype(dtype)


def _numeric(f, p, t, h=1e-6):
    return (f(p + h, t) - f(p - h, t)) / (2 * h)


@pytest.mark.parametrize("name", sorted(REFS))
@pytest.mark.parametrize("n", [0, 1, 33, 10_001])
def test_value_and_gradient_match_references(arrays, name, n, dtype, rng):
    p, t = _inputs(name, n, dtype, rng)
    loss, grad = arrays.run(ops.elementwise_loss, name, p, t, **({"delta": 0.7} if name == "huber" else {}))
    value, deriv = REFS[name]
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    if n == 0:
        assert np.isnan(loss) and grad.shape == (0,)
        return
    assert_close(np.asarray(loss, np.float64), value(p64, t64).mean(), dtype, rtol=1e-5 if dtype == np.float32 else None)
    assert_close(grad, deriv(p64, t64) / n, dtype, atol=1e-6 / n if dtype == np.float32 else None)


@pytest.mark.parametrize("balance,alpha,gamma", [(False, 0.25, 2.0), (True, 0.3, 1.0), (True, 0.6, 0.0)])
@pytest.mark.parametrize("from_logits", [False, True])
def test_binary_focal_against_reference_and_differences(arrays, dtype, rng, balance, alpha, gamma, from_logits):
    n = 2001
    x = (rng.standard_normal(n) * 3 if from_logits else rng.random(n) * 0.98 + 0.01).astype(dtype)
    t = (rng.random(n) > 0.4).astype(dtype)
    loss, grad = arrays.run(ops.elementwise_loss, "binary_focal", x, t, alpha=alpha, gamma=gamma,
                            apply_class_balancing=balance, from_logits=from_logits)
    f = lambda z, tt: _focal(_sigmoid(z) if from_logits else z, tt, alpha, gamma, balance)  # noqa: E731
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    assert_close(np.asarray(loss, np.float64), f(x64, t64).mean(), dtype, rtol=1e-5 if dtype == np.float32 else None)
    assert_close(grad, _numeric(f, x64, t64) / n, dtype, rtol=1e-4, atol=1e-7)


def test_extremes_stay_finite(arrays, dtype):
    """No NaN or inf for finite inputs where the loss is defined (log_cosh at |x| ~ 1e30, huber's
    linear zone, the focal loss on logits of +-1e4)."""
    big = np.array([-1e30, -1e4, -88.0, 0.0, 88.0, 1e4, 1e30], dtype=dtype)
    zeros = np.zeros_like(big)
    for name in ("mae", "huber", "log_cosh", "hinge"):
        loss, grad = arrays.run(ops.elementwise_loss, name, big, zeros + 1)
        assert np.isfinite(loss) and np.isfinite(grad).all(), name
    loss, grad = arrays.run(ops.elementwise_loss, "binary_focal", big, (big > 0).astype(dtype), from_logits=True)
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_bad_names_and_arguments():
    x = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="name must be one of"):
        ops.elementwise_loss("mse2", x, x)
    with pytest.raises(ValueError, match="delta"):
        ops.elementwise_loss("huber", x, x, delta=-1)
