"""fastdl.optim's RMSprop, Adagrad, Adadelta, Adamax, NAdam and Lion: trajectories against
torch.optim (foreach=False), Lion and the Keras 3 variants against float64 references written
here, state_dict resume, skipped parameters, argument checks and failed steps."""

import contextlib
import math

import numpy as np
import pytest

from fastdl import _backend, optim
from fastdl.backends import numpy_kernels

try:
    import torch
except ImportError:  # torch-oracle tests skip
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

SHAPES = [(1,), (7,), (3, 5), (130,), (0,), (2, 3, 4), (10_007,)]
NAMES = ["RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "Lion"]


def _problem(rng, dtype, shapes=SHAPES):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    targets = [rng.standard_normal(s) for s in shapes]
    return params, targets


def _grads(params, targets, step, dtype):
    # gradient of sum(0.5 (p - target)^2 + 0.1 sin(step) p): changes every step
    return [(np.asarray(p, np.float64) - t + 0.1 * math.sin(step)).astype(dtype) for p, t in zip(params, targets)]


def _own_grads(params, targets, step):
    """_grads in each parameter's own dtype."""
    return [g.astype(p.dtype) for g, p in zip(_grads(params, targets, step, np.float64), params)]


def _ids(v):
    return v if isinstance(v, str) else ",".join(f"{k}={x}" for k, x in v.items())


# ---- against torch.optim -----------------------------------------------------------------------

TORCH_CASES = [
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9)),
    ("RMSprop", dict(lr=1e-2, centered=True)),
    ("RMSprop", dict(lr=1e-2, alpha=0.3, centered=True, momentum=0.5, weight_decay=0.1)),  # lerp's other branch
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-4, weight_decay=0.05, maximize=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True, max_grad_norm=5.0)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, weight_decay=0.1, eps=1e-6)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, maximize=True, max_grad_norm=5.0)),
    ("Adadelta", dict()),
    ("Adadelta", dict(lr=0.5, rho=0.5, eps=1e-4)),
    ("Adadelta", dict(weight_decay=0.1, maximize=True)),
    ("Adadelta", dict(max_grad_norm=5.0)),
    ("Adamax", dict(lr=1e-2)),
    ("Adamax", dict(lr=1e-2, betas=(0.3, 0.9))),  # beta1 < 0.5: torch's lerp takes its other branch
    ("Adamax", dict(lr=1e-2, eps=1e-3, weight_decay=0.1, maximize=True)),
    ("Adamax", dict(lr=1e-2, max_grad_norm=5.0)),
    ("NAdam", dict(lr=1e-2)),
    ("NAdam", dict(lr=1e-2, weight_decay=0.1)),
    ("NAdam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)),
    ("NAdam", dict(lr=1e-2, betas=(0.3, 0.99), momentum_decay=1.0, maximize=True)),
    ("NAdam", dict(lr=1e-2, momentum_decay=0.0, max_grad_norm=5.0)),
]


