"""The adaptive optimizers' kernels (RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion) called directly, on
every implementation (the NumPy fallback, the C++ module on each SIMD build, the CUDA module): one call
over several tensors of different sizes and step counts against float64 references written here
(torch.optim's single-tensor rules and Keras 3's variants, from their documented formulas), 16-bit
parameters with their state in their dtype or in float32 (the raw entry points), extreme and NaN
gradients, and the arguments the glue refuses."""

import math

import numpy as np
import pytest

from fastdl import _backend
from fastdl.backends.options import (AdadeltaOptions, AdagradOptions, AdamaxOptions, AdamOptions, LionOptions,
                                     NadamOptions, RmspropOptions)
from conftest import BACKENDS, cuda_unavailable

SIZES = [0, 1, 37, 100_003, 5, 16]
STEPS = [1, 4, 2, 7, 1, 30]  # each tensor's own count, this step included


# ---- float64 references, one tensor: (new p, {state name: new array}) ------------------------------

def _prep(g, p, o, l2=True):
    g = g * o.clip_coef
    if o.maximize:
        g = -g
    if l2:
        g = g + o.weight_decay * p
    return g


def ref_rmsprop(p, g, s, t, o, mu_product):
    g = _prep(g, p, o)
    sa = o.alpha * s["square_avgs"] + (1 - o.alpha) * g * g
    new = {"square_avgs": sa}
    d2 = sa
    if o.centered:
        ga = new["grad_avgs"] = o.alpha * s["grad_avgs"] + (1 - o.alpha) * g
        d2 = sa - ga * ga
    d = np.sqrt(d2 + o.eps) if o.eps_inside_sqrt else np.sqrt(d2) + o.eps
    if o.momentum:
        if o.lr_in_momentum:
            b = new["momentum_buffers"] = o.momentum * s["momentum_buffers"] + o.lr * g / d
            return p - b, new
        b = new["momentum_buffers"] = o.momentum * s["momentum_buffers"] + g / d
        return p - o.lr * b, new
    return p - o.lr * g / d, new


def ref_adagrad(p, g, s, t, o, mu_product):
    g = _prep(g, p, o)
    clr = o.lr / (1 + (t - 1) * o.lr_decay)
    total = s["sums"] + g * g
    std = np.sqrt(total + o.eps) if o.eps_inside_sqrt else np.sqrt(total) + o.eps
    return p - clr * g / std, {"sums": total}


def ref_adadelta(p, g, s, t, o, mu_product):
    g = _prep(g, p, o)
    sa = o.rho * s["square_avgs"] + (1 - o.rho) * g * g
    delta = np.sqrt(s["acc_deltas"] + o.eps) / np.sqrt(sa + o.eps) * g
    acc = o.rho * s["acc_deltas"] + (1 - o.rho) * delta * delta
    return p - o.lr * delta, {"square_avgs": sa, "acc_deltas": acc}


def ref_adamax(p, g, s, t, o, mu_product):
    g = _prep(g, p, o)
    m = o.beta1 * s["exp_avgs"] + (1 - o.beta1) * g
    clr = o.lr / (1 - o.beta1 ** t)
    if o.eps_outside_max:
        u = np.maximum(o.beta2 * s["exp_infs"], np.abs(g))
        return p - clr * m / (u + o.eps), {"exp_avgs": m, "exp_infs": u}
    u = np.maximum(o.beta2 * s["exp_infs"], np.abs(g) + o.eps)
    return p - clr * m / u, {"exp_avgs": m, "exp_infs": u}


def nadam_mu(o, t):
    return o.beta1 * (1 - 0.5 * 0.96 ** (t * o.momentum_decay))


def ref_nadam(p, g, s, t, o, mu_product):
    g = _prep(g, p, o, l2=not o.decoupled)
    if o.decoupled:
        p = p * (1 - o.lr * o.weight_decay)
    mu, mu_next = nadam_mu(o, t), nadam_mu(o, t + 1)
    m = o.beta1 * s["exp_avgs"] + (1 - o.beta1) * g
    v = o.beta2 * s["exp_avg_sqs"] + (1 - o.beta2) * g * g
    denom = np.sqrt(v / (1 - o.beta2 ** t)) + o.eps
    p = p - o.lr * (1 - mu) / (1 - mu_product) * g / denom - o.lr * mu_next / (1 - mu_product * mu_next) * m / denom
    return p, {"exp_avgs": m, "exp_avg_sqs": v}


