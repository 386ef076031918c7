"""fastdl.torch's adaptive optimizers (RMSprop, Adagrad, Adadelta, Adamax, NAdam) held against
torch.optim's own (foreach=False, the single-tensor rules): trajectories, state keys and values,
checkpoints both ways, bit-exact resume, the NumPy backend, 16-bit parameters with state_dtype,
GradScaler, and all-or-nothing steps."""

import copy
import ctypes
import io
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as fdt  # noqa: E402
from fastdl import _backend  # noqa: E402
from fastdl.torch import optimizers as fdt_optimizers  # noqa: E402

from test_torch import _close, _data, _model, _train, device  # noqa: E402,F401  (device: the fixture)

NAMES = ["RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam"]

CASES = [
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9)),
    ("RMSprop", dict(lr=1e-2, centered=True, weight_decay=1e-2)),
    ("RMSprop", dict(lr=5e-3, momentum=0.5, centered=True, maximize=True)),
    ("RMSprop", dict(lr=1e-3, alpha=0.3, eps=1e-6)),  # lerp weight 1 - alpha >= 0.5: lerp's other branch
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.1, weight_decay=1e-2)),
    ("Adagrad", dict(lr=0.05, eps=1e-6, maximize=True, lr_decay=0.01)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.5, weight_decay=1e-2)),
    ("Adadelta", dict(eps=1e-4, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=1e-2, betas=(0.3, 0.99), weight_decay=1e-2)),  # beta1 < 0.5: lerp's other branch
    ("Adamax", dict(lr=1e-2, eps=1e-6, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=1e-2, momentum_decay=0.05)),
    ("NAdam", dict(lr=1e-2, weight_decay=0.05)),
    ("NAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=1e-2, betas=(0.3, 0.999), maximize=True)),  # beta1 < 0.5: lerp's other branch
]
# one setting each for the slower tests: every state tensor the optimizer has
RICH = {"RMSprop": dict(lr=1e-2, momentum=0.9, centered=True, weight_decay=1e-3),
        "Adagrad": dict(lr=0.05, lr_decay=0.01, initial_accumulator_value=0.1),
        "Adadelta": dict(lr=0.5, weight_decay=1e-3),
        "Adamax": dict(lr=1e-2, weight_decay=1e-3),
        "NAdam": dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True)}


def _ids(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


def _state_close(o1, o2, m1, m2, tol):
    for p, q in zip(m1.parameters(), m2.parameters()):
        st1, st2 = o1.state[p], o2.state[q]
        assert set(st1) == set(st2)
        for k, v in st2.items():
            a = st1[k]
            # (a 0-d value's dtype: torch's load_state_dict casts a loaded mu_product to the parameter's dtype)
            assert (a.dtype == v.dtype or not v.dim()) and a.shape == v.shape, k
            if tol is None:
                continue
            w = v.detach().cpu().double().numpy()
            # a torch.optim that loaded a checkpoint goes on with a float64 mu_product (its load cast it to the
            # parameters' dtype) where fastdl keeps torch's float32: one float32 rounding apart
            rtol = tol if v.dim() or k == "step" else max(tol, 1e-6)
            np.testing.assert_allclose(a.detach().cpu().double().numpy(), w, rtol=rtol,
                                       atol=tol * (np.abs(w).max() if w.size else 0.0), err_msg=k)


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
    # the state's values in float64 (in float32, g / d of an element whose d is near eps amplifies the last
    # bit: the parameters are held to 5e-5 above, the state's keys, dtypes and shapes here)
    _state_close(o1, o2, m1, m2, 1e-9 if dtype == torch.float64 else None)
    for p in m1.parameters():  # 'step' (and mu_product) as torch keeps them: 0-d float32 host tensors
        for k in ("step", "mu_product"):
            if k in o1.state[p]:
                v = o1.state[p][k]
                assert v.dim() == 0 and v.dtype == torch.float32 and v.device.type == "cpu", k
    if name == "NAdam":  # the product of the momentum coefficients, rounded as torch's float32 one
        for p, q in zip(m1.parameters(), m2.parameters()):
            assert o1.state[p]["mu_product"].item() == o2.state[q]["mu_product"].item()


@pytest.mark.parametrize("name,kw", [("NAdam", dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-6)),
                                     ("Adamax", dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-6))])
def test_short_second_moment_memory_float64(name, kw):
    """A short second-moment memory amplifies last-bit differences in float32 (as for Adam in
    tests/test_torch.py): held to torch in float64, where the formulas show."""
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = getattr(fdt, name)(m1.parameters(), **kw)
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **kw)
    _train(m1, o1, x, y, 100)
    _train(m2, o2, x, y, 100)
    _close(m1, m2, torch.float64)
    _state_close(o1, o2, m1, m2, 1e-9)


