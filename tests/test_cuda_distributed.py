"""fastdl.distributed on a GPU (issue #12, part 4): CuPy arrays go through NCCL (a communicator
made from rank 0's unique id, broadcast over MPI) on CuPy's current stream, and a data-parallel
fit of a model on the GPU reduces its gradient buffer there. A one-process NCCL communicator runs
every line of that path; the 2-process equivalence itself is tests/test_distributed.py's, on the CPU.
Skipped, with the reason, without mpi4py, CuPy (with NCCL) or a GPU."""

import numpy as np
import pytest

import fastdl
from fastdl import distributed, layers, models
from fastdl.distributed import _strategy
from fastdl.backends import cuda as cuda_backend

pytestmark = pytest.mark.cuda

pytest.importorskip("mpi4py", reason="fastdl.distributed needs mpi4py (pip install 'fastdl[mpi]')")
cupy = pytest.importorskip("cupy", reason="CuPy is not installed: the CUDA tests need it (pip install cupy-cuda13x)")
USABLE, REASON = cuda_backend.available()
if not USABLE:
    pytest.skip(f"no usable GPU: {REASON}", allow_module_level=True)
try:
    from cupy.cuda import nccl  # noqa: F401
except ImportError as exc:
    pytest.skip(f"CuPy has no NCCL ({exc})", allow_module_level=True)


@pytest.fixture
def one_process_job(monkeypatch):
    """init() in this process (a job of one), undone after the test: the suite stays single-process."""
    monkeypatch.setattr(distributed, "_context", None)
    yield distributed.init()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int32, np.int64])
def test_nccl_allreduce(one_process_job, dtype):
    a = cupy.arange(1, 1001, dtype=dtype)
    assert distributed.allreduce(a) is a  # in place
    np.testing.assert_array_equal(cupy.asnumpy(a), np.arange(1, 1001).astype(dtype))
    assert one_process_job._nccl is not None  # the communicator was made and kept
    b = cupy.full(7, 6, dtype=np.float32)
    distributed.allreduce(b, op="mean")
    np.testing.assert_array_equal(cupy.asnumpy(b), np.full(7, 6, np.float32))


def test_nccl_allreduce_refuses_what_it_cannot_sum(one_process_job):
    with pytest.raises(TypeError, match="C-contiguous"):
        distributed.allreduce(cupy.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="allreduce of CuPy arrays takes"):
        distributed.allreduce(cupy.zeros(4, np.complex64))


def test_nccl_allreduce_runs_on_the_current_stream(one_process_job):
    """Work queued on a stream before the allreduce is summed (it waits for it), without a host sync."""
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        a = cupy.zeros(1 << 20, np.float32)
        a += 3.0
        distributed.allreduce(a)
        total = a.sum()
    stream.synchronize()
    assert float(total) == 3.0 * (1 << 20)


def _model():
    return models.Sequential([layers.Input((12,)), layers.Dense(16, activation="relu"), layers.Dense(3,
                                                                                                     activation="softmax")])


def test_data_parallel_fit_on_the_gpu_reduces_through_nccl(monkeypatch):
    """A one-process data-parallel fit on the GPU (its gradient through NCCL) ends with the weights of
    the same fit without init()."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((203, 12)).astype(np.float32)
    y = np.argmax(x[:, :3], axis=1)
    runs = []
    for parallel in (False, True):
        monkeypatch.setattr(distributed, "_context", None)
        if parallel:  # a job of one trains as without init(): force the data-parallel strategy
            ctx = distributed.init()
            monkeypatch.setattr(_strategy, "current", lambda: _strategy.DataParallel(ctx))
        fastdl.set_seed(3)
        with fastdl.device("gpu"):
            model = _model()
            model.compile(fastdl.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["acc"])
        fastdl.set_seed(4)
        model.fit(x, y, batch_size=32, epochs=2, verbose=0)
        runs.append(model.get_weights())
    assert ctx._nccl is not None  # the gradient went through NCCL
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)