def ref_lion(p, g, s, t, o, mu_product):
    g = _prep(g, p, o, l2=False)
    p = p * (1 - o.lr * o.weight_decay)
    c = o.beta1 * s["exp_avgs"] + (1 - o.beta1) * g
    return p - o.lr * np.sign(c), {"exp_avgs": o.beta2 * s["exp_avgs"] + (1 - o.beta2) * g}


# name: (options record, the kernel's state lists in order, reference)
KERNELS = {
    "rmsprop": (RmspropOptions, ["square_avgs", "momentum_buffers", "grad_avgs"], ref_rmsprop),
    "adagrad": (AdagradOptions, ["sums"], ref_adagrad),
    "adadelta": (AdadeltaOptions, ["square_avgs", "acc_deltas"], ref_adadelta),
    "adamax": (AdamaxOptions, ["exp_avgs", "exp_infs"], ref_adamax),
    "nadam": (NadamOptions, ["exp_avgs", "exp_avg_sqs"], ref_nadam),
    "lion": (LionOptions, ["exp_avgs"], ref_lion),
}
NONNEGATIVE = {"square_avgs", "sums", "acc_deltas", "exp_infs", "exp_avg_sqs"}

CASES = [
    ("rmsprop", dict(lr=1e-2)),
    ("rmsprop", dict(lr=1e-2, momentum=0.9, weight_decay=0.1)),
    ("rmsprop", dict(lr=1e-2, centered=True, maximize=True)),
    ("rmsprop", dict(lr=1e-2, alpha=0.3, centered=True, momentum=0.5, clip_coef=0.25)),  # lerp's other branch
    ("rmsprop", dict(lr=1e-2, eps=1e-3, eps_inside_sqrt=True)),  # Keras 3
    ("rmsprop", dict(lr=1e-2, eps=1e-3, centered=True, momentum=0.9, eps_inside_sqrt=True, lr_in_momentum=True)),
    ("rmsprop", dict(lr=1e-2, lr_in_momentum=True)),  # without momentum the flag changes nothing
    ("adagrad", dict(lr=0.1)),
    ("adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, maximize=True)),
    ("adagrad", dict(lr=0.1, eps=1e-7, eps_inside_sqrt=True, clip_coef=0.5)),  # Keras 3
    ("adadelta", dict(lr=1.0)),
    ("adadelta", dict(lr=0.5, rho=0.3, eps=1e-4, weight_decay=0.1, maximize=True, clip_coef=2.0)),
    ("adamax", dict(lr=2e-3)),
    ("adamax", dict(lr=2e-3, beta1=0.3, weight_decay=0.1, maximize=True)),
    ("adamax", dict(lr=2e-3, eps=1e-3, eps_outside_max=True, clip_coef=0.5)),  # Keras 3
    ("nadam", dict(lr=2e-3)),
    ("nadam", dict(lr=2e-3, beta1=0.3, weight_decay=0.1, maximize=True, clip_coef=0.5)),
    ("nadam", dict(lr=2e-3, weight_decay=0.1, decoupled=True, momentum_decay=1.0)),  # NAdamW; Keras's decay
    ("lion", dict(lr=1e-3)),
    ("lion", dict(lr=1e-3, beta1=0.3, beta2=0.7, weight_decay=0.5, maximize=True, clip_coef=0.5)),
]


def case_id(case):
    return case[0] + "-" + ",".join(f"{k}={v}" for k, v in case[1].items())


def used_states(name, o):
    """The state lists the configuration uses (the others are passed as None)."""
    states = KERNELS[name][1]
    if name == "rmsprop":
        return [s for s in states if (s != "momentum_buffers" or o.momentum) and (s != "grad_avgs" or o.centered)]
    return states


def mu_products_of(o, steps):
    return np.array([math.prod(nadam_mu(o, k) for k in range(1, int(t) + 1)) for t in steps], np.float64)


def make_problem(rng, name, o, sizes=SIZES, steps=STEPS, dtype=np.float64):
    """params, grads, {state name: [arrays]} (float64; state values as a run would leave them)."""
    params = [rng.standard_normal(n) for n in sizes]
    grads = [rng.standard_normal(n) * 2 for n in sizes]
    state = {}
    for s in used_states(name, o):
        if s in NONNEGATIVE:
            state[s] = [rng.uniform(0.5, 1.5, n) for n in sizes]
        else:
            state[s] = [rng.standard_normal(n) * 0.5 for n in sizes]
    if "grad_avgs" in state:  # a centered variance that stays well away from 0
        state["square_avgs"] = [ga * ga + sa for ga, sa in zip(state["grad_avgs"], state["square_avgs"])]
    cast = lambda xs: [x.astype(dtype) for x in xs]  # noqa: E731
    return cast(params), cast(grads), {k: cast(v) for k, v in state.items()}, np.array(steps, np.int64)


def reference(name, o, params, grads, state, steps, mu_products):
    ref_fn = KERNELS[name][2]
    out_p, out_s = [], {k: [] for k in state}
    for i, (p, g) in enumerate(zip(params, grads)):
        s = {k: v[i].astype(np.float64) for k, v in state.items()}
        mp = float(mu_products[i]) if mu_products is not None else None
        with np.errstate(all="ignore"):
            p_new, s_new = ref_fn(p.astype(np.float64), g.astype(np.float64), s, int(steps[i]), o, mp)
        out_p.append(p_new)
        for k in state:
            out_s[k].append(s_new[k])
    return out_p, out_s


def call(kernels, name, o, params, grads, state, steps, mu_products):
    lists = [state.get(s) for s in KERNELS[name][1]]
    extra = [mu_products] if name == "nadam" else []
    getattr(kernels, f"{name}_step")(params, grads, *lists, *extra, steps, o)


def run_on(arrays, name, o, params, grads, state, steps):
    """One kernel call on `arrays`' implementation; returns (params, state) as NumPy arrays."""
    mu = mu_products_of(o, steps) if name == "nadam" else None
    dev_p = [arrays.asarray(p.copy()) for p in params]
    dev_g = [arrays.asarray(g) for g in grads]
    dev_s = {k: [arrays.asarray(x.copy()) for x in v] for k, v in state.items()}
    kernels = _backend.kernels_for(arrays.asarray(np.zeros(1)))
    call(kernels, name, o, dev_p, dev_g, dev_s, steps, mu)
    return [arrays.numpy(p) for p in dev_p], {k: [arrays.numpy(x) for x in v] for k, v in dev_s.items()}, mu


def check(got, ref, before, rtol, what):
    """got against the float64 ref, to rtol of the terms' magnitude (|before| + |change|) elementwise."""
    got64 = np.asarray(got, np.float64)
    scale = np.abs(before.astype(np.float64)) + np.abs(ref - before.astype(np.float64))
    err = np.abs(got64 - ref)
    bad = ~(err <= rtol * scale + 1e-300)
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} differ; first at {np.flatnonzero(bad)[0]}: "
                           f"got {got64[bad][0]!r}, ref {ref[bad][0]!r}")


