"""fastdl.torch on bfloat16 and float16 CPU parameters: float32 math inside the step, each value
rounded once to the parameter's dtype (as torch's fused CPU optimizers do), state in that dtype
(or, with state_dtype=torch.float32, in float32)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as fdt  # noqa: E402

HALF = [torch.bfloat16, torch.float16]
IDS = ["bf16", "f16"]


def _bits(t):
    return t.view(torch.int16).numpy().astype(np.uint16)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # NumPy on signalling NaNs
@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_every_16_bit_value_survives_a_zero_step(backend, dtype):
    """lr = 0: each value is widened to float and rounded back: all 65,536 bit patterns come back
    unchanged (NaN stays NaN)."""
    values = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)
    p = torch.nn.Parameter(values.clone())
    p.grad = torch.zeros_like(p)
    fdt.SGD([p], lr=0.0).step()
    nan = torch.isnan(values).numpy()
    assert nan.sum() > 0 and np.array_equal(torch.isnan(p.detach()).numpy(), nan)
    assert np.array_equal(_bits(p.detach())[~nan], _bits(values)[~nan])


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
def test_a_step_rounds_once_to_nearest_even(backend, dtype):
    """p - g computed in float, rounded once: the same bits as torch's float math then .to(dtype),
    subnormals, overflow to inf and ties included. (lr = 1: with another lr the FMA builds fuse
    p - lr g into one rounding where torch rounds lr g first, a legitimate difference of an ulp.)"""
    g = torch.Generator().manual_seed(0)
    scale = 1e4 if dtype == torch.float16 else 1e30
    p = (torch.randn(100_003, generator=g) * torch.logspace(-8, 0, 100_003) * scale).to(dtype)
    grad = (torch.randn(100_003, generator=g) * scale).to(dtype)
    expected = (p.float() - grad.float()).to(dtype)
    param = torch.nn.Parameter(p.clone())
    param.grad = grad
    fdt.SGD([param], lr=1.0).step()
    assert np.array_equal(_bits(param.detach()), _bits(expected))


CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.05)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
]


@pytest.mark.parametrize("dtype", HALF, ids=IDS)
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
@pytest.mark.parametrize("max_grad_norm", [None, 1.0])
@pytest.mark.parametrize("state32", [False, True], ids=["state16", "state32"])
def test_matches_float32_math_rounded_each_step(backend, dtype, name, kw, max_grad_norm, state32):
    """Against torch.optim (foreach=False) run in float32 on float32 copies whose parameters and
    state are rounded to the 16-bit dtype after every step (with state_dtype=torch.float32: only the
    parameters): the same arithmetic, rounded where fastdl rounds. (torch's own fused CPU SGD on
    bfloat16 is not a usable oracle: on 2.13 it disagrees with its single-tensor SGD by more than a
    step's size.)"""
    g = torch.Generator().manual_seed(1)
    shapes = [(64, 33), (33,), (0, 4), (7, 5, 3)]
    init = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.float()) for t in init]
    o1 = getattr(fdt, name)(ours, max_grad_norm=max_grad_norm, state_dtype=torch.float32 if state32 else None, **kw)
    o2 = getattr(torch.optim, name)(ref, foreach=False, **kw)
    for step in range(10):
        grads = [(torch.randn(s, generator=g) * (1 + step)).to(dtype) for s in shapes]
        for p, q, gr in zip(ours, ref, grads):
            p.grad, q.grad = gr.clone(), gr.float()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(ref, max_grad_norm)
        o1.step()
        o2.step()
        with torch.no_grad():
            for q in ref:
                q.copy_(q.to(dtype).float())
                for v in o2.state[q].values():
                    if isinstance(v, torch.Tensor) and v.dim() and not state32:
                        v.copy_(v.to(dtype).float())
    eps = torch.finfo(dtype).eps
    for p, q in zip(ours, ref):
        state_dtype = torch.float32 if state32 else dtype
        assert p.dtype == dtype and all(v.dtype == state_dtype for v in o1.state[p].values() if v.dim())
        # the same float math in another order (and fused multiply-adds): a few units in the last place
        r = q.detach()
        np.testing.assert_allclose(p.detach().float().numpy(), r.numpy(), rtol=4 * eps,
                                   atol=4 * eps * (r.abs().max().item() if r.numel() else 0.0))
        if state32:  # the state itself, float32 against float32
            for key, v in o1.state[p].items():
                if v.dim():
                    w = o2.state[q][key]
                    np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-5,
                                               atol=1e-6 * (w.abs().max().item() if w.numel() else 0.0), err_msg=key)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_float32_state_checkpoints_and_mixed_dtypes(backend, name):
    """state_dtype=torch.float32: 16-bit parameters get float32 state, float32 / float64 ones keep their
    own; a torch.optim checkpoint (16-bit state) loads into it (widened) and its checkpoint loads into
    torch.optim (narrowed to the parameters' dtype, as torch casts state on load); copies keep the setting."""
    import copy
    kw = dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=1e-2)
    params = [torch.nn.Parameter(torch.randn(5, 3).to(dt)) for dt in (torch.bfloat16, torch.float16, torch.float32,
                                                                        torch.float64)]
    for p in params:
        p.grad = torch.randn_like(p)
    theirs = getattr(torch.optim, name)(params, foreach=False, **kw)
    theirs.step()
    ours = getattr(fdt, name)(params, state_dtype=torch.float32, **kw)
    ours.load_state_dict(theirs.state_dict())
    ours.step()
    for p, want in zip(params, (torch.float32, torch.float32, torch.float32, torch.float64)):
        assert all(v.dtype == want for v in ours.state[p].values() if v.dim()), (p.dtype, want)
    back = getattr(torch.optim, name)(params, foreach=False, **kw)
    back.load_state_dict(ours.state_dict())
    for p in params:
        assert all(v.dtype == p.dtype for v in back.state[p].values() if v.dim())
    assert copy.deepcopy(ours).state_dtype == torch.float32
    with pytest.raises(ValueError, match="state_dtype must be None .* or torch.float32"):
        getattr(fdt, name)(params, state_dtype=torch.bfloat16, **kw)