@contextlib.contextmanager
def _torch_float64_scalars():
    """torch keeps NAdam's mu_product (and the step counts) in the default dtype, float32 unless
    changed: float64 here, as fastdl keeps it."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


@needs_torch
@pytest.mark.parametrize("name,config", TORCH_CASES, ids=_ids)
def test_matches_torch_optim(backend, name, config, dtype, rng):
    params, targets = _problem(rng, dtype)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    tconfig = dict(config)
    max_grad_norm = tconfig.pop("max_grad_norm", None)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **tconfig)
    opt = getattr(optim, name)(params, **config)
    with _torch_float64_scalars():
        for k in range(100):
            opt.step(_grads(params, targets, k, dtype))
            for tp, g in zip(tparams, _grads([t.detach().numpy() for t in tparams], targets, k, dtype)):
                tp.grad = torch.from_numpy(g)
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(tparams, max_grad_norm, foreach=False)
            topt.step()
    tight = dtype == np.float64
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-9 if tight else 5e-5, atol=1e-9 if tight else 5e-5)
    if name == "NAdam":
        for mu, tp in zip(opt.state["mu_product"], tparams):
            assert float(mu) == pytest.approx(float(topt.state[tp]["mu_product"]), rel=1e-15)


# ---- float64 references written here: Lion, and Keras 3's variants -------------------------------

def _lerp(a, b, w):
    return a + w * (b - a)


class RefLion:
    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False, max_grad_norm=None):
        self.p = [p.astype(np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.p]
        self.lr, (self.b1, self.b2), self.wd, self.maximize = lr, betas, weight_decay, maximize
        self.max_grad_norm = max_grad_norm

    def step(self, grads):
        grads = [g.astype(np.float64) for g in grads]
        if self.max_grad_norm is not None:  # torch.nn.utils.clip_grad_norm_'s factor
            norm = math.sqrt(sum(float(np.sum(g * g)) for g in grads))
            grads = [g * min(1.0, self.max_grad_norm / (norm + 1e-6)) for g in grads]
        self.near_zero = []  # where c is within float32 rounding of 0 (its sign is rounding's)
        for i, g in enumerate(grads):
            g = -g if self.maximize else g
            c = self.b1 * self.m[i] + (1 - self.b1) * g
            self.near_zero.append(np.abs(c) <= 1e-6 * (np.abs(self.m[i]) + np.abs(g)))
            self.p[i] = self.p[i] * (1 - self.lr * self.wd)
            self.p[i] = self.p[i] - self.lr * np.sign(c)
            self.m[i] = self.b2 * self.m[i] + (1 - self.b2) * g


class RefKerasRMSprop:
    """keras.optimizers.RMSprop.update_step (Keras 3), rho = alpha."""

    def __init__(self, params, lr, alpha, eps, momentum=0.0, centered=False, weight_decay=0.0):
        self.p = [p.astype(np.float64) for p in params]
        self.v = [np.zeros_like(p) for p in self.p]
        self.a = [np.zeros_like(p) for p in self.p]
        self.b = [np.zeros_like(p) for p in self.p]
        self.lr, self.rho, self.eps, self.mu, self.centered, self.wd = lr, alpha, eps, momentum, centered, weight_decay

    def step(self, grads):
        for i, g in enumerate(grads):
            g = g.astype(np.float64) + self.wd * self.p[i]
            self.v[i] = self.rho * self.v[i] + (1 - self.rho) * g * g
            if self.centered:
                self.a[i] = self.rho * self.a[i] + (1 - self.rho) * g
                denominator = self.v[i] - self.a[i] ** 2 + self.eps
            else:
                denominator = self.v[i] + self.eps
            increment = self.lr * g / np.sqrt(denominator)
            if self.mu > 0:
                self.b[i] = self.mu * self.b[i] + increment
                self.p[i] = self.p[i] - self.b[i]
            else:
                self.p[i] = self.p[i] - increment


class RefKerasAdagrad:
    """keras.optimizers.Adagrad.update_step (Keras 3)."""

    def __init__(self, params, lr, initial_accumulator_value, eps):
        self.p = [p.astype(np.float64) for p in params]
        self.s = [np.full_like(p, initial_accumulator_value) for p in self.p]
        self.lr, self.eps = lr, eps

    def step(self, grads):
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            self.s[i] = self.s[i] + g * g
            self.p[i] = self.p[i] - self.lr * g / np.sqrt(self.s[i] + self.eps)


class RefKerasAdamax:
    """keras.optimizers.Adamax.update_step (Keras 3)."""

    def __init__(self, params, lr, betas, eps):
        self.p = [p.astype(np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.p]
        self.u = [np.zeros_like(p) for p in self.p]
        self.lr, (self.b1, self.b2), self.eps, self.t = lr, betas, eps, 0

    def step(self, grads):
        self.t += 1
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            self.m[i] = self.m[i] + (g - self.m[i]) * (1 - self.b1)
            self.u[i] = np.maximum(self.b2 * self.u[i], np.abs(g))
            self.p[i] = self.p[i] - (self.lr * self.m[i]) / ((1 - self.b1 ** self.t) * (self.u[i] + self.eps))


class RefKerasNadam:
    """keras.optimizers.Nadam (Keras 3): u_t = beta1 (1 - 0.5 * 0.96^t), the product kept over steps."""

    def __init__(self, params, lr, betas, eps):
        self.p = [p.astype(np.float64) for p in params]
        self.m = [np.zeros_like(p) for p in self.p]
        self.v = [np.zeros_like(p) for p in self.p]
        self.lr, (self.b1, self.b2), self.eps, self.t, self.u_product = lr, betas, eps, 0, 1.0

    def step(self, grads):
        self.t += 1
        u_t = self.b1 * (1.0 - 0.5 * 0.96 ** self.t)
        u_t_1 = self.b1 * (1.0 - 0.5 * 0.96 ** (self.t + 1))
        self.u_product *= u_t
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            self.m[i] = self.m[i] + (g - self.m[i]) * (1 - self.b1)
            self.v[i] = self.v[i] + (g * g - self.v[i]) * (1 - self.b2)
            m_hat = u_t_1 * self.m[i] / (1 - self.u_product * u_t_1) + (1 - u_t) * g / (1 - self.u_product)
            v_hat = self.v[i] / (1 - self.b2 ** self.t)
            self.p[i] = self.p[i] - m_hat * self.lr / (np.sqrt(v_hat) + self.eps)


def _run(opt, ref, params, targets, dtype, steps=60):
    """Steps opt and ref side by side, each on the gradient of its own parameters (in float32, ref
    sees the float32 gradient of opt's)."""
    for k in range(steps):
        grads = _grads(params, targets, k, dtype)
        opt.step(grads)
        ref.step(grads if dtype == np.float32 else _grads(ref.p, targets, k, np.float64))


def _assert_trajectory(params, ref, dtype):
    rtol = 1e-10 if dtype == np.float64 else 5e-5
    for p, r in zip(params, ref.p):
        np.testing.assert_allclose(p, r, rtol=rtol, atol=rtol)


KERAS_CASES = [
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-7), dict(eps_inside_sqrt=True)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-7, centered=True), dict(eps_inside_sqrt=True)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, eps=1e-7, momentum=0.9), dict(eps_inside_sqrt=True, lr_in_momentum=True)),
    ("RMSprop", dict(lr=1e-2, alpha=0.3, eps=1e-3, momentum=0.5, centered=True, weight_decay=0.1),
     dict(eps_inside_sqrt=True, lr_in_momentum=True)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.1, eps=1e-7), dict(eps_inside_sqrt=True)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.0, eps=1e-3), dict(eps_inside_sqrt=True)),
    ("Adamax", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-7), dict(eps_outside_max=True)),
    ("Adamax", dict(lr=1e-2, betas=(0.3, 0.9), eps=1e-2), dict(eps_outside_max=True)),
    ("NAdam", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-7), dict(momentum_decay=1.0)),
    ("NAdam", dict(lr=1e-2, betas=(0.3, 0.99), eps=1e-3), dict(momentum_decay=1.0)),
]
KERAS_REFS = {"RMSprop": RefKerasRMSprop, "Adagrad": RefKerasAdagrad, "Adamax": RefKerasAdamax,
              "NAdam": RefKerasNadam}


