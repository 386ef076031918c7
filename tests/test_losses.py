"""Fused losses: value and gradient against float64 references, on every backend."""

import math

import numpy as np
import pytest

import fastdl
from fastdl import layers, losses, models, ops
from conftest import SIZES, assert_close


def _pair(rng, n, dtype):
    return rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)


def _check_loss(loss, expected, dtype, n):
    assert loss.shape == () and loss.dtype == dtype
    if n == 0:
        assert math.isnan(float(loss))
    else:
        np.testing.assert_allclose(float(loss), expected, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-30)


# ---- mse ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_mse(arrays, n, dtype, rng):
    p, t = _pair(rng, n, dtype)
    loss, grad = arrays.run(ops.mse, p, t)
    d = p.astype(np.float64) - t
    _check_loss(loss, np.mean(d * d) if n else None, dtype, n)
    assert_close(grad, 2 * d / max(n, 1), dtype, atol=4 * np.finfo(dtype).eps * np.abs(d) / max(n, 1))


def test_mse_2d_is_mean_over_all_elements(backend, rng):
    p, t = rng.standard_normal((8, 3)), rng.standard_normal((8, 3))
    loss, grad = ops.mse(p, t)
    np.testing.assert_allclose(loss, np.mean((p - t) ** 2), rtol=1e-13)
    assert grad.shape == (8, 3)


# ---- binary cross-entropy ---------------------------------------------------------------------------

def _bce_prob_ref(p, t, dtype):
    eps = dtype.type(1e-7)
    lo, hi = float(eps), float(dtype.type(1) - eps)  # Keras clips with epsilon in the input's dtype
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    pc = np.clip(p64, lo, hi)
    terms = -(t64 * np.log(pc) + (1 - t64) * np.log(1 - pc))
    inside = (p64 >= lo) & (p64 <= hi)
    grad = np.where(inside, (pc - t64) / (pc * (1 - pc)), 0.0)
    return terms, grad


@pytest.mark.parametrize("n", SIZES)
def test_bce_probabilities(arrays, n, dtype, rng):
    p = rng.uniform(0, 1, n).astype(dtype)
    t = (rng.uniform(0, 1, n) > 0.5).astype(dtype)
    loss, grad = arrays.run(ops.binary_crossentropy, p, t)
    terms, g = _bce_prob_ref(p, t, dtype)
    _check_loss(loss, terms.mean() if n else None, dtype, n)
    assert_close(grad, g / max(n, 1), dtype, rtol=2e-5 if dtype == np.float32 else 1e-10)


def test_bce_probabilities_at_0_and_1(arrays, dtype):
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-9, 0.5], dtype=dtype)
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.3], dtype=dtype)
    loss, grad = arrays.run(ops.binary_crossentropy, p, t)
    terms, g = _bce_prob_ref(p, t, dtype)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(float(loss), terms.mean(), rtol=1e-5)
    assert_close(grad, g / 6, dtype, rtol=2e-5 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("n", SIZES)
def test_bce_logits(arrays, n, dtype, rng):
    z = (rng.standard_normal(n) * 4).astype(dtype)
    t = rng.uniform(0, 1, n).astype(dtype)
    loss, grad = arrays.run(ops.binary_crossentropy, z, t, from_logits=True)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    terms = np.log1p(np.exp(-np.abs(z64))) + np.maximum(z64, 0) - z64 * t64
    _check_loss(loss, terms.mean() if n else None, dtype, n)
    sig = 1 / (1 + np.exp(-z64))
    assert_close(grad, (sig - t64) / max(n, 1), dtype, atol=4 * np.finfo(dtype).eps / max(n, 1))


def test_bce_logits_extremes(arrays, dtype):
    z = np.array([1e4, -1e4, 100.0, -100.0, 3e38, -3e38, 0.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 1.0], dtype=dtype)
    loss, grad = arrays.run(ops.binary_crossentropy, z, t, from_logits=True)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    z64 = z.astype(np.float64)
    expected = np.mean(np.maximum(z64, 0) - z64 * t + np.log1p(np.exp(-np.abs(z64))))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    np.testing.assert_allclose(grad * 7, [0, 0, 1, -1, 0.5, -0.5, -0.5], atol=1e-7)


def test_bce_logits_tiny_loss_keeps_its_digits(backend, dtype):
    # log1p(exp(-z)) for z = 30 is 9.4e-14: log(1 + exp(-z)) would round it to 0.
    z = np.full(4, 30.0, dtype=dtype)
    loss, _ = ops.binary_crossentropy(z, np.ones_like(z), from_logits=True)
    np.testing.assert_allclose(float(loss), math.log1p(math.exp(-30.0)), rtol=1e-5)


# ---- softmax cross-entropy ----------------------------------------------------------------------

def _ce_ref(x, q):
    x = x.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    p = np.exp(x - lse)
    loss = np.mean(np.sum(q * (lse - x), axis=1))
    grad = (q.sum(axis=1, keepdims=True) * p - q) / x.shape[0]
    return loss, grad


def _onehot(y, c):
    q = np.zeros((len(y), c))
    q[np.arange(len(y)), y] = 1
    return q


def _ce_tol(dtype):
    return dict(rtol=2e-5, atol=1e-8) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-300)


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (5, 3), (33, 10), (256, 1000), (3, 100_003)], ids=str)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.uint8])
def test_softmax_ce_int_labels(arrays, shape, label_dtype, dtype, rng):
    n, c = shape
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    y = rng.integers(0, min(c, 255), n).astype(label_dtype)
    loss, grad = arrays.run(ops.softmax_cross_entropy, x, y)
    eloss, egrad = _ce_ref(x, _onehot(y, c))
    _check_loss(loss, eloss, dtype, n)
    tol = _ce_tol(dtype)
    assert_close(grad, egrad, dtype, rtol=tol["rtol"], atol=tol["atol"] / n)


