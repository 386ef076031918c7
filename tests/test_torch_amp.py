"""fastdl.torch with torch.amp.GradScaler: the fused path (``_step_supports_amp_scaling``), held against
torch's own fused CPU optimizers under GradScaler("cpu"), and bit for bit against fastdl stepped on the
gradients unscaled by hand, skipping the steps that had an inf or NaN.

The same runs go once more through the GPU's way of stepping with a CPU standing in for the GPU
(_device_path): step counts kept as float32 tensors and advanced with torch ops around the kernel call,
GradScaler's tensors used as tensors, the kernel reading the counts and the skip flag by address as
the CUDA module does. tests/test_cuda.py runs the real thing on a GPU.
"""

import ctypes

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as fdt  # noqa: E402
from fastdl import _backend  # noqa: E402
from fastdl.torch import optimizers as fdt_optimizers  # noqa: E402

SHAPES = [(64, 33), (33,), (0, 4), (7, 5, 3), (1,)]
CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.05, maximize=True)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2, amsgrad=True)),
]
IDS = [f"{n}-" + ",".join(f"{k}={v}" for k, v in kw.items()) for n, kw in CASES]
STEPS = 9
BAD = {2: (0, float("inf")), 3: (3, float("nan")), 6: (1, float("-inf"))}  # step: (parameter, value)
# the scale grows every 2 good steps and halves at a bad one: a trajectory with both
SCALER = dict(init_scale=2.0 ** 12, growth_interval=2)


def _gradients(dtype, seed=1):
    """Per step, the unscaled gradients (as the parameters' dtype would hold them)."""
    g = torch.Generator().manual_seed(seed)
    return [[(torch.randn(s, generator=g) * (1 + step)).to(dtype) for s in SHAPES] for step in range(STEPS)]


def _params(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g).to(dtype) for s in SHAPES]


def _snapshot(opt, params):
    return [p.detach().clone() for p in params], \
        [{k: v.clone() for k, v in opt.state[p].items()} if p in opt.state else None for p in params]


def _run_scaled(opt, params, grads, unscale_clip=None, scaler_kw=SCALER):
    """The GradScaler loop: per step, scaled gradients (an inf or NaN at the BAD steps), scaler.step and
    scaler.update. Returns the scales seen and (params, state) after each step."""
    scaler = torch.amp.GradScaler("cpu", **scaler_kw)
    scales, after = [], []
    for step, gs in enumerate(grads):
        scale = scaler.scale(torch.ones(())).item()  # also creates the scaler's scale at the first step
        scales.append(scale)
        for p, g in zip(params, gs):
            p.grad = (g.float() * scale).to(g.dtype)
        if step in BAD:
            k, value = BAD[step]
            params[k].grad.view(-1)[0] = value
        if unscale_clip is not None:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, unscale_clip)
        before = _snapshot(opt, params)
        scaler.step(opt)
        scaler.update()
        assert not hasattr(opt, "grad_scale") and not hasattr(opt, "found_inf")
        if step in BAD:  # skipped: nothing changed (torch's fused optimizers do create empty state)
            for a, b in zip(before[0], params):
                assert torch.equal(a, b)
            for st0, p in zip(before[1], params):
                for k, v in (st0 or {}).items():
                    assert torch.equal(v, opt.state[p][k]), k
        after.append(_snapshot(opt, params))
    return scales, after


def _close(a, b, dtype, what):
    if dtype == torch.float32:
        rtol = 1e-6
    else:
        rtol = 2 * torch.finfo(dtype).eps  # one rounding apart
    a, b = a.detach().float(), b.detach().float()
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=rtol * (b.abs().max().item() if b.numel() else 0),
                               err_msg=what)


def _steps(opt, params):
    return [float(opt.state[p]["step"]) if p in opt.state and "step" in opt.state[p] else None for p in params]


