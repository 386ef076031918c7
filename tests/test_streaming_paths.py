"""The streaming-store code paths (outputs larger than half the last-level cache) give the same
results as the plain-store paths. The threshold is lowered so that small arrays take them."""

import numpy as np
import pytest

from fastdl import _backend, ops

pytestmark = pytest.mark.skipif(_backend.name != "cpu", reason="needs the C++ extension in use")


@pytest.fixture(params=_backend.cpu_extension().supported_simd() if _backend.cpu_extension() else [])
def isa(request):
    ext = _backend.cpu_extension()
    before, threshold = ext.simd(), ext._stream_threshold()
    ext.set_simd(request.param)
    yield ext
    ext.set_simd(before)
    ext._set_stream_threshold(threshold)


def _both(ext, f):
    """f() with plain stores, then with streaming stores everywhere."""
    ext._set_stream_threshold(1 << 62)
    plain = f()
    ext._set_stream_threshold(0)
    streamed = f()
    return plain, streamed


CALLS = {
    "gelu": lambda x, t, y: ops.gelu(x),
    "tanh_backward": lambda x, t, y: ops.tanh_backward(x, ops.tanh(x)),
    "softmax": lambda x, t, y: ops.softmax(x),
    "log_softmax": lambda x, t, y: ops.log_softmax(x),
    "softmax_backward": lambda x, t, y: ops.softmax_backward(x, ops.softmax(x)),
    "ce_labels": lambda x, t, y: ops.softmax_cross_entropy(x, y, label_smoothing=0.1),
    "ce_probs": lambda x, t, y: ops.softmax_cross_entropy(x, t, label_smoothing=0.1),
}


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize("shape", [(7, 33), (3, 1000), (50, 5000)], ids=str)
def test_streamed_equals_plain(isa, name, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    t = rng.uniform(0, 1, shape).astype(np.float32)
    y = rng.integers(0, shape[1], shape[0])
    plain, streamed = _both(isa, lambda: CALLS[name](x, t, y))
    if isinstance(plain, tuple):
        assert float(plain[0]) == float(streamed[0])
        plain, streamed = plain[1], streamed[1]
    np.testing.assert_array_equal(plain, streamed)
