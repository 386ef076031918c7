"""The layer kernels (normalization, im2col / col2im, pooling, the embedding's gradient and bag) on every
implementation present: the NumPy one (fastdl/backends/numpy_layers.py), the C++ module's where it
has them. Each is held to a float64 reference written here as plain loops over the definition, on
sizes 0, 1, odd and larger, and on extreme values."""

import contextlib
import itertools

import numpy as np
import pytest

from fastdl import _backend
from fastdl.backends import numpy_layers
from conftest import cuda_unavailable

NAMES = ["layer_norm", "layer_norm_backward", "batch_norm", "batch_norm_backward", "channel_affine", "im2col",
         "col2im", "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward", "embedding_backward",
         "embedding_bag", "embedding_bag_backward"]


class _OnDevice:
    """The CUDA layer kernels (fastdl.backends.cuda_layers) behind the NumPy contract: each call moves
    its NumPy arrays to the GPU (the same array object to the same CuPy array, so that in-place
    arguments stay in place), runs, and copies every array back into the caller's."""

    __name__ = "fastdl.backends.cuda_layers"

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        fn = getattr(self._module, name)  # AttributeError while the kernel is missing: _need skips

        def call(*args):
            import cupy
            moved = {}
            dev = [moved.setdefault(id(a), cupy.asarray(a)) if isinstance(a, np.ndarray) else a for a in args]
            try:
                return fn(*dev)
            finally:
                for a in args:
                    if isinstance(a, np.ndarray) and a.flags.writeable:
                        a[...] = cupy.asnumpy(moved[id(a)])
        return call


def _impl_params():
    impls = ["numpy"]
    if _backend.cpu.module is not None:
        impls += [f"cpu-{isa}" for isa in _backend.cpu.module.supported_simd()]
    return impls + [pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=_impl_params())
def k(request):
    """An implementation of the layer kernels: NumPy's, the C++ module's once per SIMD build this
    CPU runs, and the CUDA module's (CuPy arrays; skipped with the reason without CuPy and a GPU)."""
    if request.param == "numpy":
        yield numpy_layers
    elif request.param == "cuda":
        why = cuda_unavailable()
        if why:
            pytest.skip(f"CUDA: {why}")
        from fastdl.backends import cuda_layers
        yield _OnDevice(cuda_layers)
    else:
        ext = _backend.cpu.module
        before = ext.simd()
        assert ext.set_simd(request.param.split("-", 1)[1])
        try:
            yield ext
        finally:
            ext.set_simd(before)


def _need(k, *names):
    """Skips while an implementation lacks a kernel (the C++ module gains them one family at a time)."""
    missing = [n for n in names if not hasattr(k, n)]
    if missing:
        pytest.skip(f"{k.__name__} has no {', '.join(missing)} yet")


def _cpu():
    """The C++ module, or a skip."""
    if _backend.cpu.module is None:
        pytest.skip(f"the C++ module did not import: {_backend.cpu.import_error}")
    return _backend.cpu.module


@contextlib.contextmanager
def _threads(n):
    ext = _cpu()
    before = ext.num_threads()
    ext.set_num_threads(n)
    try:
        yield
    finally:
        ext.set_num_threads(before)


IMPLS = pytest.mark.usefixtures("k")  # every test taking `k` runs on each implementation
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


def _tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_every_implementation_has_the_contracts_names_and_arguments():
    """The C++ module and the CUDA adapter take numpy_layers' arguments, by name and in order (the CUDA
    adapter is checked without a GPU: only its signatures)."""
    import inspect
    import re
    from fastdl.backends import cuda_layers
    for name in NAMES:
        want = list(inspect.signature(getattr(numpy_layers, name)).parameters)
        assert list(inspect.signature(getattr(cuda_layers, name)).parameters) == want, name
        ext = _backend.cpu.module
        if ext is not None and hasattr(ext, name):
            first = getattr(ext, name).__doc__.splitlines()[0]
            assert re.findall(r"(\w+):", first[first.index("("):]) == want, name


# ---- references (float64, loops over the definitions) -----------------------------------------

def ref_norm_rows(x, gamma, beta, eps):
    x = x.astype(np.float64)
    y = np.empty_like(x)
    mean, rstd = np.empty(len(x)), np.empty(len(x))
    for r in range(len(x)):
        m = sum(x[r]) / x.shape[1]
        v = sum((t - m) ** 2 for t in x[r]) / x.shape[1]
        mean[r], rstd[r] = m, 1.0 / np.sqrt(v + eps)
        y[r] = (x[r] - m) * rstd[r] * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)
    return y, mean, rstd


