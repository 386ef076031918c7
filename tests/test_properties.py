"""Hypothesis property tests for the elementwise ops: any finite float32/float64 input."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from fastdl import ops
import reference as ref
from conftest import BACKENDS


def finite_arrays(dtype):
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=2, max_side=70),
                      elements=st.floats(allow_nan=False, allow_infinity=False, width=np.dtype(dtype).itemsize * 8))


DTYPES = [np.float32, np.float64]


def _each_backend(check):
    """Runs check() on every backend (hypothesis and function-scoped fixtures do not mix)."""
    from conftest import _use
    for name in BACKENDS:
        for backend in _use(name):  # the fixture's body: routes NumPy arrays for the check
            check(backend)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_bounded_activations_stay_in_range(dtype, data):
    x = data.draw(finite_arrays(dtype))

    def check(name):
        s = ops.sigmoid(x)
        t = ops.tanh(x)
        assert np.all((s >= 0) & (s <= 1)), name
        assert np.all((t >= -1) & (t <= 1)), name
        assert np.all(np.sign(t) == np.sign(x)) or np.all(np.abs(t[np.sign(t) != np.sign(x)]) == 0), name
        for f in (ops.sigmoid, ops.tanh, ops.relu, ops.silu, ops.gelu, lambda a: ops.gelu(a, approximate=True)):
            assert np.all(np.isfinite(f(x))), name
    _each_backend(check)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_symmetries(dtype, data):
    x = data.draw(finite_arrays(dtype))

    def check(name):
        # sigmoid(-x) = 1 - sigmoid(x), tanh odd, relu(x) - relu(-x) = x, gelu(x) - gelu(-x) = x
        np.testing.assert_allclose(ops.sigmoid(-x), 1 - ref.sigmoid(x), atol=2e-7 if dtype == np.float32 else 1e-15)
        np.testing.assert_array_equal(ops.tanh(-x), -ops.tanh(x))
        np.testing.assert_array_equal(ops.relu(x) - ops.relu(-x), x)
        small = x[np.abs(x) < 1e6]  # beyond, x - gelu(-x) rounds like any float sum
        np.testing.assert_allclose(ops.gelu(small) - ops.gelu(-small), small, rtol=1e-6, atol=1e-30)
    _each_backend(check)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_monotone_where_the_math_is(dtype, data):
    x = np.sort(data.draw(finite_arrays(dtype)).ravel())

    def check(name):
        for f in (ops.sigmoid, ops.tanh, ops.relu, lambda a: ops.leaky_relu(a, 0.1)):
            y = f(x)
            assert np.all(np.diff(y) >= 0), name
    _each_backend(check)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_softmax_rows_are_distributions(data):
    x = data.draw(hnp.arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 40)),
                             elements=st.floats(-1e4, 1e4, width=32)))

    def check(name):
        y = ops.softmax(x)
        assert np.all(np.isfinite(y)) and np.all(y >= 0)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
        # the largest logit gets the largest probability (others may tie with it after rounding)
        assert np.all(np.take_along_axis(y, np.argmax(x, axis=1)[:, None], axis=1)[:, 0] == y.max(axis=1))
        ly = ops.log_softmax(x)
        assert np.all(ly <= 1e-6)
        loss, grad = ops.softmax_cross_entropy(x, np.argmax(x, axis=1))
        assert np.isfinite(loss) and loss >= -1e-6 and np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6)
    _each_backend(check)