def lion_ambiguous(name, o, grads, state, rtol):
    """Per tensor, the elements whose Lion update direction c is within rounding of 0 (either sign is right)."""
    if name != "lion":
        return None
    out = []
    for g, m in zip(grads, state["exp_avgs"]):
        g = g.astype(np.float64) * o.clip_coef * (-1 if o.maximize else 1)
        c = o.beta1 * m.astype(np.float64) + (1 - o.beta1) * g
        out.append(np.abs(c) <= 16 * rtol * (np.abs(m) + np.abs(g)))
    return out


def compare(name, o, got_p, got_s, params, grads, state, steps, mu, rtol):
    ref_p, ref_s = reference(name, o, params, grads, state, steps, mu)
    skip = lion_ambiguous(name, o, grads, state, rtol)
    for i in range(len(params)):
        keep = slice(None) if skip is None else ~skip[i]
        check(got_p[i][keep], ref_p[i][keep], params[i][keep], rtol, f"params[{i}] (size {params[i].size})")
        for k in state:
            check(got_s[k][i], ref_s[k][i], state[k][i], rtol, f"{k}[{i}]")


RTOL = {np.dtype(np.float32): 4e-6, np.dtype(np.float64): 1e-14}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_one_call_over_many_tensors_matches_float64(arrays, case, dtype, rng):
    name, kw = case
    o = KERNELS[name][0](**kw)
    params, grads, state, steps = make_problem(rng, name, o, dtype=dtype)
    got_p, got_s, mu = run_on(arrays, name, o, params, grads, state, steps)
    compare(name, o, got_p, got_s, params, grads, state, steps, mu, 8 * RTOL[dtype])
    for k, v in got_s.items():
        assert all(x.dtype == dtype for x in v), k


