"""The CUDA module without a GPU: it imports and says why it cannot run, it refuses bad arguments
before touching CUDA, and its multi-tensor chunk schedule (the host function the launchers use
to cut a step into kernel launches) covers every element once within the launch limits.

Skipped when fastdl was built without nvcc (FASTDL_CUDA=OFF or no CUDA toolkit)."""

import re

import numpy as np
import pytest

m = pytest.importorskip("fastdl._fastdl_cuda", reason="fastdl was built without the CUDA module")

from fastdl.backends import numpy_kernels  # noqa: E402
from fastdl.backends.options import AdamOptions, SgdOptions  # noqa: E402

NO_DEVICE = m.status()["devices"] == 0


# ---- the module ---------------------------------------------------------------------------------------

def test_status_reports_devices_or_a_reason():
    s = m.status()
    assert set(s) == {"devices", "reason", "runtime_version", "driver_version"}
    assert s["runtime_version"] >= 13000
    if s["devices"]:
        assert s["reason"] is None
        assert isinstance(m.device_name(0), str) and m.device_name(0)
    else:
        assert isinstance(s["reason"], str) and s["reason"]
        if s["driver_version"] == 0:
            assert s["reason"] == "no NVIDIA driver"
    assert m.status() == s  # probing twice gives the same answer (the probe leaves no error behind)


def test_activation_ids_match_the_other_implementations():
    assert dict(m.ACTIVATIONS) == numpy_kernels.ACTIVATIONS


def test_adapter_imports_and_says_why_it_cannot_run():
    from fastdl.backends import cuda
    ok, why = cuda.available()
    if NO_DEVICE:
        assert not ok and isinstance(why, str) and why
    for name in ("activation", "activation_backward", "bias_activation", "bias_activation_backward", "softmax",
                 "softmax_backward", "mse", "binary_crossentropy", "softmax_cross_entropy", "grad_sum_squares",
                 "sgd_step", "adam_step"):
        assert callable(getattr(cuda, name)), name
        assert getattr(cuda, name).__doc__, name


