"""CUDA (issue #9): fastdl.ops and fastdl.optim on CuPy arrays, fastdl.torch on torch CUDA tensors.

Every result is held against a float64 reference computed on the CPU in this file (the formulas of
tests/reference.py), with a relative tolerance per storage type (float32 1e-5, float16 2e-3,
bfloat16 2e-2) and an absolute floor scaled by the magnitudes the result is computed from.
Outputs are poisoned with NaN first, so an element a kernel forgets to write fails. The whole
module is skipped, with the reason, without CuPy, without the CUDA module or without a device.
"""

import math
import re
import zlib

import numpy as np
import pytest

import fastdl
from fastdl import ops, optim
import reference as ref
from conftest import EXTREMES

pytestmark = pytest.mark.cuda

cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the CUDA tests need it (pip install cupy-cuda13x)")
INFO = fastdl.info()
if not INFO.get("cuda_extension"):
    pytest.skip("fastdl's CUDA module (fastdl._fastdl_cuda) is not built: install fastdl on a machine with nvcc",
                allow_module_level=True)
if not INFO.get("cuda_devices"):
    pytest.skip(f"no CUDA device: {INFO.get('cuda_status') or 'fastdl.info() reports 0 devices'}",
                allow_module_level=True)

try:
    import torch
except ImportError:
    torch = None
if torch is not None:
    import fastdl.torch as fdt
TORCH_CUDA = torch is not None and torch.cuda.is_available()
TORCH_DEVICE = "cuda"

needs_torch_cuda = pytest.mark.skipif(not TORCH_CUDA, reason="PyTorch with CUDA is not installed")

F16, F32, F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
DTYPES = pytest.mark.parametrize("dtype", [F32, F64, F16], ids=["f32", "f64", "f16"])
SIZES = [0, 1, 33, 1_000_003, 1 << 21]


# ---- helpers -------------------------------------------------------------------------------------

def tol(dtype, f32=1e-5, f64=1e-12):
    """Relative tolerance against a float64 reference, by storage type."""
    return {F16: 2e-3, F32: f32, F64: f64}[np.dtype(dtype)]


def ceps(dtype):
    """Epsilon of the compute type: 16-bit types are computed in float32."""
    return float(np.finfo(np.float64 if np.dtype(dtype) == F64 else np.float32).eps)


def eps(dtype):
    return float(np.finfo(dtype).eps)


def tiny(dtype):
    """Absolute floor: two float16 subnormal steps; below float32's normal range; float64's."""
    return {F16: 2.0 ** -23, F32: 1e-37, F64: 1e-300}[np.dtype(dtype)]


@pytest.fixture
def rng(request):
    """Fresh data for every test, reproducible from the test's id."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def f64(a):
    return np.asarray(a, dtype=np.float64)


def rand(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def dev(a):
    return cupy.asarray(a)


def host(a):
    assert isinstance(a, cupy.ndarray), f"expected a cupy.ndarray, got {type(a).__name__}"
    return cupy.asnumpy(a)


def poisoned(shape, dtype):
    return cupy.full(shape, np.nan, dtype=dtype)


def bits(a):
    return host(a).tobytes()


def close(got, expected, rtol, atol, what="result"):
    """|got - expected| <= rtol |expected| + atol elementwise (atol may be an array); got on the host."""
    got, expected = f64(got), f64(expected)
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    fin = np.isfinite(expected)
    assert np.array_equal(np.isfinite(got), fin), f"{what}: {np.sum(np.isfinite(got) != fin)} elements " \
        f"finite where the reference is not (or not where it is; NaN = an element never written?)"
    bad = fin & ~(np.abs(got - expected) <= rtol * np.abs(expected) + atol)
    if bad.any():
        i = np.flatnonzero(bad.ravel())[0]
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} elements off; first at flat index {i}: got "
                             f"{got.ravel()[i]!r}, expected {expected.ravel()[i]!r}")
    assert np.array_equal(got[~fin], expected[~fin], equal_nan=True), f"{what}: non-finite elements differ"


def check(got, expected, dtype, rtol, atol, like=None, what="result"):
    """A CuPy result of `dtype` on `like`'s device, against a float64 reference."""
    assert isinstance(got, cupy.ndarray), f"{what}: expected a cupy.ndarray, got {type(got).__name__}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    if like is not None:
        assert got.device == like.device, f"{what}: on {got.device}, inputs on {like.device}"
    close(host(got), expected, rtol, atol, what)


def check_loss(loss, expected, dtype, atol):
    """A 0-d CuPy loss; NaN for an empty batch. 16-bit inputs may give a float32 loss."""
    assert isinstance(loss, cupy.ndarray) and loss.shape == (), f"loss: {type(loss).__name__} {loss!r}"
    assert loss.dtype == dtype or (dtype == F16 and loss.dtype == F32), f"loss dtype {loss.dtype}"
    value = float(loss)
    if expected is None:
        assert math.isnan(value), f"loss of an empty batch: {value}, expected NaN"
    else:
        assert abs(value - expected) <= tol(dtype) * abs(expected) + atol, f"loss {value!r}, expected {expected!r}"


def with_out(fn, *args, **kw):
    """fn(*args, out=NaN-poisoned, **kw): checks it returns `out` and that fn(*args, **kw), allocating
    its own result (very likely the NaN block just freed to CuPy's pool), gives the same bits."""
    like = args[0]
    out = poisoned(like.shape, like.dtype)
    first = fn(*args, out=out, **kw)
    result = first[1] if isinstance(first, tuple) else first
    assert result is out, "out= was not returned"
    poisoned(like.shape, like.dtype)  # freed at once: the next allocation of this size likely reuses it
    second = fn(*args, **kw)
    for a, b in zip(outputs(first), outputs(second)):
        assert bits(a) == bits(b), "the same call with and without out= gave different bits"
    return first


def outputs(result):
    return result if isinstance(result, tuple) else (result,)


def onehot(ids, classes):
    q = np.zeros((len(ids), classes))
    q[np.arange(len(ids)), ids] = 1
    return q


# ---- activations -----------------------------------------------------------------------------------

ALPHA = 0.2
# name -> (fastdl forward, float64 reference)
FORWARD = {
    "sigmoid": (ops.sigmoid, ref.sigmoid),
    "tanh": (ops.tanh, ref.tanh),
    "relu": (ops.relu, ref.relu),
    "leaky_relu": (lambda x, out=None: ops.leaky_relu(x, ALPHA, out=out), lambda x: ref.leaky_relu(x, ALPHA)),
    "gelu": (ops.gelu, ref.gelu),
    "gelu_tanh": (lambda x, out=None: ops.gelu(x, approximate="tanh", out=out), ref.gelu_tanh),
    "silu": (ops.silu, ref.silu),
}
# name -> (fastdl backward, the tensor it takes ("y" = forward output, "x" = input), reference dL/dx)
BACKWARD = {
    "sigmoid": (ops.sigmoid_backward, "y", lambda g, y: g * y * (1 - y)),
    "tanh": (ops.tanh_backward, "y", lambda g, y: g * (1 - y * y)),
    "relu": (ops.relu_backward, "x", lambda g, x: np.where(x > 0, g, 0.0)),
    "leaky_relu": (lambda g, x, out=None: ops.leaky_relu_backward(g, x, ALPHA, out=out), "x",
                   lambda g, x: np.where(x > 0, g, ALPHA * g)),
    "gelu": (ops.gelu_backward, "x", lambda g, x: g * ref.d_gelu(x)),
    "gelu_tanh": (lambda g, x, out=None: ops.gelu_backward(g, x, approximate="tanh", out=out), "x",
                  lambda g, x: g * ref.d_gelu_tanh(x)),
    "silu": (ops.silu_backward, "x", lambda g, x: g * ref.d_silu(x)),
}