def ref_norm_rows_backward(dy, x, gamma, eps):
    """By the chain rule through the forward's formulas, written out per row with float64 loops."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    n = x.shape[1]
    g = np.ones(n) if gamma is None else gamma.astype(np.float64)
    dx = np.empty_like(x)
    dgamma, dbeta = np.zeros(n), np.zeros(n)
    for r in range(len(x)):
        m = x[r].mean()
        v = ((x[r] - m) ** 2).mean()
        s = 1.0 / np.sqrt(v + eps)
        xhat = (x[r] - m) * s
        dgamma += dy[r] * xhat
        dbeta += dy[r]
        dxhat = dy[r] * g
        dvar = sum(dxhat * (x[r] - m)) * -0.5 * s ** 3
        dmean = -sum(dxhat) * s + dvar * sum(-2.0 * (x[r] - m)) / n
        dx[r] = dxhat * s + dvar * 2.0 * (x[r] - m) / n + dmean / n
    return dx, dgamma, dbeta


def ref_im2col(x, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl):
    n, h, w, c = x.shape
    cols = np.zeros((n, oh, ow, kh * kw * c))
    for b, p, q, i, j, ch in itertools.product(range(n), range(oh), range(ow), range(kh), range(kw), range(c)):
        r, s = p * sh + i * dh - pt, q * sw + j * dw - pl
        if 0 <= r < h and 0 <= s < w:
            cols[b, p, q, (i * kw + j) * c + ch] = x[b, r, s, ch]
    return cols


def ref_pool(x, oh, ow, kh, kw, sh, sw, pt, pl, kind):
    n, h, w, c = x.shape
    y = np.zeros((n, oh, ow, c))
    idx = np.full((n, oh, ow, c), -1, dtype=np.int64)
    for b, p, q, ch in itertools.product(range(n), range(oh), range(ow), range(c)):
        vals = [(x[b, r, s, ch], r * w + s) for i in range(kh) for j in range(kw)
                for r, s in [(p * sh + i - pt, q * sw + j - pl)] if 0 <= r < h and 0 <= s < w]
        if kind == "avg":
            y[b, p, q, ch] = sum(v for v, _ in vals) / len(vals) if vals else 0.0
        elif vals:
            best = vals[0]
            for v, at in vals[1:]:
                if v > best[0] or (np.isnan(v) and not np.isnan(best[0])):
                    best = (v, at)
            y[b, p, q, ch], idx[b, p, q, ch] = best
        else:
            y[b, p, q, ch] = -np.inf
    return y, idx


# ---- normalization ---------------------------------------------------------------------------------

SHAPES = [(0, 5), (1, 1), (1, 7), (3, 1), (5, 33), (37, 129)]


@IMPLS
@DTYPES
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_layer_norm(k, dtype, shape, affine):
    _need(k, 'layer_norm', 'layer_norm_backward')
    rng = _rng()
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    gamma = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    beta = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    y, mean, rstd = np.full(shape, np.nan, dtype), np.full(shape[0], np.nan, dtype), np.full(shape[0], np.nan, dtype)
    k.layer_norm(x, gamma, beta, y, mean, rstd, 1e-3)
    ry, rm, rr = ref_norm_rows(x, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, ry, **_tol(dtype))
    np.testing.assert_allclose(mean, rm, **_tol(dtype))
    np.testing.assert_allclose(rstd, rr, **_tol(dtype))
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dg, db = np.full(shape, np.nan, dtype), np.full(shape[1], np.nan, dtype), np.full(shape[1], np.nan, dtype)
    k.layer_norm_backward(dy, x, gamma, mean, rstd, dx, dg, db)
    rdx, rdg, rdb = ref_norm_rows_backward(dy, x, gamma, 1e-3)
    np.testing.assert_allclose(dx, rdx, **_tol(dtype))
    np.testing.assert_allclose(dg, rdg, **_tol(dtype))
    np.testing.assert_allclose(db, rdb, **_tol(dtype))
    k.layer_norm_backward(dy, x, gamma, mean, rstd, dy, None, None)  # dx over dy, no weight gradients
    np.testing.assert_allclose(dy, rdx, **_tol(dtype))


def _layer_norm_run(k, x, gamma, beta, dy):
    rows, c = x.shape
    y, mean, rstd = np.empty_like(x), np.empty(rows, x.dtype), np.empty(rows, x.dtype)
    k.layer_norm(x, gamma, beta, y, mean, rstd, 1e-5)
    dx, dg, db = np.empty_like(x), np.empty(c, x.dtype), np.empty(c, x.dtype)
    k.layer_norm_backward(dy, x, gamma, mean, rstd, dx, dg, db)
    return y, mean, rstd, dx, dg, db


@IMPLS
@DTYPES
@pytest.mark.parametrize("shape", [(300, 1031), (2500, 64), (3, 40000)], ids=str)
def test_layer_norm_large(k, dtype, shape):
    """Sizes that take the threaded, SIMD and streaming-store paths; against NumPy's float64 formula."""
    _need(k, "layer_norm", "layer_norm_backward")
    rng = _rng(7)
    x = (rng.standard_normal(shape) * 2 + 5).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got = _layer_norm_run(k, x, gamma, beta, dy)
    want = [np.empty(a.shape) for a in got]
    numpy_layers.layer_norm(x.astype(np.float64), gamma.astype(np.float64), beta.astype(np.float64), *want[:3], 1e-5)
    numpy_layers.layer_norm_backward(dy.astype(np.float64), x.astype(np.float64), gamma.astype(np.float64),
                                     want[1], want[2], *want[3:])
    # column sums over many rows: absolute error grows like sqrt(rows)
    for g, w in zip(got, want):
        scale = np.sqrt(shape[0]) if g.shape == (shape[1],) else 1.0
        tol = _tol(dtype)
        np.testing.assert_allclose(g, w, rtol=tol["rtol"] * 5, atol=tol["atol"] * 5 * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_layer_norm_same_bits_whatever_the_threads(dtype):
    """dgamma / dbeta are summed over a fixed partition of the rows: 1 and 2 threads give the same bits,
    and so does a second run; the streamed path gives the same statistics and sums (its elementwise
    outputs may round a*b+c once where the cached path rounds twice, at a misaligned row's head)."""
    ext = _cpu()
    rng = _rng(8)
    x, dy = rng.standard_normal((3001, 257)).astype(dtype), rng.standard_normal((3001, 257)).astype(dtype)
    gamma, beta = rng.standard_normal(257).astype(dtype), rng.standard_normal(257).astype(dtype)
    with _threads(1):
        one = _layer_norm_run(ext, x, gamma, beta, dy)
    with _threads(2):
        two = _layer_norm_run(ext, x, gamma, beta, dy)
        again = _layer_norm_run(ext, x, gamma, beta, dy)
        before = ext._stream_threshold()
        ext._set_stream_threshold(0)
        try:
            streamed = _layer_norm_run(ext, x, gamma, beta, dy)
        finally:
            ext._set_stream_threshold(before)
    for i, (a, b, c, d) in enumerate(zip(one, two, again, streamed)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
        if i in (0, 3):  # y, dx
            np.testing.assert_allclose(b, d, **_tol(dtype))
        else:
            np.testing.assert_array_equal(b, d)


def test_layer_norm_refuses_bad_arguments():
    """Wrong shapes, dtypes, layouts and overlaps are exceptions naming the argument, never a crash."""
    ext = _cpu()
    _need(ext, "layer_norm", "layer_norm_backward")
    x = np.ones((4, 6), np.float32)
    y, m, r = np.empty_like(x), np.empty(4, np.float32), np.empty(4, np.float32)
    g = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="y must have shape"):
        ext.layer_norm(x, None, None, np.empty((6, 4), np.float32), m, r, 1e-5)
    with pytest.raises(TypeError, match="gamma"):
        ext.layer_norm(x, g.astype(np.float64), None, y, m, r, 1e-5)
    with pytest.raises(ValueError, match="beta must have shape"):
        ext.layer_norm(x, None, np.ones(5, np.float32), y, m, r, 1e-5)
    with pytest.raises(ValueError, match="mean"):
        ext.layer_norm(x, None, None, y, np.empty(3, np.float32), r, 1e-5)
    with pytest.raises(ValueError, match="x must be 2-D"):
        ext.layer_norm(x.reshape(-1), None, None, y, m, r, 1e-5)
    with pytest.raises(ValueError, match="C-contiguous"):
        ext.layer_norm(np.ones((6, 4), np.float32).T, None, None, y, m, r, 1e-5)
    with pytest.raises(ValueError, match="mean must not share memory with rstd"):
        ext.layer_norm(x, None, None, y, m, m, 1e-5)
    with pytest.raises(ValueError, match="y must not share memory with x"):
        big = np.ones((5, 6), np.float32)
        ext.layer_norm(big[:4], None, None, big[1:], m, r, 1e-5)
    with pytest.raises(TypeError, match="gamma must be a NumPy array"):
        ext.layer_norm(x, [1.0] * 6, None, y, m, r, 1e-5)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty_like(x)
        ro.flags.writeable = False
        ext.layer_norm(x, None, None, ro, m, r, 1e-5)
    ext.layer_norm(x, g, None, y, m, r, 1e-5)
    dx = np.empty_like(x)
    with pytest.raises(ValueError, match="dx must not share memory with x"):
        ext.layer_norm_backward(x.copy(), x, g, m, r, x, None, None)
    with pytest.raises(ValueError, match="dgamma must not share memory with dbeta"):
        d6 = np.empty(6, np.float32)
        ext.layer_norm_backward(x, x, g, m, r, dx, d6, d6)
    with pytest.raises(ValueError, match="dy must have shape"):
        ext.layer_norm_backward(x[:3].copy(), x, g, m, r, dx, None, None)
    ext.layer_norm(x, None, None, x, m, r, 1e-5)  # y over x: in place
    np.testing.assert_array_equal(x, 0.0)


@IMPLS
@DTYPES
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batch_norm(k, dtype, shape, affine):
    _need(k, 'batch_norm', 'batch_norm_backward')
    rng = _rng(1)
    x = (rng.standard_normal(shape) * 2 - 3).astype(dtype)
    c = shape[1]
    gamma = rng.standard_normal(c).astype(dtype) if affine else None
    beta = rng.standard_normal(c).astype(dtype) if affine else None
    y = np.full(shape, np.nan, dtype)
    mean, var, rstd = (np.full(c, np.nan, dtype) for _ in range(3))
    k.batch_norm(x, gamma, beta, y, mean, var, rstd, 1e-3)
    if shape[0]:
        ry, rm, rr = ref_norm_rows(x.T, None, None, 1e-3)  # columns are BatchNorm's rows
        ry = ry.T * (1.0 if gamma is None else gamma.astype(np.float64)) + (0.0 if beta is None else beta)
        np.testing.assert_allclose(y, ry, **_tol(dtype))
        np.testing.assert_allclose(mean, rm, **_tol(dtype))
        np.testing.assert_allclose(rstd, rr, **_tol(dtype))
        np.testing.assert_allclose(var, 1 / rr ** 2 - 1e-3, rtol=1e-4 if dtype == np.float32 else 1e-9,
                                   atol=1e-5 if dtype == np.float32 else 1e-12)
        dy = rng.standard_normal(shape).astype(dtype)
        dx, dg, db = np.full(shape, np.nan, dtype), np.full(c, np.nan, dtype), np.full(c, np.nan, dtype)
        k.batch_norm_backward(dy, x, gamma, mean, rstd, dx, dg, db)
        # through the reference for rows: BatchNorm's column c is LayerNorm's row c with dy_c gamma_c
        scale = 1.0 if gamma is None else gamma.astype(np.float64)[:, None]
        rdx = ref_norm_rows_backward(dy.T * scale, x.T, None, 1e-3)[0]
        xhat = ref_norm_rows(x.T, None, None, 1e-3)[0]
        np.testing.assert_allclose(dx, rdx.T, **_tol(dtype))
        np.testing.assert_allclose(dg, (dy.T * xhat).sum(axis=1), **_tol(dtype))
        np.testing.assert_allclose(db, dy.astype(np.float64).sum(axis=0), **_tol(dtype))
    else:  # no rows: the statistics are 0 (the layer leaves its moving averages alone then)
        assert not mean.any() and not var.any()


def _batch_norm_run(k, x, gamma, beta, dy, out=None):
    m, c = x.shape
    y, stats = np.empty_like(x), [np.empty(c, x.dtype) for _ in range(3)]
    k.batch_norm(x, gamma, beta, y, *stats, 1e-5)
    dx, dg, db = np.empty_like(x), np.empty(c, x.dtype), np.empty(c, x.dtype)
    k.batch_norm_backward(dy, x, gamma, stats[0], stats[2], dx, dg, db)
    return (y, *stats, dx, dg, db)


@IMPLS
@DTYPES
@pytest.mark.parametrize("shape", [(4099, 64), (600, 1031), (50000, 3)], ids=str)
def test_batch_norm_large(k, dtype, shape):
    """Sizes that take the threaded, chunked, SIMD and streaming paths; against NumPy's float64 formula.
    The mean is far from 0 next to the spread, which a one-pass sum of squares would not survive."""
    _need(k, "batch_norm", "batch_norm_backward")
    rng = _rng(9)
    x = (rng.standard_normal(shape) * 0.5 + 40).astype(dtype)
    gamma, beta = rng.standard_normal(shape[1]).astype(dtype), rng.standard_normal(shape[1]).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got = _batch_norm_run(k, x, gamma, beta, dy)
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    want = [np.empty(a.shape) for a in got]
    numpy_layers.batch_norm(f64(x), f64(gamma), f64(beta), *want[:4], 1e-5)
    numpy_layers.batch_norm_backward(f64(dy), f64(x), f64(gamma), f64(got[1]), f64(got[3]), *want[4:])
    tol = _tol(dtype)
    for name, g, w in zip(["y", "mean", "var", "rstd", "dx", "dgamma", "dbeta"], got, want):
        scale = np.sqrt(shape[0]) if name in ("dgamma", "dbeta") else 1.0
        np.testing.assert_allclose(g, w, rtol=tol["rtol"] * 10, atol=tol["atol"] * 10 * scale, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batch_norm_same_bits_whatever_the_threads(dtype):
    ext = _cpu()
    rng = _rng(10)
    x, dy = rng.standard_normal((5003, 67)).astype(dtype), rng.standard_normal((5003, 67)).astype(dtype)
    gamma, beta = rng.standard_normal(67).astype(dtype), rng.standard_normal(67).astype(dtype)
    with _threads(1):
        one = _batch_norm_run(ext, x, gamma, beta, dy)
    with _threads(2):
        two = _batch_norm_run(ext, x, gamma, beta, dy)
        again = _batch_norm_run(ext, x, gamma, beta, dy)
    for a, b, c in zip(one, two, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)


def test_batch_norm_refuses_bad_arguments():
    ext = _cpu()
    _need(ext, "batch_norm", "batch_norm_backward", "channel_affine")
    x = np.ones((4, 6), np.float32)
    y, m, v, r = np.empty_like(x), *(np.empty(6, np.float32) for _ in range(3))
    with pytest.raises(ValueError, match="var must have shape"):
        ext.batch_norm(x, None, None, y, m, np.empty(4, np.float32), r, 1e-5)
    with pytest.raises(TypeError, match="beta has dtype float64"):
        ext.batch_norm(x, None, np.ones(6), y, m, v, r, 1e-5)
    with pytest.raises(ValueError, match="var must not share memory with rstd"):
        ext.batch_norm(x, None, None, y, m, r, r, 1e-5)
    ext.batch_norm(x, None, None, y, m, v, r, 1e-5)
    with pytest.raises(ValueError, match="mean must have shape"):
        ext.batch_norm_backward(x, x, None, np.empty(4, np.float32), r, None, None, None)
    with pytest.raises(ValueError, match="dbeta must not share memory with mean"):
        ext.batch_norm_backward(x, x, None, m, r, None, None, m)
    with pytest.raises(ValueError, match="scale must have shape"):
        ext.channel_affine(x, np.ones(4, np.float32), m, y)
    with pytest.raises(ValueError, match="y must not share memory with scale"):
        ext.channel_affine(m, m, r, m)


@IMPLS
def test_normalization_of_extreme_values(k):
    _need(k, 'layer_norm', 'batch_norm')
    """Rows of +-1e4 (and a constant row) give finite results; float32 inputs, large C."""
    x = np.full((3, 1001), 1e4, np.float32)
    x[1, ::2] = -1e4
    x[2] = 7.0  # constant: var 0, rstd 1/sqrt(eps)
    y, mean, rstd = np.empty_like(x), np.empty(3, np.float32), np.empty(3, np.float32)
    k.layer_norm(x, None, None, y, mean, rstd, 1e-5)
    assert np.isfinite(y).all() and np.isfinite(rstd).all()
    np.testing.assert_allclose(y[2], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(y[1]), 1.0, rtol=1e-3)
    by, bm, bv, br = np.empty_like(x.T.copy()), *(np.empty(3, np.float32) for _ in range(3))
    k.batch_norm(np.ascontiguousarray(x.T), None, None, by, bm, bv, br, 1e-5)
    assert np.isfinite(by).all()


@IMPLS
def test_channel_affine(k):
    _need(k, 'channel_affine')
    rng = _rng(2)
    x = rng.standard_normal((13, 6)).astype(np.float32)
    scale, shift = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    y = np.empty_like(x)
    k.channel_affine(x, scale, shift, y)
    np.testing.assert_allclose(y, x.astype(np.float64) * scale + shift, rtol=1e-6, atol=1e-6)
    k.channel_affine(x, scale, shift, x)  # in place
    np.testing.assert_array_equal(x, y)


# ---- im2col / col2im ------------------------------------------------------------------------------

# (N, H, W, C, kh, kw, sh, sw, dh, dw, pad_top, pad_left, OH, OW)
CONV_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1),
    (2, 5, 7, 3, 3, 3, 1, 1, 1, 1, 0, 0, 3, 5),      # valid
    (2, 5, 7, 3, 3, 3, 1, 1, 1, 1, 1, 1, 5, 7),      # same
    (1, 6, 6, 2, 3, 2, 2, 2, 1, 1, 0, 0, 2, 3),      # strides
    (1, 7, 8, 2, 3, 3, 2, 3, 1, 1, 1, 1, 4, 3),      # same with strides
    (2, 9, 9, 1, 3, 3, 1, 1, 2, 2, 2, 2, 9, 9),      # dilation, same
    (1, 1, 9, 4, 1, 3, 1, 1, 1, 1, 0, 1, 1, 9),      # a 1-D sequence (H = 1), same
    (0, 4, 4, 2, 3, 3, 1, 1, 1, 1, 0, 0, 2, 2),      # no images
]