@pytest.mark.parametrize("name,config,flags", KERAS_CASES, ids=lambda v: _ids(v) if v else "-")
def test_keras_variants_match_keras_formulas(backend, name, config, flags, dtype, rng):
    params, targets = _problem(rng, dtype)
    ref = KERAS_REFS[name](params, **config)
    opt = getattr(optim, name)(params, **config, **flags)
    _run(opt, ref, params, targets, dtype)
    _assert_trajectory(params, ref, dtype)
    if "momentum_buffer" in opt.state:  # Keras's buffer holds lr g / d (the same steps at a constant lr)
        rtol = 1e-10 if dtype == np.float64 else 5e-5
        for b, r in zip(opt.state["momentum_buffer"], ref.b):
            np.testing.assert_allclose(b, r, rtol=rtol, atol=rtol * 1e-2)


LION_CONFIGS = [
    dict(lr=1e-3),
    dict(lr=1e-3, betas=(0.3, 0.99)),  # 1 - beta1 >= 0.5: torch's lerp's other branch
    dict(lr=1e-3, betas=(0.95, 0.98), weight_decay=0.5),
    dict(lr=1e-3, weight_decay=0.1, maximize=True),
    dict(lr=1e-3, betas=(0.5, 0.9), max_grad_norm=2.0),  # clipping rescales m against g
]