@pytest.mark.parametrize("smoothing", [0.1, 0.5, 1.0])
def test_softmax_ce_label_smoothing(arrays, smoothing, dtype, rng):
    n, c = 40, 7
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    y = rng.integers(0, c, n)
    q = (1 - smoothing) * _onehot(y, c) + smoothing / c
    loss, grad = arrays.run(ops.softmax_cross_entropy, x, y, label_smoothing=smoothing)
    eloss, egrad = _ce_ref(x, q)
    _check_loss(loss, eloss, dtype, n)
    assert_close(grad, egrad, dtype, rtol=_ce_tol(dtype)["rtol"], atol=_ce_tol(dtype)["atol"] / n)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softmax_ce_probability_targets(arrays, smoothing, dtype, rng):
    n, c = 50, 13
    x = (rng.standard_normal((n, c)) * 3).astype(dtype)
    t = rng.uniform(0, 1, (n, c))
    t = (t / t.sum(axis=1, keepdims=True)).astype(dtype)
    loss, grad = arrays.run(ops.softmax_cross_entropy, x, t, label_smoothing=smoothing)
    eloss, egrad = _ce_ref(x, (1 - smoothing) * t.astype(np.float64) + smoothing / c)
    _check_loss(loss, eloss, dtype, n)
    assert_close(grad, egrad, dtype, rtol=_ce_tol(dtype)["rtol"], atol=_ce_tol(dtype)["atol"] / n)


def test_softmax_ce_probabilities_equal_ids(backend, dtype, rng):
    x = rng.standard_normal((20, 6)).astype(dtype)
    y = rng.integers(0, 6, 20)
    l1, g1 = ops.softmax_cross_entropy(x, y)
    l2, g2 = ops.softmax_cross_entropy(x, _onehot(y, 6).astype(dtype))
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-8)