@pytest.mark.parametrize("name", ["NAdam", "Adagrad"])
def test_float64_default_dtype_keeps_float64_counts(name):
    """Under torch.set_default_dtype(torch.float64) torch keeps 'step' and 'mu_product' in float64: so does
    fastdl, and the trajectory (NAdam's unrounded mu_product) is torch's."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        x, y = _data(torch.float64)
        m1, m2 = _model(torch.float64), _model(torch.float64)
        o1 = getattr(fdt, name)(m1.parameters(), **RICH[name])
        o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **RICH[name])
        _train(m1, o1, x, y, 50)
        _train(m2, o2, x, y, 50)
    finally:
        torch.set_default_dtype(before)
    _close(m1, m2, torch.float64)
    _state_close(o1, o2, m1, m2, 1e-9)
    for p in m1.parameters():
        assert o1.state[p]["step"].dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_checkpoints_move_between_torch_and_fastdl(name, tmp_path):
    kw = RICH[name]
    x, y = _data(torch.float64)
    m_t = _model(torch.float64)
    o_t = getattr(torch.optim, name)(m_t.parameters(), foreach=False, **kw)
    _train(m_t, o_t, x, y, 20)
    torch.save({"model": m_t.state_dict(), "opt": o_t.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt")
    m_f = _model(torch.float64, seed=5)
    m_f.load_state_dict(ckpt["model"])
    o_f = getattr(fdt, name)(m_f.parameters(), lr=123.0)
    o_f.load_state_dict(ckpt["opt"])
    assert o_f.param_groups[0]["lr"] == kw["lr"] and o_f.iterations == 20
    _train(m_t, o_t, x, y, 20)
    _train(m_f, o_f, x, y, 20)
    _close(m_f, m_t, torch.float64)
    _state_close(o_f, o_t, m_f, m_t, 1e-9)
    # and back: fastdl's checkpoint into torch.optim
    m_back = copy.deepcopy(m_f)
    o_back = getattr(torch.optim, name)(m_back.parameters(), foreach=False, **kw)
    o_back.load_state_dict(o_f.state_dict())
    _train(m_f, o_f, x, y, 10)
    _train(m_back, o_back, x, y, 10)
    _close(m_f, m_back, torch.float64)
    _state_close(o_f, o_back, m_f, m_back, 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_fresh_checkpoints_move_both_ways(name):
    """A state_dict taken before any step (Adagrad's has every parameter's state, as torch's) loads
    either way and the runs go on alike."""
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = getattr(fdt, name)(m1.parameters(), **RICH[name])
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **RICH[name])
    sd1, sd2 = o1.state_dict(), o2.state_dict()
    assert sd1["state"].keys() == sd2["state"].keys()
    for k, st in sd2["state"].items():
        assert sd1["state"][k].keys() == st.keys()
        for n, v in st.items():
            assert torch.equal(sd1["state"][k][n], v) and sd1["state"][k][n].dtype == v.dtype, n
    o1.load_state_dict(sd2)
    o2.load_state_dict(sd1)
    _train(m1, o1, x, y, 10)
    _train(m2, o2, x, y, 10)
    _close(m1, m2, torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_resume_is_bit_exact(name):
    x, y = _data(torch.float32)
    m1 = _model(torch.float32)
    o1 = getattr(fdt, name)(m1.parameters(), **RICH[name])
    _train(m1, o1, x, y, 10)
    m2 = copy.deepcopy(m1)
    o2 = getattr(fdt, name)(m2.parameters(), **RICH[name])
    o2.load_state_dict(o1.state_dict())
    o3 = pickle.loads(pickle.dumps(o1))  # and a pickled copy, with its own parameters
    m3 = [p for p in o3.param_groups[0]["params"]]
    _train(m1, o1, x, y, 15)
    _train(m2, o2, x, y, 15)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(m1.parameters(), m2.parameters()):
        for k, v in o1.state[p].items():
            assert torch.equal(v, o2.state[q][k]), k
    assert len(m3) == len(list(m1.parameters())) and o3.iterations == 10


@pytest.mark.parametrize("name", NAMES)
def test_numpy_backend_matches_torch_optim(name, monkeypatch):
    """fastdl.torch's NumPy path (no extension, or FASTDL_BACKEND=numpy) on the same trajectory."""
    monkeypatch.setattr(_backend, "host", _backend.numpy_kernels)  # undone after the test
    kernels = fdt_optimizers._host_kernels([])
    assert isinstance(kernels, fdt_optimizers._NumpyKernels)
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = getattr(fdt, name)(m1.parameters(), max_grad_norm=1e9, **RICH[name])
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **RICH[name])
    _train(m1, o1, x, y, 50)
    _train(m2, o2, x, y, 50)
    _close(m1, m2, torch.float64)
    _state_close(o1, o2, m1, m2, 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_max_grad_norm_equals_clip_grad_norm_then_step(name):
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = getattr(fdt, name)(m1.parameters(), max_grad_norm=0.5, **RICH[name])
    o2 = getattr(torch.optim, name)(m2.parameters(), foreach=False, **RICH[name])
    for _ in range(20):
        for m in (m1, m2):
            m.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
        norm = torch.nn.utils.clip_grad_norm_(m2.parameters(), 0.5)
        o1.step()
        o2.step()
        assert float(o1.last_grad_norm) == pytest.approx(norm.item(), rel=1e-12)
    _close(m1, m2, torch.float64)


@pytest.mark.parametrize("name", NAMES)
def test_lr_scheduler_and_per_group_settings(name):
    """Two groups with their own settings, a parameter without a gradient, StepLR."""
    x, y = _data(torch.float64)
    models = [_model(torch.float64), _model(torch.float64)]
    opts = []
    for m, cls in zip(models, (getattr(fdt, name), getattr(torch.optim, name))):
        layers = list(m)
        groups = [{"params": list(layers[0].parameters()) + list(layers[4].parameters()), "weight_decay": 0.1},
                  {"params": layers[2].parameters(), "maximize": True}]
        kw = {} if cls is getattr(fdt, name) else {"foreach": False}
        opts.append(cls(groups, **RICH[name], **kw))
    for m in models:
        m[2].bias.requires_grad_(False)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=5, gamma=0.5) for o in opts]
    for m, o, s in zip(models, opts, scheds):
        _train(m, o, x, y, 20, s)
    _close(*models, torch.float64)
    if name != "Adagrad":  # Adagrad made every parameter's state at construction, as torch's does
        assert models[0][2].bias not in opts[0].state


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
@pytest.mark.parametrize("name", NAMES)
def test_duplicate_empty_and_gradless_parameters_match_torch(name):
    """A parameter listed twice (stepped twice, as torch does: NAdam's mu_product advanced twice), an
    empty one (a step count and state, nothing to update) and one without a gradient (skipped)."""
    def make():
        g = torch.Generator().manual_seed(3)
        return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64)) for s in [(4, 3), (0, 2), (5,),
                                                                                                 (2,)]]
    pf, pt = make(), make()
    of = getattr(fdt, name)([pf[0], pf[1], pf[0], pf[2], pf[3]], **RICH[name])
    ot = getattr(torch.optim, name)([pt[0], pt[1], pt[0], pt[2], pt[3]], foreach=False, **RICH[name])
    for step in range(6):
        for ps in (pf, pt):
            g = torch.Generator().manual_seed(step)
            for k, p in enumerate(ps[:3]):
                p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64)
        of.step()
        ot.step()
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)
    for a, b in zip(pf[:3], pt[:3]):
        assert float(of.state[a]["step"]) == float(ot.state[b]["step"])
        if name == "NAdam":
            assert float(of.state[a]["mu_product"]) == float(ot.state[b]["mu_product"])
    assert float(of.state[pf[0]]["step"]) == 12
    assert (pf[3] in of.state) == (pt[3] in ot.state)