@pytest.mark.parametrize("config", LION_CONFIGS, ids=_ids)
def test_lion_trajectory_float64(backend, config, rng):
    params, targets = _problem(rng, np.float64)
    ref = RefLion(params, **config)
    opt = optim.Lion(params, **config)
    _run(opt, ref, params, targets, np.float64)
    _assert_trajectory(params, ref, np.float64)
    for m, r in zip(opt.state["exp_avg"], ref.m):
        np.testing.assert_allclose(m, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("config", LION_CONFIGS, ids=_ids)
def test_lion_float32_each_step(backend, config, rng):
    """float32, one step at a time from the optimizer's own state: where the float64 reference's
    interpolation is within rounding of 0 its sign is not the test's to decide (a handful of
    elements at most)."""
    params, targets = _problem(rng, np.float32)
    opt = optim.Lion(params, **config)
    ambiguous = total = 0
    for k in range(40):
        grads = _grads(params, targets, k, np.float32)
        ref = RefLion(params, **config)
        ref.m = [m.astype(np.float64) for m in opt.state["exp_avg"]]
        ref.step(grads)
        opt.step(grads)
        for p, r, z in zip(params, ref.p, ref.near_zero):
            np.testing.assert_allclose(p[~z], r[~z], rtol=2e-7, atol=1e-7)
            ambiguous, total = ambiguous + int(z.sum()), total + z.size
        for m, r in zip(opt.state["exp_avg"], ref.m):
            np.testing.assert_allclose(m, r, rtol=2e-6, atol=1e-7)
    assert ambiguous <= total * 1e-4


# ---- state: resume, skipped parameters -----------------------------------------------------------

RESUME_CONFIGS = {
    "RMSprop": dict(lr=1e-2, momentum=0.9, centered=True),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2),
    "Adadelta": dict(lr=0.5, weight_decay=0.01),
    "Adamax": dict(lr=1e-2),
    "NAdam": dict(lr=1e-2, momentum_decay=0.1),
    "Lion": dict(lr=1e-3, weight_decay=0.1),
}


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resume_is_bit_exact(backend, name, rng):
    config = RESUME_CONFIGS[name]
    shapes = [(7,), (3, 5), (130,)]
    params = [rng.standard_normal(s).astype(d) for s, d in zip(shapes, [np.float32, np.float64, np.float32])]
    targets = [rng.standard_normal(s) for s in shapes]
    cls = getattr(optim, name)
    a_params = [p.copy() for p in params]
    a = cls(a_params, **config)
    for k in range(20):
        a.step(_own_grads(a_params, targets, k))
    saved = a.state_dict()
    assert set(saved["state"]) == set(a.state)
    saved_params = [p.copy() for p in a_params]
    for k in range(20, 40):
        a.step(_own_grads(a_params, targets, k))

    b_params = saved_params
    b = cls(b_params, **dict(config, lr=123.0))  # another lr: load_state_dict restores it
    b.load_state_dict(saved)
    assert b.lr == config["lr"]
    for k in range(20, 40):
        b.step(_own_grads(b_params, targets, k))
    for pa, pb in zip(a_params, b_params):
        np.testing.assert_array_equal(pa, pb)
    for key in a.state:
        for sa, sb in zip(a.state[key], b.state[key]):
            np.testing.assert_array_equal(sa, sb)


def test_nadam_state_dict_keeps_mu_product(backend):
    p = [np.ones(3), np.ones(2)]
    opt = optim.NAdam(p, lr=0.1)
    opt.step([np.ones(3), None])
    sd = opt.state_dict()
    mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004)
    assert [float(m) for m in sd["state"]["mu_product"]] == [mu1, 1.0]
    assert all(m.dtype == np.float64 and m.shape == () for m in sd["state"]["mu_product"])
    opt.step([np.ones(3), np.ones(2)])
    assert float(sd["state"]["mu_product"][0]) == mu1  # a copy