CARRY_CASES = [CASES[3], CASES[8], CASES[11], CASES[13], CASES[17], CASES[19]]  # one per optimizer


@pytest.mark.parametrize("case", CARRY_CASES, ids=case_id)
def test_consecutive_steps_carry_the_state(arrays, case, rng):
    """Three calls, the step counts advancing: each call starts from the state the last one left."""
    name, kw = case
    o = KERNELS[name][0](**kw)
    sizes, steps = [3, 37, 1000], np.array([1, 5, 2], np.int64)
    params, _, state, _ = make_problem(rng, name, o, sizes=sizes, steps=steps)
    state = {k: [np.zeros_like(x) for x in v] for k, v in state.items()}
    kernels = _backend.kernels_for(arrays.asarray(np.zeros(1)))
    dev_p = [arrays.asarray(p.copy()) for p in params]
    dev_s = {k: [arrays.asarray(x.copy()) for x in v] for k, v in state.items()}
    ref_p, ref_s = [p.copy() for p in params], {k: [x.copy() for x in v] for k, v in state.items()}
    for _ in range(3):
        grads = [rng.standard_normal(n) for n in sizes]
        mu = mu_products_of(o, steps) if name == "nadam" else None
        call(kernels, name, o, dev_p, [arrays.asarray(g) for g in grads], dev_s, steps, mu)
        ref_p, ref_s = reference(name, o, ref_p, grads, ref_s, steps, mu)
        steps = steps + 1
    for i in range(len(sizes)):
        np.testing.assert_allclose(arrays.numpy(dev_p[i]), ref_p[i], rtol=1e-12, atol=1e-12)
        for k in state:
            np.testing.assert_allclose(arrays.numpy(dev_s[k][i]), ref_s[k][i], rtol=1e-12, atol=1e-12)


# ---- extreme and non-finite gradients --------------------------------------------------------------

EXTREME_GRADS = np.array([1e30, -1e30, 0.0, -0.0, 1e-30, -1e-30, 1e-8, -3.0, 5e4, 1e15, -1e18])


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_extreme_gradients_stay_finite(arrays, case, dtype, rng):
    """Huge, zero and tiny gradients: the parameters stay finite where the math allows. In float64 every
    value is held to the reference; in float32 g^2 overflows at 1e30 (as in torch's float32 step) and
    only the parameters' finiteness is asked for, except for centered RMSprop, whose sa - ga^2 is then
    inf - inf."""
    name, kw = case
    o = KERNELS[name][0](**kw)
    n = EXTREME_GRADS.size
    params, _, state, steps = make_problem(rng, name, o, sizes=[n], steps=[3])
    grads = [EXTREME_GRADS.astype(dtype)]
    params = [p.astype(dtype) for p in params]
    state = {k: [x.astype(dtype) for x in v] for k, v in state.items()}
    got_p, got_s, mu = run_on(arrays, name, o, params, grads, state, steps)
    if dtype == np.float64:
        ref_p, _ = reference(name, o, params, grads, state, steps, mu)
        assert np.isfinite(ref_p[0]).all()
        compare(name, o, got_p, got_s, params, grads, state, steps, mu, 8 * RTOL[dtype])
    elif not (name == "rmsprop" and o.centered):
        assert np.isfinite(got_p[0]).all(), got_p[0]


@pytest.mark.parametrize("eps_outside_max", [False, True])
def test_adamax_nan_gradient_propagates(arrays, eps_outside_max, dtype):
    """torch's max (amax) propagates NaN: a NaN gradient makes u and the parameter NaN, never dropped."""
    o = AdamaxOptions(lr=1e-2, eps_outside_max=eps_outside_max)
    p = np.ones(37, dtype)
    g = np.full(37, 0.5, dtype)
    g[[0, 17, 36]] = np.nan
    u0 = np.full(37, 2.0, dtype)  # larger than |g|: a max that ignored NaN would keep beta2 u
    got_p, got_s, _ = run_on(arrays, "adamax", o, [p], [g], {"exp_avgs": [np.zeros(37, dtype)], "exp_infs": [u0]},
                             np.array([1], np.int64))
    nan = np.isnan(g)
    assert np.isnan(got_s["exp_infs"][0][nan]).all() and np.isnan(got_p[0][nan]).all()
    assert np.isfinite(got_s["exp_infs"][0][~nan]).all() and np.isfinite(got_p[0][~nan]).all()