def act_rtol(name, dtype):
    # GELU's float32 tail is exp(-v) with v up to ~70 formed in float32: |v| * 1e-7 relative (see test_activations)
    return tol(dtype, f32=2e-5 if name.startswith("gelu") else 1e-5)


def saved_tensor(name, x):
    """What the backward of `name` takes for input x: the reference forward output rounded to x's dtype, or x."""
    return FORWARD[name][1](x).astype(x.dtype) if BACKWARD[name][1] == "y" else x


@DTYPES
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", FORWARD)
def test_activation_forward(name, n, dtype, rng):
    fwd, reference = FORWARD[name]
    x = rand(rng, n, dtype)
    xd = dev(x)
    check(with_out(fwd, xd), reference(x), dtype, act_rtol(name, dtype), tiny(dtype), like=xd)


@DTYPES
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", BACKWARD)
def test_activation_backward(name, n, dtype, rng):
    bwd, _, reference = BACKWARD[name]
    g, saved = rand(rng, n, dtype, 1.0), saved_tensor(name, rand(rng, n, dtype))
    # 1 - y^2 and y (1 - y) cancel near |y| = 1: the error there is absolute, a few ulp of |g|
    atol = 4 * ceps(dtype) * np.abs(f64(g)) + tiny(dtype)
    gd = dev(g)
    check(with_out(bwd, gd, dev(saved)), reference(f64(g), f64(saved)), dtype, act_rtol(name, dtype), atol, like=gd)


@DTYPES
@pytest.mark.parametrize("name", FORWARD)
def test_activation_extremes_are_finite(name, dtype):
    x = EXTREMES[np.abs(EXTREMES) <= np.finfo(dtype).max].astype(dtype)  # +-1e4 included; 3e38 is no float16
    fwd, reference = FORWARD[name]
    y = host(with_out(fwd, dev(x)))
    assert np.all(np.isfinite(y)), y
    close(y, reference(x), act_rtol(name, dtype), 1e-36 if dtype == F32 else tiny(dtype), f"{name}({x})")
    bwd, _, dref = BACKWARD[name]
    saved = saved_tensor(name, x)
    dx = host(with_out(bwd, dev(np.ones_like(x)), dev(saved)))
    assert np.all(np.isfinite(dx)), dx
    close(dx, dref(np.ones(x.shape), f64(saved)), act_rtol(name, dtype), 4 * eps(dtype) + 1e-36, f"{name} backward")


def test_non_contiguous_and_nd_input(rng):
    base = dev(rand(rng, (64, 301), F32))
    view = base[:, ::3].T  # strided and transposed: copied, as on the CPU
    for name, (fwd, reference) in FORWARD.items():
        check(fwd(view), reference(host(view)), F32, act_rtol(name, F32), tiny(F32), like=base, what=name)


# ---- softmax / log_softmax ----------------------------------------------------------------------------

SOFTMAX_SHAPES = [(0, 5), (3, 0), (1, 1), (7, 33), (1001, 1003), (3, 1_000_003), (512, 4096)]


def max_abs(a):
    return float(np.max(np.abs(f64(a)), initial=0.0))


@DTYPES
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_forward(log, shape, dtype, rng):
    x = rand(rng, shape, dtype)
    xd = dev(x)
    if log:  # log-probabilities near 0 are absolute quantities: a few ulp of the row's max |x|
        got, expected, atol = with_out(ops.log_softmax, xd), ref.log_softmax(x), 8 * ceps(dtype) * max_abs(x)
    else:
        got, expected, atol = with_out(ops.softmax, xd), ref.softmax(x), 0.0
    check(got, expected, dtype, tol(dtype, f32=2e-5), atol + tiny(dtype), like=xd)


@DTYPES
@pytest.mark.parametrize("shape", SOFTMAX_SHAPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward(log, shape, dtype, rng):
    x, g = rand(rng, shape, dtype), rand(rng, shape, dtype, 1.0)
    y = (ref.log_softmax(x) if log else ref.softmax(x)).astype(dtype)
    gd, yd = f64(g), f64(y)
    if log:  # dL/dx = g - exp(y) sum(g)
        e = np.exp(yd)
        expected = gd - e * gd.sum(axis=-1, keepdims=True)
        atol = 8 * ceps(dtype) * (np.abs(gd) + e * np.abs(gd).sum(axis=-1, keepdims=True))
        got = with_out(ops.log_softmax_backward, dev(g), dev(y))
    else:  # dL/dx = y (g - sum(g y))
        expected = yd * (gd - (gd * yd).sum(axis=-1, keepdims=True))
        atol = 8 * ceps(dtype) * np.abs(yd) * (np.abs(gd) + np.abs(gd * yd).sum(axis=-1, keepdims=True))
        got = with_out(ops.softmax_backward, dev(g), dev(y))
    check(got, expected, dtype, tol(dtype, f32=2e-5), atol + tiny(dtype))


@DTYPES
def test_softmax_along_other_axes(dtype, rng):
    x = rand(rng, (33, 65, 3), dtype)
    for axis in (0, 1):
        check(with_out(ops.softmax, dev(x), axis=axis), ref.softmax(x, axis=axis), dtype, tol(dtype, f32=2e-5),
              tiny(dtype), what=f"softmax axis={axis}")
        check(with_out(ops.log_softmax, dev(x), axis=axis), ref.log_softmax(x, axis=axis), dtype,
              tol(dtype, f32=2e-5), 8 * ceps(dtype) * max_abs(x) + tiny(dtype), what=f"log_softmax axis={axis}")


# ---- losses ------------------------------------------------------------------------------------------

def loss_atol(dtype, *inputs):
    return 16 * ceps(dtype) * max([1.0] + [max_abs(a) for a in inputs])


@DTYPES
@pytest.mark.parametrize("n", SIZES)
def test_mse(n, dtype, rng):
    p, t = rand(rng, n, dtype), rand(rng, n, dtype)
    loss, grad = with_out(ops.mse, dev(p), dev(t))
    d = f64(p) - f64(t)
    check_loss(loss, np.mean(d * d) if n else None, dtype, loss_atol(dtype))
    check(grad, 2 * d / max(n, 1), dtype, tol(dtype), 4 * ceps(dtype) * (np.abs(f64(p)) + np.abs(f64(t))) / max(n, 1)
          + tiny(dtype))


def bce_prob_ref(p, t):
    """Keras's clipped binary cross-entropy (p clipped to [1e-7, 1 - 1e-7] in p's dtype, zero slope outside)."""
    e = p.dtype.type(1e-7)
    lo, hi = float(e), float(p.dtype.type(1) - e)
    pd, td = f64(p), f64(t)
    pc = np.clip(pd, lo, hi)
    terms = -(td * np.log(pc) + (1 - td) * np.log(1 - pc))
    return terms, np.where((pd >= lo) & (pd <= hi), (pc - td) / (pc * (1 - pc)), 0.0)


@DTYPES
@pytest.mark.parametrize("n", SIZES)
def test_bce_probabilities(n, dtype, rng):
    lo = 0.01 if dtype == F16 else 0.0  # float16 stays clear of the clipping bounds (1 - 1e-7 is 1 in float16)
    p = rng.uniform(lo, 1 - lo, n).astype(dtype)
    t = (rng.uniform(0, 1, n) > 0.5).astype(dtype)
    loss, grad = with_out(ops.binary_crossentropy, dev(p), dev(t))
    terms, g = bce_prob_ref(p, t)
    check_loss(loss, terms.mean() if n else None, dtype, loss_atol(dtype))
    check(grad, g / max(n, 1), dtype, tol(dtype, f32=2e-5, f64=1e-10), tiny(dtype))


@DTYPES
@pytest.mark.parametrize("n", SIZES)
def test_bce_logits(n, dtype, rng):
    z, t = rand(rng, n, dtype, 4.0), rng.uniform(0, 1, n).astype(dtype)
    loss, grad = with_out(ops.binary_crossentropy, dev(z), dev(t), from_logits=True)
    zd, td = f64(z), f64(t)
    terms = np.log1p(np.exp(-np.abs(zd))) + np.maximum(zd, 0) - zd * td
    check_loss(loss, terms.mean() if n else None, dtype, loss_atol(dtype, z))
    check(grad, (ref.sigmoid(zd) - td) / max(n, 1), dtype, tol(dtype), 8 * ceps(dtype) / max(n, 1) + tiny(dtype))


def ce_ref(x, q, dtype):
    """Softmax cross-entropy of float64 rows against target rows q: (loss, grad, grad's atol)."""
    x = f64(x)
    rows, classes = x.shape
    if rows == 0:
        return None, np.zeros_like(x), 0.0
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    p, qs = np.exp(x - lse), q.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.sum(q * (lse - x), axis=1)))
    # exp(x - lse) carries the rounding of x - lse: ~ (2 max|x| + log C) ulp relative
    scale = 2 * max_abs(x) + math.log(classes) + 4
    return loss, (qs * p - q) / rows, 2 * ceps(dtype) * scale * (qs * p + q) / rows + tiny(dtype)