# ---- Adagrad's state at construction --------------------------------------------------------------

def test_adagrad_state_made_at_construction_and_for_added_groups():
    a = torch.nn.Parameter(torch.ones(3, 2).t())  # a transposed parameter: its sum keeps the layout
    o = fdt.Adagrad([a], initial_accumulator_value=0.25)
    t = torch.optim.Adagrad([torch.nn.Parameter(torch.ones(3, 2).t())], initial_accumulator_value=0.25)
    st, ts = o.state[a], next(iter(t.state.values()))
    assert set(st) == set(ts) == {"step", "sum"}
    assert torch.equal(st["sum"], ts["sum"]) and st["sum"].stride() == ts["sum"].stride()
    assert st["step"].dtype == ts["step"].dtype and float(st["step"]) == 0
    b = torch.nn.Parameter(torch.zeros(4))
    o.add_param_group({"params": [b], "initial_accumulator_value": 2.0})
    assert torch.equal(o.state[b]["sum"], torch.full((4,), 2.0))
    b.grad = torch.ones(4)
    o.step()  # sum 2 + 1, p <- -lr g / sqrt(3)
    assert torch.allclose(b, torch.full((4,), -0.01 / 3 ** 0.5))
    # state cleared by the user: fastdl starts each sum at initial_accumulator_value again
    o.state.clear()
    o.step()
    assert torch.equal(o.state[b]["sum"], torch.full((4,), 3.0)) and float(o.state[b]["step"]) == 1


