"""Bad input raises a TypeError / ValueError naming the argument, before anything is written."""

import numpy as np
import pytest

from fastdl import ops, optim
from fastdl.backends.options import AdamOptions, SgdOptions


@pytest.mark.parametrize("bad", [np.arange(4), np.ones(4, np.float16), np.ones(4, np.complex64), np.array(["a"])])
def test_unsupported_dtypes(backend, bad):
    with pytest.raises(TypeError, match="x must be a float32 or float64"):
        ops.sigmoid(bad)
    with pytest.raises(TypeError, match="pred"):
        ops.mse(bad, bad)


def test_out_mismatches(backend):
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="out has dtype float64"):
        ops.tanh(x, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match=r"out has shape \(4, 3\)"):
        ops.tanh(x, out=np.empty((4, 3), np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ops.tanh(x, out=np.empty((4, 3), np.float32).T)
    ro = np.empty((3, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ops.tanh(x, out=ro)
    with pytest.raises(TypeError, match="out must be a numpy.ndarray"):
        ops.tanh(x, out=[0.0] * 12)


def test_non_contiguous_in_place_target_is_an_error(backend):
    x = np.ones((4, 6))
    view = x[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.relu(view, out=view)
    np.testing.assert_array_equal(x, 1.0)


def test_argument_mismatches(backend):
    a = np.ones(5, np.float32)
    with pytest.raises(TypeError, match="target has dtype float64 but pred has dtype float32"):
        ops.mse(a, np.ones(5))
    with pytest.raises(ValueError, match="target has shape"):
        ops.binary_crossentropy(a, np.ones(4, np.float32))
    with pytest.raises(ValueError, match="y has shape"):
        ops.sigmoid_backward(a, np.ones(6, np.float32))
    with pytest.raises(TypeError, match="x has dtype"):
        ops.relu_backward(a, np.ones(5))


def test_class_ids_out_of_range_or_negative(backend):
    x = np.zeros((3, 4))
    out = np.full((3, 4), 7.0)
    with pytest.raises(ValueError, match=r"target\[1\] = 4 is not a class id in \[0, 4\)"):
        ops.softmax_cross_entropy(x, np.array([0, 4, 1]), out=out)
    with pytest.raises(ValueError, match=r"target\[2\] = -1"):
        ops.softmax_cross_entropy(x, np.array([0, 1, -1]), out=out)
    np.testing.assert_array_equal(out, 7.0)  # nothing written


def test_softmax_ce_target_shapes_and_types(backend):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="class ids"):
        ops.softmax_cross_entropy(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="probabilities of shape"):
        ops.softmax_cross_entropy(x, np.zeros((3, 5)))
    with pytest.raises(TypeError, match="target"):
        ops.softmax_cross_entropy(x, np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="label_smoothing"):
        ops.softmax_cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="logits must have a class axis"):
        ops.softmax_cross_entropy(np.float64(1.0), np.array(0))


def test_axis_errors(backend):
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        ops.softmax(np.ones((2, 2)), axis=2)
    with pytest.raises(TypeError, match="axis must be an int"):
        ops.softmax(np.ones((2, 2)), axis=0.5)
    with pytest.raises(ValueError, match="at least one dimension"):
        ops.softmax(np.float64(1.0))


# ---- optimizers: all or nothing ----------------------------------------------------------------

def _params():
    return [np.ones(3), np.ones((2, 2))]


def test_optimizer_param_checks(backend):
    with pytest.raises(ValueError, match="params is empty"):
        optim.SGD([])
    with pytest.raises(TypeError, match=r"params\[1\] must be float32 or float64"):
        optim.Adam([np.ones(2), np.ones(2, np.int64)])
    with pytest.raises(ValueError, match=r"params\[0\] must be C-contiguous"):
        optim.Adam([np.ones((3, 3))[:, 0]])
    with pytest.raises(TypeError, match="list of arrays, not one array"):
        optim.Adam(np.ones(3))
    p = np.ones(3)
    with pytest.raises(ValueError, match=r"params\[1\] shares memory with params\[0\]"):
        optim.SGD([p, p])
    w = np.ones((2, 3))
    with pytest.raises(ValueError, match="shares memory"):
        optim.SGD([w, w.reshape(-1)])  # two views of one buffer would be updated twice


def test_hyperparameter_checks(backend):
    with pytest.raises(ValueError, match="lr"):
        optim.SGD(_params(), lr=-0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(_params(), nesterov=True)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(_params(), betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas must be a pair"):
        optim.Adam(_params(), betas=0.9)
    with pytest.raises(ValueError, match="eps"):
        optim.Adam(_params(), eps=float("nan"))


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_bad_grads_leave_every_parameter_unchanged(backend, cls):
    params = _params()
    opt = cls(params, lr=0.1, **({"momentum": 0.9} if cls is optim.SGD else {}))
    good = np.ones(3)
    cases = [
        ([good], ValueError, "grads has 1 arrays but the optimizer has 2"),
        ([good, np.ones((2, 3))], ValueError, r"grads\[1\] has shape \(2, 3\)"),
        ([good, np.ones((2, 2), np.float32)], TypeError, r"grads\[1\] has dtype float32"),
        ([good, [[1.0, 1.0], [1.0, 1.0]]], TypeError, r"grads\[1\] must be a numpy.ndarray"),
        (np.ones(3), TypeError, "one per parameter"),
    ]
    for grads, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            opt.step(grads)
        for p in params:
            np.testing.assert_array_equal(p, 1.0)
        assert list(opt.steps) == [0, 0]


def test_non_contiguous_grads_are_fine(backend):
    params = [np.zeros(3)]
    opt = optim.SGD(params, lr=1.0)
    g = np.arange(6.0)[::2]
    opt.step([g])
    np.testing.assert_array_equal(params[0], -g)


def test_load_state_dict_checks_before_writing(backend):
    params = _params()
    opt = optim.Adam(params)
    opt.step([np.ones(3), np.ones((2, 2))])
    before = opt.state_dict()
    other = optim.Adam([np.ones(3), np.ones((2, 3))])
    with pytest.raises(ValueError, match=r"\[1\] is float64\[2, 3\] but params\[1\] is float64\[2, 2\]"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match="from a SGD optimizer"):
        opt.load_state_dict(optim.SGD(_params()).state_dict())
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        opt.load_state_dict(optim.Adam(_params(), amsgrad=True).state_dict())
    after = opt.state_dict()
    for a, b in zip(before["state"]["exp_avg"], after["state"]["exp_avg"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(before["steps"], after["steps"])


def test_extension_checks_its_own_arguments():
    """The C++ glue is safe when called directly: wrong sizes raise, they do not corrupt memory."""
    from fastdl import _backend
    ext = _backend.cpu_extension()
    if _backend.name != "cpu":
        pytest.skip("needs the C++ extension in use")
    x = np.ones(10, np.float32)
    with pytest.raises(ValueError, match="out has 9 elements but x has 10"):
        ext.activation(0, x, np.empty(9, np.float32))
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        ext.activation(0, x, np.empty(20, np.float32)[::2])
    with pytest.raises(ValueError, match="unknown activation"):
        ext.activation(99, x, np.empty(10, np.float32))
    with pytest.raises(ValueError, match=r"target\[0\] = 5"):
        ext.softmax_cross_entropy(np.zeros((1, 5)), np.array([5]), np.empty((1, 5)))
    with pytest.raises(ValueError, match=r"grads\[0\] has 2 elements"):
        ext.sgd_step([np.ones(3)], [np.ones(2)], None, np.ones(1, np.int64), SgdOptions(0.1))
    with pytest.raises(ValueError, match=r"steps\[0\] must be >= 1"):
        ext.adam_step([np.ones(3)], [np.ones(3)], [np.ones(3)], [np.ones(3)], None, np.zeros(1, np.int64),
                      AdamOptions(0.1))


def test_a_failed_step_changes_no_parameter_and_no_step_count(backend):
    a, b = np.ones(3, np.float32), np.ones(3)  # two dtypes: two kernel calls
    opt = optim.Adam([a, b], lr=0.1)
    b.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\[1\] is read-only"):
        opt.step([np.ones(3, np.float32), np.ones(3)])
    np.testing.assert_array_equal(a, 1.0)
    assert list(opt.steps) == [0, 0]
    b.flags.writeable = True
    opt.step([np.ones(3, np.float32), np.ones(3)])
    assert list(opt.steps) == [1, 1] and np.all(a < 1)


def test_load_state_dict_rejects_bad_step_counts(backend):
    opt = optim.SGD([np.ones(2)], lr=0.1)
    sd = opt.state_dict()
    for bad in (np.array([-3]), np.array([2**64 - 1], np.uint64), np.array([1.5])):
        sd["steps"] = bad
        with pytest.raises(ValueError, match="step counts"):
            opt.load_state_dict(sd)
    assert list(opt.steps) == [0]


def test_softmax_ce_zero_classes(backend):
    with pytest.raises(ValueError, match="no classes"):
        ops.softmax_cross_entropy(np.zeros((3, 0)), np.zeros((3, 0)))
    with pytest.raises(ValueError, match="no classes"):
        ops.softmax_cross_entropy(np.zeros((3, 0)), np.zeros(3, np.int64))


def test_extension_keeps_arrays_alive_and_refuses_temporaries():
    """Sequences that hold no reference to the arrays they hand out, and list arguments that
    would become discarded temporaries."""
    from fastdl import _backend
    ext = _backend.cpu_extension()
    if _backend.name != "cpu":
        pytest.skip("needs the C++ extension in use")

    class Fresh:  # each item is a new array, referenced only by the extension once returned
        def __init__(self, value):
            self.value = value

        def __len__(self):
            return 1

        def __getitem__(self, i):
            if i != 0:
                raise IndexError(i)
            return np.full(1 << 20, self.value, np.float32)

    ext.sgd_step(Fresh(1.0), Fresh(2.0), None, np.ones(1, np.int64), SgdOptions(0.1))
    g = np.ones((2, 4), np.float32)
    with pytest.raises(TypeError, match="dbias must be a NumPy array"):
        ext.bias_activation_backward(7, g, g, np.empty_like(g), [0.0] * 4)
    with pytest.raises(TypeError, match="pre must be a NumPy array"):
        ext.bias_activation(7, g, None, [[0.0] * 4] * 2, np.empty_like(g))
    t = np.full((2, 4), 0.25, np.float32)
    with pytest.raises(ValueError, match="out must not share memory with target"):
        ext.softmax_cross_entropy(g, t, t, 0.0)


def _misaligned(n, dtype):
    """A C-contiguous array of n elements that starts one byte past an element boundary."""
    raw = np.zeros(n * np.dtype(dtype).itemsize + 1, np.uint8)
    return raw[1:].view(dtype)


def test_misaligned_out_is_named_as_such(backend):
    """An unaligned out= used to be reported as 'must be C-contiguous', which it is."""
    x = np.ones(8, np.float64)
    out = _misaligned(8, np.float64)
    assert out.flags.c_contiguous and not out.flags.aligned
    with pytest.raises(ValueError, match="out must be aligned to its 8-byte elements"):
        ops.tanh(x, out=out)
    with pytest.raises(ValueError, match="out must be aligned"):
        ops.mse(x, x, out=out)


def test_leaky_relu_slope_must_be_finite(backend):
    x = np.linspace(-1, 1, 5)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            ops.leaky_relu(x, alpha=bad)
        with pytest.raises(ValueError, match="alpha"):
            ops.leaky_relu_backward(np.ones(5), x, alpha=bad)
    with pytest.raises(TypeError, match="alpha must be a real number"):
        ops.leaky_relu(x, alpha="0.1x")


def test_uint64_class_id_beyond_int64_is_named_as_given(backend):
    with pytest.raises(ValueError, match=r"target\[1\] = 9223372036854775809 is not a class id"):
        ops.softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 2**63 + 1], np.uint64))