CE_SHAPES = [(0, 5), (1, 1), (7, 33), (1001, 1003), (256, 8193), (2, 1_000_003)]


@DTYPES
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("target", ["int32", "int64", "probabilities"])
@pytest.mark.parametrize("shape", CE_SHAPES, ids=str)
def test_softmax_cross_entropy(shape, target, smoothing, dtype, rng):
    rows, classes = shape
    x = rand(rng, shape, dtype)
    if target == "probabilities":
        t = rng.uniform(0, 1, shape)
        t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
        q = f64(t)
    else:
        t = rng.integers(0, classes, rows).astype(target)
        q = onehot(t, classes)
    q = (1 - smoothing) * q + smoothing / classes
    loss, grad = with_out(ops.softmax_cross_entropy, dev(x), dev(t), label_smoothing=smoothing)
    eloss, egrad, atol = ce_ref(x, q, dtype)
    check_loss(loss, eloss, dtype, loss_atol(dtype, x))
    check(grad, egrad, dtype, tol(dtype, f32=2e-5, f64=1e-11), atol)
    # in place: the gradient overwrites the logits, with the same bits
    logits = dev(x)
    loss2, grad2 = ops.softmax_cross_entropy(logits, dev(t), label_smoothing=smoothing, out=logits)
    assert grad2 is logits
    assert bits(grad2) == bits(grad) and bits(loss2) == bits(loss)


@DTYPES
def test_extreme_logits_give_finite_results(dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [-1e4, -1e4, -1e4], [88.0, 89.0, -100.0]], dtype=dtype)
    big = 16 * ceps(dtype) * 1e4
    y = with_out(ops.softmax, dev(x))
    check(y, ref.softmax(x), dtype, tol(dtype, f32=2e-5), tiny(dtype), what="softmax")
    check(with_out(ops.log_softmax, dev(x)), ref.log_softmax(x), dtype, tol(dtype, f32=2e-5), big, what="log_softmax")
    ids = np.array([0, 0, 2, 1])
    for smoothing in (0.0, 0.1):
        loss, grad = with_out(ops.softmax_cross_entropy, dev(x), dev(ids), label_smoothing=smoothing)
        eloss, egrad, _ = ce_ref(x, (1 - smoothing) * onehot(ids, 3) + smoothing / 3, dtype)
        check_loss(loss, eloss, dtype, big)
        check(grad, egrad, dtype, tol(dtype, f32=2e-5, f64=1e-11), 1e-7, what="softmax_cross_entropy grad")
    z = np.array([1e4, -1e4, 100.0, -100.0, 0.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype=dtype)
    loss, grad = with_out(ops.binary_crossentropy, dev(z), dev(t), from_logits=True)
    zd = f64(z)
    check_loss(loss, float(np.mean(np.maximum(zd, 0) - zd * f64(t) + np.log1p(np.exp(-np.abs(zd))))), dtype, big)
    check(grad, (ref.sigmoid(zd) - f64(t)) / 5, dtype, tol(dtype), 1e-7, what="bce logits grad")
    if dtype != F16:  # probabilities at 0 and 1: clipped, finite, zero slope outside the clip
        p = np.array([0.0, 1.0, 0.0, 1.0, 1e-9, 0.5], dtype=dtype)
        t = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.3], dtype=dtype)
        loss, grad = with_out(ops.binary_crossentropy, dev(p), dev(t))
        terms, g = bce_prob_ref(p, t)
        check_loss(loss, float(terms.mean()), dtype, 0.0)
        check(grad, g / 6, dtype, tol(dtype, f32=2e-5, f64=1e-10), tiny(dtype), what="bce probabilities grad")


# ---- the same call on NumPy (CPU) and CuPy; twice on CuPy ---------------------------------------------

def _cases(n, shape):
    """name -> (make(rng, dtype) -> NumPy inputs, call(*arrays) -> array or (loss, grad))."""
    cases = {}
    for name, (fwd, _) in FORWARD.items():
        cases[name] = (lambda rng, dt: (rand(rng, n, dt),), fwd)
        cases[name + "_backward"] = (lambda rng, dt, name=name: (rand(rng, n, dt, 1.0),
                                                                 saved_tensor(name, rand(rng, n, dt))),
                                     BACKWARD[name][0])
    def rows(rng, dt):
        return (rand(rng, shape, dt),)

    def probs_of(rng, dt, log):  # what softmax / log_softmax give: the tensor their backward takes
        return (ref.log_softmax if log else ref.softmax)(rand(rng, shape, dt)).astype(dt)

    def ids(rng, dt):
        return rand(rng, shape, dt), rng.integers(0, shape[1], shape[0])

    def probs(rng, dt):
        return rand(rng, shape, dt), rng.dirichlet(np.ones(shape[1]), shape[0]).astype(dt)

    cases.update({
        "softmax": (rows, ops.softmax),
        "log_softmax": (rows, ops.log_softmax),
        "softmax_backward": (lambda rng, dt: (rand(rng, shape, dt, 1.0), probs_of(rng, dt, False)),
                             ops.softmax_backward),
        "log_softmax_backward": (lambda rng, dt: (rand(rng, shape, dt, 1.0), probs_of(rng, dt, True)),
                                 ops.log_softmax_backward),
        "mse": (lambda rng, dt: (rand(rng, n, dt), rand(rng, n, dt)), ops.mse),
        "bce": (lambda rng, dt: (rng.uniform(0.01, 0.99, n).astype(dt), rng.uniform(0, 1, n).astype(dt)),
                ops.binary_crossentropy),
        "bce_logits": (lambda rng, dt: (rand(rng, n, dt), rng.uniform(0, 1, n).astype(dt)),
                       lambda z, t: ops.binary_crossentropy(z, t, from_logits=True)),
        "ce_ids": (ids, ops.softmax_cross_entropy),
        "ce_ids_smoothed": (ids, lambda x, t: ops.softmax_cross_entropy(x, t, label_smoothing=0.1)),
        "ce_probabilities": (probs, ops.softmax_cross_entropy),
    })
    return cases


