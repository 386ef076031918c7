"""fastdl.torch: all-or-nothing steps and the gaps a PyTorch user hits (issue #8, sections 5 and 6),
held against torch.optim."""

import copy
import io
import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastdl.torch as fdt  # noqa: E402
from fastdl.optim import CosineDecay, schedules  # noqa: E402


# ---- helpers ------------------------------------------------------------------------------------

def _params(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (3,), (5,), (2, 2), (6,), (3, 2)]
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=dtype)) for s in shapes]


def _groups(params, bad=None):
    """Three groups of two parameters; `bad` settings go into the last group."""
    return [{"params": params[0:2]}, {"params": params[2:4], "lr": 0.05}, {"params": params[4:6], **(bad or {})}]


def _set_grads(params, step):
    for k, p in enumerate(params):
        g = torch.Generator().manual_seed(100 * step + k)
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)


def _snapshot(opt, params):
    return ([p.detach().clone() for p in params],
            {id(p): {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in st.items()}
             for p, st in opt.state.items()},
            [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
            opt.iterations)


def _assert_unchanged(opt, params, snap):
    ps, state, groups, iterations = snap
    for p, before in zip(params, ps):
        assert torch.equal(p.detach(), before)
    now = {id(p): st for p, st in opt.state.items()}
    assert now.keys() == state.keys()
    for key, st in state.items():
        assert now[key].keys() == st.keys()
        for name, before in st.items():
            after = now[key][name]
            if isinstance(before, torch.Tensor):
                assert isinstance(after, torch.Tensor) and after.dtype == before.dtype, name
                assert torch.equal(after.isnan(), before.isnan()) and \
                    torch.equal(after.nan_to_num(), before.nan_to_num()), name  # bit-identical, NaN included
            else:
                assert after == before, name
    assert opt.iterations == iterations
    assert len(opt.param_groups) == len(groups)


OPTS = [("Adam", dict(lr=1e-2)), ("AdamW", dict(lr=1e-2, amsgrad=True)), ("SGD", dict(lr=0.1, momentum=0.9))]


def _pair(name, kw, bad=None):
    """(fastdl optimizer, its params, torch.optim optimizer, its params), two steps taken."""
    pf, pt = _params(), _params()
    of = getattr(fdt, name)(_groups(pf, bad), **kw)
    ot = getattr(torch.optim, name)(_groups(pt), foreach=False, **kw)
    for step in range(2):
        for ps, o in ((pf, of), (pt, ot)):
            _set_grads(ps, step)
            o.step()
    return of, pf, ot, pt


def _continue_and_compare(of, pf, ot, pt, steps=3):
    for step in range(2, 2 + steps):
        for ps, o in ((pf, of), (pt, ot)):
            _set_grads(ps, step)
            o.step()
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-14)


# ---- 5. a step that raises changes nothing ------------------------------------------------------

BAD_SETTINGS = {
    "Adam": [("betas", (0.9,), ValueError), ("betas", 0.9, TypeError), ("betas", (0.9, 1.0), ValueError),
             ("betas", ("x", 0.99), TypeError), ("eps", -1e-8, ValueError), ("eps", "x", TypeError),
             ("lr", None, TypeError), ("lr", "x", TypeError), ("lr", float("nan"), ValueError),
             ("lr", -0.1, ValueError), ("lr", torch.tensor([0.1, 0.2]), ValueError),
             ("weight_decay", -1.0, ValueError), ("weight_decay", float("inf"), ValueError),
             ("amsgrad", np.array([True, False]), TypeError)],
    "SGD": [("momentum", "x", TypeError), ("momentum", -0.5, ValueError), ("dampening", float("inf"), ValueError),
            ("weight_decay", None, TypeError), ("lr", "x", TypeError), ("nesterov", np.array([1, 0]), TypeError)],
}
BAD_CASES = [(name, kw, *bad) for name, kw in OPTS for bad in BAD_SETTINGS["SGD" if name == "SGD" else "Adam"]]


@pytest.mark.parametrize("name,kw,key,value,error", BAD_CASES,
                         ids=[f"{c[0]}-{c[2]}={c[3]!r}" for c in BAD_CASES])