def test_lion_sign_of_zero_and_nan(arrays, dtype):
    """sign(0) = 0 leaves the parameter as it is; sign(NaN) = NaN."""
    o = LionOptions(lr=0.1)
    p = np.ones(3, dtype)
    got_p, got_s, _ = run_on(arrays, "lion", o, [p], [np.array([0.0, np.nan, 2.0], dtype)],
                             {"exp_avgs": [np.zeros(3, dtype)]}, np.array([1], np.int64))
    assert got_p[0][0] == 1.0 and np.isnan(got_p[0][1]) and got_p[0][2] == dtype.type(1.0) - dtype.type(0.1)
    assert np.isnan(got_s["exp_avgs"][0][1])


# ---- 16-bit parameters: the C++ raw entry points and the CUDA module -------------------------------

def _bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even (finite values)."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def _bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


HALF_IMPLS = [b for b in BACKENDS if b != "numpy"] + [pytest.param("cuda", marks=pytest.mark.cuda)]


class Half:
    """A 16-bit dtype on an implementation: storage arrays and the raw kernel call."""

    def __init__(self, impl, dtype):
        self.impl, self.dtype = impl, dtype
        if impl == "cuda":
            why = cuda_unavailable()
            if why:
                pytest.skip(f"CUDA: {why}")
            import cupy
            from fastdl import _fastdl_cuda
            self.xp, self.module = cupy, _fastdl_cuda
        else:
            self.xp, self.module = np, _backend.cpu_extension()
            if self.module is None:
                pytest.skip("the C++ module is not built")

    def store(self, values, dtype=None):
        """float values -> an array of `dtype` (default: the 16-bit one) on the implementation."""
        dtype = dtype or self.dtype
        host = _bf16_bits(values) if dtype == "bfloat16" else np.asarray(values, dtype)
        return self.xp.asarray(host)

    def value(self, a):
        host = a.get() if self.xp is not np else a
        return _bf16_value(host) if host.dtype == np.uint16 else host.astype(np.float32)

    def addr(self, a):
        return a.data.ptr if self.xp is not np else a.ctypes.data

    def step(self, name, o, params, grads, state, steps, mu, state_dtype):
        lists = [None if state.get(s) is None else [self.addr(a) for a in state[s]] for s in KERNELS[name][1]]
        extra = [mu] if name == "nadam" else []
        addrs = ([self.addr(p) for p in params], [self.addr(g) for g in grads])
        sizes = [p.size for p in params]
        if self.impl == "cuda":
            getattr(self.module, f"{name}_step")(self.dtype, *addrs, *lists, *extra, sizes, steps, o, 0, 0, 0,
                                                 state_dtype=state_dtype)
            self.xp.cuda.get_current_stream().synchronize()
        else:
            with _backend.use_host("cpu"):
                ext = self.module
                before = ext.simd()
                assert ext.set_simd(self.impl.split("-", 1)[1])
                try:
                    getattr(ext, f"_{name}_step_raw")(self.dtype, *addrs, *lists, *extra, sizes, steps, o,
                                                      state_dtype=state_dtype)
                finally:
                    ext.set_simd(before)


@pytest.mark.parametrize("state32", [False, True], ids=["state16", "state32"])
@pytest.mark.parametrize("half", ["bfloat16", "float16"])
@pytest.mark.parametrize("impl", HALF_IMPLS)
@pytest.mark.parametrize("case", [c for c in CASES if "clip_coef" in c[1] or c[1].get("centered")], ids=case_id)
def test_16_bit_params(impl, case, half, state32, rng):
    """bfloat16 / float16 parameters computed in float and rounded once when stored; their state in their
    dtype or (state_dtype='float32') in float32: against float64 math on the same (rounded) inputs, to a
    16-bit ulp for what is stored in 16 bits and float32's precision for float32 state."""
    name, kw = case
    h = Half(impl, half)
    o = KERNELS[name][0](**kw)
    sizes, steps = [1, 37, 4099], np.array([3, 1, 9], np.int64)
    params, grads, state, _ = make_problem(rng, name, o, sizes=sizes, steps=steps)
    sdt = "float32" if state32 else half
    dev_p, dev_g = [h.store(p) for p in params], [h.store(g) for g in grads]
    dev_s = {k: [h.store(x, sdt) for x in v] for k, v in state.items()}
    # the inputs as the kernel sees them, exactly
    params, grads = [h.value(p).astype(np.float64) for p in dev_p], [h.value(g).astype(np.float64) for g in dev_g]
    state = {k: [h.value(x).astype(np.float64) for x in v] for k, v in dev_s.items()}
    mu = mu_products_of(o, steps) if name == "nadam" else None
    h.step(name, o, dev_p, dev_g, dev_s, steps, mu, "float32" if state32 else None)
    ulp = 2.0 ** -7 if half == "bfloat16" else 2.0 ** -10
    got_p = [h.value(p) for p in dev_p]
    got_s = {k: [h.value(x) for x in v] for k, v in dev_s.items()}
    ref_p, ref_s = reference(name, o, params, grads, state, steps, mu)
    skip = lion_ambiguous(name, o, grads, state, 1e-6)
    for i in range(len(sizes)):
        keep = slice(None) if skip is None else ~skip[i]
        check(got_p[i][keep], ref_p[i][keep], params[i][keep], ulp, f"params[{i}]")
        for k in state:
            check(got_s[k][i], ref_s[k][i], state[k][i], 1e-5 if state32 else ulp, f"{k}[{i}]")
            assert dev_s[k][i].dtype == (np.float32 if state32 else (np.uint16 if half == "bfloat16" else np.float16))