@IMPLS
@DTYPES
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_im2col_and_col2im(k, dtype, case):
    _need(k, 'im2col', 'col2im')
    n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = case
    rng = _rng(3)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    cols = np.full((n, oh, ow, kh * kw * c), np.nan, dtype)
    k.im2col(x, cols, kh, kw, sh, sw, dh, dw, pt, pl)
    np.testing.assert_array_equal(cols, ref_im2col(x, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl).astype(dtype))
    # col2im is im2col's adjoint: <im2col(x), g> = <x, col2im(g)>, checked through the reference matrix
    g = rng.standard_normal(cols.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    k.col2im(g, dx, kh, kw, sh, sw, dh, dw, pt, pl)
    expect = np.zeros(x.shape)
    for b, p, q, i, j, ch in itertools.product(range(n), range(oh), range(ow), range(kh), range(kw), range(c)):
        r, s = p * sh + i * dh - pt, q * sw + j * dw - pl
        if 0 <= r < h and 0 <= s < w:
            expect[b, r, s, ch] += g[b, p, q, (i * kw + j) * c + ch]
    np.testing.assert_allclose(dx, expect, **_tol(dtype))


@IMPLS
@DTYPES
def test_im2col_and_col2im_large(k, dtype):
    """A threaded size with channels beyond one accumulation chunk and a dilated, strided window,
    against the NumPy contract."""
    _need(k, "im2col", "col2im")
    rng = _rng(11)
    x = rng.standard_normal((3, 17, 19, 300)).astype(dtype)
    for kh, kw, sh, sw, dh, dw, pt, pl, oh, ow in [(3, 3, 1, 1, 1, 1, 1, 1, 17, 19), (3, 2, 2, 1, 2, 3, 2, 1, 8, 18)]:
        cols = np.full((3, oh, ow, kh * kw * 300), np.nan, dtype)
        want = np.empty_like(cols)
        k.im2col(x, cols, kh, kw, sh, sw, dh, dw, pt, pl)
        numpy_layers.im2col(x, want, kh, kw, sh, sw, dh, dw, pt, pl)
        np.testing.assert_array_equal(cols, want)
        dx, dwant = np.full(x.shape, np.nan, dtype), np.empty(x.shape)
        k.col2im(cols, dx, kh, kw, sh, sw, dh, dw, pt, pl)
        numpy_layers.col2im(cols.astype(np.float64), dwant, kh, kw, sh, sw, dh, dw, pt, pl)
        np.testing.assert_allclose(dx, dwant, **_tol(dtype))


def test_window_kernels_same_bits_whatever_the_threads():
    ext = _cpu()
    _need(ext, "col2im", "max_pool_backward", "avg_pool_backward", "embedding_backward", "embedding_bag",
          "embedding_bag_backward")
    rng = _rng(12)
    bag_ids, scale, table, bag_dy = _bag_case((64, 33, 97, 300), np.float32, np.int64, 0)
    cols = rng.standard_normal((4, 20, 20, 9 * 32)).astype(np.float32)
    dy = rng.standard_normal((4, 10, 10, 32)).astype(np.float32)
    x = rng.standard_normal((4, 20, 20, 32)).astype(np.float32)
    ids, dt = rng.integers(0, 97, 5000), rng.standard_normal((5000, 70)).astype(np.float32)

    def run():
        dx1, dx2, dx3 = (np.empty((4, 20, 20, 32), np.float32) for _ in range(3))
        ext.col2im(cols, dx1, 3, 3, 1, 1, 1, 1, 1, 1)
        y, am = np.empty_like(dy), np.empty(dy.shape, np.int64)
        ext.max_pool(x, y, am, 3, 3, 2, 2, 1, 1)
        ext.max_pool_backward(dy, am, dx2)
        ext.avg_pool_backward(dy, dx3, 3, 3, 2, 2, 1, 1)
        dw = np.empty((97, 70), np.float32)
        ext.embedding_backward(ids, dt, dw)
        bag, bag_dw = np.empty(bag_dy.shape, np.float32), np.empty(table.shape, np.float32)
        ext.embedding_bag(bag_ids, table, scale, bag, 0)
        ext.embedding_bag_backward(bag_ids, bag_dy, scale, bag_dw, 0)
        return dx1, y, am, dx2, dx3, dw, bag, bag_dw
    with _threads(1):
        one = run()
    with _threads(2):
        two = run()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_window_kernels_refuse_bad_arguments():
    ext = _cpu()
    _need(ext, "im2col", "col2im", "max_pool", "max_pool_backward", "avg_pool", "avg_pool_backward")
    x = np.ones((2, 5, 5, 3), np.float32)
    cols = np.empty((2, 3, 3, 27), np.float32)
    with pytest.raises(ValueError, match="cols must have shape"):
        ext.im2col(x, np.empty((2, 3, 3, 26), np.float32), 3, 3, 1, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="cols has 1 images"):
        ext.im2col(x, np.empty((1, 3, 3, 27), np.float32), 3, 3, 1, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="strides"):
        ext.im2col(x, cols, 3, 3, 0, 1, 1, 1, 0, 0)
    with pytest.raises(ValueError, match="pad_top"):
        ext.col2im(cols, x.copy(), 3, 3, 1, 1, 1, 1, -1, 0)
    with pytest.raises(ValueError, match="x must be 4-D"):
        ext.im2col(x[0], cols, 3, 3, 1, 1, 1, 1, 0, 0)
    with pytest.raises(TypeError, match="cols has dtype float64"):
        ext.im2col(x, cols.astype(np.float64), 3, 3, 1, 1, 1, 1, 0, 0)
    y, am = np.empty((2, 2, 2, 3), np.float32), np.empty((2, 2, 2, 3), np.int64)
    with pytest.raises(TypeError, match="argmax must be an int64 array"):
        ext.max_pool(x, y, am.astype(np.int32), 2, 2, 2, 2, 0, 0)
    with pytest.raises(ValueError, match="y must not share memory with x"):
        ext.max_pool(x, x[:, :2, :2], am, 2, 2, 2, 2, 0, 0)
    ext.max_pool(x, y, am, 2, 2, 2, 2, 0, 0)
    am[0, 0, 0, 0] = 25  # beyond the 5 x 5 image: refused, never written through
    with pytest.raises(ValueError, match="argmax has 1 entries outside"):
        ext.max_pool_backward(y, am, np.empty_like(x))
    with pytest.raises(ValueError, match="dy must have shape"):
        ext.avg_pool_backward(np.empty((2, 2, 2, 4), np.float32), np.empty_like(x), 2, 2, 2, 2, 0, 0)
    with pytest.raises(TypeError, match="ids must be an int32 or int64"):
        ext.embedding_backward(np.zeros(2, np.float32), np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="dy must have shape"):
        ext.embedding_backward(np.zeros(3, np.int64), np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))
    with pytest.raises(IndexError, match="ids"):
        ext.embedding_backward(np.array([-1, 0]), np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))


