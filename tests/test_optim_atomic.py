"""fastdl.optim: a step that raises leaves every parameter, state array and step count as it was
(issue #8, section 5), with parameters of two dtypes so that the failure is in the second call."""

import numpy as np
import pytest

from fastdl import optim
from fastdl.optim import schedules


class _NanAfter(schedules.Schedule):
    _config = {}

    def __call__(self, step):
        return 0.01 if step < 2 else float("nan")


def _setup(name, **kw):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((2, 3)),
              rng.standard_normal(4).astype(np.float32), rng.standard_normal(3)]
    opt = getattr(optim, name)(params, **kw)
    for _ in range(2):
        opt.step(_grads(params, rng))
    return params, opt, rng


def _grads(params, rng):
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


def _snapshot(params, opt):
    return ([p.copy() for p in params], {k: [a.copy() if isinstance(a, np.ndarray) else a for a in v]
                                          for k, v in opt.state.items()}, opt.steps, opt.iterations)


def _assert_unchanged(params, opt, snap):
    ps, state, steps, iterations = snap
    for p, q in zip(params, ps):
        np.testing.assert_array_equal(p, q)
    assert opt.state.keys() == state.keys()
    for k, arrays in state.items():
        for a, b in zip(opt.state[k], arrays):
            if isinstance(b, np.ndarray):
                np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(opt.steps, steps)
    assert opt.iterations == iterations


def _state(name, index, make):
    def mutate(params, opt):
        opt.state[name][index] = make(params[index])
    return mutate


def _hyper(key, value):
    def mutate(params, opt):
        opt.hyperparams[key] = value
    return mutate


def _read_only_state(params, opt):
    opt.state["exp_avg"][3].flags.writeable = False


def _read_only_param(params, opt):
    params[3].flags.writeable = False


def _short_state(params, opt):
    opt.state["exp_avg"].pop()


ADAM_CASES = [
    ("exp_avg wrong shape", _state("exp_avg", 3, lambda p: np.zeros(7)), ValueError),
    ("exp_avg float32", _state("exp_avg", 3, lambda p: np.zeros(p.shape, np.float32)), ValueError),
    ("exp_avg a list", _state("exp_avg", 3, lambda p: [0.0] * p.size), TypeError),
    ("exp_avg strided", _state("exp_avg", 3, lambda p: np.zeros(2 * p.size)[::2]), ValueError),
    ("exp_avg is the param", _state("exp_avg", 3, lambda p: p), ValueError),
    ("exp_avg read-only", _read_only_state, ValueError),
    ("exp_avg list short", _short_state, ValueError),
    ("betas=(0.9,)", _hyper("betas", (0.9,)), TypeError),
    ("eps=-1", _hyper("eps", -1.0), ValueError),
    ("eps='x'", _hyper("eps", "x"), TypeError),
    ("amsgrad without its state", _hyper("amsgrad", True), ValueError),
    ("lr schedule nan", _hyper("lr", _NanAfter()), ValueError),
    ("param read-only", _read_only_param, ValueError),
]
SGD_CASES = [
    ("momentum='x'", _hyper("momentum", "x"), TypeError),
    ("momentum=-1", _hyper("momentum", -1.0), ValueError),
    ("momentum_buffer wrong shape", _state("momentum_buffer", 3, lambda p: np.zeros(2)), ValueError),
    ("momentum_buffer read-only", lambda ps, o: setattr(o.state["momentum_buffer"][3].flags, "writeable", False),
     ValueError),
    ("lr=None", _hyper("lr", None), TypeError),
]


@pytest.mark.parametrize("case", ADAM_CASES + SGD_CASES, ids=[c[0] for c in ADAM_CASES + SGD_CASES])
def test_failed_step_changes_nothing(backend, case):
    label, mutate, error = case
    name, kw = ("SGD", dict(lr=0.1, momentum=0.9)) if case in SGD_CASES else ("Adam", dict(lr=0.01))
    params, opt, rng = _setup(name, **kw)
    grads = _grads(params, rng)
    mutate(params, opt)
    snap = _snapshot(params, opt)
    with pytest.raises(error):
        opt.step(grads)
    _assert_unchanged(params, opt, snap)


def test_sgd_momentum_set_after_construction_is_refused_whole(backend):
    params, opt, rng = _setup("SGD", lr=0.1)  # no momentum: no momentum_buffer state
    opt.hyperparams["momentum"] = 0.9
    snap = _snapshot(params, opt)
    with pytest.raises(ValueError, match="momentum_buffer"):
        opt.step(_grads(params, rng))
    _assert_unchanged(params, opt, snap)


def test_bad_gradient_in_the_second_dtype_changes_nothing(backend):
    params, opt, rng = _setup("Adam", lr=0.01)
    for bad, error in [(np.zeros(4), ValueError), (np.zeros(3, np.float32), TypeError), ("x", TypeError)]:
        grads = _grads(params, rng)
        grads[3] = bad
        snap = _snapshot(params, opt)
        with pytest.raises(error):
            opt.step(grads)
        _assert_unchanged(params, opt, snap)


def test_hyperparams_edited_between_steps_are_checked_again():
    """A step reuses the last check of ``hyperparams`` only while the dict is unchanged: an edit
    (a new value, or a list changed in place) is checked before anything moves."""
    params, opt, rng = _setup("Adam")
    opt.hyperparams["eps"] = -1.0
    snap = _snapshot(params, opt)
    with pytest.raises(ValueError, match="eps"):
        opt.step(_grads(params, rng))
    _assert_unchanged(params, opt, snap)
    opt.hyperparams["eps"] = 1e-8
    opt.hyperparams["betas"] = [0.5, 0.9]
    opt.step(_grads(params, rng))
    opt.hyperparams["betas"][0] = 2.0  # in place: the dict compares equal to nothing it was
    snap = _snapshot(params, opt)
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        opt.step(_grads(params, rng))
    _assert_unchanged(params, opt, snap)


def test_a_0d_array_lr_changed_in_place_is_read_again():
    """An lr given as a 0-d array and changed in place takes effect (and is checked) at the
    next step: the step's reuse of its last check does not hide the change."""
    p = np.zeros(3, np.float32)
    opt = optim.SGD([p], lr=0.1)
    lr = np.array(0.1)
    opt.hyperparams["lr"] = lr
    opt.step([np.ones(3, np.float32)])
    np.testing.assert_allclose(p, -0.1)
    lr[...] = 0.0
    opt.step([np.ones(3, np.float32)])
    np.testing.assert_allclose(p, -0.1)
    lr[...] = -5.0
    with pytest.raises(ValueError, match="lr"):
        opt.step([np.ones(3, np.float32)])
    np.testing.assert_allclose(p, -0.1)


@pytest.mark.parametrize("steps, iterations", [([2 ** 62, 0, 0, 0], 3), ([1, 1, 1, 1], 2 ** 62), ([1, 1, 1, 1], 2.5),
                                               ([1, 1, 1, 1], True), ([-1, 0, 0, 0], 1)])
def test_load_state_dict_bounds_step_counts(steps, iterations):
    """Counts from a state_dict stay below 2**62, so a step never overflows an int64 count."""
    params, opt, rng = _setup("Adam")
    d = opt.state_dict()
    d["steps"] = np.array(steps, dtype=np.int64)
    d["iterations"] = iterations
    snap = _snapshot(params, opt)
    with pytest.raises(ValueError, match="steps|iterations"):
        opt.load_state_dict(d)
    _assert_unchanged(params, opt, snap)