def test_bad_setting_in_a_later_group_changes_nothing(name, kw, key, value, error):
    of, pf, ot, pt = _pair(name, kw)
    good = of.param_groups[2][key]
    of.param_groups[2][key] = value
    _set_grads(pf, 2)
    snap = _snapshot(of, pf)
    with pytest.raises(error, match="group 2"):
        of.step()
    _assert_unchanged(of, pf, snap)
    of.param_groups[2][key] = good  # the failed step left no trace: the run goes on as torch's
    _continue_and_compare(of, pf, ot, pt)


class _NanSchedule(schedules.Schedule):
    _config = {}

    def __call__(self, step):
        return 0.01 if step < 2 else float("nan")


@pytest.mark.parametrize("name,kw", OPTS, ids=[o[0] for o in OPTS])
def test_schedule_giving_a_bad_lr_changes_nothing(name, kw):
    pf = _params()
    of = getattr(fdt, name)([{"params": pf[:3]}, {"params": pf[3:], "lr": _NanSchedule()}], **kw)
    for step in range(2):
        _set_grads(pf, step)
        of.step()
    _set_grads(pf, 2)
    snap = _snapshot(of, pf)
    with pytest.raises(ValueError, match="Invalid learning rate: nan"):
        of.step()
    _assert_unchanged(of, pf, snap)


def _bad_step(value):
    def mutate(of, pf):
        of.state[pf[5]]["step"] = value
    return mutate


def _step_in_place(of, pf):
    of.state[pf[5]]["step"].fill_(-5)  # fastdl's own step tensor, changed in place


def _state_replaced(name, value):
    def mutate(of, pf):
        of.state[pf[5]][name] = value
    return mutate


def _grad_data(value):
    def mutate(of, pf):
        pf[5].grad.data = value
    return mutate


def _sparse_grad(of, pf):
    emb = torch.nn.Parameter(torch.zeros(10, 2, dtype=torch.float64))
    of.param_groups[2]["params"].append(emb)
    emb.grad = torch.sparse_coo_tensor([[1, 3]], torch.ones(2, 2, dtype=torch.float64), (10, 2))


def _append(make):
    def mutate(of, pf):
        p = make(pf)
        of.param_groups[2]["params"].append(p)
        if isinstance(p, torch.Tensor) and p.grad is None:
            p.grad = torch.ones_like(p)
    return mutate


def _swap_data(of, pf):
    pf[5].data = pf[0].data.view(-1)[:6].view(3, 2)  # now two parameters share memory


STATE_CASES = [
    ("step=-5", _bad_step(torch.tensor(-5.0)), ValueError, "step"),
    ("step=x", _bad_step("x"), TypeError, "step"),
    ("step=2.5", _bad_step(torch.tensor(2.5)), ValueError, "step"),
    ("step=nan", _bad_step(torch.tensor(float("nan"))), ValueError, "step"),
    ("step in place -5", _step_in_place, ValueError, "step"),
    ("exp_avg wrong shape", _state_replaced("exp_avg", torch.zeros(7, dtype=torch.float64)), ValueError, "shape"),
    ("exp_avg a list", _state_replaced("exp_avg", [0.0] * 6), TypeError, "exp_avg"),
    ("grad float32", _grad_data(torch.ones(3, 2)), ValueError, "gradient of parameter 1 of group 2"),
    ("grad wrong shape", _grad_data(torch.ones(6, dtype=torch.float64)), ValueError, "gradient"),
    ("sparse grad", _sparse_grad, RuntimeError, "sparse"),
    ("overlapping view", _append(lambda pf: torch.nn.Parameter(pf[0].data.view(-1)[2:6])), ValueError,
     "shares memory"),
    ("same memory, other object", _append(lambda pf: torch.nn.Parameter(pf[1].data)), ValueError, "shares memory"),
    ("data swapped to overlap", _swap_data, ValueError, "shares memory"),
    ("in two groups", _append(lambda pf: pf[0]), ValueError, "also parameter 0 of group 0"),
    ("strided param", _append(lambda pf: torch.nn.Parameter(torch.ones(4, 4, dtype=torch.float64)[:, ::2])),
     ValueError, "strides"),
    ("complex param", _append(lambda pf: torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))), TypeError,
     "float32, float64, bfloat16 and float16"),
    ("not a tensor", _append(lambda pf: "x"), TypeError, "not a torch.Tensor"),
]