# ---- 16-bit parameters and state_dtype ------------------------------------------------------------

HALF = [torch.bfloat16, torch.float16]


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "f16"])
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("state32", [False, True], ids=["state16", "state32"])
def test_16_bit_parameters_match_float32_math_rounded_each_step(backend, dtype, name, state32):
    """As tests/test_torch_half.py holds SGD and Adam: torch.optim in float32 on copies whose
    parameters (and, without state_dtype, state) are rounded to the 16-bit dtype after each step."""
    g = torch.Generator().manual_seed(1)
    shapes = [(64, 33), (33,), (0, 4), (7, 5, 3)]
    init = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.float()) for t in init]
    kw = dict(RICH[name])
    o1 = getattr(fdt, name)(ours, state_dtype=torch.float32 if state32 else None, **kw)
    o2 = getattr(torch.optim, name)(ref, foreach=False, **kw)
    if name == "Adagrad" and not state32:  # the initial sums, as a 16-bit state holds them
        for q in ref:
            o2.state[q]["sum"].copy_(o2.state[q]["sum"].to(dtype).float())
    for step in range(10):
        grads = [(torch.randn(s, generator=g) * (1 + step)).to(dtype) for s in shapes]
        for p, q, gr in zip(ours, ref, grads):
            p.grad, q.grad = gr.clone(), gr.float()
        o1.step()
        o2.step()
        with torch.no_grad():
            for q in ref:
                q.copy_(q.to(dtype).float())
                for v in o2.state[q].values():
                    if v.dim() and not state32:
                        v.copy_(v.to(dtype).float())
    eps = torch.finfo(dtype).eps
    for p, q in zip(ours, ref):
        state_dtype = torch.float32 if state32 else dtype
        assert p.dtype == dtype and all(v.dtype == state_dtype for v in o1.state[p].values() if v.dim())
        r = q.detach()
        np.testing.assert_allclose(p.detach().float().numpy(), r.numpy(), rtol=4 * eps,
                                   atol=4 * eps * (r.abs().max().item() if r.numel() else 0.0))
        if state32:
            for key, v in o1.state[p].items():
                if v.dim():
                    w = o2.state[q][key]
                    np.testing.assert_allclose(v.numpy(), w.numpy(), rtol=1e-5,
                                               atol=1e-6 * (w.abs().max().item() if w.numel() else 0.0), err_msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_float32_state_checkpoints_both_ways(name):
    """state_dtype=torch.float32 beside bfloat16 parameters: a torch.optim checkpoint (bfloat16 state)
    loads widened, fastdl's loads into torch narrowed; NAdam's mu_product comes back as saved (torch's
    load would round it to bfloat16)."""
    params = [torch.nn.Parameter(torch.randn(5, 3).to(dt)) for dt in (torch.bfloat16, torch.float32)]
    for p in params:
        p.grad = torch.randn_like(p)
    theirs = getattr(torch.optim, name)(params, foreach=False, **RICH[name])
    theirs.step()
    ours = getattr(fdt, name)(params, state_dtype=torch.float32, **RICH[name])
    sd = theirs.state_dict()
    ours.load_state_dict(sd)
    if name == "NAdam":
        assert ours.state[params[0]]["mu_product"].dtype == torch.float32
        assert float(ours.state[params[0]]["mu_product"]) == float(sd["state"][0]["mu_product"])
    ours.step()
    assert all(v.dtype == torch.float32 for p in params for v in ours.state[p].values() if v.dim())
    back = getattr(torch.optim, name)(params, foreach=False, **RICH[name])
    back.load_state_dict(ours.state_dict())
    for p in params:
        assert all(v.dtype == p.dtype for v in back.state[p].values() if v.dim())
    assert copy.deepcopy(ours).state_dtype == torch.float32


# ---- torch.amp.GradScaler -------------------------------------------------------------------------

class _DeviceKernels:
    """fastdl.torch._cuda.Kernels' contract for these optimizers run by the CPU module on CPU tensors:
    host step counts (and mu_products), the clipping factor as a 0-d float64 tensor, no found_inf."""

    calls = 0

    def __init__(self, device):
        self.ext = _backend.cpu_extension()

    def _grad_sum_squares_raw(self, dtype, grads, sizes):
        return torch.tensor(self.ext._grad_sum_squares_raw(dtype, grads, sizes), dtype=torch.float64)

    def __getattr__(self, name):
        fn = getattr(self.ext, name)

        def call(*args, found_inf=0, **kw):
            assert found_inf == 0  # the flag was read on the host
            type(self).calls += 1
            *rest, steps, options = args
            assert isinstance(steps, np.ndarray) and steps.dtype == np.int64
            if isinstance(options.clip_coef, torch.Tensor):
                options = options._replace(clip_coef=float(options.clip_coef))
            fn(*rest, steps, options, **kw)
        return call


@pytest.fixture(params=["host", "device"])
def path(request, monkeypatch):
    if request.param == "device":
        if _backend.cpu_extension() is None or _backend.host is not _backend.cpu_extension():
            pytest.skip("the device path's stand-in runs the C++ CPU module")
        monkeypatch.setattr(fdt_optimizers, "_on_device", lambda device: True)
        monkeypatch.setattr(fdt_optimizers._torch_cuda, "Kernels", _DeviceKernels)
        _DeviceKernels.calls = 0
    return request.param


@pytest.mark.parametrize("max_grad_norm", [None, 2.0])
@pytest.mark.parametrize("name", NAMES)
def test_grad_scaler_is_bit_exact_with_unscaled_gradients(path, name, max_grad_norm):
    """GradScaler's power-of-two scale unscaled inside the step: the bits of the gradients divided by
    hand; steps with an inf or NaN leave no trace (not even in 'step' or 'mu_product')."""
    shapes = [(6, 5), (0, 3), (7,)]
    gen = torch.Generator().manual_seed(0)
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) * (1 + k) for s in shapes] for k in range(8)]
    bad = {2: (0, float("inf")), 5: (2, float("nan"))}
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    opt = getattr(fdt, name)(ours, max_grad_norm=max_grad_norm, **RICH[name])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12, growth_interval=2)
    for k, gs in enumerate(grads):
        scale = scaler.scale(torch.ones(())).item()
        for p, g in zip(ours, gs):
            p.grad = g * scale
        if k in bad:
            ours[bad[k][0]].grad.view(-1)[0] = bad[k][1]
        before = [p.detach().clone() for p in ours], {id(p): {n: v.clone() for n, v in opt.state[p].items()}
                                                      for p in ours if p in opt.state}
        scaler.step(opt)
        scaler.update()
        if k in bad:
            assert all(torch.equal(a, b) for a, b in zip(before[0], ours))
            for p in ours:
                for n, v in before[1].get(id(p), {}).items():
                    assert torch.equal(v, opt.state[p][n]), n
    if path == "device":
        assert _DeviceKernels.calls
    ref_params = [torch.nn.Parameter(t.clone()) for t in init]
    ref = getattr(fdt, name)(ref_params, max_grad_norm=max_grad_norm, **RICH[name])
    for k, gs in enumerate(grads):
        if k not in bad:
            for p, g in zip(ref_params, gs):
                p.grad = g.clone()
            ref.step()
    for p, q in zip(ours, ref_params):
        assert torch.equal(p, q)
        for n, v in ref.state[q].items():
            assert torch.equal(opt.state[p][n], v), n
    assert float(opt.state[ours[0]]["step"]) == len(grads) - len(bad)
    assert opt.iterations == len(grads)