@pytest.mark.parametrize("call, error, words", [
    (lambda: m.activation(99, "float32", 256, 256, 4, 0.0, 0, 0), ValueError, "activation id"),
    (lambda: m.activation(0, "int8", 256, 256, 4, 0.0, 0, 0), TypeError, "dtype"),
    (lambda: m.activation(0, "float32", 0, 256, 4, 0.0, 0, 0), ValueError, "x is a null address"),
    (lambda: m.activation(0, "float32", 258, 256, 4, 0.0, 0, 0), ValueError, "aligned"),
    (lambda: m.activation(0, "float32", 256, 256, -1, 0.0, 0, 0), ValueError, "n must be"),
    (lambda: m.activation(0, "float32", 256, 256, 4, 0.0, -1, 0), ValueError, "device"),
    (lambda: m.softmax("float32", 256, 256, 1 << 40, 1 << 40, False, 0, 0), ValueError, "overflows"),
    (lambda: m.mse("float64", 256, 256, 256, 4, 0, 0, 0), ValueError, "loss"),
    (lambda: m.softmax_ce("float32", 256, 256, "int16", 256, 2, 3, 0.0, 256, 0, 0), ValueError, "target_kind"),
    (lambda: m.softmax_ce("float32", 256, 256, "int64", 256, 2, 0, 0.0, 256, 0, 0), ValueError, "no classes"),
    # the reduction's arguments (null addresses: a call that got past these checks would still stop before CUDA)
    (lambda: m.softmax_ce("float32", 0, 0, "int64", 0, 2, 3, 0.0, 0, 0, 0, True, -100, "avg", 0), ValueError,
     "reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    (lambda: m.softmax_ce("float32", 0, 0, "int64", 0, 2, 3, 0.0, 0, 0, 0, False, 0, "none", 0), ValueError,
     "reduction='none' needs row_losses"),
    (lambda: m.softmax_ce("float32", 0, 0, "probs", 0, 2, 3, 0.0, 0, 0, 0, False, 0, "none", 4), ValueError,
     "row_losses must be the address of device doubles"),
    (lambda: m.softmax_ce("float32", 0, 0, "int64", 0, 2, 3, 0.0, 0, 0, 0, True, 1, reduction="sum"), ValueError,
     "target is not a valid int64 address"),
    (lambda: m.sgd_step("float32", [256], [256, 512], None, [4], np.array([1]), SgdOptions(lr=0.1), 0, 0, 0),
     ValueError, "grads has 2 entries"),
    (lambda: m.sgd_step("float32", [256], [256], None, [4], np.array([0]), SgdOptions(lr=0.1), 0, 0, 0),
     ValueError, "steps[0]"),
    (lambda: m.sgd_step("float32", [256], [256], None, [4], [1], SgdOptions(lr=0.1), 0, 0, 0),
     TypeError, "int64 array"),
    (lambda: m.adam_step("float16", [256], [256], [256], [256], None, [-4], np.array([1]), AdamOptions(lr=0.1), 0,
                         0, 0), ValueError, "sizes[0]"),
    (lambda: m.sgd_step("float32", [256], [256], None, [4], np.array([1]), SgdOptions(lr=0.1, clip_coef=object()),
                        0, 0, 0), TypeError, "clip_coef"),
    # the layer kernels' glue (LayerNorm's and BatchNorm's share their checks)
    (lambda: m.layer_norm_backward("float32", 256, 256, 0, 0, 256, 0, 0, 0, 4, 8, 0, 0), ValueError,
     "mean is a null address"),
    (lambda: m.batch_norm_backward("float64", 256, 256, 0, 256, 260, 0, 0, 0, 4, 8, 0, 0), ValueError,
     "rstd is not aligned"),
    (lambda: m.batch_norm("float32", 256, 0, 0, 0, 256, 256, 256, 4, 8, 1e-3, 0, 0), ValueError, "y is a null address"),
    (lambda: m.layer_norm("float16", 256, 0, 0, 256, 256, 256, 4, 8, 1e-3, 0, 0), TypeError,
     "the layer kernels take float32 or float64 arrays, got float16"),
    (lambda: m.embedding_backward("float32", 256, 256, 256, 0, 256, 6, 4, 10, 3, 0, 0), ValueError,
     "steps must be >= 1 and divide tokens"),
    (lambda: m.embedding_bag("float32", 0, 256, 256, 256, 2, 3, 10, 4, -1, 0, 0), ValueError, "ids is a null address"),
])
def test_bad_arguments_are_refused_before_cuda(call, error, words):
    with pytest.raises(error, match=re.escape(words)):
        call()


def test_cuda_softmax_cross_entropy_checks_its_reduction_first():
    from fastdl.backends import cuda
    with pytest.raises(ValueError, match="reduction must be"):
        cuda.softmax_cross_entropy(None, None, None, reduction="avg")
    with pytest.raises(ValueError, match="needs row_losses"):
        cuda.softmax_cross_entropy(None, None, None, ignore_index=-100, reduction="none")


@pytest.mark.skipif(not NO_DEVICE, reason="would launch kernels on made-up addresses")
def test_without_a_gpu_calls_raise_runtime_error_naming_the_cuda_error():
    calls = [
        lambda: m.activation(0, "float32", 256, 256, 4, 0.0, 0, 0),
        lambda: m.softmax_ce("bfloat16", 256, 256, "probs", 256, 2, 3, 0.1, 256, 0, 0),
        lambda: m.softmax_ce("float32", 256, 256, "int32", 256, 2, 3, 0.0, 256, 0, 0, True, -100, "none", 512),
        lambda: m.grad_sum_squares("float64", [256], [10], 256, 0, 0),
        # a device clipping factor: options.clip_coef is then ignored, whatever it is
        lambda: m.adam_step("float32", [256], [256], [256], [256], None, [4], np.array([3]),
                            AdamOptions(lr=0.1, clip_coef=object()), 512, 0, 0),
        lambda: m.batch_norm_backward("float32", 256, 256, 0, 256, 256, 256, 0, 0, 4, 8, 0, 0),
        lambda: m.embedding_bag("float32", 256, 256, 256, 256, 2, 3, 10, 4, 0, 0, 0),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"CUDA error cudaError\w+ \(.+\) in \w+"):
            call()
    # empty work queues nothing and touches no CUDA
    m.activation(0, "float32", 0, 0, 0, 0.0, 0, 0)
    m.softmax("float64", 0, 0, 0, 7, True, 0, 0)