@pytest.mark.parametrize("name,kw", OPTS, ids=[o[0] for o in OPTS])
@pytest.mark.parametrize("case", STATE_CASES, ids=[c[0] for c in STATE_CASES])
def test_bad_state_gradient_or_parameter_in_a_later_group_changes_nothing(name, kw, case):
    label, mutate, error, match = case
    if name == "SGD" and ("step" in label or "exp_avg" in label):
        pytest.skip("SGD keeps no step count and no exp_avg")
    of, pf, _, _ = _pair(name, kw)
    _set_grads(pf, 2)
    mutate(of, pf)
    snap = _snapshot(of, pf)
    with pytest.raises(error, match=match):
        of.step()
    _assert_unchanged(of, pf, snap)
    with pytest.raises(error, match=match):  # and again: a failed step caches nothing that hides the fault
        of.step()
    _assert_unchanged(of, pf, snap)


@pytest.mark.parametrize("name,kw", OPTS, ids=[o[0] for o in OPTS])
def test_bad_checkpoint_is_refused_whole(name, kw):
    of, pf, ot, pt = _pair(name, kw)
    good = ot.state_dict()
    for key, value, error in [("step", torch.tensor(-5.0), ValueError), ("step", "x", TypeError),
                              ("betas" if name != "SGD" else "momentum", (0.9,) if name != "SGD" else "x",
                               ValueError if name != "SGD" else TypeError),
                              ("shape", None, ValueError)]:
        sd = copy.deepcopy(good)
        if key == "step":
            if name == "SGD":
                continue
            sd["state"][5]["step"] = value
        elif key == "shape":
            first = "momentum_buffer" if name == "SGD" else "exp_avg"
            sd["state"][5][first] = torch.zeros(7, dtype=torch.float64)
        else:
            sd["param_groups"][2][key] = value
        snap = _snapshot(of, pf)
        state_objects = dict(of.state)
        with pytest.raises(error):
            of.load_state_dict(sd)
        _assert_unchanged(of, pf, snap)
        assert all(of.state[p] is st for p, st in state_objects.items())
    _continue_and_compare(of, pf, ot, pt)


def test_bad_group_is_refused_by_add_param_group_and_not_kept():
    pf = _params()
    o = fdt.Adam(pf[:2], lr=0.1)
    for bad in [{"betas": (0.9,)}, {"eps": -1.0}, {"lr": "x"},
                {"params": [torch.nn.Parameter(pf[0].data.view(-1)[:3])]}]:
        with pytest.raises((TypeError, ValueError)):
            o.add_param_group({"params": pf[2:4], **bad})
        assert len(o.param_groups) == 1
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        o.add_param_group({"params": [pf[0]]})
    assert len(o.param_groups) == 1


# ---- 6. what a PyTorch user hits ------------------------------------------------------------------

@pytest.mark.parametrize("name,kw", OPTS + [("SGD", dict(lr=0.1))], ids=[o[0] for o in OPTS] + ["SGD-plain"])
def test_empty_parameters_are_stepped_as_torch_does(name, kw):
    runs = []
    for mod in (fdt, torch.optim):
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Initializing zero-element tensors is a no-op"
            model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 0)).double()
        extra = torch.nn.Parameter(torch.zeros(0, dtype=torch.float64))
        only_empty = torch.nn.Parameter(torch.zeros(2, 0, dtype=torch.float64))
        o = getattr(mod, name)([{"params": list(model.parameters()) + [extra]}, {"params": [only_empty]}], **kw,
                               **({} if mod is fdt else {"foreach": False}))
        x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        for _ in range(3):
            o.zero_grad()
            (model[0](x) ** 2).sum().backward()
            for p in (model[1].weight, model[1].bias, extra, only_empty):
                p.grad = torch.zeros_like(p)
            o.step()
        runs.append((list(model.parameters()), o.state_dict()))
    (pf, sf), (pt, st) = runs
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)
    assert sf["state"].keys() == st["state"].keys()
    for k in st["state"]:
        assert sf["state"][k].keys() == st["state"][k].keys()
        for n, v in st["state"][k].items():
            assert sf["state"][k][n].shape == v.shape