AGREE = _cases(100_003, (101, 1003))
REDUCTIONS = {k: v for k, v in _cases((1 << 22) + 1, (64, 65_537)).items()
              if k.startswith(("softmax", "log_softmax", "mse", "bce", "ce_"))}


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", AGREE)
def test_cpu_and_cuda_agree(case, dtype, rng):
    make, call = AGREE[case]
    arrays = make(rng, dtype)
    cpu = outputs(call(*arrays))
    gpu = outputs(call(*[dev(a) for a in arrays]))
    for c, g in zip(cpu, gpu):
        check(g, c, dtype, 4 * tol(dtype, f32=2e-5, f64=1e-11), 16 * ceps(dtype) * max_abs(c) + tiny(dtype), what=case)


@pytest.mark.parametrize("dtype", [F32, F16], ids=["f32", "f16"])
@pytest.mark.parametrize("case", REDUCTIONS)
def test_reductions_are_deterministic(case, dtype, rng):
    make, call = REDUCTIONS[case]
    arrays = [dev(a) for a in make(rng, dtype)]
    first = [bits(a) for a in outputs(call(*arrays))]
    assert [bits(a) for a in outputs(call(*arrays))] == first


# ---- optimizers: fastdl.optim on CuPy arrays, one step at a time against float64 ------------------------

OPT_SHAPES = [(0,), (1,), (1025, 1025), (3, 5), (0, 4), (4097,), (33, 31)] + [(k % 97 + 1,) for k in range(330)]
OPT_CASES = [
    ("SGD", dict(lr=0.1, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, max_grad_norm=1.0)),
    ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-6, weight_decay=0.05, maximize=True)),
    ("Adam", dict(lr=1e-2, amsgrad=True, max_grad_norm=1.0)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, max_grad_norm=1e6)),  # above the norm: no clipping
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, max_grad_norm=1.0)),
]
STEPS = 4


def opt_id(case):
    return case[0] + "-" + ",".join(f"{k}={v}" for k, v in case[1].items())


def ref_step(name, cfg, p, g, state, t, clip, bound=False):
    """torch.optim's update of one parameter in float64: (new p, {state name: new array}). With bound=True,
    the same with every input made positive and the final subtraction an addition: the magnitude of the
    terms, which scales the rounding error of a result that cancels."""
    if bound:
        p, g, state = np.abs(p), np.abs(g), {k: np.abs(v) for k, v in state.items()}
    sub = np.add if bound else np.subtract
    g = g * clip
    if cfg.get("maximize") and not bound:
        g = -g
    lr, wd = cfg["lr"], cfg.get("weight_decay", 0.01 if name == "AdamW" else 0.0)
    if name == "SGD":
        mu, new = cfg.get("momentum", 0.0), {}
        g = g + wd * p
        if mu:
            b = g if t == 1 else mu * state["momentum_buffer"] + (1 - cfg.get("dampening", 0.0)) * g
            new["momentum_buffer"] = b
            g = g + mu * b if cfg.get("nesterov") else b
        return sub(p, lr * g), new
    b1, b2 = cfg.get("betas", (0.9, 0.999))
    if name == "AdamW":
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    m = b1 * state["exp_avg"] + (1 - b1) * g
    v = b2 * state["exp_avg_sq"] + (1 - b2) * g * g
    new = {"exp_avg": m, "exp_avg_sq": v}
    if cfg.get("amsgrad"):
        v = new["max_exp_avg_sq"] = np.maximum(state["max_exp_avg_sq"], v)
    denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + cfg.get("eps", 1e-8)
    return sub(p, lr / (1 - b1 ** t) * m / denom), new


def host_list(arrays):
    """Many device arrays to the host in one transfer."""
    if not arrays:
        return []
    flat = host(cupy.concatenate([a.ravel() for a in arrays]))
    ends = np.cumsum([a.size for a in arrays])
    return [part.reshape(a.shape) for part, a in zip(np.split(flat, ends[:-1]), arrays)]


def snapshot(opt):
    """{'params' or state name: [host arrays]} of a fastdl.optim optimizer."""
    return {"params": host_list(opt.params), **{k: host_list(v) for k, v in opt.state.items()}}


def check_update(got, expected, before, scale, what):
    """One update: the final rounding (rtol), compute-type rounding of the terms (atol: scale = their
    magnitude) and room for 16-bit intermediates (a few 16-bit ulp of the change)."""
    dt = got.dtype
    atol = 16 * ceps(dt) * scale + 8 * eps(dt) * np.abs(expected - f64(before)) + tiny(dt)
    close(got, expected, tol(dt), atol, what)


@DTYPES
@pytest.mark.parametrize("case", OPT_CASES, ids=opt_id)
def test_optimizer_steps_match_float64(case, dtype, rng):
    name, cfg = case
    params = [dev(rand(rng, s, dtype, 1.0)) for s in OPT_SHAPES]
    opt = getattr(optim, name)(params, **cfg)
    for t in range(1, STEPS + 1):
        grads = [rand(rng, s, dtype, 1.0) for s in OPT_SHAPES]
        before = snapshot(opt)
        clip = 1.0
        if cfg.get("max_grad_norm") is not None:
            norm = math.sqrt(sum(float(np.sum(f64(g) ** 2)) for g in grads))
            clip = min(1.0, cfg["max_grad_norm"] / (norm + 1e-6))
        opt.step([dev(g) for g in grads])
        after = snapshot(opt)
        for i, g in enumerate(grads):
            state = {k: f64(v[i]) for k, v in before.items() if k != "params"}
            args = (f64(before["params"][i]), f64(g), state, t, clip)
            (p, new), (p_scale, scales) = ref_step(name, cfg, *args), ref_step(name, cfg, *args, bound=True)
            check_update(after["params"][i], p, before["params"][i], p_scale, f"step {t}, params[{i}] {g.shape}")
            for k, v in new.items():
                check_update(after[k][i], v, before[k][i], scales[k], f"step {t}, state {k}[{i}]")


@pytest.mark.parametrize("case", [c for c in OPT_CASES if "max_grad_norm" in c[1]], ids=opt_id)
def test_optimizer_steps_are_deterministic(case, rng):
    name, cfg = case
    init = [rand(rng, s, F32, 1.0) for s in OPT_SHAPES]
    a, b = [dev(p) for p in init], [dev(p) for p in init]
    opt_a, opt_b = getattr(optim, name)(a, **cfg), getattr(optim, name)(b, **cfg)
    for _ in range(3):
        grads = [dev(rand(rng, s, F32, 1.0)) for s in OPT_SHAPES]
        opt_a.step(grads)
        opt_b.step(grads)
    sa, sb = snapshot(opt_a), snapshot(opt_b)
    for k in sa:
        assert all(x.tobytes() == y.tobytes() for x, y in zip(sa[k], sb[k])), k


# ---- fastdl.torch on torch CUDA tensors, against torch.optim (foreach=False) on the same device -------

TORCH_SHAPES = [(0,), (1,), (1025, 1025), (3, 5), (0, 4), (33, 31)] + [(k % 61 + 1,) for k in range(60)]
TORCH_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), None),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, maximize=True), None),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.05), None),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1), None),
    # clip_grad_norm_ on torch's side; the norm is ~1360: a factor ~0.37 that keeps torch's float16 v = 1e-3 g^2
    # from underflowing to 0 (which makes its float16 step inf)
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True), 500.0),
]
# torch's 16-bit single-tensor step rounds the parameter between its ops (p * (1 - lr wd), then addcdiv): up to
# ~1 ulp per step away from a step computed in float32 and rounded once; so 3 steps, and 5e-3 for float16
TORCH_RTOL = {"float32": 1e-5, "float16": 5e-3, "bfloat16": 2e-2}
TORCH_STEPS = 3