# ---- all or nothing -------------------------------------------------------------------------------

def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64))
            for s in [(4, 3), (3,), (5,), (2, 2), (6,), (3, 2)]]


def _groups(params):
    return [{"params": params[0:2]}, {"params": params[2:4], "lr": 0.05}, {"params": params[4:6]}]


def _set_grads(params, step):
    for k, p in enumerate(params):
        g = torch.Generator().manual_seed(100 * step + k)
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _pair(name):
    pf, pt = _params(), _params()
    of = getattr(fdt, name)(_groups(pf), **RICH[name])
    ot = getattr(torch.optim, name)(_groups(pt), foreach=False, **RICH[name])
    for step in range(2):
        for ps, o in ((pf, of), (pt, ot)):
            _set_grads(ps, step)
            o.step()
    return of, pf, ot, pt


def _snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            {id(p): {k: v.clone() for k, v in st.items()} for p, st in opt.state.items()},
            opt.iterations)


def _assert_unchanged(opt, params, snap):
    ps, state, iterations = snap
    for p, before in zip(params, ps):
        assert torch.equal(p.detach(), before)
    now = {id(p): st for p, st in opt.state.items()}
    assert now.keys() == state.keys()
    for key, st in state.items():
        assert now[key].keys() == st.keys()
        for name, before in st.items():
            after = now[key][name]
            assert after.dtype == before.dtype and torch.equal(after.isnan(), before.isnan()) and \
                torch.equal(after.nan_to_num(), before.nan_to_num()), name
    assert opt.iterations == iterations