@pytest.mark.parametrize("name,kw", OPTS, ids=[o[0] for o in OPTS])
def test_parameters_sharing_memory_are_refused_at_construction(name, kw):
    buf = torch.zeros(10, dtype=torch.float64)
    a, b = torch.nn.Parameter(buf[:6]), torch.nn.Parameter(buf[4:])
    with pytest.raises(ValueError, match="parameter 1 of group 0 shares memory with parameter 0 of group 0"):
        getattr(fdt, name)([a, b], **kw)
    with pytest.raises(ValueError, match="parameter 0 of group 1 shares memory with parameter 0 of group 0"):
        getattr(fdt, name)([{"params": [a]}, {"params": [b]}], **kw)
    c, d = torch.nn.Parameter(buf[:5]), torch.nn.Parameter(buf[5:])  # adjacent, not overlapping: fine
    getattr(fdt, name)([c, d], **kw)


def _state_equal(of, ot, pf, pt):
    for a, b in zip(pf, pt):
        sa, sb = of.state[a], ot.state[b]
        assert sa.keys() == sb.keys()
        for k in sb:
            np.testing.assert_allclose(np.asarray(sa[k]), np.asarray(sb[k]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save"])
@pytest.mark.parametrize("name,kw", OPTS, ids=[o[0] for o in OPTS])
def test_optimizer_object_survives_deepcopy_pickle_and_torch_save(name, kw, how):
    of, pf, ot, pt = _pair(name, kw)
    of.max_grad_norm = 1e9
    if how == "deepcopy":
        of2 = copy.deepcopy(of)
    elif how == "pickle":
        of2 = pickle.loads(pickle.dumps(of))
    else:
        f = io.BytesIO()
        torch.save(of, f)
        f.seek(0)
        of2 = torch.load(f, weights_only=False)
    assert of2.iterations == 2 and of2.max_grad_norm == 1e9
    pf2 = [p for g in of2.param_groups for p in g["params"]]
    for a, b in zip(pf2, pf):
        assert a is not b and torch.equal(a, b)
    _continue_and_compare(of2, pf2, ot, pt)
    _state_equal(of2, ot, pf2, pt)
    assert of.iterations == 2  # the original is untouched by its copy's steps


def test_copied_optimizer_keeps_its_schedule_position():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    o = fdt.SGD([p], lr=CosineDecay(0.1, 10))
    for _ in range(4):
        p.grad = torch.ones(3, dtype=torch.float64)
        o.step()
    o2 = copy.deepcopy(o)
    q = o2.param_groups[0]["params"][0]
    p.grad = torch.ones(3, dtype=torch.float64)
    q.grad = torch.ones(3, dtype=torch.float64)
    o.step()
    o2.step()
    assert torch.equal(p, q) and o2.iterations == 5


def _conv_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3)).double()


@pytest.mark.parametrize("grad_layout", ["same", "contiguous"])
@pytest.mark.parametrize("name,kw", OPTS + [("Adam", dict(lr=1e-2, weight_decay=0.1, maximize=True))],
                         ids=[o[0] for o in OPTS] + ["Adam-wd-max"])
def test_channels_last_parameters_match_torch(name, kw, grad_layout):
    x = torch.randn(6, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (6,), generator=torch.Generator().manual_seed(4))
    runs = []
    for mod in (fdt, torch.optim):
        m = _conv_model(0).to(memory_format=torch.channels_last)
        assert not m[0].weight.is_contiguous()
        o = getattr(mod, name)(m.parameters(), **kw, **({} if mod is fdt else {"foreach": False}))
        for _ in range(5):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            if grad_layout == "contiguous":
                for p in m.parameters():
                    p.grad = p.grad.contiguous()
            o.step()
        runs.append((m, o))
    (mf, of), (mt, ot) = runs
    for a, b in zip(mf.parameters(), mt.parameters()):
        assert a.stride() == b.stride()
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10, atol=1e-13)
    for a, b in zip(mf.parameters(), mt.parameters()):
        for k, v in ot.state[b].items():
            # torch's layout: zeros_like(p, preserve_format); only SGD's buffer, a clone of the first
            # gradient, takes that gradient's layout in torch (fastdl keeps the parameter's)
            if k != "momentum_buffer" or grad_layout == "same":
                assert of.state[a][k].stride() == v.stride(), k
    _state_equal(of, ot, list(mf.parameters()), list(mt.parameters()))
    # the checkpoint goes to torch.optim and back
    back = getattr(torch.optim, name)(mf.parameters(), foreach=False, **kw)
    back.load_state_dict(of.state_dict())
    of2 = getattr(fdt, name)(mt.parameters(), **kw)
    of2.load_state_dict(ot.state_dict())
    of2.step()
    ot.step()
    for a in mt.parameters():
        assert a.grad is not None