@pytest.mark.parametrize("name", NAMES)
def test_none_grad_skips_parameter_and_its_step_count(backend, name, rng):
    config = dict(RESUME_CONFIGS[name], lr=0.05)
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    b0 = b.copy()
    opt = getattr(optim, name)([a, b], **config)
    state0 = {k: [np.array(x, copy=True) for x in v] for k, v in opt.state.items()}
    for _ in range(3):
        opt.step([rng.standard_normal(6), None])
    assert list(opt.steps) == [3, 0]
    np.testing.assert_array_equal(b, b0)
    for k, v in opt.state.items():
        np.testing.assert_array_equal(v[1], state0[k][1])
    # b's first real step is a first step (its own count: bias corrections, lr_decay, mu_t), as a
    # fresh optimizer's on b alone
    fresh_b = b.copy()
    fresh = getattr(optim, name)([fresh_b], **config)
    g_b = rng.standard_normal(6)
    opt.step([rng.standard_normal(6), g_b])
    fresh.step([g_b])
    assert list(opt.steps) == [4, 1]
    np.testing.assert_array_equal(b, fresh_b)
    assert not np.array_equal(b, b0)


# ---- argument checks -----------------------------------------------------------------------------

BAD_ARGS = [
    ("RMSprop", dict(lr=-1.0), ValueError, "lr"),
    ("RMSprop", dict(alpha=1.0), ValueError, "alpha"),
    ("RMSprop", dict(alpha=-0.1), ValueError, "alpha"),
    ("RMSprop", dict(eps=-1e-8), ValueError, "eps"),
    ("RMSprop", dict(momentum=-0.5), ValueError, "momentum"),
    ("RMSprop", dict(weight_decay=-1), ValueError, "weight_decay"),
    ("RMSprop", dict(centered="yes"), TypeError, "centered"),
    ("RMSprop", dict(eps_inside_sqrt=1), TypeError, "eps_inside_sqrt"),
    ("RMSprop", dict(lr_in_momentum=None), TypeError, "lr_in_momentum"),
    ("RMSprop", dict(max_grad_norm=0.0), ValueError, "max_grad_norm"),
    ("Adagrad", dict(lr_decay=-0.1), ValueError, "lr_decay"),
    ("Adagrad", dict(initial_accumulator_value=-1), ValueError, "initial_accumulator_value"),
    ("Adagrad", dict(eps=float("nan")), ValueError, "eps"),
    ("Adagrad", dict(maximize="False"), TypeError, "maximize"),
    ("Adadelta", dict(rho=1.0), ValueError, "rho"),
    ("Adadelta", dict(rho="0.9"), TypeError, "rho"),
    ("Adadelta", dict(eps=-1.0), ValueError, "eps"),
    ("Adadelta", dict(lr=float("inf")), ValueError, "lr"),
    ("Adamax", dict(betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    ("Adamax", dict(betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    ("Adamax", dict(betas=0.9), TypeError, "betas"),
    ("Adamax", dict(eps_outside_max="no"), TypeError, "eps_outside_max"),
    ("NAdam", dict(momentum_decay=-1e-3), ValueError, "momentum_decay"),
    ("NAdam", dict(decoupled_weight_decay=0), TypeError, "decoupled_weight_decay"),
    ("NAdam", dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    ("NAdam", dict(weight_decay=-0.1), ValueError, "weight_decay"),
    ("Lion", dict(betas=(0.9,)), TypeError, "betas"),
    ("Lion", dict(betas=(-0.1, 0.99)), ValueError, r"betas\[0\]"),
    ("Lion", dict(weight_decay=-1.0), ValueError, "weight_decay"),
]


@pytest.mark.parametrize("name,kwargs,error,match", BAD_ARGS, ids=lambda v: _ids(v) if isinstance(v, dict) else
                         v if isinstance(v, str) else None)
def test_bad_hyperparameters_name_the_argument(name, kwargs, error, match):
    with pytest.raises(error, match=match):
        getattr(optim, name)([np.zeros(3)], **kwargs)


def test_defaults_are_torchs():
    p = [np.zeros(2)]
    assert optim.RMSprop(p).hyperparams == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                                                centered=False, maximize=False, max_grad_norm=None,
                                                eps_inside_sqrt=False, lr_in_momentum=False)
    assert optim.Adagrad(p).hyperparams == dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                                                eps=1e-10, maximize=False, max_grad_norm=None, eps_inside_sqrt=False)
    assert optim.Adadelta(p).hyperparams == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False,
                                                 max_grad_norm=None)
    assert optim.Adamax(p).hyperparams == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                               maximize=False, max_grad_norm=None, eps_outside_max=False)
    assert optim.NAdam(p).hyperparams == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                                              momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False,
                                              max_grad_norm=None)
    assert optim.Lion(p).hyperparams == dict(lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, maximize=False,
                                             max_grad_norm=None)
    assert sorted(optim.RMSprop(p, momentum=0.9, centered=True).state) == ["grad_avg", "momentum_buffer",
                                                                           "square_avg"]
    assert np.all(optim.Adagrad([np.zeros(3)], initial_accumulator_value=0.25).state["sum"][0] == 0.25)