# ---- pooling ------------------------------------------------------------------------------------------

# (N, H, W, C, kh, kw, sh, sw, pad_top, pad_left, OH, OW)
POOL_CASES = [
    (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1),
    (2, 6, 6, 3, 2, 2, 2, 2, 0, 0, 3, 3),    # the usual 2x2
    (2, 7, 5, 3, 2, 2, 2, 2, 0, 0, 3, 2),    # valid, odd sizes
    (2, 7, 5, 3, 2, 2, 2, 2, 0, 0, 4, 3),    # same, odd sizes: padding after
    (1, 7, 7, 2, 3, 3, 2, 2, 1, 1, 4, 4),    # overlapping windows, padding before
    (1, 5, 5, 2, 3, 3, 1, 1, 1, 1, 5, 5),    # stride 1, same
    (1, 1, 9, 4, 1, 3, 1, 2, 0, 0, 1, 4),    # 1-D
    (2, 7, 8, 2, 2, 2, 3, 3, 1, 1, 3, 3),    # strides beyond the window: rows and columns in no window
    (1, 5, 5, 3, 2, 3, 2, 3, 1, 2, 3, 2),    # disjoint windows cut by padding on both sides
    (0, 4, 4, 2, 2, 2, 2, 2, 0, 0, 2, 2),
]