# ---- the layer kernels' Python glue (fastdl.backends.cuda_layers) on stand-in arrays ---------------

class _DeviceArray:
    """A stand-in for a CuPy array (its class's module is 'cupy'): a NumPy array's dtype, shape,
    flags and address, on device 0. The glue checks these and hands the addresses over."""

    def __init__(self, a):
        self.host = a
        self.dtype, self.shape, self.ndim, self.size, self.nbytes = a.dtype, a.shape, a.ndim, a.size, a.nbytes
        self.flags = a.flags
        self.data = type("Memory", (), {"ptr": a.ctypes.data})()
        self.device = type("Device", (), {"id": 0, "__enter__": lambda d: d, "__exit__": lambda d, *e: None})()


_DeviceArray.__module__ = "cupy"


@pytest.fixture
def glue(monkeypatch):
    """fastdl.backends.cuda_layers with a module that records each call instead of launching."""
    from fastdl.backends import cuda_layers
    calls = []

    class Recorder:
        def __getattr__(self, name):
            return lambda *args: calls.append((name,) + args)
    monkeypatch.setattr(cuda_layers, "_m", lambda: Recorder())
    monkeypatch.setattr(cuda_layers, "_stream", lambda: 0)
    return cuda_layers, calls


def _arrays(*shapes, dtype=np.float32):
    return [_DeviceArray(np.zeros(s, dtype)) for s in shapes]


@pytest.mark.parametrize("kernel, per_row", [("layer_norm_backward", True), ("batch_norm_backward", False)])
def test_norm_backward_glue_hands_over_the_addresses_and_checks_the_statistics(glue, kernel, per_row):
    cuda_layers, calls = glue
    rows, c = 5, 3
    stat = (rows,) if per_row else (c,)
    dy, x, gamma, mean, rstd, dx, dgamma = _arrays((rows, c), (rows, c), (c,), stat, stat, (rows, c), (c,))
    getattr(cuda_layers, kernel)(dy, x, gamma, mean, rstd, dx, dgamma, None)
    assert calls == [(kernel, "float32", dy.data.ptr, x.data.ptr, gamma.data.ptr, mean.data.ptr, rstd.data.ptr,
                      dx.data.ptr, dgamma.data.ptr, 0, rows, c, 0, 0)]
    wrong = _arrays((c,) if per_row else (rows,))[0]
    with pytest.raises(ValueError, match=re.escape(f"mean must have shape {stat}")):
        getattr(cuda_layers, kernel)(dy, x, gamma, wrong, rstd, dx, dgamma, None)
    with pytest.raises(ValueError, match="dgamma must not share memory with gamma"):
        getattr(cuda_layers, kernel)(dy, x, gamma, mean, rstd, dx, gamma, None)
    with pytest.raises(TypeError, match="x must be a CuPy array"):
        getattr(cuda_layers, kernel)(dy, x.host, gamma, mean, rstd, dx, dgamma, None)


