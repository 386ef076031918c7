"""Keras's row losses as fused kernels (fastdl.ops.row_loss: categorical_hinge and
categorical_focal) on every backend and ISA against float64 references written here, their
gradients also against central differences; the training-level results against Keras 3 itself are
in tests/keras_swap/losses_zoo.py."""

import numpy as np
import pytest

from fastdl import _backend, ops
from conftest import assert_close

EPS = 1e-7


# ---- float64 references, written from Keras 3's definitions ------------------------------------------

def hinge_ref(p, t):
    """(loss per row, gradient per row) of categorical_hinge, row by row."""
    loss, grad = np.zeros(len(p)), np.zeros_like(p)
    for r in range(len(p)):
        masked = [(1 - t[r, j]) * p[r, j] for j in range(p.shape[1])]
        j = max(range(len(masked)), key=lambda k: (masked[k], -k))  # the first index of the max
        margin = masked[j] - float(np.dot(t[r], p[r])) + 1
        loss[r] = max(margin, 0.0)
        if margin > 0:
            grad[r] = -t[r]
            grad[r, j] += 1 - t[r, j]
    return loss, grad


def focal_probs(x, from_logits):
    if from_logits:
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return x / x.sum(axis=1, keepdims=True)


def focal_value(x, t, alpha, gamma, from_logits, s):
    t = t * (1 - s) + s / x.shape[1]
    q = np.clip(focal_probs(x, from_logits), EPS, 1 - EPS)
    return np.sum(alpha * (1 - q) ** gamma * -t * np.log(q), axis=1)


def focal_ref(x, t, alpha, gamma, from_logits, s):
    """(loss per row, gradient per row): dloss/dq per element, then the chain rule through the
    normalisation's Jacobian (softmax's: diag(q) - q q^T; x / sum(x)'s: (I - q 1^T) / sum(x))."""
    ts = t * (1 - s) + s / x.shape[1]
    q = focal_probs(x, from_logits)
    qc = np.clip(q, EPS, 1 - EPS)
    dq = alpha * (-gamma * (1 - qc) ** (gamma - 1) * (-ts * np.log(qc)) + (1 - qc) ** gamma * (-ts / qc))
    dq = np.where((q > EPS) & (q < 1 - EPS), dq, 0.0)
    grad = np.empty_like(x)
    for r in range(len(x)):
        if from_logits:
            jac = np.diag(q[r]) - np.outer(q[r], q[r]) if x.shape[1] <= 64 else None
        else:
            jac = (np.eye(x.shape[1]) - np.outer(q[r], np.ones(x.shape[1]))) / x[r].sum() if x.shape[1] <= 64 else None
        if jac is not None:
            grad[r] = jac.T @ dq[r]
        else:  # the same product without the (C, C) matrix
            inner = dq[r] @ q[r]
            grad[r] = q[r] * (dq[r] - inner) if from_logits else (dq[r] - inner) / x[r].sum()
    return focal_value(x, t, alpha, gamma, from_logits, s), grad