# ---- arguments the glue refuses ---------------------------------------------------------------------

def _cpu():
    ext = _backend.cpu_extension()
    if ext is None:
        pytest.skip("the C++ module is not built")
    return ext


def test_cpu_module_refuses_bad_arguments():
    ext = _cpu()
    one = lambda n=3, dt=np.float32: [np.ones(n, dt)]  # noqa: E731
    s1 = np.ones(1, np.int64)
    with pytest.raises(ValueError, match=r"grads has 2 arrays but params has 1"):
        ext.lion_step(one(), one() * 2, one(), s1, LionOptions(0.1))
    with pytest.raises(ValueError, match=r"grads\[0\] has 2 elements"):
        ext.adagrad_step(one(), one(2), one(), s1, AdagradOptions(0.1))
    with pytest.raises(ValueError, match=r"sums has 2 arrays but params has 1"):
        ext.adagrad_step(one(), one(), one() * 2, s1, AdagradOptions(0.1))
    with pytest.raises(ValueError, match=r"exp_infs\[0\] has 4 elements"):
        ext.adamax_step(one(), one(), one(), one(4), s1, AdamaxOptions(0.1))
    with pytest.raises(TypeError, match=r"acc_deltas\[0\] .*float64.*float32|acc_deltas\[0\]"):
        ext.adadelta_step(one(), one(), one(), one(3, np.float64), s1, AdadeltaOptions(0.1))
    with pytest.raises(TypeError, match="momentum_buffers must be a list of arrays"):
        ext.rmsprop_step(one(), one(), one(), None, None, s1, RmspropOptions(0.1, momentum=0.9))
    with pytest.raises(TypeError, match="grad_avgs must be a list of arrays"):
        ext.rmsprop_step(one(), one(), one(), None, None, s1, RmspropOptions(0.1, centered=True))
    with pytest.raises(TypeError, match="square_avgs must be a list of arrays"):
        ext.rmsprop_step(one(), one(), None, None, None, s1, RmspropOptions(0.1))
    with pytest.raises(TypeError, match="exp_avgs must be a list of arrays"):
        ext.lion_step(one(), one(), None, s1, LionOptions(0.1))
    with pytest.raises(TypeError, match="mu_products must be a float64 array"):
        ext.nadam_step(one(), one(), one(), one(), [0.9], s1, NadamOptions(0.1))
    with pytest.raises(ValueError, match="mu_products has 2 elements but params has 1"):
        ext.nadam_step(one(), one(), one(), one(), np.full(2, 0.9), s1, NadamOptions(0.1))
    with pytest.raises(ValueError, match=r"steps\[0\] must be >= 1"):
        ext.adamax_step(one(), one(), one(), one(), np.zeros(1, np.int64), AdamaxOptions(0.1))
    with pytest.raises(TypeError, match="options must be a fastdl.backends.options.RmspropOptions"):
        ext.rmsprop_step(one(), one(), one(), None, None, s1, AdamOptions(0.1))
    with pytest.raises(TypeError, match="options must be a fastdl.backends.options.LionOptions"):
        ext.lion_step(one(), one(), one(), s1, None)
    ro = np.ones(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"exp_avgs\[0\] is read-only"):
        ext.lion_step(one(), one(), [ro], s1, LionOptions(0.1))
    # unused lists may be None; an empty call does nothing
    ext.rmsprop_step(one(), one(), one(), None, None, s1, RmspropOptions(0.1))
    ext.nadam_step([], [], [], [], np.zeros(0), np.zeros(0, np.int64), NadamOptions(0.1))