def test_softmax_ce_extreme_logits(arrays, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [0.0, 0.0, 0.0], [3e38, -3e38, 0.0]], dtype=dtype)
    y = np.array([0, 0, 2, 1])
    loss, grad = arrays.run(ops.softmax_cross_entropy, x, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    eloss, egrad = _ce_ref(x, _onehot(y, 3))
    np.testing.assert_allclose(float(loss), eloss, rtol=1e-6)
    np.testing.assert_allclose(grad, egrad, atol=1e-7)


def test_softmax_ce_nd_logits(backend, rng):
    x = rng.standard_normal((2, 5, 4))
    y = rng.integers(0, 4, (2, 5))
    loss, grad = ops.softmax_cross_entropy(x, y)
    eloss, egrad = _ce_ref(x.reshape(10, 4), _onehot(y.ravel(), 4))
    np.testing.assert_allclose(loss, eloss, rtol=1e-12)
    np.testing.assert_allclose(grad.reshape(10, 4), egrad, rtol=1e-11, atol=1e-300)


def test_softmax_ce_gradient_into_the_target(backend, dtype, rng):
    x = rng.standard_normal((4, 10)).astype(dtype)
    t = rng.uniform(0, 1, (4, 10)).astype(dtype)
    t /= t.sum(axis=1, keepdims=True)
    loss, grad = ops.softmax_cross_entropy(x, t.copy())
    l2, g2 = ops.softmax_cross_entropy(x, t, out=t)  # the gradient overwrites the target it needs
    assert g2 is t and float(l2) == float(loss)
    np.testing.assert_array_equal(g2, grad)


def test_softmax_ce_empty_batch(backend, dtype):
    loss, grad = ops.softmax_cross_entropy(np.zeros((0, 4), dtype), np.zeros(0, np.int64))
    assert math.isnan(float(loss)) and grad.shape == (0, 4)


def test_softmax_ce_gradient_matches_finite_differences(backend, rng):
    x = rng.standard_normal((3, 5))
    y = np.array([4, 0, 2])
    _, grad = ops.softmax_cross_entropy(x, y, label_smoothing=0.1)
    h = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (float(ops.softmax_cross_entropy(xp, y, 0.1)[0]) - float(ops.softmax_cross_entropy(xm, y, 0.1)[0])) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("which", ["mse", "bce", "bce_logits"])
def test_elementwise_loss_gradients_match_finite_differences(backend, which, rng):
    p = rng.uniform(0.05, 0.95, 6) if which == "bce" else rng.standard_normal(6)
    t = rng.uniform(0, 1, 6)
    f = {"mse": lambda a: ops.mse(a, t), "bce": lambda a: ops.binary_crossentropy(a, t),
         "bce_logits": lambda a: ops.binary_crossentropy(a, t, from_logits=True)}[which]
    _, grad = f(p)
    h = 1e-6
    numeric = np.array([(float(f(p + h * e)[0]) - float(f(p - h * e)[0])) / (2 * h) for e in np.eye(6)])
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-10)


def test_gradient_into_out_and_in_place(backend, dtype, rng):
    x = rng.standard_normal((8, 5)).astype(dtype)
    y = rng.integers(0, 5, 8)
    loss, grad = ops.softmax_cross_entropy(x, y)
    out = np.empty_like(x)
    l2, g2 = ops.softmax_cross_entropy(x, y, out=out)
    assert g2 is out
    np.testing.assert_array_equal(out, grad)
    l3, g3 = ops.softmax_cross_entropy(x, y, out=x)  # overwrite the logits with their gradient
    assert g3 is x and float(l3) == float(loss)
    np.testing.assert_array_equal(x, grad)


def test_loss_is_deterministic_across_thread_counts(rng):
    import fastdl
    from fastdl import _backend
    if _backend.name != "cpu":
        pytest.skip("needs the C++ extension")
    ext = _backend.cpu_extension()
    p, t = rng.standard_normal(1_000_003).astype(np.float32), rng.standard_normal(1_000_003).astype(np.float32)
    x, y = rng.standard_normal((3000, 100)).astype(np.float32), rng.integers(0, 100, 3000)
    before = ext.num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            fastdl.set_num_threads(n)
            results.append((float(ops.mse(p, t)[0]), float(ops.softmax_cross_entropy(x, y)[0])))
    finally:
        fastdl.set_num_threads(before)
    assert results[0] == results[1] == results[2]


def test_keras_per_sample_loss_functions(rng):
    from fastdl import losses
    t = np.eye(4)[rng.integers(0, 4, 6)]
    z = rng.standard_normal((6, 4)) * 3
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -np.sum(t * np.log(p), axis=1)
    np.testing.assert_allclose(losses.categorical_crossentropy(t, z, from_logits=True), expected, rtol=1e-12)
    np.testing.assert_allclose(losses.categorical_crossentropy(t, p), expected, rtol=1e-6)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(np.argmax(t, 1), p), expected, rtol=1e-6)
    smoothed = 0.9 * t + 0.1 / 4
    np.testing.assert_allclose(losses.categorical_crossentropy(t, z, from_logits=True, label_smoothing=0.1),
                               -np.sum(smoothed * np.log(p), axis=1), rtol=1e-12)
    b = rng.uniform(0, 1, (6, 3))
    q = rng.uniform(0.05, 0.95, (6, 3))
    np.testing.assert_allclose(losses.binary_crossentropy(b, q),
                               -np.mean(b * np.log(q) + (1 - b) * np.log(1 - q), axis=1), rtol=1e-12)
    np.testing.assert_allclose(losses.mean_squared_error(b, q), np.mean((b - q) ** 2, axis=1), rtol=1e-12)
    assert losses.CategoricalCrossentropy(from_logits=True)(t, z) == pytest.approx(expected.mean())