def test_permuted_and_transposed_parameters_are_stepped():
    base = torch.randn(3, 4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pf = [torch.nn.Parameter(base.clone().permute(2, 0, 1)), torch.nn.Parameter(base.clone()[0].t())]
    pt = [torch.nn.Parameter(p.detach().clone()) for p in pf]  # contiguous copies for torch
    of, ot = fdt.AdamW(pf, lr=0.1, amsgrad=True), torch.optim.AdamW(pt, lr=0.1, amsgrad=True, foreach=False)
    for step in range(3):
        for a, b in zip(pf, pt):
            g = torch.randn(a.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(step))
            a.grad, b.grad = g.clone(), g.clone()
        of.step()
        ot.step()
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("name,kw", OPTS + [("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True,
                                                                                 weight_decay=0.1))],
                         ids=[o[0] for o in OPTS] + ["SGD-plain", "SGD-nesterov-wd"])
def test_duplicate_parameter_in_a_group_matches_torch(name, kw):
    """torch.optim warns and steps a parameter listed twice twice (its single-tensor loop, torch's
    CPU default); fastdl does the same, one kernel call per listing."""
    runs = []
    for mod in (fdt, torch.optim):
        ps = _params()
        with pytest.warns(UserWarning, match="duplicate parameters"):
            o = getattr(mod, name)([ps[0], ps[1], ps[0], ps[2], ps[0], ps[1]], **kw,
                                   **({} if mod is fdt else {"foreach": False}))
        for step in range(4):
            _set_grads(ps[:3], step)
            o.step()
        runs.append((ps[:3], o))
    (pf, of), (pt, ot) = runs
    for a, b in zip(pf, pt):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12, atol=1e-15)
    _state_equal(of, ot, pf, pt)


def test_duplicate_appended_to_a_group_list_matches_torch():
    runs = []
    for mod in (fdt, torch.optim):
        ps = _params()
        o = getattr(mod, "Adam")(ps[:3], lr=0.1, **({} if mod is fdt else {"foreach": False}))
        for step in range(4):
            if step == 2:
                o.param_groups[0]["params"].append(ps[1])
            _set_grads(ps[:3], step)
            o.step()
        runs.append(ps[:3])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-12)


BAD_ARGS = [("SGD", dict(lr=-1.0)), ("SGD", dict(momentum=-0.5)), ("SGD", dict(weight_decay=-1.0)),
            ("SGD", dict(momentum=0.0, nesterov=True)), ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True)),
            ("SGD", dict(lr=torch.tensor([0.1, 0.2]))),
            ("Adam", dict(lr=-1.0)), ("Adam", dict(eps=-1.0)), ("Adam", dict(betas=(1.5, 0.999))),
            ("Adam", dict(betas=(0.9, -0.1))), ("Adam", dict(weight_decay=-1.0)),
            ("AdamW", dict(weight_decay=-1.0)), ("AdamW", dict(betas=(0.9, 1.0))), ("AdamW", dict(lr=-1e-3))]


@pytest.mark.parametrize("name,kw", BAD_ARGS, ids=[f"{n}-{k}" for n, k in BAD_ARGS])
def test_invalid_hyperparameters_read_as_torchs(name, kw):
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)(p, **kw)
    with pytest.raises(ValueError) as ours:
        getattr(fdt, name)(p, **kw)
    assert str(ours.value) == str(theirs.value)


def test_invalid_hyperparameter_types_name_the_argument():
    p = [torch.nn.Parameter(torch.ones(2))]
    with pytest.raises(TypeError, match="Invalid momentum value: 'x'"):
        fdt.SGD(p, momentum="x")
    with pytest.raises(ValueError, match=r"Invalid betas: \(0.9,\)"):
        fdt.Adam(p, betas=(0.9,))
    with pytest.raises(TypeError, match="Invalid learning rate: None"):
        fdt.AdamW(p, lr=None)
    with pytest.raises(TypeError, match="Invalid epsilon value: 'x'"):
        fdt.Adam(p, eps="x")