def torch_close(got, expected, rt, what):
    """Relative to each element, with an absolute floor of rt times the tensor's RMS."""
    e = expected.detach().double().cpu().numpy()
    rms = float(np.sqrt(np.mean(e * e))) if e.size else 0.0
    close(got.detach().double().cpu().numpy(), e, rt, rt * rms, what)


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: opt_id(c) + (f",max_grad_norm={c[2]}" if c[2] else ""))
def test_fastdl_torch_matches_torch_optim_on_cuda(case, tdtype):
    name, kw, max_norm = case
    dt = getattr(torch, tdtype)
    gen = torch.Generator(device=TORCH_DEVICE).manual_seed(zlib.crc32(f"{case}{tdtype}".encode()))
    init = [torch.randn(s, device=TORCH_DEVICE, generator=gen).to(dt) for s in TORCH_SHAPES]
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o1 = getattr(fdt, name)(mine, **kw, **({"max_grad_norm": max_norm} if max_norm else {}))
    o2 = getattr(torch.optim, name)(theirs, foreach=False, **kw)
    for _ in range(TORCH_STEPS):
        for p, q, s in zip(mine, theirs, TORCH_SHAPES):
            # |g| in [0.5, 2]: float16's v = 1e-3 g^2 stays a normal number in torch's float16 arithmetic
            g = torch.rand(s, device=TORCH_DEVICE, generator=gen) * 1.5 + 0.5
            g = (g * (torch.randint(0, 2, s, device=TORCH_DEVICE, generator=gen) * 2 - 1)).to(dt)
            p.grad, q.grad = g.clone(), g.clone()
        o1.step()
        if max_norm:
            torch.nn.utils.clip_grad_norm_(theirs, max_norm, foreach=False)
        o2.step()
    rt = TORCH_RTOL[tdtype]
    for i, (p, q) in enumerate(zip(mine, theirs)):
        assert p.device == q.device and p.dtype == dt
        torch_close(p, q, rt, f"params[{i}] {tuple(q.shape)}")
        for k, v in o2.state[q].items():
            if k != "step":  # torch rounds the state between its ops in 16-bit: looser there
                torch_close(o1.state[p][k], v, 4 * rt, f"state {k} of params[{i}]")


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: opt_id(c) + (f",max_grad_norm={c[2]}" if c[2] else ""))
def test_float32_state_on_cuda_matches_the_cpu(case, tdtype):
    """state_dtype=torch.float32 beside 16-bit parameters: the CUDA kernels (float32 state loaded as two
    packs per piece of 16-bit parameters) against the CPU kernels, which tests/test_torch_half.py holds
    against float32 torch.optim steps: the state (float32) to 1e-5, the parameters to an ulp."""
    name, kw, max_norm = case
    dt = getattr(torch, tdtype)
    gen = torch.Generator().manual_seed(zlib.crc32(f"f32state{case}{tdtype}".encode()))
    init = [torch.randn(s, generator=gen).to(dt) for s in TORCH_SHAPES]
    runs = []
    for device in ("cpu", TORCH_DEVICE):
        params = [torch.nn.Parameter(t.clone().to(device)) for t in init]
        opt = getattr(fdt, name)(params, state_dtype=torch.float32, **kw,
                                 **({"max_grad_norm": max_norm} if max_norm else {}))
        g = torch.Generator().manual_seed(7)
        for _ in range(TORCH_STEPS):
            for p, s in zip(params, TORCH_SHAPES):
                p.grad = ((torch.rand(s, generator=g) * 1.5 + 0.5) * (torch.randint(0, 2, s, generator=g) * 2 - 1)
                          ).to(dt).to(device)
            opt.step()
        runs.append((params, opt))
    (cpu_params, cpu_opt), (gpu_params, gpu_opt) = runs
    ulp = float(torch.finfo(dt).eps)
    for i, (p, q) in enumerate(zip(gpu_params, cpu_params)):
        torch_close(p, q, 2 * ulp, f"params[{i}]")
        for k, v in cpu_opt.state[q].items():
            if k != "step":
                assert gpu_opt.state[p][k].dtype == torch.float32
                torch_close(gpu_opt.state[p][k], v, 1e-5, f"state {k} of params[{i}]")



# ---- fastdl.torch with torch.amp.GradScaler, device step counts, CUDA graphs ------------------------------

AMP_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
]
AMP_SHAPES = [(0,), (1,), (1025, 1025), (3, 5), (33, 31)] + [(k % 61 + 1,) for k in range(40)]
AMP_STEPS = 6
AMP_BAD = {2: (2, float("inf")), 3: (4, float("nan"))}  # step: (parameter, value); step 0 is never skipped


def amp_run(opt, params, grads, unscale_clip=None, sync_free=False):
    """GradScaler("cuda") steps on the given unscaled gradients (an inf or NaN at the AMP_BAD steps);
    returns the scales used. sync_free: every step after the first under set_sync_debug_mode("error")."""
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 12, growth_interval=2)
    scales = []
    for step, gs in enumerate(grads):
        scale = scaler.scale(torch.ones((), device=TORCH_DEVICE))  # a device tensor: reading it would sync
        scales.append(scale)
        for p, g in zip(params, gs):
            p.grad = (g.float() * scale).to(g.dtype)
        if step in AMP_BAD:
            k, value = AMP_BAD[step]
            params[k].grad.view(-1)[0] = value
        before = [p.detach().clone() for p in params]
        try:
            if sync_free and step:
                torch.cuda.set_sync_debug_mode("error")
            if unscale_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, unscale_clip, foreach=True)
            scaler.step(opt)
            scaler.update()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        if step in AMP_BAD:
            assert all(torch.equal(a, b) for a, b in zip(before, params)), f"step {step} was not skipped"
    return [float(s) for s in scales]


def amp_grads(dt, *key):
    gen = torch_gen("amp", *key)
    return [[((torch.rand(s, device=TORCH_DEVICE, generator=gen) * 1.5 + 0.5) * (1 + step)).to(dt)
             for s in AMP_SHAPES] for step in range(AMP_STEPS)]


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", AMP_CASES, ids=opt_id)
def test_fastdl_torch_under_grad_scaler_matches_torch_fused_on_cuda(case, tdtype):
    """Against torch's fused optimizer under GradScaler("cuda"): the same parameters (to TORCH_RTOL), the
    same step counts (float32 on the device, skipped steps not counted), the same scales; every step
    after the first without a host synchronisation."""
    name, kw = case
    dt = getattr(torch, tdtype)
    gen = torch_gen("amp init", name, tdtype)
    init = [torch.randn(s, device=TORCH_DEVICE, generator=gen).to(dt) for s in AMP_SHAPES]
    grads = amp_grads(dt, name, tdtype)
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o1 = getattr(fdt, name)(mine, **kw)
    o2 = getattr(torch.optim, name)(theirs, fused=True, **kw)
    s1 = amp_run(o1, mine, grads, sync_free=True)
    s2 = amp_run(o2, theirs, grads)
    assert s1 == s2
    rt = TORCH_RTOL[tdtype]
    for i, (p, q) in enumerate(zip(mine, theirs)):
        torch_close(p, q, rt, f"params[{i}] {tuple(q.shape)}")
        for k, v in o2.state[q].items():
            got = o1.state[p][k]
            if k == "step":
                assert got.device == v.device and got.dtype == torch.float32 and float(got) == float(v)
                assert float(got) == AMP_STEPS - len(AMP_BAD)
            else:
                torch_close(got, v, 4 * rt, f"state {k} of params[{i}]")