def test_keras_loss_functions_match_ranks_or_name_the_mismatch(rng):
    from fastdl import losses
    t = rng.uniform(0, 1, 5)
    q = rng.uniform(0.05, 0.95, (5, 1))
    # (n,) against (n, 1): one loss per sample, as for two (n, 1) arrays
    np.testing.assert_allclose(losses.mean_squared_error(t, q), (t - q[:, 0]) ** 2, rtol=1e-12)
    np.testing.assert_allclose(losses.binary_crossentropy(t[:, None], q[:, 0]),
                               -(t * np.log(q[:, 0]) + (1 - t) * np.log(1 - q[:, 0])), rtol=1e-12)
    assert losses.MeanSquaredError()(t, q) == pytest.approx(np.mean((t - q[:, 0]) ** 2))
    with pytest.raises(ValueError, match="y_true has shape .5, 3. but y_pred has .5, 2."):
        losses.mean_squared_error(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="y_true .5, 3. and y_pred .5, 1."):
        losses.categorical_crossentropy(np.eye(3)[[0, 1, 2, 0, 1]], np.ones((5, 1)))
    with pytest.raises(TypeError, match="y_pred must be numeric"):
        losses.mean_squared_error(t, np.array(["a"] * 5))


def test_sparse_per_sample_loss_checks_the_class_ids():
    from fastdl import losses
    p = np.full((3, 4), 0.25)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy([0, 3, 1], p), np.log(4) * np.ones(3))
    with pytest.raises(ValueError, match=r"y_true holds class ids outside \[0, 4\)"):
        losses.sparse_categorical_crossentropy([0, 4, 1], p)
    with pytest.raises(ValueError, match=r"outside"):
        losses.sparse_categorical_crossentropy([0, -1, 1], p)
    with pytest.raises(ValueError, match="y_true has 2 samples but y_pred has 3"):
        losses.sparse_categorical_crossentropy([0, 1], p)


def test_softmax_cross_entropy_one_sample_with_a_0d_class_id(backend, dtype):
    """logits (C,) with a 0-d class id: one sample, a documented shape (it used to fail with a
    reshape error, the id being taken for a probability row)."""
    logits = np.array([1.0, -2.0, 0.5, 3.0], dtype=dtype)
    loss, grad = ops.softmax_cross_entropy(logits, np.array(2))
    x = logits.astype(np.float64)
    p = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    np.testing.assert_allclose(loss, -np.log(p[2]), rtol=1e-6)
    np.testing.assert_allclose(grad, p - np.eye(4)[2], rtol=1e-5, atol=1e-7)
    assert grad.shape == (4,) and loss.shape == ()
    loss_int32, _ = ops.softmax_cross_entropy(logits, np.int32(2))
    assert loss_int32 == loss


# ---- Keras's loss options: reduction, name, axis, ignore_class ----------------------------------------