# ---- a step that raises changes nothing ----------------------------------------------------------

def _setup(name, **kw):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)),
              rng.standard_normal(4).astype(np.float32), rng.standard_normal(3)]
    opt = getattr(optim, name)(params, **kw)
    for _ in range(2):
        opt.step(_random_grads(params, rng))
    return params, opt, rng


def _random_grads(params, rng):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def _snapshot(params, opt):
    return ([p.copy() for p in params], {k: [np.array(a, copy=True) for a in v] for k, v in opt.state.items()},
            opt.steps, opt.iterations, dict(opt.hyperparams))


def _assert_unchanged(params, opt, snap):
    ps, state, steps, iterations, _ = snap
    for p, q in zip(params, ps):
        np.testing.assert_array_equal(p, q)
    assert opt.state.keys() == state.keys()
    for k, arrays in state.items():
        assert len(opt.state[k]) == len(arrays)
        for a, b in zip(opt.state[k], arrays):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt.steps, steps)
    assert opt.iterations == iterations


def _set_state(name, index, value):
    def mutate(params, opt):
        opt.state[name][index] = value(params[index]) if callable(value) else value
    return mutate


def _set_hyper(key, value):
    def mutate(params, opt):
        opt.hyperparams[key] = value
    return mutate


FAIL_CASES = [
    ("RMSprop", dict(lr=0.01, momentum=0.9), "square_avg wrong shape", _set_state("square_avg", 3, lambda p: np.zeros(7)),
     ValueError),
    ("RMSprop", dict(lr=0.01, momentum=0.9), "momentum_buffer read-only",
     lambda ps, o: setattr(o.state["momentum_buffer"][3].flags, "writeable", False), ValueError),
    ("RMSprop", dict(lr=0.01), "centered without grad_avg", _set_hyper("centered", True), ValueError),
    ("RMSprop", dict(lr=0.01), "alpha=1", _set_hyper("alpha", 1.0), ValueError),
    ("Adagrad", dict(lr=0.1), "sum float32", _set_state("sum", 3, lambda p: np.zeros(p.shape, np.float32)), ValueError),
    ("Adagrad", dict(lr=0.1), "lr_decay=-1", _set_hyper("lr_decay", -1.0), ValueError),
    ("Adadelta", dict(), "acc_delta is the param", _set_state("acc_delta", 3, lambda p: p), ValueError),
    ("Adadelta", dict(), "rho='x'", _set_hyper("rho", "x"), TypeError),
    ("Adamax", dict(lr=0.01), "exp_inf a list", _set_state("exp_inf", 3, lambda p: [0.0] * p.size), TypeError),
    ("Adamax", dict(lr=0.01), "param read-only", lambda ps, o: setattr(ps[3].flags, "writeable", False), ValueError),
    ("NAdam", dict(lr=0.01), "mu_product > 1", _set_state("mu_product", 3, np.array(1.5)), ValueError),
    ("NAdam", dict(lr=0.01), "mu_product nan", _set_state("mu_product", 3, float("nan")), ValueError),
    ("NAdam", dict(lr=0.01), "mu_product an array", _set_state("mu_product", 3, np.ones(3)), ValueError),
    ("NAdam", dict(lr=0.01), "mu_product a string", _set_state("mu_product", 3, "0.5"), TypeError),
    ("NAdam", dict(lr=0.01), "mu_product list short", lambda ps, o: o.state["mu_product"].pop(), ValueError),
    ("NAdam", dict(lr=0.01), "exp_avg_sq wrong shape", _set_state("exp_avg_sq", 3, lambda p: np.zeros(2)), ValueError),
    ("NAdam", dict(lr=0.01), "momentum_decay=-1", _set_hyper("momentum_decay", -1.0), ValueError),
    ("Lion", dict(lr=0.01), "exp_avg strided", _set_state("exp_avg", 3, lambda p: np.zeros(2 * p.size)[::2]),
     ValueError),
    ("Lion", dict(lr=0.01), "betas=(0.9, 2)", _set_hyper("betas", (0.9, 2.0)), ValueError),
]