def test_cpu_raw_entry_points_refuse_bad_arguments():
    ext = _cpu()
    a = np.ones(4, np.float32)
    s1 = np.ones(1, np.int64)
    addr = [a.ctypes.data]
    with pytest.raises(TypeError, match="dtype must be"):
        ext._lion_step_raw("int8", addr, addr, addr, [4], s1, LionOptions(0.1))
    with pytest.raises(TypeError, match="state_dtype must be the parameters' dtype"):
        ext._adamax_step_raw("float32", addr, addr, addr, addr, [4], s1, AdamaxOptions(0.1), state_dtype="float16")
    with pytest.raises(ValueError, match="exp_infs has 0 entries, expected 1"):
        ext._adamax_step_raw("float32", addr, addr, addr, [], [4], s1, AdamaxOptions(0.1))
    with pytest.raises(ValueError, match=r"sizes\[0\] is negative"):
        ext._adagrad_step_raw("float32", addr, addr, addr, [-1], s1, AdagradOptions(0.1))
    with pytest.raises(TypeError, match="acc_deltas must be a list of addresses"):
        ext._adadelta_step_raw("float32", addr, addr, addr, None, [4], s1, AdadeltaOptions(0.1))
    with pytest.raises(ValueError, match=r"square_avgs\[0\] is not a valid address"):
        ext._rmsprop_step_raw("float32", addr, addr, [0], None, None, [4], s1, RmspropOptions(0.1))
    with pytest.raises(ValueError, match="mu_products has 0 elements"):
        ext._nadam_step_raw("float32", addr, addr, addr, addr, np.zeros(0), [4], s1, NadamOptions(0.1))


@pytest.mark.cuda
def test_cuda_module_refuses_bad_arguments():
    why = cuda_unavailable()
    if why:
        pytest.skip(f"CUDA: {why}")
    import cupy
    from fastdl import _fastdl_cuda as m
    a = cupy.ones(4, np.float32)
    addr, s1 = [a.data.ptr], np.ones(1, np.int64)
    dev = (0, a.device.id, 0)
    with pytest.raises(TypeError, match="momentum_buffers must be a list of addresses"):
        m.rmsprop_step("float32", addr, addr, addr, None, None, [4], s1, RmspropOptions(0.1, momentum=0.9), *dev)
    with pytest.raises(ValueError, match=r"sums\[0\] is a null address"):
        m.adagrad_step("float32", addr, addr, [0], [4], s1, AdagradOptions(0.1), *dev)
    with pytest.raises(ValueError, match="mu_products has 2 elements"):
        m.nadam_step("float32", addr, addr, addr, addr, np.ones(2), [4], s1, NadamOptions(0.1), *dev)
    with pytest.raises(TypeError, match="options must be a fastdl.backends.options.LionOptions"):
        m.lion_step("float32", addr, addr, addr, [4], s1, AdamOptions(0.1), *dev)
    with pytest.raises(ValueError, match="exp_avgs has 2 entries, expected 1"):
        m.lion_step("float32", addr, addr, addr * 2, [4], s1, LionOptions(0.1), *dev)


@pytest.mark.cuda
@pytest.mark.parametrize("name", list(KERNELS))
def test_cuda_device_clip_factor(name, rng):
    """clip_coef as a 0-d CuPy array (read on the device, as Adam's) gives what the number gives."""
    why = cuda_unavailable()
    if why:
        pytest.skip(f"CUDA: {why}")
    import cupy
    from fastdl.backends import cuda
    o = KERNELS[name][0](lr=1e-2)
    params, grads, state, steps = make_problem(rng, name, o, sizes=[5, 70_001], steps=[1, 3])
    results = []
    for coef in (0.3, cupy.asarray(0.3)):
        p = [cupy.asarray(x) for x in params]
        s = {k: [cupy.asarray(x) for x in v] for k, v in state.items()}
        call(cuda, name, o._replace(clip_coef=coef), p, [cupy.asarray(g) for g in grads], s, steps,
             mu_products_of(o, steps) if name == "nadam" else None)
        results.append([x.get() for x in p])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