def central_differences(f, x, h=1e-6):
    """d sum(f(x)) / dx by central differences, one element at a time (float64)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        g[i] = (f(xp).sum() - f(xm).sum()) / (2 * h)
    return g


# name, kernel arguments, reference (p, t) -> (loss, grad), value-only reference, kind of inputs
FOCAL = [
    dict(alpha=0.25, gamma=2.0, from_logits=True, label_smoothing=0.0),
    dict(alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.1),
    dict(alpha=0.5, gamma=0.0, from_logits=True, label_smoothing=0.2),
    dict(alpha=1.0, gamma=0.5, from_logits=False, label_smoothing=0.0),
    dict(alpha=0.3, gamma=1.0, from_logits=True, label_smoothing=0.0),
    dict(alpha=0.3, gamma=3.5, from_logits=True, label_smoothing=0.05),
]
CASES = [("categorical_hinge", {})] + [("categorical_focal", kw) for kw in FOCAL]
CASE_IDS = ["hinge"] + [f"focal-a{k['alpha']}-g{k['gamma']}-{'logits' if k['from_logits'] else 'probs'}"
                        f"-s{k['label_smoothing']}" for k in FOCAL]


def reference(name, kw, p, t):
    if name == "categorical_hinge":
        return hinge_ref(p, t)
    return focal_ref(p, t, kw["alpha"], kw["gamma"], kw["from_logits"], kw["label_smoothing"])


def inputs(name, kw, rows, cols, dtype, rng):
    """Targets: one-hot for the hinge (Keras's use), soft distributions for the focal loss.
    Predictions: logits ~ N(0, 2^2), probabilities in [0.02, 1) (no clipping), or hinge scores ~ N(0, 2^2)."""
    if name == "categorical_hinge":
        t = np.eye(cols)[rng.integers(0, cols, rows)] if cols else np.zeros((rows, 0))
        p = rng.standard_normal((rows, cols)) * 2
    else:
        t = rng.random((rows, cols)) ** 3
        t = t / np.maximum(t.sum(axis=1, keepdims=True), 1e-30)
        p = rng.standard_normal((rows, cols)) * 2 if kw["from_logits"] else rng.random((rows, cols)) * 0.98 + 0.02
    return p.astype(dtype), t.astype(dtype)


def tolerances(dtype, grad):
    """(rtol, atol per element) for a gradient: relative to each row's largest element (the
    normalisation subtracts terms of that size)."""
    scale = np.abs(grad).max(axis=1, keepdims=True) if grad.size else np.zeros((len(grad), 1))
    if dtype == np.float32:
        return 1e-4, 2e-5 * scale + 1e-30
    return 1e-9, 1e-11 * scale + 1e-300


SHAPES = [(0, 3), (1, 1), (1, 17), (37, 1), (37, 2), (37, 3), (37, 17), (37, 1000), (20_000, 10)]


@pytest.mark.parametrize("rows,cols", SHAPES, ids=[f"{r}x{c}" for r, c in SHAPES])
@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
def test_value_and_gradient_match_references(arrays, dtype, rng, case, rows, cols):
    name, kw = CASES[case]
    p, t = inputs(name, kw, rows, cols, dtype, rng)
    row_losses = np.full(rows, np.nan)
    if arrays.device:
        loss, grad = arrays.run(ops.row_loss, name, p, t, **kw)
        dev = arrays.asarray(row_losses)
        arrays.run(ops.row_loss, name, p, t, row_losses=dev, **kw)
        row_losses = arrays.numpy(dev)
    else:
        loss, grad = arrays.run(ops.row_loss, name, p, t, row_losses=row_losses, **kw)
    assert grad.shape == p.shape and grad.dtype == dtype
    assert np.asarray(loss).dtype == dtype
    if rows == 0:
        assert np.isnan(loss)
        return
    ref_loss, ref_grad = reference(name, kw, p.astype(np.float64), t.astype(np.float64))
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    # float32's clip bound is 1 - 2^-23 (1 - 1e-7 rounded): a row at the clip (one class) has a loss of
    # about alpha eps^(gamma + 1) that differs from float64's by a fraction of eps in absolute terms
    floor = 1e-7 if dtype == np.float32 else 1e-300
    assert_close(row_losses, ref_loss, dtype, rtol=rtol, atol=rtol * np.abs(ref_loss).max() + floor)
    assert_close(np.asarray(loss, np.float64), ref_loss.mean(), dtype, rtol=rtol, atol=floor)
    r, a = tolerances(dtype, ref_grad)
    assert_close(grad, ref_grad / rows, dtype, rtol=r, atol=a / rows)


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
@pytest.mark.parametrize("cols", [1, 2, 3, 17])
def test_gradient_matches_central_differences(backend, rng, case, cols):
    """float64: the reference's gradient and the kernel's against differences of the loss's value
    (inputs kept away from the hinge's kinks, the clip's corners and ties)."""
    name, kw = CASES[case]
    p, t = inputs(name, kw, 6, cols, np.float64, rng)
    if name == "categorical_hinge":
        value = lambda x: hinge_ref(x, t)[0]  # noqa: E731
    else:
        value = lambda x: focal_value(x, t, kw["alpha"], kw["gamma"], kw["from_logits"],  # noqa: E731
                                      kw["label_smoothing"])
    numeric = central_differences(value, p)
    _, ref_grad = reference(name, kw, p, t)
    _, grad = ops.row_loss(name, p, t, scale=1.0, **kw)
    assert_close(ref_grad, numeric, np.float64, rtol=1e-6, atol=1e-7)
    assert_close(grad, numeric, np.float64, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", range(len(CASES)), ids=CASE_IDS)
def test_scale_weights_and_row_losses(arrays, dtype, rng, case):
    """loss = scale sum_r w_r loss_r and grad row r = scale w_r dloss_r/dp_r; row_losses unweighted;
    pred may have several leading axes."""
    name, kw = CASES[case]
    p, t = inputs(name, kw, 24, 5, dtype, rng)
    w = rng.random(24) * 2
    ref_loss, ref_grad = reference(name, kw, p.astype(np.float64), t.astype(np.float64))
    loss, grad = arrays.run(ops.row_loss, name, p.reshape(4, 6, 5), t.reshape(4, 6, 5), scale=0.3,
                            weights=w.reshape(4, 6), **kw)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    assert_close(np.asarray(loss, np.float64), 0.3 * np.sum(w * ref_loss), dtype, rtol=rtol, atol=1e-30)
    r, a = tolerances(dtype, ref_grad)
    assert_close(grad.reshape(24, 5), 0.3 * w[:, None] * ref_grad, dtype, rtol=r, atol=a)
    # no rows: a sum (given scale) is 0, the mean NaN
    empty = np.zeros((0, 5), dtype)
    assert float(arrays.run(ops.row_loss, name, empty, empty, scale=2.0, **kw)[0]) == 0.0


@pytest.mark.parametrize("from_logits", [True, False])
def test_focal_extremes_stay_finite(arrays, dtype, from_logits):
    """Logits of +-1e4 (and probabilities of exactly 0 and 1): finite values and gradients."""
    if from_logits:
        x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [0.0, 1e4, 3.0]], dtype)
    else:
        x = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [1e-30, 1.0, 1e-30]], dtype)
    t = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, 0.3, 0.5]], dtype)
    for gamma in (0.0, 0.5, 2.0):
        loss, grad = arrays.run(ops.row_loss, "categorical_focal", x, t, gamma=gamma, from_logits=from_logits,
                                label_smoothing=0.1)
        assert np.isfinite(loss) and np.isfinite(grad).all(), gamma
        ref_loss, _ = focal_ref(x.astype(np.float64), t.astype(np.float64), 0.25, gamma, from_logits, 0.1)
        assert_close(np.asarray(loss, np.float64), ref_loss.mean(), dtype, rtol=2e-4 if dtype == np.float32 else 1e-9)
    loss, grad = arrays.run(ops.row_loss, "categorical_hinge", x * 1e4, t)
    assert np.isfinite(loss) and np.isfinite(grad).all()


def test_hinge_ties_take_the_first_index(arrays, dtype):
    """The argmax of (1 - t) p on ties is the first index, as NumPy's: inside one SIMD chunk,
    across chunks and threads, at the row's tail, and between -0.0 and 0.0."""
    rows = []
    # (p, t, expected argmax j*)
    rows.append(([0.5, 0.5, 0.5], [0, 0, 0], 0))
    rows.append(([0.3, 0.3, 0.3], [1, 0, 0], 1))
    rows.append(([-0.0, 0.0, -1.0], [0, 0, 0], 0))
    cases = [(np.array(p, dtype)[None], np.array(t, dtype)[None], j) for p, t, j in rows]
    for hits, j in [((3, 17), 3), ((500, 900), 500), ((999,), 999), ((31, 32, 700), 31)]:
        p = np.full((1, 1000), -1.0, dtype)
        p[0, list(hits)] = 0.75
        t = np.zeros((1, 1000), dtype)
        t[0, 998] = 1  # pos = -1: every row has a positive margin
        cases.append((p, t, j))
    for p, t, j in cases:
        loss, grad = arrays.run(ops.row_loss, "categorical_hinge", p, t, scale=1.0)
        expected = -t[0].astype(np.float64)
        expected[j] += 1 - t[0, j]
        np.testing.assert_array_equal(grad[0], expected.astype(dtype), err_msg=f"ties, expected j* = {j}")
        assert_close(np.asarray(loss, np.float64), hinge_ref(p.astype(np.float64), t.astype(np.float64))[0][0],
                     dtype)