class _DeviceKernels:
    """fastdl.torch._cuda.Kernels' contract, run by the CPU module on CPU tensors: the step counts and
    the skip flag read from the addresses the step passes, the clipping factor from a 0-d float64."""

    calls = 0

    def __init__(self, device):
        self.ext = _backend.cpu_extension()

    def _grad_sum_squares_raw(self, dtype, grads, sizes):
        return torch.tensor(self.ext._grad_sum_squares_raw(dtype, grads, sizes), dtype=torch.float64)

    @staticmethod
    def _host(options):
        coef = options.clip_coef
        if isinstance(coef, torch.Tensor):
            assert coef.dtype == torch.float64 and coef.dim() == 0
            return options._replace(clip_coef=float(coef))
        return options

    @staticmethod
    def _skip(found_inf):
        return found_inf != 0 and ctypes.c_float.from_address(found_inf).value != 0

    def _sgd_step_raw(self, dtype, params, grads, bufs, sizes, steps, options, found_inf=0):
        type(self).calls += 1
        if not self._skip(found_inf):
            self.ext._sgd_step_raw(dtype, params, grads, bufs, sizes, steps, self._host(options))

    def _adam_step_raw(self, dtype, params, grads, m, v, vmax, sizes, steps, options, found_inf=0, step_ptrs=None):
        type(self).calls += 1
        assert steps is None and len(step_ptrs) == len(params)
        if not self._skip(found_inf):
            steps = np.array([int(ctypes.c_float.from_address(a).value) for a in step_ptrs], dtype=np.int64)
            self.ext._adam_step_raw(dtype, params, grads, m, v, vmax, sizes, steps, self._host(options))


@pytest.fixture(params=["host", "device"])
def path(request, monkeypatch):
    """host: the CPU's way (counts and GradScaler's values on the host); device: the GPU's way, on the CPU."""
    if request.param == "device":
        if _backend.cpu_extension() is None or _backend.host is not _backend.cpu_extension():
            pytest.skip("the device path's stand-in runs the C++ CPU module")
        monkeypatch.setattr(fdt_optimizers, "_on_device", lambda device: True)
        monkeypatch.setattr(fdt_optimizers._torch_cuda, "Kernels", _DeviceKernels)
        _DeviceKernels.calls = 0
    return request.param


def _took(path, opt):
    """The optimizer stepped the path's way."""
    bindings = [b for _, bs in opt._bindings.values() for b in bs]
    assert bindings
    if path == "device":
        assert _DeviceKernels.calls, "the device path's kernels were not used"
        assert all((b.steps is None) == opt._counts_steps for b in bindings)
    else:
        assert all(b.steps is not None for b in bindings)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_matches_torch_fused_under_grad_scaler(path, name, kw, dtype):
    if dtype == torch.bfloat16 and name == "SGD":
        pytest.skip("torch 2.13's fused CPU SGD on bfloat16 is no oracle (see test_torch_half.py); "
                    "test_bit_exact_with_unscaled_gradients covers it")
    init, grads = _params(dtype), _gradients(dtype)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    o1 = getattr(fdt, name)(ours, **kw)
    o2 = getattr(torch.optim, name)(theirs, fused=True, **kw)
    assert o1._step_supports_amp_scaling
    s1, a1 = _run_scaled(o1, ours, grads)
    s2, a2 = _run_scaled(o2, theirs, grads)
    _took(path, o1)
    assert s1 == s2 and len(set(s1)) > 2  # the scale grew and backed off alike
    for step, ((p1, st1), (p2, st2)) in enumerate(zip(a1, a2)):
        for i, (p, q) in enumerate(zip(p1, p2)):
            _close(p, q, dtype, f"step {step} parameter {i}")
        for i, (x, y) in enumerate(zip(st1, st2)):
            assert (x is None) == (y is None) and (x is None or x.keys() == y.keys()), (step, i)
            for k in (y or {}):
                if k == "step":
                    assert float(x[k]) == float(y[k]), (step, i)
                else:
                    _close(x[k], y[k], dtype, f"step {step} state {k} of parameter {i}")
    if name != "SGD":  # counts: steps taken, skipped ones not counted; the empty parameter counted too
        assert _steps(o1, ours) == [float(STEPS - len(BAD))] * len(SHAPES)