@IMPLS
@DTYPES
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_max_pool(k, dtype, case):
    _need(k, 'max_pool', 'max_pool_backward')
    n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow = case
    rng = _rng(4)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    if x.size > 4:
        x.reshape(-1)[[1, 3]] = x.reshape(-1)[0]  # ties: the first in window order wins
    y, idx = np.full((n, oh, ow, c), np.nan, dtype), np.full((n, oh, ow, c), -7, np.int64)
    k.max_pool(x, y, idx, kh, kw, sh, sw, pt, pl)
    ry, ridx = ref_pool(x, oh, ow, kh, kw, sh, sw, pt, pl, "max")
    np.testing.assert_array_equal(y, ry.astype(dtype))
    np.testing.assert_array_equal(idx, ridx)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    k.max_pool_backward(dy, idx, dx)
    expect = np.zeros((n, h * w, c))
    for b, p, q, ch in itertools.product(range(n), range(oh), range(ow), range(c)):
        expect[b, ridx[b, p, q, ch], ch] += dy[b, p, q, ch]
    np.testing.assert_allclose(dx, expect.reshape(x.shape), **_tol(dtype))


@IMPLS
@DTYPES
def test_max_pool_backward_takes_any_argmax(k, dtype):
    """The backward adds dy at whatever position argmax names (not only inside the window, in
    any order: the kernel zeroes dx lazily, row by row, and must never zero over a sum)."""
    _need(k, "max_pool_backward")
    rng = _rng(14)
    n, h, w, c, oh, ow = 2, 5, 4, 3, 3, 2
    argmax = rng.integers(-1, h * w, (n, oh, ow, c))
    argmax[0, 0, 0] = h * w - 1  # the last position first, then earlier ones
    dy = rng.standard_normal((n, oh, ow, c)).astype(dtype)
    dx = np.full((n, h, w, c), np.nan, dtype)
    k.max_pool_backward(dy, argmax, dx)
    expect = np.zeros((n, h * w, c))
    for b, p, q, ch in itertools.product(range(n), range(oh), range(ow), range(c)):
        if argmax[b, p, q, ch] >= 0:
            expect[b, argmax[b, p, q, ch], ch] += dy[b, p, q, ch]
    np.testing.assert_allclose(dx, expect.reshape(dx.shape), **_tol(dtype))


