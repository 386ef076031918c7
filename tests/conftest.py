"""Fixtures: tests run once per implementation present here, by the arrays they hand to fastdl.

`backend`: the host implementations (NumPy arrays), the NumPy fallback and the C++ extension once
per SIMD build this CPU can run. `arrays`: those and, where CuPy and a GPU exist, the CUDA module
(CuPy arrays; marked `cuda`, skipped with the reason elsewhere). Both yield a Backend: its name (a
str) and how to make its arrays from NumPy ones and back.
"""

import numpy as np
import pytest


from fastdl import _backend


class Backend(str):
    """An implementation under test: its name, and its array factory."""

    device = False

    def asarray(self, a):
        return np.asarray(a)

    def numpy(self, a):
        return np.asarray(a)

    def run(self, fn, *args, **kwargs):
        """fn on this implementation's arrays: NumPy array arguments are moved there first, and
        array results (also inside a tuple) are brought back as NumPy arrays."""
        move = lambda a: self.asarray(a) if isinstance(a, np.ndarray) else a  # noqa: E731
        result = fn(*map(move, args), **{k: move(v) for k, v in kwargs.items()})
        back = lambda r: self.numpy(r) if hasattr(r, "dtype") else r  # noqa: E731
        return tuple(map(back, result)) if isinstance(result, tuple) else back(result)


class CudaBackend(Backend):
    device = True

    def asarray(self, a):
        import cupy
        return cupy.asarray(a)

    def numpy(self, a):
        import cupy
        return cupy.asnumpy(a)


def _host_backends():
    names = ["numpy"]
    ext = _backend.cpu_extension()
    if ext is not None and _backend.name == "cpu":
        names += [f"cpu-{isa}" for isa in ext.supported_simd()]
    return names


BACKENDS = _host_backends()


def cuda_unavailable():
    """Why CUDA tests cannot run here (None when they can)."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "CuPy is not installed (pip install 'fastdl[cuda]')"
    try:
        from fastdl.backends import cuda
    except ImportError as exc:
        return f"fastdl.backends.cuda did not import: {exc}"
    ok, why = cuda.available()
    return None if ok else why


def _use(name):
    """Routes NumPy arrays to the named host implementation for the test (a generator fixture body)."""
    if name == "numpy":
        with _backend.use_host("numpy"):
            yield Backend(name)
        return
    ext = _backend.cpu_extension()
    before = ext.simd()
    assert ext.set_simd(name.split("-", 1)[1])
    try:
        with _backend.use_host("cpu"):
            yield Backend(name)
    finally:
        ext.set_simd(before)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The host implementation the test's NumPy arrays go to."""
    yield from _use(request.param)


@pytest.fixture(params=BACKENDS + [pytest.param("cuda", marks=pytest.mark.cuda)])
def arrays(request):
    """An implementation and its array factory: host ones (NumPy arrays) and CUDA (CuPy arrays)."""
    if request.param != "cuda":
        yield from _use(request.param)
        return
    why = cuda_unavailable()
    if why:
        pytest.skip(f"CUDA: {why}")
    yield CudaBackend("cuda")


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