@pytest.mark.parametrize("name,kw,label,mutate,error", FAIL_CASES, ids=[f"{c[0]}-{c[2]}" for c in FAIL_CASES])
def test_failed_step_changes_nothing(backend, name, kw, label, mutate, error):
    params, opt, rng = _setup(name, **kw)
    grads = _random_grads(params, rng)
    mutate(params, opt)
    snap = _snapshot(params, opt)
    with pytest.raises(error):
        opt.step(grads)
    _assert_unchanged(params, opt, snap)


def test_nadam_kernel_failure_keeps_mu_product(monkeypatch):
    """mu_product is stored only once the kernel returned: a kernel that raises leaves it."""
    p = [np.ones(3), np.ones(2)]
    with _backend.use_host("numpy"):
        opt = optim.NAdam(p, lr=0.1)
        opt.step([np.ones(3), np.ones(2)])
        snap = _snapshot(p, opt)

        def broken(*args):
            raise RuntimeError("kernel failed")
        monkeypatch.setattr(numpy_kernels, "nadam_step", broken)
        with pytest.raises(RuntimeError):
            opt.step([np.ones(3), np.ones(2)])
        _assert_unchanged(p, opt, snap)


@pytest.mark.parametrize("bad,error", [(None, ValueError), ([0.5], ValueError), ([0.5, 2.0], ValueError),
                                       ([0.5, "x"], TypeError), ([np.ones(2), 0.5], ValueError)],
                         ids=["missing", "short", "above-1", "string", "array"])
def test_nadam_load_state_dict_checks_mu_product_first(backend, bad, error):
    p = [np.ones(3), np.ones(2)]
    opt = optim.NAdam(p, lr=0.1)
    opt.step([np.ones(3), np.ones(2)])
    d = opt.state_dict()
    other = optim.NAdam([np.zeros(3), np.zeros(2)], lr=0.5)
    snap = _snapshot(other.params, other)
    if bad is None:
        del d["state"]["mu_product"]
    else:
        d["state"]["mu_product"] = bad
    with pytest.raises(error, match="mu_product"):
        other.load_state_dict(d)
    _assert_unchanged(other.params, other, snap)
    assert other.hyperparams["lr"] == 0.5


def test_options_records_match_the_modules_field_order():
    """Where a compiled module exports an adaptive optimizer's field order, it is the record's."""
    from fastdl.backends import options
    modules = [m for m in (_backend.cpu_extension(),) if m is not None]
    try:
        from fastdl import _fastdl_cuda
        modules.append(_fastdl_cuda)
    except ImportError:
        pass
    checked = 0
    for m in modules:
        for record in ("Rmsprop", "Adagrad", "Adadelta", "Adamax", "Nadam", "Lion"):
            fields = getattr(m, f"{record.upper()}_OPTION_FIELDS", None)
            if fields is not None:
                assert tuple(fields) == getattr(options, f"{record}Options")._fields, (m.__name__, record)
                checked += 1
    if not checked:
        pytest.skip("no compiled module exports the adaptive optimizers' field order yet")
