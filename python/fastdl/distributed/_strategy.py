"""Where the training loop (fastdl/_training.py) asks how it is distributed: a strategy.

SingleProcess (the default, and a job of one process) changes nothing. DataParallel (after
fastdl.distributed.init() in a job of several processes):

- begin(model, rng): rank 0's weights (and use_ema's average) are broadcast; the epoch order comes
  from a seed rank 0 draws, the same on every process; each process's own random numbers (dropout,
  augmentation) from that seed and its rank, different on each.
- local_range(start, stop): this process's rows of a global batch of arrays, contiguous, sizes
  differing by at most one (a process may get none of a batch smaller than the job). A generator or
  PyDataset is sharded by batch instead (fastdl/_sources.py): a step's global batch is `size` of
  its batches, one per process, and sum_rows gives its rows.
- reduce_gradients(model, local_rows, global_rows): the gradient of the local mean loss weighted
  by local_rows / global_rows, then one allreduce of the model's whole
  gradient buffer: the gradient of the global batch's mean loss, identical everywhere.
- reduce_loss / reduce_metrics: the epoch's loss (sum of loss x rows and rows) and each metric's
  state (counts and sums: Metric._state) summed across processes, so every process reads the
  same logs and callbacks such as EarlyStopping decide the same everywhere.
- any(flag): whether any process set it (a callback's stop_training).
- average_states: BatchNormalization's moving statistics, averaged at each epoch's end.
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

    def end(self):
        pass

    def check_same(self, what, **facts):
        pass

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
        Generator of the epoch order: a copy of rank 0's (the same everywhere, and the order one
        process would draw). fastdl's own Generator becomes one seeded by rank 0 and the rank (dropout,
        noise: different on each process) until end() puts the process's own back."""
        reduction = getattr(model.loss, "reduction", "sum_over_batch_size")
        if reduction not in ("sum_over_batch_size", "mean"):
            raise NotImplementedError(f"data-parallel fit with a loss of reduction={reduction!r}: fastdl weights "
                                      f"each process's mean loss by its share of the batch, so it takes losses "
                                      f"reduced by 'sum_over_batch_size' (the default)")
        if getattr(model.loss, "ignore_class", None) is not None:
            raise NotImplementedError("data-parallel fit with a loss's ignore_class: the mean over the kept targets "
                                      "needs their count over every process, which fastdl does not gather yet")
        for m in model.metrics:
            if getattr(m, "_state", None) is None:
                raise TypeError(f"metric {m.name!r} does not declare its state (Metric._state: the names of its "
                                f"summable counts), so it cannot be reduced across processes")
        if not model.built:
            raise ValueError("data-parallel fit needs a built model (give the first layer an input shape, or "
                             "keras.Input): a process may get no batch to build it from")
        with model._device.activate():  # NCCL on the model's GPU
            broadcast(model._params)
            if model._ema is not None:
                broadcast(model._ema)
        state = self.ctx.comm.bcast(rng.bit_generator.state if self.is_chief else None, root=0)
        order = np.random.Generator(type(rng.bit_generator)())
        order.bit_generator.state = state
        seed = self.ctx.comm.bcast(int(rng.integers(2 ** 62)) if self.is_chief else None, root=0)
        self._own_generator = _random.generator()
        _random.replace(np.random.default_rng([seed, self.rank]))
        return order

    def end(self):
        """After fit: the process's own Generator back (later draws outside fit agree with one process's)."""
        if getattr(self, "_own_generator", None) is not None:
            _random.replace(self._own_generator)
            self._own_generator = None

    def check_same(self, what, **facts):
        """Raises the same ValueError on every process when the processes were given different data
        sizes or settings (they would take different numbers of steps and wait forever)."""
        everyone = self.ctx.comm.allgather(facts)
        differ = {k: [f[k] for f in everyone] for k in facts if any(f[k] != facts[k] for f in everyone)}
        if differ:
            raise ValueError(f"data-parallel {what}: the processes were given different {', '.join(differ)} "
                             f"(per rank: {differ}); every process must call it with the same data (fastdl "
                             f"splits each global batch between them)")

    def local_range(self, start, stop):
        n = stop - start
        q, r = divmod(n, self.size)
        lo = start + self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    def reduce_gradients(self, model, local_rows, global_rows):
        grads = model._grads
        if local_rows != global_rows:
            grads *= np.float32(local_rows / global_rows) if global_rows else np.float32(0.0)
        allreduce(grads)

    def sum_rows(self, rows):
        """The rows of this step's global batch (a generator's batches differ in size)."""
        return self._sum(rows)

    def average_states(self, model):
        """The layers' state weights (BatchNormalization's moving statistics, which each process moves
        towards its own batches) averaged across processes. Their update is linear, so averaging once
        per epoch gives what averaging after every step would (Keras's mirrored variables)."""
        states = [layer.weights[i] for layer in model._compute_layers for i in sorted(layer.state_weights)]
        if not states:
            return
        xp = np if isinstance(states[0], np.ndarray) else _cupy()
        buffer = xp.concatenate([s.reshape(-1) for s in states])
        with model._device.activate():
            allreduce(buffer, op="mean")
        offset = 0
        for s in states:
            s[...] = buffer[offset:offset + s.size].reshape(s.shape)
            offset += s.size

    def reduce_loss(self, loss_mean, rows):
        """The mean loss over every process's rows, from this process's mean over its own."""
        local = np.array([loss_mean * rows if rows else 0.0, float(rows)], dtype=np.float64)
        allreduce(local)
        return float(local[0] / local[1]) if local[1] else 0.0  # no rows anywhere: 0.0, as one process says

    def reduce_metrics(self, metrics):
        """Every metric's state summed across processes (each process's results are then the job's)."""
        if not metrics:
            return
        states = self.ctx.comm.allgather([m._state_values() for m in metrics])
        for i, m in enumerate(metrics):
            m._merge_states([s[i] for s in states])

    def any(self, flag):
        return self._sum(bool(flag)) > 0


def _cupy():
    import cupy
    return cupy


_SINGLE = SingleProcess()
_data_parallel = None


def current():
    """The strategy of this process: DataParallel after init() in a job of several processes, else
    SingleProcess (a job of one trains exactly as without init())."""
    global _data_parallel
    if not is_initialized() or context().size == 1:
        return _SINGLE
    ctx = context()
    if _data_parallel is None or _data_parallel.ctx is not ctx:
        _data_parallel = DataParallel(ctx)
    return _data_parallel
