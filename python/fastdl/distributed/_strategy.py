"""Where the training loop (fastdl/_training.py) asks how it is distributed: a strategy.

SingleProcess (the default) changes nothing. DataParallel (after fastdl.distributed.init()):

- begin(model, rng): rank 0's weights (and use_ema's average) are broadcast; the epoch order comes
  from a seed rank 0 draws, the same on every process; each process's own random numbers (dropout,
  augmentation) from that seed and its rank, different on each.
- local_range(start, stop): this process's rows of a global batch of arrays, contiguous, sizes
  differing by at most one (a process may get none of a batch smaller than the job). A generator or
  PyDataset is sharded by batch instead (fastdl/_sources.py): a step's global batch is `size` of
  its batches, one per process, and sum_rows gives its rows.
- reduce_gradients(model, local_rows, global_rows): the gradient of the local mean loss weighted
  by local_rows / global_rows (1 for a 'sum' loss), then one allreduce of the model's whole
  gradient buffer: the gradient of the global batch's mean loss, identical everywhere.
- reduce_loss / reduce_metrics: the epoch's loss (sum of loss x rows and rows) and each metric's
  state (counts and sums: Metric._state) summed across processes, so every process reads the
  same logs and callbacks such as EarlyStopping decide the same everywhere.
- any(flag): whether any process set it (a callback's stop_training).
"""

import numpy as np

from .. import _random
from . import _mpi, context, is_initialized, allreduce, broadcast


class SingleProcess:
    """One process: nothing is shared."""

    data_parallel = False
    rank, size, is_chief = 0, 1, True

    def begin(self, model, rng):
        return rng

    def local_range(self, start, stop):
        return start, stop

    def any(self, flag):
        return bool(flag)


class DataParallel:
    """Data parallelism over the processes of fastdl.distributed.init() (see the module)."""

    data_parallel = True

    def __init__(self, ctx):
        self.ctx = ctx
        self.rank, self.size, self.is_chief = ctx.rank, ctx.size, ctx.rank == 0
        self._scalar = np.zeros(1, dtype=np.int64)  # per-step agreements: a buffer allreduce (2 us), not pickles

    def _sum(self, value):
        self._scalar[0] = value
        if self.size > 1:
            self.ctx.comm.Allreduce(_mpi().IN_PLACE, self._scalar, op=_mpi().SUM)
        return int(self._scalar[0])

    def begin(self, model, rng):
        """Checks what data parallelism needs, makes the weights rank 0's and returns the
        Generator of the epoch order (the same everywhere)."""
        reduction = getattr(model.loss, "reduction", "sum_over_batch_size")
        if reduction not in ("sum_over_batch_size", "sum"):
            raise NotImplementedError(f"data-parallel fit with a loss of reduction={reduction!r}: fastdl reduces "
                                      f"'sum_over_batch_size' (the default) and 'sum' losses across processes")
        self.loss_sum = reduction == "sum"
        for m in model.metrics:
            if getattr(m, "_state", None) is None:
                raise TypeError(f"metric {m.name!r} does not declare its state (Metric._state: the names of its "
                                f"summable counts), so it cannot be reduced across processes")
        if not model.built:
            raise ValueError("data-parallel fit on a generator / PyDataset needs a built model (give the first layer "
                             "an input shape, or keras.Input): a process may get no batch to build it from")
        broadcast(model._params)
        if model._ema is not None:
            broadcast(model._ema)
        seed = self.ctx.comm.bcast(int(rng.integers(2 ** 62)) if self.is_chief else None, root=0)
        _random.replace(np.random.default_rng([seed, self.rank]))  # dropout, noise: each process its own
        return np.random.default_rng(seed)

    def local_range(self, start, stop):
        n = stop - start
        q, r = divmod(n, self.size)
        lo = start + self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    def reduce_gradients(self, model, local_rows, global_rows):
        grads = model._grads
        if not self.loss_sum and local_rows != global_rows:
            grads *= np.float32(local_rows / global_rows) if global_rows else np.float32(0.0)
        allreduce(grads)

    def sum_rows(self, rows):
        """The rows of this step's global batch (a generator's batches differ in size)."""
        return self._sum(rows)

    def reduce_loss(self, loss_mean, rows):
        """The mean loss over every process's rows, from this process's mean over its own."""
        local = np.array([loss_mean * rows if rows else 0.0, float(rows)], dtype=np.float64)
        allreduce(local)
        return float(local[0] / local[1]) if local[1] else float("nan")

    def reduce_metrics(self, metrics):
        """Every metric's state summed across processes (each process's results are then the job's)."""
        if not metrics:
            return
        states = self.ctx.comm.allgather([m._state_values() for m in metrics])
        for i, m in enumerate(metrics):
            m._merge_states([s[i] for s in states])

    def any(self, flag):
        return self._sum(bool(flag)) > 0


_SINGLE = SingleProcess()
_data_parallel = None


def current():
    """The strategy of this process: DataParallel after init() (even of one process), else SingleProcess."""
    global _data_parallel
    if not is_initialized():
        return _SINGLE
    ctx = context()
    if _data_parallel is None or _data_parallel.ctx is not ctx:
        _data_parallel = DataParallel(ctx)
    return _data_parallel
