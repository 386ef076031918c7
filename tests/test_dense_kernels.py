"""The Dense layer's fused epilogues (bias + activation, and its backward with the bias gradient)
on every backend against float64 references."""

import numpy as np
import pytest

from fastdl import _backend
import reference as ref
from conftest import assert_close

IDS = _backend.ACTIVATIONS
FWD = {"identity": lambda x: x, "relu": ref.relu, "sigmoid": ref.sigmoid, "tanh": ref.tanh, "gelu": ref.gelu,
       "silu": ref.silu, "leaky_relu": lambda x: ref.leaky_relu(x, 0.1)}
DERIV = {"identity": lambda x: np.ones_like(x), "relu": lambda x: (x > 0).astype(float), "sigmoid": ref.d_sigmoid,
         "tanh": ref.d_tanh, "gelu": ref.d_gelu, "silu": ref.d_silu, "leaky_relu": lambda x: np.where(x > 0, 1, 0.1)}
SHAPES = [(0, 5), (1, 1), (3, 10), (32, 64), (257, 70), (64, 1030), (5000, 33)]


def _rtol(name, dtype):
    return 2e-5 if dtype == np.float32 and name == "gelu" else None


@pytest.mark.parametrize("name", FWD)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bias_activation(backend, name, shape, dtype, rng):
    z = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    y = np.empty_like(z)
    pre = np.empty_like(z)
    _backend.kernels_for(z).bias_activation(IDS[name], z, b, pre, y, 0.1)
    x = z.astype(np.float64) + b
    assert_close(pre, x, dtype, atol=4 * np.finfo(dtype).eps * (np.abs(z) + np.abs(b)))
    # float32 x = z + b is rounded before the activation: compare with the activation of that x
    assert_close(y, FWD[name](pre), dtype, rtol=_rtol(name, dtype))
    y2 = z.copy()
    _backend.kernels_for(y2).bias_activation(IDS[name], y2, b, None, y2, 0.1)  # in place, no pre kept
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("name", FWD)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_bias_activation_backward(backend, name, shape, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    saved = FWD[name](x).astype(dtype) if name in ("sigmoid", "tanh") else x
    dz = np.empty_like(x)
    db = np.full(shape[1], np.nan, dtype)
    _backend.kernels_for(g).bias_activation_backward(IDS[name], g, saved, dz, db, 0.1)
    if name == "sigmoid":
        expected = g.astype(np.float64) * saved * (1 - saved.astype(np.float64))
    elif name == "tanh":
        expected = g.astype(np.float64) * (1 - saved.astype(np.float64) ** 2)
    else:
        expected = g.astype(np.float64) * DERIV[name](x.astype(np.float64))
    atol = 4 * np.finfo(dtype).eps * np.abs(g.astype(np.float64))
    assert_close(dz, expected, dtype, rtol=_rtol(name, dtype), atol=atol)
    col_scale = np.abs(dz.astype(np.float64)).sum(axis=0)
    assert_close(db, dz.astype(np.float64).sum(axis=0), dtype,
                 atol=(1e-6 if dtype == np.float32 else 1e-14) * col_scale)


def test_bias_gradient_is_deterministic_across_thread_counts(rng):
    import fastdl
    if _backend.name != "cpu":
        pytest.skip("needs the C++ extension")
    ext = _backend.cpu_extension()
    g = rng.standard_normal((20_000, 100)).astype(np.float32)
    before = ext.num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastdl.set_num_threads(n)
            dz, db = np.empty_like(g), np.empty(100, np.float32)
            ext.bias_activation_backward(IDS["relu"], g, g, dz, db)
            results.append(db)
    finally:
        fastdl.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_no_bias_paths(backend, rng):
    z = rng.standard_normal((7, 9))
    y = np.empty_like(z)
    _backend.kernels_for(z).bias_activation(IDS["tanh"], z, None, None, y, 0.0)
    np.testing.assert_allclose(y, np.tanh(z), rtol=1e-13)
    dz = np.empty_like(z)
    _backend.kernels_for(z).bias_activation_backward(IDS["tanh"], z, y, dz, None, 0.0)
    np.testing.assert_allclose(dz, z * (1 - y * y), rtol=1e-13)


def test_extension_checks_dense_arguments():
    if _backend.name != "cpu":
        pytest.skip("needs the C++ extension")
    ext = _backend.cpu_extension()
    z = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="bias has 4 elements but z's last axis has 3"):
        ext.bias_activation(0, z, np.ones(4, np.float32), None, np.empty_like(z))
    with pytest.raises(ValueError, match="z must be 2-D"):
        ext.bias_activation(0, np.ones(3, np.float32), None, None, np.empty(3, np.float32))
    with pytest.raises(TypeError, match="dbias has dtype float64"):
        ext.bias_activation_backward(0, z, z, np.empty_like(z), np.ones(3))
