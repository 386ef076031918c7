"""Fixtures: every test that takes `backend` runs once per implementation present here:
the NumPy fallback, and the C++ extension once per SIMD build this CPU can run."""

import numpy as np
import pytest


from fastdl import _backend
from fastdl.backends import numpy_kernels


def _backends():
    names = ["numpy"]
    ext = _backend.cpu_extension()
    if ext is not None and _backend.name == "cpu":
        names += [f"cpu-{isa}" for isa in ext.supported_simd()]
    return names


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Routes fastdl.ops / fastdl.optim to one implementation for the test."""
    name = request.param
    if name == "numpy":
        monkeypatch.setattr(_backend, "kernels", numpy_kernels)
        yield name
        return
    ext = _backend.cpu_extension()
    before = ext.simd()
    assert ext.set_simd(name.split("-", 1)[1])
    monkeypatch.setattr(_backend, "kernels", ext)
    yield name
    ext.set_simd(before)


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tol(dtype):
    """Relative tolerance against a float64 reference."""
    return 1e-5 if np.dtype(dtype) == np.float32 else 1e-12


def assert_close(got, ref, dtype, rtol=None, atol=None):
    """|got - ref| <= rtol |ref| + atol elementwise; atol may be an array (a per-element scale)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    rtol = tol(dtype) if rtol is None else rtol
    atol = (1e-37 if np.dtype(dtype) == np.float32 else 1e-300) if atol is None else atol
    assert np.all(np.isfinite(got) == np.isfinite(ref)), "finite / non-finite mismatch"
    fin = np.isfinite(ref)
    err = np.abs(got - ref)
    bound = rtol * np.abs(ref) + atol
    bad = fin & ~(err <= bound)
    if np.any(bad):
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(f"{bad.sum()} of {bad.size} elements differ; first at flat index {i}: "
                             f"got {got.ravel()[i]!r}, ref {ref.ravel()[i]!r}, "
                             f"max rel err {np.max(err[fin] / np.maximum(np.abs(ref[fin]), 1e-300)):.3g}")
    assert np.array_equal(got[~fin], ref[~fin])


SIZES = [0, 1, 7, 31, 1000, 100_003]


def random_array(rng, n, dtype, scale=3.0):
    return (rng.standard_normal(n) * scale).astype(dtype)


# Values that break naive formulas: huge, tiny, signed zeros, the tails of sigmoid / tanh.
EXTREMES = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8, 0.3, -0.4, 0.41, 1.0, -1.0, 5.0, -5.0, 9.0, -9.0,
                     20.0, -20.0, 40.0, -40.0, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4, 3e38, -3e38])