def _reference(name, kw, dtype, grads, max_grad_norm=None):
    """fastdl without a scaler on the gradients GradScaler would have unscaled, skipping the BAD steps."""
    params = [torch.nn.Parameter(t.clone()) for t in _params(dtype)]
    opt = getattr(fdt, name)(params, max_grad_norm=max_grad_norm, **kw)
    for step, gs in enumerate(grads):
        if step not in BAD:
            for p, g in zip(params, gs):
                p.grad = g.clone()
            opt.step()
    return opt, params


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("name,kw", CASES, ids=IDS)
def test_bit_exact_with_unscaled_gradients(backend, path, name, kw, dtype):
    """GradScaler's scale is a power of two, so unscaling inside the step (g times 1/scale) gives the
    bits of the gradients divided by hand, and a skipped step leaves no trace."""
    grads = _gradients(dtype)
    ours = [torch.nn.Parameter(t.clone()) for t in _params(dtype)]
    opt = getattr(fdt, name)(ours, **kw)
    _run_scaled(opt, ours, grads)
    _took(path, opt)
    ref, params = _reference(name, kw, dtype, grads)
    for p, q in zip(ours, params):
        assert torch.equal(p, q)
        for k, v in ref.state[q].items():
            assert torch.equal(opt.state[p][k], v), k
    assert opt.iterations == STEPS  # a skipped step is a step taken by step(): a schedule sees it


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] != "SGD"] + [CASES[2]], ids=lambda c: str(c))
def test_unscale_and_clip_by_hand_then_step(path, name, kw):
    """The user unscales (GradScaler then hands over found_inf alone: grad_scale is None) and clips."""
    init, grads = _params(torch.float32), _gradients(torch.float32)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    o1 = getattr(fdt, name)(ours, **kw)
    o2 = getattr(torch.optim, name)(theirs, fused=True, **kw)
    s1, a1 = _run_scaled(o1, ours, grads, unscale_clip=5.0)
    _took(path, o1)
    s2, a2 = _run_scaled(o2, theirs, grads, unscale_clip=5.0)
    assert s1 == s2
    for (p1, _), (p2, _) in zip(a1, a2):
        for p, q in zip(p1, p2):
            _close(p, q, torch.float32, "params")
    if name != "SGD":
        assert _steps(o1, ours) == _steps(o2, theirs)


@pytest.mark.parametrize("name,kw", [CASES[2], CASES[4], CASES[5]], ids=lambda c: str(c))
def test_max_grad_norm_clips_the_unscaled_gradients(path, name, kw):
    """max_grad_norm with a scaler: the norm and the clip are those of the unscaled gradients, as
    scaler.unscale_ then clip_grad_norm_ then step with torch's fused optimizer."""
    init, grads = _params(torch.float32), _gradients(torch.float32)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    o1 = getattr(fdt, name)(ours, max_grad_norm=5.0, **kw)
    o2 = getattr(torch.optim, name)(theirs, fused=True, **kw)
    _, a1 = _run_scaled(o1, ours, grads)
    _took(path, o1)
    _, a2 = _run_scaled(o2, theirs, grads, unscale_clip=5.0)
    for (p1, _), (p2, _) in zip(a1, a2):
        for p, q in zip(p1, p2):
            _close(p, q, torch.float32, "params")
    # the last step's norm is that of the unscaled gradients
    expected = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads[-1]])).item()
    assert float(o1.last_grad_norm) == pytest.approx(expected, rel=1e-6)
    # and bit for bit as fastdl clipping the gradients unscaled by hand
    _, params = _reference(name, kw, torch.float32, grads, max_grad_norm=5.0)
    for p, q in zip(ours, params):
        assert torch.equal(p, q)


def test_a_scale_that_is_no_power_of_two(path):
    """GradScaler(init_scale=1000, growth_factor=1.5): 1/scale is then rounded, and torch's fused
    kernels divide where fastdl multiplies by it: an ulp apart at most, per step."""
    init, grads = _params(torch.float32), _gradients(torch.float32)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    o1, o2 = fdt.AdamW(ours, lr=1e-2), torch.optim.AdamW(theirs, lr=1e-2, fused=True)
    kw = dict(init_scale=1000.0, growth_factor=1.5, backoff_factor=0.3, growth_interval=2)
    s1, a1 = _run_scaled(o1, ours, grads, scaler_kw=kw)
    s2, a2 = _run_scaled(o2, theirs, grads, scaler_kw=kw)
    assert s1 == s2
    for p, q in zip(ours, theirs):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_checkpoints_under_a_scaler_move_to_torch_and_back(path, tmp_path):
    init, grads = _params(torch.float32), _gradients(torch.float32)
    ours, theirs = [torch.nn.Parameter(t.clone()) for t in init], [torch.nn.Parameter(t.clone()) for t in init]
    o1, o2 = fdt.Adam(ours, lr=1e-2, amsgrad=True), torch.optim.Adam(theirs, lr=1e-2, amsgrad=True, fused=True)
    _run_scaled(o1, ours, grads[:4])  # steps 2 and 3 skipped
    _run_scaled(o2, theirs, grads[:4])
    torch.save(o1.state_dict(), tmp_path / "ours.pt")
    torch.save(o2.state_dict(), tmp_path / "theirs.pt")
    # ours into torch's fused Adam, torch's into ours: both continue as the other would have
    t2 = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    x2 = torch.optim.Adam(t2, lr=1e-2, amsgrad=True, fused=True)
    x2.load_state_dict(torch.load(tmp_path / "ours.pt"))
    for group in x2.param_groups:  # the checkpoint's groups say fused=None (as a non-fused torch Adam's would)
        group["fused"] = True
    f2 = [torch.nn.Parameter(p.detach().clone()) for p in theirs]
    y2 = fdt.Adam(f2, lr=1e-2, amsgrad=True)
    y2.load_state_dict(torch.load(tmp_path / "theirs.pt"))
    assert _steps(y2, f2) == _steps(x2, t2) == [2.0] * len(SHAPES)
    _run_scaled(x2, t2, grads[4:6])
    _run_scaled(y2, f2, grads[4:6])
    _took(path, y2)
    for p, q in zip(t2, f2):
        _close(p, q, torch.float32, "params after the exchange")
    assert _steps(y2, f2) == _steps(x2, t2)
    assert all(v.dtype == torch.float32 and v.dim() == 0 for v in (y2.state[p]["step"] for p in f2))