def test_hinge_inactive_rows_have_zero_gradient(arrays, dtype):
    p = np.array([[5.0, -5.0, -5.0], [0.1, 0.2, 0.3]], dtype)
    t = np.array([[1, 0, 0], [0, 0, 1]], dtype)
    loss, grad = arrays.run(ops.row_loss, "categorical_hinge", p, t)
    assert_close(np.asarray(loss, np.float64), (0 + 0.9) / 2, dtype, rtol=1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(grad, np.array([[0, 0, 0], [0, 0.5, -0.5]], dtype))


def test_out_may_be_an_input(backend, rng):
    p, t = inputs("categorical_focal", FOCAL[0], 9, 4, np.float64, rng)
    _, expected = ops.row_loss("categorical_focal", p, t, **FOCAL[0])
    x = p.copy()
    _, grad = ops.row_loss("categorical_focal", x, t, out=x, **FOCAL[0])
    assert grad is x
    np.testing.assert_array_equal(x, expected)
    tt = t.copy()
    _, expected = ops.row_loss("categorical_hinge", p, t)
    ops.row_loss("categorical_hinge", p, tt, out=tt)
    np.testing.assert_array_equal(tt, expected)


def test_bad_arguments_name_the_argument(backend):
    x = np.zeros((4, 3), np.float32)
    t = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="name must be one of"):
        ops.row_loss("categorical_hinge2", x, t)
    with pytest.raises(ValueError, match="target has shape"):
        ops.row_loss("categorical_hinge", x, t[:, :2])
    with pytest.raises(TypeError, match="target has dtype float64"):
        ops.row_loss("categorical_hinge", x, t.astype(np.float64))
    with pytest.raises(TypeError, match="pred must be a float32 or float64 array"):
        ops.row_loss("categorical_focal", x.astype(np.int32), t)
    with pytest.raises(ValueError, match="out has shape"):
        ops.row_loss("categorical_hinge", x, t, out=np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="out has dtype"):
        ops.row_loss("categorical_hinge", x, t, out=np.zeros((4, 3), np.float64))
    with pytest.raises(ValueError, match="weights has shape"):
        ops.row_loss("categorical_hinge", x, t, weights=np.ones(3))
    with pytest.raises(ValueError, match="row_losses must be"):
        ops.row_loss("categorical_hinge", x, t, row_losses=np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="row_losses must be"):
        ops.row_loss("categorical_hinge", x, t, row_losses=np.zeros(5))
    with pytest.raises(ValueError, match="gamma"):
        ops.row_loss("categorical_focal", x, t, gamma=-1.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        ops.row_loss("categorical_focal", x, t, label_smoothing=1.5)
    with pytest.raises(TypeError, match="from_logits"):
        ops.row_loss("categorical_focal", x, t, from_logits="yes")
    with pytest.raises(ValueError, match="pred must have a class axis"):
        ops.row_loss("categorical_hinge", np.float32(1.0), np.float32(1.0))
    with pytest.raises(ValueError, match="pred has no classes"):
        ops.row_loss("categorical_hinge", np.zeros((2, 0), np.float32), np.zeros((2, 0), np.float32))


def test_extension_refuses_bad_buffers():
    """The C++ glue on its own (without fastdl.ops' checks): sizes, dtypes and overlaps, by name."""
    ext = _backend.cpu_extension()
    if ext is None:
        pytest.skip("the C++ extension is not built")
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="out has 6 elements"):
        ext.row_loss(0, x, x.copy(), np.zeros(6, np.float32))
    with pytest.raises(TypeError, match="target has dtype"):
        ext.row_loss(0, x, x.astype(np.float64), np.zeros_like(x))
    with pytest.raises(ValueError, match="out must not share memory with pred"):
        ext.row_loss(1, x, x.copy(), x)
    with pytest.raises(TypeError, match="weights must be a float64 array"):
        ext.row_loss(1, x, x.copy(), np.zeros_like(x), weights=np.ones(4, np.float32))
    with pytest.raises(ValueError, match="op is not a row loss id"):
        ext.row_loss(7, x, x.copy(), np.zeros_like(x))
    assert ext.ROW_LOSSES == {"categorical_hinge": 0, "categorical_focal": 1}
