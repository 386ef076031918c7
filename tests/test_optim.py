"""fastdl.optim: trajectories against references written here and against torch.optim."""

import math

import numpy as np
import pytest

from fastdl import optim

try:
    import torch
except ImportError:  # torch-oracle tests skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SHAPES = [(1,), (7,), (3, 5), (130,), (0,), (2, 3, 4), (10_007,)]


# ---- float64 references: torch.optim's documented update rules, one tensor at a time ----------

class RefSGD:
    def __init__(self, params, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False):
        self.p = [p.astype(np.float64) for p in params]
        self.h = dict(lr=lr, mu=momentum, damp=dampening, nesterov=nesterov, wd=weight_decay, maximize=maximize)
        self.buf = [None] * len(params)

    def step(self, grads):
        h = self.h
        for i, g in enumerate(grads):
            g = -g.astype(np.float64) if h["maximize"] else g.astype(np.float64)
            g = g + h["wd"] * self.p[i]
            if h["mu"]:
                self.buf[i] = g.copy() if self.buf[i] is None else h["mu"] * self.buf[i] + (1 - h["damp"]) * g
                g = g + h["mu"] * self.buf[i] if h["nesterov"] else self.buf[i]
            self.p[i] = self.p[i] - h["lr"] * g


class RefAdam:
    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False,
                 maximize=False):
        self.p = [p.astype(np.float64) for p in params]
        self.lr, (self.b1, self.b2), self.eps, self.wd = lr, betas, eps, weight_decay
        self.amsgrad, self.decoupled, self.maximize = amsgrad, decoupled, maximize
        self.m = [np.zeros_like(p) for p in self.p]
        self.v = [np.zeros_like(p) for p in self.p]
        self.vmax = [np.zeros_like(p) for p in self.p]
        self.t = 0

    def step(self, grads):
        self.t += 1
        t = self.t
        for i, g in enumerate(grads):
            g = -g.astype(np.float64) if self.maximize else g.astype(np.float64)
            if self.decoupled:
                self.p[i] = self.p[i] * (1 - self.lr * self.wd)
            else:
                g = g + self.wd * self.p[i]
            self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
            self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
            v = self.v[i]
            if self.amsgrad:
                self.vmax[i] = np.maximum(self.vmax[i], v)
                v = self.vmax[i]
            mhat = self.m[i] / (1 - self.b1 ** t)
            denom = np.sqrt(v) / math.sqrt(1 - self.b2 ** t) + self.eps
            self.p[i] = self.p[i] - self.lr * mhat / denom


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    dict(lr=0.05, momentum=0.9, maximize=True),
]
ADAM_CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=0.05),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=1e-2, amsgrad=True, weight_decay=0.1, maximize=True),
    dict(lr=1e-2, betas=(0.3, 0.9)),  # beta1 < 0.5: torch's lerp takes its other branch
]


def _problem(rng, dtype):
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    targets = [rng.standard_normal(s) for s in SHAPES]
    return params, targets


def _grads(params, targets, step, dtype):
    # gradient of sum(0.5 (p - target)^2 + 0.1 sin(step) p): changes every step
    return [(p.astype(np.float64) - t + 0.1 * math.sin(step)).astype(dtype) for p, t in zip(params, targets)]


def _run(opt, ref, params, targets, dtype, steps=60, arrays=None):
    """Steps opt (over params, or over their copies on `arrays`' device) and ref side by side;
    returns the parameters opt updated, as NumPy arrays."""
    for k in range(steps):
        host = [arrays.numpy(p) for p in opt.params] if arrays is not None else params
        ref_grads = _grads(ref.p, targets, k, np.float64)
        if dtype == np.float32:  # both see the same float32 gradient of their own parameters
            ref_grads = _grads(host, targets, k, dtype)
        grads = _grads(host, targets, k, dtype)
        opt.step([arrays.asarray(g) for g in grads] if arrays is not None else grads)
        ref.step(ref_grads)
    return [arrays.numpy(p) for p in opt.params] if arrays is not None else params


def _rtol(dtype):
    return 1e-10 if dtype == np.float64 else 5e-5