@IMPLS
def test_max_pool_propagates_nan_and_extremes(k):
    _need(k, 'max_pool')
    x = np.array([[1e30, -np.inf], [np.nan, 3.0]], np.float32).reshape(1, 2, 2, 1)
    y, idx = np.empty((1, 1, 1, 1), np.float32), np.empty((1, 1, 1, 1), np.int64)
    k.max_pool(x, y, idx, 2, 2, 2, 2, 0, 0)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 2


@IMPLS
@DTYPES
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_avg_pool(k, dtype, case):
    _need(k, 'avg_pool', 'avg_pool_backward')
    n, h, w, c, kh, kw, sh, sw, pt, pl, oh, ow = case
    rng = _rng(5)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    y = np.full((n, oh, ow, c), np.nan, dtype)
    k.avg_pool(x, y, kh, kw, sh, sw, pt, pl)
    np.testing.assert_allclose(y, ref_pool(x, oh, ow, kh, kw, sh, sw, pt, pl, "avg")[0], **_tol(dtype))
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.full(x.shape, np.nan, dtype)
    k.avg_pool_backward(dy, dx, kh, kw, sh, sw, pt, pl)
    expect = np.zeros(x.shape)
    for b, p, q, ch in itertools.product(range(n), range(oh), range(ow), range(c)):
        cells = [(r, s) for i in range(kh) for j in range(kw) for r, s in [(p * sh + i - pt, q * sw + j - pl)]
                 if 0 <= r < h and 0 <= s < w]
        for r, s in cells:
            expect[b, r, s, ch] += dy[b, p, q, ch] / len(cells)
    np.testing.assert_allclose(dx, expect, **_tol(dtype))