def _keras_reduced(values, weights, reduction, divisor_weights):
    """Keras's reduction of loss values with per-value weights; mean_with_sample_weight divides by
    the sum of the weights as Keras holds them (per value once a mask is merged in, else one per
    sample, broadcast over its values)."""
    total = (values * weights).sum()
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and divisor_weights is not None:
        return total / divisor_weights.sum() if divisor_weights.sum() else 0.0
    return total / values.size


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight"])
@pytest.mark.parametrize("ignore_class", [None, 1, 255])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(7, 4), (3, 5, 4)])
def test_sparse_cross_entropy_reductions_and_ignore_class(reduction, ignore_class, weighted, shape):
    """The training value and gradient from logits against a float64 reference of Keras's rule:
    ignored targets weigh 0, and for sum_over_batch_size the kept ones (count / kept)."""
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal(shape) * 3).astype(np.float32)
    ids = rng.integers(0, 4, shape[:-1])
    if ignore_class is not None:
        ids.reshape(-1)[::3] = ignore_class
    w = (rng.random(shape[0]) + 0.5).astype(np.float32) if weighted else None
    loss = losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=ignore_class, reduction=reduction)
    y, _ = loss.prepare_targets(ids, shape[1:])
    grad = np.empty_like(logits)
    got = float(loss.value_and_grad(y, logits.copy(), False, grad, w))

    z = logits.astype(np.float64).reshape(-1, 4)
    flat = ids.reshape(-1)
    keep = flat != ignore_class if ignore_class is not None else np.ones(len(flat), bool)
    safe = np.where(keep, flat, 0)
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    values = -np.log(soft[np.arange(len(flat)), safe])
    weights = keep.astype(np.float64)
    if ignore_class is not None and reduction == "sum_over_batch_size":
        weights *= len(flat) / keep.sum()
    if w is not None:
        weights *= np.repeat(w.astype(np.float64), len(flat) // shape[0])
    want = _keras_reduced(values, weights, reduction, weights if ignore_class is not None else w)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    scale = want / (values * weights).sum()  # d(loss)/d(value_i) = weights_i * scale
    dwant = (soft - np.eye(4)[safe]) * (weights * scale)[:, None]
    np.testing.assert_allclose(grad.reshape(-1, 4), dwant, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("cls", [losses.MeanSquaredError, losses.BinaryCrossentropy, losses.CategoricalCrossentropy,
                                 losses.Huber, losses.KLDivergence, losses.CategoricalHinge])
def test_sum_reduction_scales_the_mean_by_the_number_of_values(cls):
    """reduction='sum' on a (batch, steps, classes) output: the loss and gradient of the default
    times batch x steps, the number of values Keras sums (one per row of the last axis)."""
    rng = np.random.default_rng(6)
    out = rng.random((3, 5, 4)).astype(np.float32) * 0.8 + 0.1
    target = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (3, 5))]
    results = []
    for reduction in ("sum_over_batch_size", "sum"):
        loss = cls(reduction=reduction)
        y, _ = loss.prepare_targets(target, (5, 4))
        grad = np.empty_like(out)
        results.append((float(loss.value_and_grad(y, out.copy(), False, grad)), grad))
        np.testing.assert_allclose(loss(target, out), results[-1][0], rtol=1e-5)  # calling it agrees
    (mean, g_mean), (total, g_total) = results
    np.testing.assert_allclose(total, 15 * mean, rtol=1e-5)
    np.testing.assert_allclose(g_total, 15 * g_mean, rtol=1e-5)


def test_loss_options_refuse_what_fastdl_cannot_do():
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MeanSquaredError(reduction="average")
    with pytest.raises(NotImplementedError, match="axis=1"):
        losses.CategoricalCrossentropy(axis=1)
    with pytest.raises(TypeError, match="ignore_class"):
        losses.SparseCategoricalCrossentropy(ignore_class="void")
    with pytest.raises(NotImplementedError, match="float32"):
        losses.BinaryCrossentropy(dtype="float64")
    with pytest.raises(TypeError, match="name must be a string"):
        losses.MeanSquaredError(name=3)
    loss = losses.SparseCategoricalCrossentropy(ignore_class=0, reduction="none")
    grad = np.empty((2, 3), np.float32)
    with pytest.raises(ValueError, match="reduction='none'"):
        loss.value_and_grad(np.array([1, -1]), np.zeros((2, 3), np.float32), True, grad)
    assert loss(np.array([0, 2]), np.full((2, 3), 1 / 3)).shape == (2,)  # calling it: one value per sample


def test_a_custom_loss_name_survives_saving(tmp_path):
    model = models.Sequential([layers.Input((3,)), layers.Dense(2)])
    model.compile(optimizer="sgd", loss=losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255,
                                                                              reduction="sum", name="void_aware"))
    model.save(tmp_path / "m.fastdl")
    loaded = fastdl.models.load_model(tmp_path / "m.fastdl").loss
    assert (type(loaded), loaded.name, loaded.reduction, loaded.ignore_class) == \
        (losses.SparseCategoricalCrossentropy, "void_aware", "sum", 255)