@needs_torch_cuda
@pytest.mark.parametrize("max_grad_norm", [None, 50.0])
def test_fastdl_torch_under_grad_scaler_unscale_and_clip_on_cuda(max_grad_norm):
    """The user's scaler.unscale_ + clip_grad_norm_ (then only found_inf reaches the step), and fastdl's own
    max_grad_norm with a scaler (the norm of the unscaled gradients), against torch's fused AdamW after
    unscale_ + clip_grad_norm_; fastdl's clip needs no host synchronisation either."""
    gen = torch_gen("amp clip", max_grad_norm)
    init = [torch.randn(s, device=TORCH_DEVICE, generator=gen) for s in AMP_SHAPES]
    grads = amp_grads(torch.float32, "clip", max_grad_norm)
    mine = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o1 = fdt.AdamW(mine, lr=1e-2, max_grad_norm=max_grad_norm)
    o2 = torch.optim.AdamW(theirs, lr=1e-2, fused=True)
    amp_run(o1, mine, grads, unscale_clip=None if max_grad_norm else 50.0, sync_free=max_grad_norm is not None)
    amp_run(o2, theirs, grads, unscale_clip=50.0)
    for i, (p, q) in enumerate(zip(mine, theirs)):
        torch_close(p, q, 1e-5, f"params[{i}]")
        assert float(o1.state[p]["step"]) == float(o2.state[q]["step"]) == AMP_STEPS - len(AMP_BAD)
    if max_grad_norm:
        norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads[-1]]))
        assert float(o1.last_grad_norm) == pytest.approx(float(norm), rel=1e-5)


@needs_torch_cuda
def test_fastdl_torch_step_counts_move_across_devices_and_to_torch(tmp_path):
    """Device counts in checkpoints: CUDA fastdl -> CPU fastdl (map_location) -> CUDA torch Adam, and a CPU
    torch checkpoint into CUDA fastdl; every run continues as one that never moved."""
    gen = torch_gen("counts")
    shapes = [(33, 31), (7,), (0,)]
    init = [torch.randn(s, device=TORCH_DEVICE, generator=gen) for s in shapes]
    grads = [[torch.randn(s, device=TORCH_DEVICE, generator=gen) for s in shapes] for _ in range(6)]

    def run(opt, params, gs):
        for g in gs:
            for p, x in zip(params, g):
                p.grad = x.to(p.device)
            opt.step()

    ref = [torch.nn.Parameter(t.clone()) for t in init]
    ro = fdt.Adam(ref, lr=1e-2)
    run(ro, ref, grads)
    a = [torch.nn.Parameter(t.clone()) for t in init]
    oa = fdt.Adam(a, lr=1e-2)
    run(oa, a, grads[:2])
    assert all(oa.state[p]["step"].device.type == "cuda" and oa.state[p]["step"].dtype == torch.float32 for p in a)
    torch.save(oa.state_dict(), tmp_path / "a.pt")
    b = [torch.nn.Parameter(p.detach().cpu()) for p in a]
    ob = fdt.Adam(b, lr=1e-2)
    ob.load_state_dict(torch.load(tmp_path / "a.pt", map_location="cpu"))
    run(ob, b, grads[2:4])
    torch.save(ob.state_dict(), tmp_path / "b.pt")  # CPU step tensors
    c = [torch.nn.Parameter(p.detach().to(TORCH_DEVICE)) for p in b]
    oc = fdt.Adam(c, lr=1e-2)
    oc.load_state_dict(torch.load(tmp_path / "b.pt"))
    run(oc, c, grads[4:5])
    d = [torch.nn.Parameter(p.detach().clone()) for p in c]
    od = torch.optim.Adam(d, lr=1e-2, foreach=False)
    od.load_state_dict(oc.state_dict())  # CUDA float32 counts into torch's single-tensor Adam
    run(od, d, grads[5:])
    for p, q in zip(d, ref):
        torch_close(p, q, 1e-5, "after CUDA -> CPU -> CUDA -> torch")
    assert [float(ro.state[p]["step"]) for p in ref] == [6.0] * 3


def graph_setup(capturable=True, **kw):
    gen = torch_gen("graph", capturable, tuple(kw))
    init = [torch.randn(s, device=TORCH_DEVICE, generator=gen) for s in AMP_SHAPES]
    feed = [[torch.randn(s, device=TORCH_DEVICE, generator=gen) for s in AMP_SHAPES] for _ in range(8)]
    params = [torch.nn.Parameter(t.clone()) for t in init]
    for p in params:
        p.grad = torch.zeros_like(p)  # static gradients: a replay reads these tensors
    return params, feed, fdt.AdamW(params, lr=1e-2, capturable=capturable, **kw)


@needs_torch_cuda
@pytest.mark.parametrize("kw", [{}, {"max_grad_norm": 20.0, "amsgrad": True}], ids=["plain", "clip-amsgrad"])
def test_fastdl_torch_step_captured_in_a_cuda_graph(kw):
    """capturable=True: warm-up steps on a side stream, optimizer.step() captured, replays on new
    gradients equal (bit for bit) eager steps on the same gradients, step counts included; with
    GradScaler's tensors set by hand (static), a replay whose found_inf is 1 changes nothing."""
    params, feed, opt = graph_setup(**kw)
    eager, _, ref = graph_setup(**kw)
    scale, found = torch.full((), 4.0, device=TORCH_DEVICE), torch.zeros((), device=TORCH_DEVICE)
    for o in (opt, ref):
        o.grad_scale, o.found_inf = scale, found

    def feed_grads(ps, g):
        for p, x in zip(ps, g):
            p.grad.copy_(x * 4.0)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for g in feed[:3]:
            feed_grads(params, g)
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    for g in feed[:3]:
        feed_grads(eager, g)
        ref.step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for step, g in enumerate(feed[3:]):
        skip = step == 2
        found.fill_(1.0 if skip else 0.0)
        feed_grads(params, g)
        before = [p.detach().clone() for p in params]
        graph.replay()
        feed_grads(eager, g)
        ref.step()
        torch.cuda.synchronize()
        if skip:
            assert all(torch.equal(a, b) for a, b in zip(before, params))
        for p, q in zip(params, eager):
            assert torch.equal(p, q)
            for k, v in ref.state[q].items():
                assert torch.equal(opt.state[p][k], v), k
    assert float(opt.state[params[0]]["step"]) == 3 + len(feed) - 3 - 1


@needs_torch_cuda
def test_capturing_a_step_without_capturable_is_refused():
    params, feed, opt = graph_setup(capturable=False)
    opt.step()
    torch.cuda.synchronize()
    before = [p.detach().clone() for p in params]
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="capturable is False"):
        with torch.cuda.graph(graph):
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, params))


# ---- cross-entropy: ignore_index and reductions (CuPy); fastdl.torch's losses on CUDA tensors ---------------

CE_IGNORE_SHAPES = [(0, 5), (7, 33), (1001, 1003), (3, 5000)]  # empty; one block; many blocks; a block per row


@DTYPES
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ids", ["int32", "int64"])
@pytest.mark.parametrize("shape", CE_IGNORE_SHAPES, ids=str)
def test_softmax_cross_entropy_ignore_index_and_reductions(shape, ids, reduction, dtype, rng):
    from fastdl.backends import cuda as cuda_kernels, numpy_kernels
    rows, classes = shape
    x = rand(rng, shape, dtype)
    t = rng.integers(0, classes, rows).astype(ids)
    ignored = rng.uniform(size=rows) < 0.3
    t[ignored] = -100
    eg, erl = np.zeros(shape), np.zeros(rows)
    eloss = numpy_kernels.softmax_cross_entropy(f64(x), t, eg, 0.1, -100, reduction, erl)
    out = poisoned(shape, dtype)
    rl = poisoned(rows, F64) if reduction == "none" else None
    loss = cuda_kernels.softmax_cross_entropy(dev(x), dev(t), out, 0.1, -100, reduction, rl)
    assert isinstance(loss, cupy.ndarray) and loss.shape == () and loss.dtype == F64
    kept = int((~ignored).sum())
    value = float(loss)
    if reduction == "mean" and kept == 0:
        assert math.isnan(value) and math.isnan(eloss), f"mean over no rows: {value}"
    else:
        assert abs(value - eloss) <= tol(dtype) * abs(eloss) + loss_atol(dtype, x) * max(rows, 1), (value, eloss)
    d = kept if reduction == "mean" and kept else 1
    scale = 2 * max_abs(x) + math.log(max(classes, 2)) + 4
    check(out, eg, dtype, tol(dtype, f32=2e-5, f64=1e-11), 2 * ceps(dtype) * scale * (np.abs(eg) + 2 / d) + tiny(dtype),
          what="gradient")
    assert (host(out)[ignored] == 0).all(), "an ignored row's gradient is not 0"
    if rl is not None:
        close(host(rl), erl, tol(dtype), loss_atol(dtype, x), "row_losses")
        assert (host(rl)[ignored] == 0).all()