def _continue_and_compare(of, pf, ot, pt, steps=3):
    for step in range(2, 2 + steps):
        for ps, o in ((pf, of), (pt, ot)):
            _set_grads(ps, step)
            o.step()
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)


BAD_SETTINGS = [
    ("RMSprop", "alpha", -0.1, ValueError), ("RMSprop", "momentum", "x", TypeError),
    ("RMSprop", "centered", np.array([1, 0]), TypeError), ("RMSprop", "eps", float("nan"), ValueError),
    ("RMSprop", "capturable", True, ValueError),
    ("Adagrad", "lr_decay", -1.0, ValueError), ("Adagrad", "eps", None, TypeError),
    ("Adagrad", "weight_decay", float("inf"), ValueError),
    ("Adadelta", "rho", 1.5, ValueError), ("Adadelta", "rho", -0.1, ValueError), ("Adadelta", "lr", "x", TypeError),
    ("Adamax", "betas", (0.9,), ValueError), ("Adamax", "betas", (0.9, 1.0), ValueError),
    ("Adamax", "maximize", np.array([True, False]), TypeError),
    ("NAdam", "momentum_decay", -1.0, ValueError), ("NAdam", "betas", (1.0, 0.9), ValueError),
    ("NAdam", "decoupled_weight_decay", np.array([1, 0]), TypeError), ("NAdam", "capturable", True, ValueError),
]


@pytest.mark.parametrize("name,key,value,error", BAD_SETTINGS, ids=[f"{n}-{k}={v!r}" for n, k, v, _ in BAD_SETTINGS])
def test_bad_setting_in_a_later_group_changes_nothing(name, key, value, error):
    of, pf, ot, pt = _pair(name)
    good = of.param_groups[2][key]
    of.param_groups[2][key] = value
    _set_grads(pf, 2)
    snap = _snapshot(of, pf)
    with pytest.raises(error, match="group 2"):
        of.step()
    _assert_unchanged(of, pf, snap)
    of.param_groups[2][key] = good
    _continue_and_compare(of, pf, ot, pt)


def _set_state(key, value):
    def mutate(of, pf):
        of.state[pf[5]][key] = value
    return mutate


def _fill_state(key, value):
    def mutate(of, pf):
        of.state[pf[5]][key].fill_(value)  # fastdl's own tensor, changed in place
    return mutate


