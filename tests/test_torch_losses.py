"""fastdl.torch.nn: the fused cross-entropy against torch.nn.functional.cross_entropy."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastdl.torch.nn as fnn  # noqa: E402
from fastdl.torch.nn import functional as FF  # noqa: E402


def _logits(shape, dtype=torch.float64, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).requires_grad_()


def _ids(n, classes, seed=1, ignore=()):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    for i in ignore:
        y[i] = -100
    return y


def _both(x, y, **kw):
    """(fastdl loss, fastdl dL/dx, torch loss, torch dL/dx) for the same inputs."""
    xa, xb = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    a, b = FF.cross_entropy(xa, y, **kw), F.cross_entropy(xb, y, **kw)
    g = torch.randn(a.shape, generator=torch.Generator().manual_seed(7), dtype=a.dtype)  # any upstream gradient
    (a * g).sum().backward()
    (b * g).sum().backward()
    return a, xa.grad, b, xb.grad


def _close(a, b, dtype):
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    np.testing.assert_allclose(a.detach().double().numpy(), b.detach().double().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 1000), (3, 40_001)], ids=str)
def test_class_ids_with_ignored_rows_match_torch(dtype, reduction, smoothing, shape):
    n, c = shape
    x, y = _logits(shape, dtype), _ids(n, c, ignore=range(0, n, 3))
    a, ga, b, gb = _both(x, y, reduction=reduction, label_smoothing=smoothing)
    _close(a, b, dtype)
    _close(ga, gb, dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_every_row_ignored(reduction):
    x, y = _logits((4, 6)), torch.full((4,), -100)
    a, ga, b, gb = _both(x, y, reduction=reduction)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())  # NaN for the mean, as torch
    assert torch.equal(ga, gb) and not ga.any()


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_probability_targets_match_torch(smoothing, reduction):
    x = _logits((9, 11))
    t = torch.softmax(torch.randn(9, 11, dtype=torch.float64), dim=1)
    a, ga, b, gb = _both(x, t, reduction=reduction, label_smoothing=smoothing)
    _close(a, b, torch.float64)
    _close(ga, gb, torch.float64)


def test_other_ignore_index_unbatched_and_spatial_inputs():
    x, y = _logits((6, 4)), torch.tensor([0, 3, 3, 1, 3, 2])
    a, ga, b, gb = _both(x, y, ignore_index=3)
    _close(a, b, torch.float64)
    _close(ga, gb, torch.float64)
    a, ga, b, gb = _both(_logits((5,)), torch.tensor(2))  # (C,) logits, a 0-d class id
    _close(a, b, torch.float64)
    _close(ga, gb, torch.float64)
    xs = _logits((2, 5, 3, 4))  # (N, C, d1, d2): torch's K-dimensional form
    ys = torch.randint(0, 5, (2, 3, 4), generator=torch.Generator().manual_seed(3))
    for reduction in ("mean", "none"):
        a, ga, b, gb = _both(xs, ys, reduction=reduction)
        assert a.shape == b.shape
        _close(a, b, torch.float64)
        _close(ga, gb, torch.float64)


def test_extreme_logits_are_finite():
    x = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [3e38, -3e38, 0.0]], dtype=torch.float32,
                     requires_grad=True)
    y = torch.tensor([0, 0, 1])
    loss = FF.cross_entropy(x, y)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # row losses 0, 2e4 and 6e38 (beyond float32, where torch's row loss is inf): their mean, 2e38, is not
    np.testing.assert_allclose(loss.item(), (0 + 2e4 + 6e38) / 3, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0, 0], [-1 / 3, 1 / 3, 0], [1 / 3, -1 / 3, 0]], atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16_bit_inputs_compute_in_float32(dtype):
    x = _logits((32, 50), dtype, scale=2.0)
    y = _ids(32, 50, ignore=[5])
    a, ga, b, gb = _both(x, y)
    assert a.dtype == dtype and ga.dtype == dtype
    ref = F.cross_entropy(x.detach().float(), y)  # float32 math, as fastdl's
    np.testing.assert_allclose(a.float().item(), ref.item(), rtol=1e-2)
    np.testing.assert_allclose(ga.float().numpy(), gb.float().numpy(), atol=2e-3)


def test_gradcheck():
    x = _logits((5, 7)).detach().requires_grad_()
    y = torch.tensor([1, -100, 3, 6, 0])
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(lambda t: FF.cross_entropy(t, y, reduction=reduction, label_smoothing=0.1),
                                        (x,))


def test_inplace_backward_reuses_the_logits_and_refuses_a_saved_use():
    w = torch.randn(30, 30, dtype=torch.float64, requires_grad=True)
    h = torch.randn(16, 30, dtype=torch.float64)
    y = _ids(16, 30, ignore=[2])
    logits = h @ w  # matmul saves its inputs (h, w), not the logits: in place is safe
    FF.cross_entropy(logits, y, inplace_backward=True).backward()
    ref = w.detach().clone().requires_grad_()
    F.cross_entropy(h @ ref, y).backward()
    _close(w.grad, ref.grad, torch.float64)
    z = torch.randn(16, 30, dtype=torch.float64, requires_grad=True)
    logits = z * z
    cubed = logits * z  # saves logits for its backward: the gradient written over them must not be read there
    loss = FF.cross_entropy(logits, y, inplace_backward=True) + cubed.sum()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_module_and_refusals():
    x, y = _logits((4, 3)), torch.tensor([0, 1, 2, 1])
    _close(fnn.CrossEntropyLoss(label_smoothing=0.2)(x, y), F.cross_entropy(x, y, label_smoothing=0.2), torch.float64)
    with pytest.raises(NotImplementedError, match="weight"):
        FF.cross_entropy(x, y, weight=torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="reduction"):
        FF.cross_entropy(x, y, reduction="avg")
    with pytest.raises(ValueError, match=r"target\[1\] = 7 is not a class id"):
        FF.cross_entropy(x, torch.tensor([0, 7, 2, 1]))
    with pytest.raises(ValueError, match="label_smoothing"):
        FF.cross_entropy(x, y, label_smoothing=1.5)


def test_a_second_backward_works_unless_the_gradient_was_handed_over():
    x, y = _logits((3, 4)), torch.tensor([0, 1, 2])
    loss = FF.cross_entropy(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    _close(x.grad, 2 * first, torch.float64)
    logits = x.detach() * 1.0
    logits.requires_grad_()
    loss = FF.cross_entropy(logits * 1.0, y, inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="ran its backward twice"):
        loss.backward()


# ---- linear_cross_entropy ------------------------------------------------------------------------------

def _linear_case(n=37, d=16, v=50, dtype=torch.float64, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    w = (torch.randn(v, d, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()
    b = torch.randn(v, generator=g, dtype=torch.float64).to(dtype).requires_grad_() if bias else None
    y = torch.randint(0, v, (n,), generator=g)
    return x, w, b, y


def _linear_both(x, w, b, y, **kw):
    chunk = kw.pop("chunk_rows", None)
    a = FF.linear_cross_entropy(x, w, y, b, chunk_rows=chunk, **kw)
    r = F.cross_entropy(F.linear(x, w, b), y, **kw)
    inputs = [t for t in (x, w, b) if t is not None and t.requires_grad]
    up = torch.linspace(0.5, 2.0, a.numel(), dtype=a.dtype).reshape(a.shape)  # an upstream gradient per loss
    return a, torch.autograd.grad((a * up).sum(), inputs), r, torch.autograd.grad((r * up).sum(), inputs)


@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 37, 100])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_cross_entropy_matches_linear_then_torch(chunk_rows, reduction, bias):
    x, w, b, y = _linear_case(bias=bias)
    y[::4] = -100
    a, ga, r, gr = _linear_both(x, w, b, y, reduction=reduction, label_smoothing=0.1, chunk_rows=chunk_rows)
    _close(a, r, torch.float64)
    for p, q in zip(ga, gr):
        _close(p, q, torch.float64)


def test_linear_cross_entropy_float32_spatial_and_partial_grads():
    x, w, b, y = _linear_case(dtype=torch.float32)
    x3, y3 = x.detach().reshape(1, 37, 16), y.reshape(1, 37)  # (..., D) input: only w and b need gradients
    a = FF.linear_cross_entropy(x3, w, y3, b)
    r = F.cross_entropy(F.linear(x3, w, b).reshape(-1, 50), y3.reshape(-1))
    _close(a, r, torch.float32)
    for p, q in zip(torch.autograd.grad(a, (w, b)), torch.autograd.grad(r, (w, b))):
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-6)


def test_linear_cross_entropy_all_ignored_and_16_bit():
    x, w, b, y = _linear_case()
    a, ga, r, gr = _linear_both(x, w, b, torch.full((37,), -100))
    assert torch.isnan(a) and torch.isnan(r)
    assert all(not g.any() for g in ga)
    x, w, b, y = _linear_case(dtype=torch.bfloat16)
    a = FF.linear_cross_entropy(x, w, y, b)
    ref = F.cross_entropy(F.linear(x.detach().float(), w.detach().float(), b.detach().float()), y)
    np.testing.assert_allclose(a.float().item(), ref.item(), rtol=2e-2)
    a.backward()
    assert x.grad.dtype == w.grad.dtype == torch.bfloat16


def test_linear_cross_entropy_gradcheck():
    x, w, b, y = _linear_case(n=6, d=3, v=5)
    y[2] = -100
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda x_, w_, b_: FF.linear_cross_entropy(x_, w_, y, b_, label_smoothing=0.2, chunk_rows=4,
                                                       reduction=reduction), (x, w, b))


def test_linear_cross_entropy_refusals():
    x, w, b, y = _linear_case()
    with pytest.raises(ValueError, match="reduction"):
        FF.linear_cross_entropy(x, w, y, b, reduction="avg")
    with pytest.raises(ValueError, match=r"weight must be \(V, D\)"):
        FF.linear_cross_entropy(x, w.T, y, b)
    with pytest.raises(TypeError, match="one dtype"):
        FF.linear_cross_entropy(x.float(), w, y, b)
    with pytest.raises(ValueError, match="chunk_rows"):
        FF.linear_cross_entropy(x, w, y, b, chunk_rows=0)
    loss = fnn.LinearCrossEntropyLoss(label_smoothing=0.1)(x, w, y, b)
    _close(loss, F.cross_entropy(F.linear(x, w, b), y, label_smoothing=0.1), torch.float64)


# ---- regressions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("probs", [False, True], ids=["ids", "probs"])
def test_an_empty_batch_sums_to_zero_and_averages_to_nan(reduction, probs):
    x = torch.zeros((0, 5), dtype=torch.float64, requires_grad=True)
    y = torch.zeros((0, 5), dtype=torch.float64) if probs else torch.zeros(0, dtype=torch.int64)
    a, b = FF.cross_entropy(x, y, reduction=reduction), F.cross_entropy(x, y, reduction=reduction)
    np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())  # sum 0, mean NaN
    a.sum().backward()
    assert x.grad.shape == (0, 5)
    spatial = FF.cross_entropy(torch.zeros(2, 5, 0), torch.zeros(2, 0, dtype=torch.int64), reduction=reduction)
    np.testing.assert_array_equal(spatial.numpy(), F.cross_entropy(torch.zeros(2, 5, 0), torch.zeros(
        2, 0, dtype=torch.int64), reduction=reduction).numpy())


def test_double_backward_raises_instead_of_a_silent_zero():
    x, y = _logits((4, 5)), torch.tensor([0, 1, 4, 2])
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(FF.cross_entropy(x, y), x, create_graph=True)
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="no double backward"):
        torch.autograd.grad(FF.linear_cross_entropy(h, w, y), h, create_graph=True)
    torch.autograd.grad(FF.cross_entropy(x, y), x)  # a plain backward still works


def test_inplace_backward_keeps_logits_that_need_no_gradient_and_leaves():
    y = torch.tensor([0, 1, 2, 1])
    z = torch.randn(4, 3)
    kept = z.clone()
    FF.cross_entropy(z, y, inplace_backward=True)  # needs no gradient: an evaluation pass
    assert torch.equal(z, kept)
    x = torch.randn(4, 3, requires_grad=True)
    kept = x.detach().clone()
    with torch.no_grad():
        FF.cross_entropy(x, y, inplace_backward=True)
    assert torch.equal(x.detach(), kept)
    FF.cross_entropy(x, y, inplace_backward=True).backward()  # a leaf (a parameter): its memory is its value
    assert torch.equal(x.detach(), kept)
    ref = kept.clone().requires_grad_()
    F.cross_entropy(ref, y).backward()
    _close(x.grad, ref.grad, torch.float32)
    x.grad = None
    FF.cross_entropy(x.view(4, 3), y, inplace_backward=True).backward()  # a view of the leaf
    assert torch.equal(x.detach(), kept)
    _close(x.grad, ref.grad, torch.float32)


def test_probability_targets_that_require_grad_are_refused():
    x = _logits((4, 5))
    t = torch.softmax(torch.randn(4, 5, dtype=torch.float64), 1).requires_grad_()
    with pytest.raises(NotImplementedError, match="target"):
        FF.cross_entropy(x, t)
    with torch.no_grad():
        FF.cross_entropy(x, t)  # no gradient wanted: fine
    _close(FF.cross_entropy(x, t.detach()), F.cross_entropy(x, t.detach()), torch.float64)


def test_linear_cross_entropy_per_row_losses_keep_the_target_shape():
    x, w, b, y = _linear_case()
    x3, y3 = x.detach().reshape(37, 1, 16).requires_grad_(), y.reshape(37, 1)
    y3[5, 0] = -100
    a = FF.linear_cross_entropy(x3, w, y3, b, reduction="none", chunk_rows=10)
    r = F.cross_entropy(F.linear(x3, w, b).reshape(37, 50), y3.reshape(37), reduction="none").reshape(37, 1)
    assert a.shape == (37, 1)
    _close(a, r, torch.float64)
    up = torch.rand(37, 1, dtype=torch.float64)
    for p, q in zip(torch.autograd.grad((a * up).sum(), (x3, w, b)), torch.autograd.grad((r * up).sum(), (x3, w, b))):
        _close(p, q, torch.float64)