@pytest.mark.parametrize("shape", CE_IGNORE_SHAPES[1:], ids=str)
def test_softmax_cross_entropy_every_row_ignored(shape, rng):
    from fastdl.backends import cuda as cuda_kernels
    x = dev(rand(rng, shape, F32))
    t = dev(np.full(shape[0], 7, dtype=np.int64))
    for reduction in ("mean", "sum", "none"):
        out, rl = poisoned(shape, F32), poisoned(shape[0], F64)
        loss = float(cuda_kernels.softmax_cross_entropy(x, t, out, 0.1, 7, reduction, rl))
        assert math.isnan(loss) if reduction == "mean" else loss == 0.0, (reduction, loss)
        assert (host(out) == 0).all(), reduction
        if reduction == "none":
            assert (host(rl) == 0).all()


def test_ignore_index_without_ignored_rows_gives_the_default_bits(rng):
    from fastdl.backends import cuda as cuda_kernels
    for shape in ((7, 33), (1001, 1003)):
        x, t = dev(rand(rng, shape, F32)), dev(rng.integers(0, shape[1], shape[0]))
        g1, g2 = poisoned(shape, F32), poisoned(shape, F32)
        l1 = ops.softmax_cross_entropy(x, t, out=g1)[0]
        l2 = cuda_kernels.softmax_cross_entropy(x, t, g2, ignore_index=-100)
        assert bits(l1) == bits(l2) and bits(g1) == bits(g2)


if torch is not None:
    from fastdl.torch.nn import functional as FF

TORCH_CE_RTOL = {"float32": 1e-5, "bfloat16": 2e-2}


def torch_gen(*key):
    return torch.Generator(device=TORCH_DEVICE).manual_seed(zlib.crc32(repr(key).encode()))


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(64, 33), (300, 5000), (4, 7, 5)], ids=str)
def test_fastdl_torch_cross_entropy_on_cuda(shape, reduction, tdtype):
    dt, gen = getattr(torch, tdtype), torch_gen(shape, reduction, tdtype)
    x = (torch.randn(shape, device=TORCH_DEVICE, generator=gen) * 3).to(dt)
    tshape = (shape[0],) + tuple(shape[2:])
    t = torch.randint(0, shape[1], tshape, device=TORCH_DEVICE, generator=gen)
    t[torch.rand(tshape, device=TORCH_DEVICE, generator=gen) < 0.3] = -100
    rt = TORCH_CE_RTOL[tdtype]
    for smoothing in (0.0, 0.1):
        mine, theirs = x.clone().requires_grad_(), x.float().clone().requires_grad_()  # the reference in float32
        l1 = FF.cross_entropy(mine, t, reduction=reduction, label_smoothing=smoothing)
        l2 = torch.nn.functional.cross_entropy(theirs, t, reduction=reduction, label_smoothing=smoothing)
        assert l1.device == x.device and l1.dtype == dt and l1.shape == l2.shape
        up = (torch.rand(l2.shape, device=TORCH_DEVICE, generator=gen) + 0.5).to(dt)
        (l1 * up).sum().backward()
        (l2 * up.float()).sum().backward()
        torch_close(l1, l2, rt, f"loss, smoothing {smoothing}")
        torch_close(mine.grad, theirs.grad, rt, f"grad, smoothing {smoothing}")
    # probabilities, in place (a non-leaf that requires grad)
    q = torch.softmax(torch.randn(shape, device=TORCH_DEVICE, generator=gen), 1).to(dt)
    leaf, ref_leaf = x.clone().requires_grad_(), x.float().clone().requires_grad_()
    l1 = FF.cross_entropy(leaf * 1, q, reduction=reduction, inplace_backward=True)
    l2 = torch.nn.functional.cross_entropy(ref_leaf, q.float(), reduction=reduction)
    l1.sum().backward()
    l2.sum().backward()
    torch_close(l1, l2, rt, "loss, probabilities")
    torch_close(leaf.grad, ref_leaf.grad, rt, "grad, probabilities")


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["float32", "bfloat16"])
def test_fastdl_torch_cross_entropy_on_cuda_every_row_ignored(tdtype):
    dt = getattr(torch, tdtype)
    x = torch.randn((9, 40), device=TORCH_DEVICE).to(dt).requires_grad_()
    t = torch.full((9,), -100, device=TORCH_DEVICE)
    for reduction in ("mean", "sum", "none"):
        x.grad = None
        loss = FF.cross_entropy(x, t, reduction=reduction)
        loss.sum().backward()
        value = loss.sum().item()
        assert math.isnan(value) if reduction == "mean" else value == 0.0, (reduction, value)
        assert x.grad.dtype == dt and (x.grad == 0).all(), reduction
        empty = FF.cross_entropy(x[:0], t[:0], reduction=reduction)
        assert math.isnan(empty.item()) if reduction == "mean" else empty.sum().item() == 0.0


@needs_torch_cuda
@pytest.mark.parametrize("tdtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignored", [0.3, 1.0], ids=["some-ignored", "all-ignored"])
def test_fastdl_torch_linear_cross_entropy_on_cuda(ignored, reduction, tdtype):
    dt, gen = getattr(torch, tdtype), torch_gen(ignored, reduction, tdtype)
    n, d, v = 300, 64, 1000
    x = torch.randn((n, d), device=TORCH_DEVICE, generator=gen).to(dt)
    w = (torch.randn((v, d), device=TORCH_DEVICE, generator=gen) * 0.2).to(dt)
    b = (torch.randn(v, device=TORCH_DEVICE, generator=gen) * 0.1).to(dt)
    t = torch.randint(0, v, (n,), device=TORCH_DEVICE, generator=gen)
    t[torch.rand(n, device=TORCH_DEVICE, generator=gen) < ignored] = -100
    mine = [a.clone().requires_grad_() for a in (x, w, b)]
    theirs = [a.float().clone().requires_grad_() for a in (x, w, b)]
    l1 = FF.linear_cross_entropy(mine[0], mine[1], t, bias=mine[2], reduction=reduction, label_smoothing=0.1,
                                 chunk_rows=128)
    l2 = torch.nn.functional.cross_entropy(torch.nn.functional.linear(*theirs), t, reduction=reduction,
                                           label_smoothing=0.1)
    assert l1.device == x.device and l1.dtype == dt and l1.shape == l2.shape
    up = (torch.rand(l2.shape, device=TORCH_DEVICE, generator=gen) + 0.5).to(dt)
    (l1 * up).sum().backward()
    if ignored == 1.0 and reduction == "mean":
        assert math.isnan(l1.item())
        for name, p in zip(("input", "weight", "bias"), mine):
            assert p.grad.dtype == dt and (p.grad == 0).all(), name
        return
    (l2 * up.float()).sum().backward()
    rt = {"float32": 1e-4, "bfloat16": 4e-2}[tdtype]
    torch_close(l1, l2, rt, "loss")
    for name, p, q in zip(("input", "weight", "bias"), mine, theirs):
        assert p.grad.dtype == dt, name
        torch_close(p.grad, q.grad, rt, f"grad of {name}")