# ---- Embedding ------------------------------------------------------------------------------------------

@IMPLS
@DTYPES
@pytest.mark.parametrize("tokens,vocab,dim", [(0, 3, 4), (1, 1, 1), (17, 5, 3), (1000, 50, 33)])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_embedding_backward(k, dtype, tokens, vocab, dim, id_dtype):
    _need(k, 'embedding_backward')
    rng = _rng(6)
    ids = rng.integers(0, vocab, tokens).astype(id_dtype)
    dy = rng.standard_normal((tokens, dim)).astype(dtype)
    dw = np.full((vocab, dim), np.nan, dtype)
    k.embedding_backward(ids, dy, dw)
    expect = np.zeros((vocab, dim))
    for t in range(tokens):
        expect[ids[t]] += dy[t]
    np.testing.assert_allclose(dw, expect, **_tol(dtype))
    again = np.empty_like(dw)
    k.embedding_backward(ids, dy, again)
    np.testing.assert_array_equal(again, dw)  # the same bits every run


@IMPLS
def test_embedding_backward_refuses_ids_out_of_range(k):
    _need(k, 'embedding_backward')
    with pytest.raises(IndexError, match="ids"):
        k.embedding_backward(np.array([0, 3]), np.zeros((2, 2), np.float32), np.zeros((3, 2), np.float32))


