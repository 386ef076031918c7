"""fastdl.torch: drop-in torch.optim optimizers, held against torch.optim itself."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as fdt  # noqa: E402
from fastdl.optim import CosineDecay  # noqa: E402


def _model(dtype, seed=0, device="cpu"):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.Tanh(), torch.nn.Linear(32, 16), torch.nn.GELU(),
                               torch.nn.Linear(16, 4)).to(device, dtype)


def _data(dtype, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 12, generator=g).to(device, dtype), torch.randint(0, 4, (64,), generator=g).to(device)


def _cuda_unusable():
    if not torch.cuda.is_available():
        return "this torch build or machine has no CUDA device"
    from fastdl import _backend
    status = _backend.cuda_status()
    return None if status["devices"] else status["reason"]


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """The tensor factory's device: the CPU, and a GPU where torch and fastdl's CUDA module have one."""
    if request.param == "cuda":
        why = _cuda_unusable()
        if why:
            pytest.skip(f"CUDA: {why}")
    return request.param


def _train(model, opt, x, y, steps, scheduler=None, closure=False):
    # maximize=True optimizers maximise the negative loss: gradient ascent on the loss itself
    # diverges, and a diverging run amplifies rounding differences without bound
    sign = -1.0 if opt.param_groups[0].get("maximize") else 1.0
    for _ in range(steps):
        def loss_fn():
            opt.zero_grad()
            loss = sign * torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        if closure:
            opt.step(loss_fn)
        else:
            loss_fn()
            opt.step()
        if scheduler is not None:
            scheduler.step()


def _close(m1, m2, dtype):
    tol = 1e-9 if dtype == torch.float64 else 5e-5
    for a, b in zip(m1.parameters(), m2.parameters()):
        np.testing.assert_allclose(a.detach().cpu().numpy(), b.detach().cpu().numpy(), rtol=tol,
                                   atol=tol * b.abs().max().item())


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.05)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.999), eps=1e-6, maximize=True)),  # beta1 < 0.5: lerp's other branch
    ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, amsgrad=True, weight_decay=0.3)),
]


def _ids(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_trajectory_matches_torch_optim(case, dtype, device):
    name, kw = case
    x, y = _data(dtype, device=device)
    m1, m2 = _model(dtype, device=device), _model(dtype, device=device)
    o1 = getattr(fdt, name)(m1.parameters(), **kw)
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **kw)
    _train(m1, o1, x, y, 100)
    _train(m2, o2, x, y, 100)
    _close(m1, m2, dtype)
    assert o1.state_dict()["state"].keys() == o2.state_dict()["state"].keys()
    for k, st in o2.state_dict()["state"].items():
        assert set(o1.state_dict()["state"][k]) == set(st)


def test_short_second_moment_memory_float64():
    """beta2 = 0.9 with eps = 1e-6: in float32 this run is sensitive to last-bit differences (an
    element whose v is near 0 amplifies them: 8e-5 after 100 steps, 3e-7 after 10), so it is held
    to torch in float64, where the formulas show."""
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    kw = dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-6)
    o1, o2 = fdt.Adam(m1.parameters(), **kw), torch.optim.Adam(m2.parameters(), foreach=False, **kw)
    _train(m1, o1, x, y, 100)
    _train(m2, o2, x, y, 100)
    _close(m1, m2, torch.float64)


def test_per_group_hyperparameters_and_skipped_parameters():
    x, y = _data(torch.float64)
    models = [_model(torch.float64), _model(torch.float64)]
    opts = []
    for m, cls in zip(models, (fdt.Adam, torch.optim.Adam)):
        layers = list(m)
        groups = [{"params": layers[0].parameters(), "lr": 1e-2, "weight_decay": 0.1},
                  {"params": layers[2].parameters(), "lr": 3e-3, "amsgrad": True},
                  {"params": layers[4].parameters()}]
        kw = {} if cls is fdt.Adam else {"foreach": False}
        opts.append(cls(groups, lr=1e-3, **kw))
    for m in models:
        m[2].weight.requires_grad_(False)  # a parameter without a gradient is skipped
    for m, o in zip(models, opts):
        _train(m, o, x, y, 30)
    _close(*models, torch.float64)
    assert models[0][2].weight not in opts[0].state  # no state for a parameter never stepped, as in torch


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_checkpoints_move_between_torch_and_fastdl(name, tmp_path):
    kw = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=1e-2, amsgrad=True)
    x, y = _data(torch.float64)
    # torch trains 20 steps and saves; fastdl loads and continues; torch continues alongside
    m_t = _model(torch.float64)
    o_t = getattr(torch.optim, name)(m_t.parameters(), foreach=False, **kw)
    _train(m_t, o_t, x, y, 20)
    torch.save({"model": m_t.state_dict(), "opt": o_t.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt")
    m_f = _model(torch.float64, seed=5)
    m_f.load_state_dict(ckpt["model"])
    o_f = getattr(fdt, name)(m_f.parameters(), lr=123.0)
    o_f.load_state_dict(ckpt["opt"])
    assert o_f.param_groups[0]["lr"] == kw["lr"]
    _train(m_t, o_t, x, y, 20)
    _train(m_f, o_f, x, y, 20)
    _close(m_f, m_t, torch.float64)
    # and back: fastdl's checkpoint into torch.optim
    m_back = copy.deepcopy(m_f)
    o_back = getattr(torch.optim, name)(m_back.parameters(), foreach=False, **kw)
    o_back.load_state_dict(o_f.state_dict())
    _train(m_f, o_f, x, y, 10)
    _train(m_back, o_back, x, y, 10)
    _close(m_f, m_back, torch.float64)


@pytest.mark.parametrize("name", ["Adam", "SGD"])
def test_resume_is_bit_exact(name):
    kw = dict(lr=0.05, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=1e-2, amsgrad=True)
    x, y = _data(torch.float32)
    m1 = _model(torch.float32)
    o1 = getattr(fdt, name)(m1.parameters(), **kw)
    _train(m1, o1, x, y, 10)
    m2 = copy.deepcopy(m1)
    sd = o1.state_dict()
    o2 = getattr(fdt, name)(m2.parameters(), **kw)
    o2.load_state_dict(sd)
    _train(m1, o1, x, y, 15)
    _train(m2, o2, x, y, 15)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


SCHEDULERS = [
    ("StepLR", lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5)),
    ("CosineAnnealingLR", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=40)),
    ("LambdaLR", lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda e: 1 / (1 + e))),
    ("OneCycleLR", lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=40)),
]


@pytest.mark.parametrize("name", ["Adam", "SGD"])
@pytest.mark.parametrize("sched", SCHEDULERS, ids=[s[0] for s in SCHEDULERS])
def test_lr_schedulers(name, sched):
    kw = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = getattr(fdt, name)(m1.parameters(), **kw)
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **kw)
    s1, s2 = sched[1](o1), sched[1](o2)
    _train(m1, o1, x, y, 40, s1)
    _train(m2, o2, x, y, 40, s2)
    _close(m1, m2, torch.float64)
    if sched[0] == "OneCycleLR":  # momentum cycling reached the optimizer
        key = "momentum" if name == "SGD" else "betas"
        assert o1.param_groups[0][key] == o2.param_groups[0][key]


def test_tensor_lr_and_closure():
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    # a float64 tensor: torch computes with the lr tensor's precision
    o1 = fdt.Adam(m1.parameters(), lr=torch.tensor(0.01, dtype=torch.float64))
    o2 = torch.optim.Adam(m2.parameters(), lr=torch.tensor(0.01, dtype=torch.float64), foreach=False)
    _train(m1, o1, x, y, 10, closure=True)
    _train(m2, o2, x, y, 10, closure=True)
    _close(m1, m2, torch.float64)

    def closure():
        o1.zero_grad()
        loss = torch.nn.functional.cross_entropy(m1(x), y)
        loss.backward()
        return loss
    assert isinstance(o1.step(closure), torch.Tensor)


def test_zero_grad_set_to_none_and_zeros():
    m = _model(torch.float32)
    o = fdt.SGD(m.parameters(), lr=0.1)
    x, y = _data(torch.float32)
    _train(m, o, x, y, 1)
    o.zero_grad(set_to_none=False)
    assert all(torch.count_nonzero(p.grad) == 0 for p in m.parameters())
    before = [p.detach().clone() for p in m.parameters()]
    o.step()  # zero gradients: plain SGD leaves the parameters as they are
    assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
    o.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_grad_scaler_skips_steps_with_inf():
    m1, m2 = _model(torch.float32), _model(torch.float32)
    x, y = _data(torch.float32)
    runs = []
    for m, o in ((m1, fdt.Adam(m1.parameters(), lr=1e-2)), (m2, torch.optim.Adam(m2.parameters(), lr=1e-2,
                                                                                    foreach=False))):
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
        for step in range(6):
            o.zero_grad()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            scaler.scale(loss).backward()
            if step == 3:
                m[0].weight.grad[0, 0] = float("inf")
            before = [p.detach().clone() for p in m.parameters()]
            scaler.step(o)
            scaler.update()
            if step == 3:
                assert all(torch.equal(a, b) for a, b in zip(before, m.parameters()))
        runs.append(scaler.get_scale())
    assert runs[0] == runs[1] == 2.0 ** 9
    _close(m1, m2, torch.float32)


def test_sparse_gradients_are_refused_before_anything_changes():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    lin = torch.nn.Linear(3, 1)
    o = fdt.Adam([{"params": lin.parameters()}, {"params": emb.parameters()}], lr=0.1)
    lin(emb(torch.tensor([1, 2]))).sum().backward()
    before = [p.detach().clone() for p in lin.parameters()]
    with pytest.raises(RuntimeError, match="sparse gradients"):
        o.step()
    assert all(torch.equal(a, b) for a, b in zip(before, lin.parameters()))
    assert len(o.state) == 0


def test_cuda_tensors_without_a_usable_gpu_are_refused_with_the_reason(monkeypatch):
    """A CUDA parameter where the CUDA module or a GPU is missing: a RuntimeError saying why (here
    simulated: torch's CPU build cannot make CUDA tensors, so the check is called directly)."""
    from fastdl import _backend
    from fastdl.torch import _cuda as _torch_cuda
    monkeypatch.setattr(_backend, "cuda_status", lambda: {"extension": True, "devices": 0,
                                                           "reason": "no NVIDIA driver", "device_name": None})
    monkeypatch.setattr(_torch_cuda, "_MODULE", None)  # probed once per process: forget a GPU seen earlier
    with pytest.raises(RuntimeError, match="CUDA module and a GPU for CUDA tensors: no NVIDIA driver"):
        _torch_cuda.module()


def test_refusals():
    meta = torch.nn.Parameter(torch.empty(3, device="meta"))
    with pytest.raises(RuntimeError, match="CPU and CUDA kernels"):
        fdt.Adam([meta])
    with pytest.raises(TypeError, match="float32, float64, bfloat16 and float16"):
        fdt.SGD([torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))])
    with pytest.raises(ValueError, match="differentiable"):
        fdt.Adam([torch.nn.Parameter(torch.ones(3))], differentiable=True)
    # capturable=True is taken (the parameters may move to a GPU later) but a step on CPU tensors refuses it, as
    # torch's does, before anything changes
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    o = fdt.AdamW([p], capturable=True)
    with pytest.raises(ValueError, match=r"capturable=True needs the parameters on a GPU.*parameter 0 of group 0"):
        o.step()
    assert torch.equal(p, torch.ones(3)) and not o.state
    with pytest.raises(ValueError, match="Invalid learning rate"):
        fdt.Adam([torch.nn.Parameter(torch.ones(3))], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov"):
        fdt.SGD([torch.nn.Parameter(torch.ones(3))], nesterov=True)
    fdt.Adam([torch.nn.Parameter(torch.ones(3))], foreach=True, fused=True)  # accepted: fastdl is always fused


def test_parameters_of_two_dtypes_and_a_strided_gradient():
    a = torch.nn.Parameter(torch.ones(4, dtype=torch.float32))
    b = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
    ra, rb = copy.deepcopy(a), copy.deepcopy(b)
    o1 = fdt.AdamW([a, b], lr=0.1)
    o2 = torch.optim.AdamW([ra, rb], lr=0.1, foreach=False)
    for _ in range(3):
        for p in (a, ra):
            p.grad = torch.arange(8.0)[::2].clone()[:4] if p is ra else torch.arange(8.0)[::2]  # strided view
        for p in (b, rb):
            p.grad = torch.full((3, 2), 0.5, dtype=torch.float64).t()  # a transposed, non-contiguous gradient
        o1.step()
        o2.step()
    np.testing.assert_allclose(a.detach().numpy(), ra.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(b.detach().numpy(), rb.detach().numpy(), rtol=1e-12)


def test_max_grad_norm_equals_clip_grad_norm_then_step(device):
    x, y = _data(torch.float64, device=device)
    m1, m2 = _model(torch.float64, device=device), _model(torch.float64, device=device)
    o1 = fdt.Adam(m1.parameters(), lr=1e-2, max_grad_norm=0.5)
    o2 = torch.optim.Adam(m2.parameters(), lr=1e-2, foreach=False)
    for _ in range(20):
        for m in (m1, m2):
            m.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
        norm = torch.nn.utils.clip_grad_norm_(m2.parameters(), 0.5)
        o1.step()
        o2.step()
        assert float(o1.last_grad_norm) == pytest.approx(norm.item(), rel=1e-12)
    _close(m1, m2, torch.float64)
    assert all(p.grad.abs().sum() > 0 for p in m1.parameters())  # fastdl did not rewrite the gradients


def test_fastdl_schedule_as_lr():
    x, y = _data(torch.float64)
    sched = CosineDecay(0.0, 30, warmup_target=0.02, warmup_steps=5)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = fdt.SGD(m1.parameters(), lr=sched, momentum=0.9)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.0, momentum=0.9, foreach=False)
    for step in range(30):
        o2.param_groups[0]["lr"] = sched(step)
        _train(m1, o1, x, y, 1)
        _train(m2, o2, x, y, 1)
    _close(m1, m2, torch.float64)
    assert o1.iterations == 30


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_numpy_backend_matches_torch_optim(name, monkeypatch):
    """fastdl.torch's NumPy path (no extension, or FASTDL_BACKEND=numpy) on the same trajectory."""
    from fastdl import _backend
    monkeypatch.setattr(_backend, "host", _backend.numpy_kernels)  # undone after the test
    kw = dict(lr=0.05, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=1e-2, amsgrad=True)
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    _train(m1, getattr(fdt, name)(m1.parameters(), max_grad_norm=1e9, **kw), x, y, 50)
    _train(m2, getattr(torch.optim, name)(m2.parameters(), foreach=False, **kw), x, y, 50)
    _close(m1, m2, torch.float64)


def test_parameter_data_replaced_in_place_of_the_old():
    """``p.data = ...`` swaps the tensor behind a parameter: the next step updates the new one."""
    p = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
    ref = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))
    o1, o2 = fdt.Adam([p], lr=0.1), torch.optim.Adam([ref], lr=0.1, foreach=False)
    for step in range(4):
        if step == 2:
            for q in (p, ref):
                q.data = torch.full((6,), 3.0, dtype=torch.float64)
        for q, o in ((p, o1), (ref, o2)):
            q.grad = torch.linspace(-1, 1, 6, dtype=torch.float64)
            o.step()
    np.testing.assert_allclose(p.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
    p.data = torch.ones(2, 3, dtype=torch.float64)  # a new shape: its Adam state no longer fits
    p.grad = torch.ones(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        o1.step()


def test_user_replaced_state_is_adopted():
    p = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    ref = torch.nn.Parameter(torch.ones(5, dtype=torch.float64))
    o1, o2 = fdt.SGD([p], lr=0.1, momentum=0.9), torch.optim.SGD([ref], lr=0.1, momentum=0.9, foreach=False)
    for step in range(5):
        if step == 2:
            for o in (o1, o2):
                o.state[o.param_groups[0]["params"][0]]["momentum_buffer"] = torch.full((5,), 7.0,
                                                                                       dtype=torch.float64)
        if step == 4:
            for o in (o1, o2):
                o.state.clear()
        for q, o in ((p, o1), (ref, o2)):
            q.grad = torch.arange(5.0, dtype=torch.float64)
            o.step()
        np.testing.assert_allclose(p.detach().numpy(), ref.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(o1.state[p]["momentum_buffer"].numpy(), o2.state[ref]["momentum_buffer"].numpy())


def test_gradient_of_another_dtype_or_shape_is_refused_before_anything_changes():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(4))
    o = fdt.Adam([a, b], lr=0.1)
    a.grad = torch.ones(3)
    b.grad = torch.ones(4)
    b.grad.data = torch.ones(4, dtype=torch.float64)  # .data bypasses torch's own dtype check
    with pytest.raises(ValueError, match="gradient"):
        o.step()
    assert torch.equal(a, torch.ones(3)) and len(o.state) == 0


def test_failed_add_param_group_leaves_the_optimizer_as_it_was():
    a = torch.nn.Parameter(torch.ones(3))
    o = fdt.Adam([a], lr=0.1)
    with pytest.raises(TypeError, match="float32, float64, bfloat16 and float16"):
        o.add_param_group({"params": [torch.nn.Parameter(torch.ones(2, dtype=torch.complex64))]})
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        o.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))], "betas": (0.9, 1.5)})
    with pytest.raises(ValueError, match="more than one parameter group"):
        o.add_param_group({"params": [a]})
    assert len(o.param_groups) == 1
    o.add_param_group({"params": [torch.nn.Parameter(torch.ones(2))]})
    assert len(o.param_groups) == 2