def torch_busy(seconds=0.3):
    """Enqueues about `seconds` of matrix products on torch's current stream and returns at once."""
    a = torch.ones((4096, 4096), device=TORCH_DEVICE)
    a @ a
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    a @ a
    end.record()
    end.synchronize()
    for _ in range(max(1, math.ceil(seconds * 1e3 / max(start.elapsed_time(end), 1e-3)))):
        a @ a
    return a


@needs_torch_cuda
def test_fastdl_torch_losses_on_cuda_never_wait_for_the_device():
    gen = torch_gen("no sync")
    x = torch.randn((300, 1000), device=TORCH_DEVICE, generator=gen)
    w = torch.randn((1000, 64), device=TORCH_DEVICE, generator=gen) * 0.2
    h = torch.randn((300, 64), device=TORCH_DEVICE, generator=gen)
    t = torch.randint(0, 1000, (300,), device=TORCH_DEVICE, generator=gen)
    t[::3] = -100

    def run():
        a, p = x.clone().requires_grad_(), w.clone().requires_grad_()
        losses = [FF.cross_entropy(a, t, reduction=r) for r in ("mean", "sum", "none")]
        losses += [FF.linear_cross_entropy(h, p, t, reduction=r, chunk_rows=128) for r in ("mean", "sum", "none")]
        sum(loss.sum() for loss in losses).backward()
        return losses, a.grad, p.grad

    expected = run()  # loads every kernel and fills torch's cache first
    torch.cuda.synchronize()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        keep = torch_busy()
        got = run()
        returned_early = not s.query()
    s.synchronize()
    del keep
    assert returned_early, "fastdl.torch waited for the device (a synchronisation in a loss or its backward)"
    for g, e in zip(got[0] + [got[1], got[2]], expected[0] + [expected[1], expected[2]]):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)  # the same results on the side stream


# ---- streams: work goes on CuPy's current stream, and nothing waits for it ------------------------------

def busy(seconds=0.3):
    """Enqueues about `seconds` of matrix products on the current stream and returns at once."""
    a = cupy.ones((4096, 4096), np.float32)
    a @ a  # warm-up
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    a @ a
    end.record()
    end.synchronize()
    for _ in range(max(1, math.ceil(seconds * 1e3 / max(cupy.cuda.get_elapsed_time(start, end), 1e-3)))):
        a @ a
    return a


def test_work_runs_on_the_current_stream_without_a_sync(rng):
    n = 1 << 20
    x_h, t_h, g_h = rand(rng, n, F32), rand(rng, n, F32), rand(rng, n, F32, 1.0)
    x_src, t, g_src = dev(x_h), dev(t_h), dev(g_h)
    x, grad = cupy.zeros(n, np.float32), cupy.zeros(n, np.float32)  # get their values only on the stream
    y, dl = poisoned(n, F32), poisoned(n, F32)
    params = [dev(rand(rng, n, F32, 1.0))]
    opt = optim.SGD(params, lr=0.1)
    run = [lambda: ops.gelu(x, out=y), lambda: ops.mse(x, t, out=dl), lambda: opt.step([grad])]
    for f in run:  # load every kernel and fill CuPy's pool first: neither may wait for the device later
        f()
    cupy.empty_like(x)[...] = x_src  # CuPy's copy kernel too; x itself stays zero
    y.fill(np.nan)
    dl.fill(np.nan)
    cupy.cuda.Device().synchronize()
    p_before = host(params[0])
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        keep = busy()
        x[...] = x_src  # ordered after the busy work on s: a call on another stream would see stale zeros
        grad[...] = g_src
        loss = run[1]()[0]
        run[0]()
        run[2]()
        returned_early = not s.done
        cupy.cuda.Stream.null.synchronize()
        null_stream_free = not s.done
    s.synchronize()
    del keep
    assert returned_early, "fastdl waited for the stream (a device or stream synchronisation in a call)"
    assert null_stream_free, "the null stream waited for the non-blocking stream"
    check(y, ref.gelu(x_h), F32, 2e-5, tiny(F32), what="gelu on the stream")
    d = f64(x_h) - f64(t_h)
    check_loss(loss, float(np.mean(d * d)), F32, loss_atol(F32))
    check(params[0], f64(p_before) - 0.1 * f64(g_h), F32, 1e-6, 1e-7, what="SGD step on the stream")


def test_clipped_adamw_on_a_stream_equals_the_null_stream(rng):
    shapes = [(1025, 1025), (7,), (0,)]
    init = [rand(rng, s, F32, 1.0) for s in shapes]
    g_h = [rand(rng, s, F32, 1.0) for s in shapes]
    a, b = [dev(p) for p in init], [dev(p) for p in init]
    opt_a, opt_b = optim.AdamW(a, lr=1e-2, max_grad_norm=1.0), optim.AdamW(b, lr=1e-2, max_grad_norm=1.0)
    opt_a.step([dev(g) for g in g_h])
    grads = [cupy.zeros(s, np.float32) for s in shapes]
    src = [dev(g) for g in g_h]
    cupy.cuda.Device().synchronize()
    s = cupy.cuda.Stream(non_blocking=True)
    with s:
        keep = busy()
        for g, h in zip(grads, src):
            g[...] = h
        opt_b.step(grads)
    s.synchronize()
    del keep
    assert all(bits(p) == bits(q) for p, q in zip(a, b))


# ---- devices and array kinds -----------------------------------------------------------------------------

def mixed_calls(c, other, other_ids):
    """(call, argument names its error must give) with c a float32 CuPy vector of 10 and `other` one that
    may not go with it (a NumPy array, or a CuPy array on another device); other_ids: 2 class ids there."""
    return [
        (lambda: ops.mse(c, other), ("pred", "target")),
        (lambda: ops.mse(other, c), ("pred", "target")),
        (lambda: ops.relu(c, out=other), ("x", "out")),
        (lambda: ops.sigmoid_backward(c, other), ("grad", "y")),
        (lambda: ops.softmax_cross_entropy(c.reshape(2, 5), other_ids), ("logits", "target")),
        (lambda: optim.SGD([c], lr=0.1).step([other]), ("params", "grads")),
        (lambda: optim.Adam([c, other]), ("params",)),
    ]


def assert_refused(calls, c):
    before = bits(c)
    for call, names in calls:
        with pytest.raises((TypeError, ValueError)) as info:
            call()
        for name in names:
            assert re.search(rf"\b{name}\b", str(info.value)), f"{info.value!r} does not name {name!r}"
    assert bits(c) == before, "a refused call wrote to an array"


def test_numpy_mixed_with_cupy_is_refused():
    c = cupy.arange(10, dtype=np.float32)
    assert_refused(mixed_calls(c, np.arange(10, dtype=np.float32), np.array([1, 3])), c)


@pytest.mark.skipif(cupy.cuda.runtime.getDeviceCount() < 2, reason="needs 2 GPUs")
def test_two_devices():
    with cupy.cuda.Device(0):
        c = cupy.arange(10, dtype=np.float32)
    with cupy.cuda.Device(1):
        other, other_ids = cupy.arange(10, dtype=np.float32), cupy.array([1, 3])
    assert_refused(mixed_calls(c, other, other_ids), c)
    with cupy.cuda.Device(0):  # an array on device 1 is computed on device 1, whatever device is current
        y = ops.sigmoid(other)
        loss, grad = ops.mse(other, other)
    check(y, ref.sigmoid(np.arange(10)), F32, 1e-5, tiny(F32), like=other)
    check(grad, np.zeros(10), F32, 0, 0, like=other)
    assert loss.device == other.device