# (bags, steps, vocab, dim): empty, one, odd, and dims beyond one accumulation chunk (256)
BAG_CASES = [(0, 4, 3, 5), (3, 0, 3, 5), (1, 1, 1, 1), (7, 5, 11, 3), (64, 33, 97, 300)]


def _bag_case(case, dtype, id_dtype, ignore):
    bags, steps, vocab, dim = case
    rng = _rng(13)
    ids = rng.integers(0, vocab, (bags, steps)).astype(id_dtype)
    if ignore >= 0 and bags > 1:
        ids[0] = ignore  # a bag with every step left out, and one with a padded tail
        ids[1, steps // 2:] = ignore
    kept = (ids != ignore).sum(axis=1)
    scale = (1.0 / np.maximum(kept, 1)).astype(dtype)
    return ids, scale, rng.standard_normal((vocab, dim)).astype(dtype), rng.standard_normal((bags, dim)).astype(dtype)


@IMPLS
@DTYPES
@pytest.mark.parametrize("case", BAG_CASES, ids=lambda c: "x".join(map(str, c)))
@pytest.mark.parametrize("ignore", [-1, 0])
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
def test_embedding_bag(k, dtype, case, ignore, id_dtype):
    """out[b] = scale[b] sum_s table[ids[b, s]] over ids != ignore; its gradient to the table."""
    _need(k, "embedding_bag", "embedding_bag_backward")
    ids, scale, table, dy = _bag_case(case, dtype, id_dtype, ignore)
    bags, steps = ids.shape
    expect, dexpect = np.zeros(dy.shape), np.zeros(table.shape)
    for b, s in itertools.product(range(bags), range(steps)):
        if ids[b, s] != ignore:
            expect[b] += float(scale[b]) * table[ids[b, s]].astype(np.float64)
            dexpect[ids[b, s]] += float(scale[b]) * dy[b].astype(np.float64)
    out = np.full(dy.shape, np.nan, dtype)
    k.embedding_bag(ids, table, scale, out, ignore)
    np.testing.assert_allclose(out, expect, **_tol(dtype))
    dw = np.full(table.shape, np.nan, dtype)
    k.embedding_bag_backward(ids, dy, scale, dw, ignore)
    np.testing.assert_allclose(dw, dexpect, **_tol(dtype))
    again = np.empty_like(dw)
    k.embedding_bag_backward(ids, dy, scale, again, ignore)
    np.testing.assert_array_equal(again, dw)  # the same bits every run


@IMPLS
def test_embedding_bag_extreme_values(k):
    """Rows of +-1e30 in float32: summed in double, then scaled, so no overflow on the way."""
    _need(k, "embedding_bag")
    table = np.array([[3e38], [-3e38], [1.0]], np.float32)
    ids = np.array([[0, 0, 1, 2]])
    out = np.empty((1, 1), np.float32)
    k.embedding_bag(ids, table, np.array([0.25], np.float32), out)
    np.testing.assert_allclose(out, [[(3e38 + 1.0) / 4]], rtol=1e-6)


@IMPLS
def test_embedding_bag_refuses_bad_arguments(k):
    _need(k, "embedding_bag", "embedding_bag_backward")
    ids, table, scale = np.array([[0, 2], [1, 1]]), np.zeros((3, 4), np.float32), np.ones(2, np.float32)
    out = np.empty((2, 4), np.float32)
    with pytest.raises(IndexError, match="ids"):
        k.embedding_bag(ids + 1, table, scale, out)
    with pytest.raises(IndexError, match="ids"):
        k.embedding_bag_backward(ids - 1, out, scale, table.copy())
    if k is numpy_layers:
        return  # the contract names the shapes; the checks below are the compiled modules'
    with pytest.raises(ValueError, match="scale must have shape"):
        k.embedding_bag(ids, table, scale[:1], out)
    with pytest.raises(ValueError, match="out must have shape"):
        k.embedding_bag(ids, table, scale, out[:, :3])
    with pytest.raises(ValueError, match="ids must be 2-D"):
        k.embedding_bag(ids.reshape(-1), table, scale, out)
    with pytest.raises(TypeError, match="ids must be an int32 or int64"):
        k.embedding_bag(ids.astype(np.float32), table, scale, out)
    with pytest.raises(TypeError, match="scale"):
        k.embedding_bag(ids, table, scale.astype(np.float64), out)
    with pytest.raises(ValueError, match="dy must have shape"):
        k.embedding_bag_backward(ids, out[:1], scale, table.copy())