def test_schedule_resumes_from_a_checkpoint():
    x, y = _data(torch.float64)
    sched = CosineDecay(0.02, 20, warmup_steps=3)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = fdt.Adam(m1.parameters(), lr=sched)
    _train(m1, o1, x, y, 20)
    o2 = fdt.Adam(m2.parameters(), lr=sched)
    _train(m2, o2, x, y, 8)
    sd = o2.state_dict()
    o3 = fdt.Adam(m2.parameters(), lr=sched)
    o3.load_state_dict(sd)
    assert o3.iterations == 8
    _train(m2, o3, x, y, 12)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    # a torch.optim checkpoint has no iteration count: its step counts give it
    t = torch.optim.Adam(m2.parameters(), lr=0.01)
    _train(m2, t, x, y, 3)
    o3.load_state_dict(t.state_dict())
    assert o3.iterations == 3


def test_parameters_swapped_or_duplicated_in_a_group_list():
    a = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    b = torch.nn.Parameter(torch.full((3,), 5.0, dtype=torch.float64))
    o = fdt.SGD([a], lr=0.1)
    a.grad = torch.ones(3, dtype=torch.float64)
    o.step()
    o.param_groups[0]["params"][0] = b  # the group now holds b: the step must update b, not a
    b.grad = torch.ones(3, dtype=torch.float64)
    o.step()
    assert torch.equal(a, torch.full((3,), 0.9, dtype=torch.float64))
    assert torch.equal(b, torch.full((3,), 4.9, dtype=torch.float64))
    o.param_groups[0]["params"].append(b)  # listed twice: stepped twice, as torch.optim does
    o.step()
    assert torch.equal(b, torch.full((3,), 4.9, dtype=torch.float64) - 0.1 - 0.1)


def test_gradient_mismatch_names_the_parameter():
    a = torch.nn.Parameter(torch.ones(3))
    b = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    c = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    o = fdt.Adam([a, b, c], lr=0.1)
    for p in (a, b, c):
        p.grad = torch.zeros_like(p)
    c.grad.data = torch.zeros(2)  # float32
    with pytest.raises(ValueError, match="parameter 2 of group 0"):
        o.step()