STATE_CASES = [
    ("step=-5", _set_state("step", torch.tensor(-5.0)), ValueError, "step"),
    ("step in place 2.5", _fill_state("step", 2.5), ValueError, "step"),
    ("state wrong shape", None, ValueError, "shape"),
    ("mu_product=1.5", _set_state("mu_product", torch.tensor(1.5)), ValueError, "mu_product"),
    ("mu_product=x", _set_state("mu_product", "x"), TypeError, "mu_product"),
    ("mu_product in place nan", _fill_state("mu_product", float("nan")), ValueError, "mu_product"),
    ("mu_product in place -1", _fill_state("mu_product", -1.0), ValueError, "mu_product"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_bad_state_in_a_later_group_changes_nothing(name, case):
    label, mutate, error, match = case
    if "mu_product" in label and name != "NAdam":
        pytest.skip("only NAdam keeps a mu_product")
    of, pf, ot, pt = _pair(name)
    if mutate is None:
        tensor_key = next(k for k, v in of.state[pf[5]].items() if v.dim())
        mutate = _set_state(tensor_key, torch.zeros(7, dtype=torch.float64))
    _set_grads(pf, 2)
    mutate(of, pf)
    snap = _snapshot(of, pf) if "=x" not in label else None
    for _ in range(2):  # and again: a failed step caches nothing that hides the fault
        with pytest.raises(error, match=match):
            of.step()
        if snap is not None:
            _assert_unchanged(of, pf, snap)


@pytest.mark.parametrize("name", NAMES)
def test_bad_checkpoint_is_refused_whole(name):
    of, pf, ot, pt = _pair(name)
    good = ot.state_dict()
    bads = [("step", torch.tensor(-5.0), ValueError), ("shape", None, ValueError)]
    if name != "Adagrad":  # which has no capturable (torch's neither)
        bads.append(("capturable", True, ValueError))
    if name == "NAdam":
        bads += [("mu_product", torch.tensor(2.0), ValueError), ("mu_product", torch.tensor(float("nan")), ValueError)]
    for key, value, error in bads:
        sd = copy.deepcopy(good)
        if key == "shape":
            st = sd["state"][5]
            st[next(k for k, v in st.items() if v.dim())] = torch.zeros(9, dtype=torch.float64)
        elif key == "capturable":
            sd["param_groups"][2]["capturable"] = True
        else:
            sd["state"][5][key] = value
        _set_grads(pf, 2)
        snap = _snapshot(of, pf)
        with pytest.raises(error):
            of.load_state_dict(sd)
        _assert_unchanged(of, pf, snap)
    _continue_and_compare(of, pf, ot, pt)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize("name", NAMES)
def test_optimizer_object_survives_copies(name, how):
    of, pf, ot, pt = _pair(name)
    if how == "deepcopy":
        of2, pf2 = copy.deepcopy((of, pf))
    elif how == "pickle":
        of2, pf2 = pickle.loads(pickle.dumps((of, pf)))
    else:
        buf = io.BytesIO()
        torch.save((of, pf), buf)
        buf.seek(0)
        of2, pf2 = torch.load(buf, weights_only=False)
    _continue_and_compare(of2, pf2, ot, pt)
    for p, q in zip(pf2, pt):
        for k, v in ot.state[q].items():
            assert torch.equal(of2.state[p][k].to(v.dtype), v) or k != "step", k


BAD_ARGS = [("RMSprop", dict(lr=-1.0)), ("RMSprop", dict(eps=-1.0)), ("RMSprop", dict(momentum=-0.5)),
            ("RMSprop", dict(weight_decay=-1.0)), ("RMSprop", dict(alpha=-0.5)),
            ("Adagrad", dict(lr=-1.0)), ("Adagrad", dict(lr_decay=-1.0)), ("Adagrad", dict(weight_decay=-1.0)),
            ("Adagrad", dict(initial_accumulator_value=-1.0)), ("Adagrad", dict(eps=-1.0)),
            ("Adadelta", dict(lr=-1.0)), ("Adadelta", dict(rho=1.5)), ("Adadelta", dict(rho=-0.5)),
            ("Adadelta", dict(eps=-1.0)), ("Adadelta", dict(weight_decay=-1.0)),
            ("Adamax", dict(lr=-1.0)), ("Adamax", dict(eps=-1.0)), ("Adamax", dict(betas=(1.0, 0.9))),
            ("Adamax", dict(betas=(0.9, -0.1))), ("Adamax", dict(weight_decay=-1.0)),
            ("NAdam", dict(lr=-1.0)), ("NAdam", dict(eps=-1.0)), ("NAdam", dict(betas=(0.9, 1.0))),
            ("NAdam", dict(weight_decay=-1.0)), ("NAdam", dict(momentum_decay=-1.0)),
            ("NAdam", dict(lr=torch.tensor([0.1, 0.2])))]


@pytest.mark.parametrize("name,kw", BAD_ARGS, ids=[f"{n}-{k}" for n, k in BAD_ARGS])
def test_invalid_hyperparameters_read_as_torchs(name, kw):
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)(p, **kw)
    with pytest.raises(ValueError) as ours:
        getattr(fdt, name)(p, **kw)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("name", NAMES)
def test_refusals_and_accepted_flags(name):
    p = [torch.nn.Parameter(torch.ones(3))]
    with pytest.raises(ValueError, match="differentiable"):
        getattr(fdt, name)(p, differentiable=True)
    if name != "Adagrad":  # torch's Adagrad has no capturable
        with pytest.raises(ValueError, match=f"capturable=True is not supported by fastdl.torch.{name}"):
            getattr(fdt, name)(p, capturable=True)
    getattr(fdt, name)(p, foreach=True)  # accepted: fastdl is always fused
    if name == "Adagrad":
        getattr(fdt, name)(p, fused=True)
    rho = dict(rho=1.0) if name == "Adadelta" else {}  # torch's 0 <= rho <= 1 includes 1
    getattr(fdt, name)(p, **rho)


def test_signatures_are_torchs():
    """Every argument of torch.optim's class, with its default and kind, then fastdl's keyword-only ones."""
    import inspect
    for name in NAMES:
        ours = inspect.signature(getattr(fdt, name).__init__).parameters
        theirs = inspect.signature(getattr(torch.optim, name).__init__).parameters
        assert list(ours)[:len(theirs)] == list(theirs), name
        for k, v in theirs.items():
            assert ours[k].default == v.default and ours[k].kind == v.kind, (name, k)
        assert list(ours)[len(theirs):] == ["max_grad_norm", "state_dtype"]


def test_device_path_reads_host_counts(monkeypatch):
    """On a GPU (a CPU standing in) these optimizers keep 'step' (and mu_product) on the host and hand
    the kernels host counts: max_grad_norm's factor stays a device tensor."""
    monkeypatch.setattr(fdt_optimizers, "_on_device", lambda device: True)
    monkeypatch.setattr(fdt_optimizers._torch_cuda, "Kernels", _DeviceKernels)
    if _backend.cpu_extension() is None:
        pytest.skip("the stand-in runs the C++ CPU module")
    _DeviceKernels.calls = 0
    x, y = _data(torch.float64)
    m1, m2 = _model(torch.float64), _model(torch.float64)
    o1 = fdt.NAdam(m1.parameters(), max_grad_norm=1.0, **RICH["NAdam"])
    o2 = torch.optim.NAdam(m2.parameters(), foreach=False, **RICH["NAdam"])
    for _ in range(10):
        for m in (m1, m2):
            m.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(m2.parameters(), 1.0)
        o1.step()
        o2.step()
    assert _DeviceKernels.calls == 10
    assert isinstance(o1.last_grad_norm, torch.Tensor)
    _close(m1, m2, torch.float64)
    bindings = [b for _, bs in o1._bindings.values() for b in bs]
    assert bindings and all(b.steps is not None for b in bindings)


def test_cuda_kernels_wrapper_passes_the_module_its_arguments(monkeypatch):
    """fastdl.torch._cuda.Kernels' adaptive entry points call the CUDA module's functions with their
    arguments in the module's order (no GPU here: a recording module stands in; the names are read
    from the real module's signatures where it is built)."""
    import re

    from fastdl.backends.options import AdadeltaOptions, AdagradOptions, AdamaxOptions, NadamOptions, RmspropOptions
    from fastdl.torch import _cuda
    seen = []

    class Module:
        def __getattr__(self, name):
            return lambda *a: seen.append((name, a))
    monkeypatch.setattr(_cuda, "module", lambda: Module())
    monkeypatch.setattr(_cuda.Kernels, "_stream", lambda self: 77)
    k = _cuda.Kernels(torch.device("cuda", 3))
    clip = torch.tensor(0.5, dtype=torch.float64)
    steps, mu = np.ones(1, np.int64), np.full(1, 0.5)
    k._rmsprop_step_raw("float32", [1], [2], [3], None, [4], [5], steps, RmspropOptions(0.1, clip_coef=clip))
    k._adagrad_step_raw("float64", [1], [2], [3], [5], steps, AdagradOptions(0.1), state_dtype=None)
    k._adadelta_step_raw("float16", [1], [2], [3], [4], [5], steps, AdadeltaOptions(0.1), state_dtype="float32")
    k._adamax_step_raw("float32", [1], [2], [3], [4], [5], steps, AdamaxOptions(0.1, clip_coef=0.25))
    k._nadam_step_raw("bfloat16", [1], [2], [3], [4], mu, [5], steps, NadamOptions(0.1), state_dtype="float32")
    expect = {"rmsprop_step": ["square_avgs", "momentum_buffers", "grad_avgs"], "adagrad_step": ["sums"],
              "adadelta_step": ["square_avgs", "acc_deltas"], "adamax_step": ["exp_avgs", "exp_infs"],
              "nadam_step": ["exp_avgs", "exp_avg_sqs", "mu_products"]}
    try:
        from fastdl import _fastdl_cuda
    except ImportError:
        _fastdl_cuda = None
    assert [name for name, _ in seen] == list(expect)
    for name, args in seen:
        names = ["dtype", "params", "grads"] + expect[name] + ["sizes", "steps", "options", "clip_ptr", "device",
                                                                "stream", "found_inf", "state_dtype"]
        got = dict(zip(names, args))
        assert len(args) == len(names), name
        assert got["sizes"] == [5] and got["steps"] is steps and got["device"] == 3 and got["stream"] == 77
        assert got["found_inf"] == 0 and got["params"] == [1] and got["grads"] == [2], name
        if name == "rmsprop_step":  # a device factor: the options carry 1 and the kernel reads the address
            assert got["options"].clip_coef == 1.0 and got["clip_ptr"] == clip.data_ptr()
            assert got["momentum_buffers"] is None
        elif name == "adamax_step":
            assert got["options"].clip_coef == 0.25 and got["clip_ptr"] == 0
        if name == "nadam_step":
            assert got["mu_products"] is mu
        if _fastdl_cuda is not None:
            doc = getattr(_fastdl_cuda, name).__doc__.splitlines()[0]
            assert re.findall(r"(\w+): ", doc) == names, (name, doc)