def test_grad_scale_and_found_inf_are_checked():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.ones(3)
    opt = fdt.Adam([p])
    opt.found_inf = 0.0
    with pytest.raises(TypeError, match=r"optimizer.found_inf is 0.0: torch.amp.GradScaler sets it"):
        opt.step()
    opt.found_inf, opt.grad_scale = torch.zeros(()), torch.ones(2)
    with pytest.raises(TypeError, match=r"optimizer.grad_scale is tensor"):
        opt.step()
    assert torch.equal(p, torch.ones(3)) and not opt.state
    # set by hand: found_inf 1 skips the step, grad_scale divides the gradients
    opt.grad_scale, opt.found_inf = torch.tensor(4.0), torch.ones(())
    opt.step()
    assert torch.equal(p, torch.ones(3)) and float(opt.state[p]["step"]) == 0
    opt.found_inf = torch.zeros(())
    p.grad = torch.full((3,), 4.0)
    ref = torch.nn.Parameter(torch.ones(3))
    ref.grad = torch.ones(3)
    r = torch.optim.Adam([ref])
    r.step()
    opt.step()
    assert torch.equal(p, ref) and float(opt.state[p]["step"]) == 1


def test_a_skipped_first_sgd_step_leaves_a_zero_momentum_buffer(path):
    """SGD keeps no count: after a skipped first step the next one continues the zero buffer
    (b = (1 - dampening) g; torch's single-tensor SGD starts b = g, its fused one from garbage)."""
    p = torch.nn.Parameter(torch.ones(4))
    opt = fdt.SGD([p], lr=0.1, momentum=0.9, dampening=0.5)
    opt.grad_scale, opt.found_inf = torch.tensor(2.0), torch.ones(())
    p.grad = torch.full((4,), float("inf"))
    opt.step()
    assert torch.equal(p, torch.ones(4)) and torch.equal(opt.state[p]["momentum_buffer"], torch.zeros(4))
    opt.found_inf = torch.zeros(())
    p.grad = torch.full((4,), 2.0)  # 1 once unscaled
    opt.step()
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.full((4,), 0.5))
    assert torch.allclose(p, torch.full((4,), 0.95))


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
def test_a_parameter_listed_twice_and_a_parameter_without_gradient(path):
    """Each listing is a step with its own count (as torch.optim's single-tensor step); a parameter
    without a gradient is not stepped; a skipped step moves no count: against torch.optim.Adam
    (foreach=False) on the gradients unscaled by hand."""
    init = _params(torch.float32)
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    o1 = fdt.Adam(ours + [ours[1]], lr=1e-2)
    o2 = torch.optim.Adam(ref + [ref[1]], lr=1e-2, foreach=False)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    for step, gs in enumerate(_gradients(torch.float32)[:5]):
        scale = scaler.scale(torch.ones(())).item()
        for k, (p, q, g) in enumerate(zip(ours, ref, gs)):
            p.grad = None if k == 3 and step < 2 else g * scale
            q.grad = None if k == 3 and step < 2 else g.clone()
        if step == 2:
            ours[0].grad[0, 0] = float("nan")
        scaler.step(o1)
        scaler.update()
        if step != 2:
            o2.step()
    _took(path, o1)
    for p, q in zip(ours, ref):
        _close(p, q, torch.float32, "params")
        assert float(o1.state[p]["step"]) == float(o2.state[q]["step"])
    assert [float(o1.state[p]["step"]) for p in ours] == [4.0, 8.0, 4.0, 2.0, 4.0]