@pytest.mark.parametrize("config", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_trajectory(arrays, config, dtype, rng):
    params, targets = _problem(rng, dtype)
    ref = RefSGD(params, **config)
    opt = optim.SGD([arrays.asarray(p) for p in params], **config)
    for p, r in zip(_run(opt, ref, params, targets, dtype, arrays=arrays), ref.p):
        np.testing.assert_allclose(p, r, rtol=_rtol(dtype), atol=_rtol(dtype))


@pytest.mark.parametrize("decoupled", [False, True], ids=["Adam", "AdamW"])
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_adam_trajectory(arrays, config, decoupled, dtype, rng):
    params, targets = _problem(rng, dtype)
    config = dict(config)
    if decoupled:
        config.setdefault("weight_decay", 0.01)
    ref = RefAdam(params, decoupled=decoupled, **config)
    opt = (optim.AdamW if decoupled else optim.Adam)([arrays.asarray(p) for p in params], **config)
    for p, r in zip(_run(opt, ref, params, targets, dtype, arrays=arrays), ref.p):
        np.testing.assert_allclose(p, r, rtol=_rtol(dtype), atol=_rtol(dtype))


def _torch_opt(name, tparams, config):
    config = dict(config)
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[name]
    return cls(tparams, foreach=False, **config)


TORCH_CASES = [("SGD", c) for c in SGD_CONFIGS] + [(n, c) for n in ("Adam", "AdamW") for c in ADAM_CONFIGS]


@needs_torch
@pytest.mark.parametrize("name,config", TORCH_CASES, ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items()))
def test_matches_torch_optim(backend, name, config, dtype, rng):
    params, targets = _problem(rng, dtype)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    topt = _torch_opt(name, tparams, config)
    opt = getattr(optim, name)(params, **config)
    for k in range(100):
        grads = _grads(params, targets, k, dtype)
        opt.step(grads)
        for tp, g in zip(tparams, _grads([t.detach().numpy() for t in tparams], targets, k, dtype)):
            tp.grad = torch.from_numpy(g)
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-9 if dtype == np.float64 else 5e-5,
                                   atol=1e-9 if dtype == np.float64 else 5e-5)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_state_dict_resume_is_bit_exact(backend, name, dtype, rng):
    config = {"SGD": dict(lr=0.05, momentum=0.9, nesterov=True), "Adam": dict(lr=1e-2, amsgrad=True),
              "AdamW": dict(lr=1e-2)}[name]
    params, targets = _problem(rng, dtype)
    cls = getattr(optim, name)
    a_params = [p.copy() for p in params]
    a = cls(a_params, **config)
    for k in range(20):
        a.step(_grads(a_params, targets, k, dtype))
    saved = a.state_dict()
    saved_params = [p.copy() for p in a_params]
    for k in range(20, 40):
        a.step(_grads(a_params, targets, k, dtype))

    b_params = saved_params
    b = cls(b_params, lr=123.0)  # other hyperparameters: load_state_dict restores them
    if name == "SGD":
        b = cls(b_params, lr=1.0, momentum=0.5)
    if name == "Adam":
        b = cls(b_params, amsgrad=True)
    b.load_state_dict(saved)
    assert b.lr == config["lr"]
    for k in range(20, 40):
        b.step(_grads(b_params, targets, k, dtype))
    for pa, pb in zip(a_params, b_params):
        np.testing.assert_array_equal(pa, pb)


def test_state_dict_is_a_copy(backend):
    p = [np.ones(3)]
    opt = optim.Adam(p)
    sd = opt.state_dict()
    opt.step([np.ones(3)])
    assert np.all(sd["state"]["exp_avg"][0] == 0) and sd["steps"][0] == 0


def test_none_grad_skips_parameter_and_its_step_count(backend):
    a, b = np.ones(4), np.ones(4)
    opt = optim.Adam([a, b], lr=0.1)
    opt.step([np.ones(4), None])
    assert np.all(a < 1) and np.all(b == 1)
    assert list(opt.steps) == [1, 0]
    opt.step([np.ones(4), np.ones(4)])
    assert list(opt.steps) == [2, 1]
    # b's first real step is a first step: Adam's first step moves each element by lr exactly
    np.testing.assert_allclose(b, 1 - 0.1, rtol=1e-6)


def test_mixed_dtypes_step_together(backend, rng):
    a = rng.standard_normal(5).astype(np.float32)
    b = rng.standard_normal(5)
    ra, rb = a.copy(), b.copy()
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    ref = optim.SGD([ra], lr=0.1, momentum=0.9), optim.SGD([rb], lr=0.1, momentum=0.9)
    for _ in range(3):
        opt.step([np.ones(5, np.float32), np.ones(5)])
        ref[0].step([np.ones(5, np.float32)])
        ref[1].step([np.ones(5)])
    np.testing.assert_array_equal(a, ra)
    np.testing.assert_array_equal(b, rb)


def test_lr_is_settable(backend):
    p = [np.zeros(2)]
    opt = optim.SGD(p, lr=1.0)
    opt.lr = 0.5
    opt.step([np.ones(2)])
    np.testing.assert_array_equal(p[0], [-0.5, -0.5])
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1


def test_many_tiny_tensors_one_call(backend, rng):
    """A ResNet-like list (many tiny tensors and a few large) is stepped correctly across thread chunks."""
    shapes = [(3,), (64,), (1,), (70_001,), (5, 5), (2,), (130_000,), (17,)] * 4
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ref = RefAdam(params, lr=1e-3)
    opt = optim.Adam(params, lr=1e-3)
    for _ in range(3):
        opt.step(grads)
        ref.step(grads)
    for p, r in zip(params, ref.p):
        np.testing.assert_allclose(p, r, rtol=1e-5, atol=1e-6)


def test_options_records_match_the_modules_field_order():
    """The modules read the options records by position: their field order is the records'."""
    from fastdl import _backend
    from fastdl.backends import options
    modules = [m for m in (_backend.cpu_extension(),) if m is not None]
    try:
        from fastdl import _fastdl_cuda
        modules.append(_fastdl_cuda)
    except ImportError:
        pass
    if not modules:
        pytest.skip("no compiled module here")
    records = {name[:-len("Options")].upper(): rec for name, rec in vars(options).items()
               if name.endswith("Options") and isinstance(rec, type) and hasattr(rec, "_fields")}
    assert {"SGD", "ADAM", "RMSPROP", "ADAGRAD", "ADADELTA", "ADAMAX", "NADAM", "LION"} <= set(records)
    for m in modules:
        exported = {k[:-len("_OPTION_FIELDS")] for k in dir(m) if k.endswith("_OPTION_FIELDS")}
        assert exported == set(records), m.__name__  # every record, and no field list without one
        for name, rec in records.items():
            assert getattr(m, f"{name}_OPTION_FIELDS") == rec._fields, (m.__name__, name)