def test_norm_forward_glue_checks_each_statistic(glue):
    cuda_layers, calls = glue
    x, gamma, y, row_stat, col_stat, col_stat2, col_stat3 = _arrays((4, 6), (6,), (4, 6), (4,), (6,), (6,), (6,))
    cuda_layers.layer_norm(x, gamma, None, y, row_stat, _arrays((4,))[0], 1e-3)
    cuda_layers.batch_norm(x, gamma, None, x, col_stat, col_stat2, col_stat3, 1e-3)  # y may be x
    assert [c[0] for c in calls] == ["layer_norm", "batch_norm"]
    assert calls[1][6:9] == (col_stat.data.ptr, col_stat2.data.ptr, col_stat3.data.ptr)  # mean, var, rstd
    with pytest.raises(ValueError, match=re.escape("var must have shape (6,)")):
        cuda_layers.batch_norm(x, gamma, None, y, col_stat, row_stat, col_stat3, 1e-3)
    with pytest.raises(ValueError, match="mean must not share memory with rstd"):
        cuda_layers.layer_norm(x, gamma, None, y, row_stat, row_stat, 1e-3)


# ---- the chunk schedule -----------------------------------------------------------------------------

def check_schedule(sizes, max_tensors, max_blocks, chunk):
    launches = m._chunk_schedule(sizes, max_tensors, max_blocks, chunk)
    covered = [0] * len(sizes)
    last = (-1, 0)
    for launch in launches:
        assert 0 < len(launch) <= max_blocks
        assert len({k for k, _, _ in launch}) <= max_tensors
        for k, b, e in launch:
            assert sizes[k] > 0, "an empty tensor got a block"
            assert b == covered[k], "chunks of a tensor out of order, overlapping or with a gap"
            assert b % chunk == 0 and 0 < e - b <= chunk and e <= sizes[k]
            assert (k, b) > last, "blocks out of order"
            last = (k, b)
            covered[k] = e
    assert covered == list(sizes), "an element is not covered"
    return launches


def test_schedule_small_cases():
    assert m._chunk_schedule([], 2, 3, 4) == []
    assert m._chunk_schedule([0, 0], 2, 3, 4) == []
    assert m._chunk_schedule([3, 0, 10], 2, 3, 4) == [[(0, 0, 3), (2, 0, 4), (2, 4, 8)], [(2, 8, 10)]]
    # the tensor limit starts a new launch; a tensor split across launches continues where it stopped
    assert m._chunk_schedule([1, 1, 1], 2, 10, 4) == [[(0, 0, 1), (1, 0, 1)], [(2, 0, 1)]]
    assert m._chunk_schedule([9], 1, 2, 4) == [[(0, 0, 4), (0, 4, 8)], [(0, 8, 9)]]


@pytest.mark.parametrize("seed", range(20))
def test_schedule_random(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    sizes = [int(s) for s in rng.choice([0, 1, 7, 64, 65, 1000], n)]
    check_schedule(sizes, int(rng.integers(1, 6)), int(rng.integers(1, 9)), int(rng.choice([1, 8, 64])))


def test_schedule_with_the_defaults():
    chunk, max_t, max_b = m.DEFAULT_CHUNK, m.MAX_TENSORS_PER_LAUNCH, m.MAX_BLOCKS_PER_LAUNCH
    assert chunk % 8 == 0 and 1 <= max_t <= 65536 and max_b >= 1
    # a model: 330 small tensors (more than one launch's table), a big matrix, empty ones
    sizes = [k % 97 + 1 for k in range(330)] + [1025 * 1025, 0, 4097, 0]
    launches = check_schedule(sizes, max_t, max_b, chunk)
    assert len(launches) == 2
    # one tensor bigger than a launch: split across launches, every launch full but the last
    big = (2 * max_b + 3) * chunk + 5
    launches = check_schedule([big], max_t, max_b, chunk)
    assert [len(x) for x in launches] == [max_b, max_b, 4]


def test_schedule_refuses_bad_limits():
    for args in ([1], 0, 1, 1), ([1], 1, 0, 1), ([1], 1, 1, 0), ([-1], 1, 1, 1):
        with pytest.raises(ValueError):
            m._chunk_schedule(*args)
