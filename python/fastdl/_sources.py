"""Where fit, evaluate and predict get their batches, as Keras takes them: arrays (with
sample weights), or a Python iterator / generator, or a PyDataset.

Every source yields, per batch, (x, y, y_raw, truths, sample_weight) on the model's device:
x the inputs (float32), y the targets as the loss takes them, y_raw as the metrics take them,
truths the metrics' class ids ({} without metrics), sample_weight None or one float32 per row.

Arrays are prepared once, then sliced or taken in the epoch's order (fastdl/_feed.py moves them
to a GPU); data-parallel, each process takes its share of each global batch (global_rows). With steps_per_epoch an epoch is that many batches and the next epoch goes on where it
stopped, starting a new pass (a new permutation) when one ends, as Keras does. An iterator's items
are (x, y) or (x, y, sample_weight) (x alone for predict), each prepared as it comes; it is read
on across epochs, and when it runs out before an epoch's steps training stops with a warning, as
Keras's does. A PyDataset gives its len() batches by index each epoch (in a new order each epoch when fit
shuffles), with on_epoch_begin before and on_epoch_end after each epoch, and, as Keras's epoch
iterator resets it, on_epoch_end once more before a fit's (or each evaluation's) first batch.
"""

import math
import warnings

import numpy as np

from . import _feed
from ._checks import on_device, to_host
from .data.pydataset import PyDataset


_NO_BATCH = object()  # a step in which this process has no batch of the source (data-parallel)


def is_batch_source(data):
    """Whether data is given batch by batch (an iterator, a generator or a PyDataset), not as arrays."""
    if isinstance(data, PyDataset):
        return True
    if isinstance(data, (np.ndarray, list, tuple, dict, str, bytes)) or on_device(data):
        return False
    return hasattr(data, "__next__") or (hasattr(data, "__iter__") and not hasattr(data, "__len__"))


def sample_weights(sample_weight, class_weight, y_raw, rows, where="sample_weight"):
    """One float32 weight per row, or None: sample_weight, or class_weight[class of the row] (the
    class from y_raw: ids, a (n, 1) column rounded, or argmax of rows; classes missing from
    class_weight weigh 1), as Keras 3 computes them (it refuses both at once)."""
    w = None
    if sample_weight is not None and class_weight:
        raise ValueError("class_weight and sample_weight cannot be used together (as in Keras 3): fold the class "
                         "weights into sample_weight")
    if sample_weight is not None:
        w = to_host(sample_weight)
        if w.dtype.kind not in "iufb":
            raise TypeError(f"{where} must be numeric, got dtype {w.dtype}")
        if w.ndim > 1 and w.shape[1:] != (1,) * (w.ndim - 1):
            raise ValueError(f"{where} must hold one weight per sample, got shape {w.shape}")
        w = w.reshape(-1).astype(np.float32)
        if len(w) != rows:
            raise ValueError(f"{where} has {len(w)} weights for {rows} samples")
        if not np.isfinite(w).all():
            raise ValueError(f"{where} holds a weight that is not finite")
    if class_weight:
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be a dict {{class id: weight}}, got {type(class_weight).__name__}")
        for c in class_weight:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 0:
                raise ValueError(f"class_weight keys must be class ids >= 0, got {c!r}")
        y = to_host(y_raw)
        if y.ndim > 1:
            y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
        ids = np.round(y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y).astype(np.int64)
        table = np.ones(int(max(max(class_weight), ids.max(initial=0))) + 1, dtype=np.float32)
        for c, weight in class_weight.items():
            table[int(c)] = float(weight)
        cw = table[ids]
        w = cw if w is None else w * cw
    return w


class ArraySource:
    """Batches of arrays prepared for the whole fit / evaluate."""

    def __init__(self, model, x, y, y_raw, sample_weight, batch_size, shuffle=False, steps=None, rng=None,
                 continuing=False, x_on_host=False, with_truths=True, strategy=None):
        self.n, self.batch_size, self.shuffle, self.rng = len(x), batch_size, shuffle, rng
        # data-parallel: each batch is a global batch, of which this process takes its rows
        self.shard = strategy if strategy is not None and strategy.data_parallel else None
        self.global_rows = 0
        self.passes = -(-self.n // batch_size)
        self.steps = self.passes if steps is None else steps
        self.continuing = continuing  # steps_per_epoch: the next epoch goes on where this one stopped
        truths = model._metric_truths(y_raw) if with_truths and model.metrics else {}
        same_raw = y_raw is y
        arrays = [x, y, y_raw] + ([] if sample_weight is None else [sample_weight]) + list(truths.values())
        self.batches = _feed.Batches(model._device, arrays, keep_on_host={0} if x_on_host else ())
        moved = self.batches.arrays
        self.x, self.y, self.y_raw = moved[0], moved[1], moved[1] if same_raw else moved[2]
        self.w = None if sample_weight is None else moved[3]
        self.truths = dict(zip(truths, moved[3 + (sample_weight is not None):]))
        self.x_on_host = x_on_host
        self.next_batch = self.passes  # a new pass at the first batch

    def epoch(self):
        b, bs, same_raw, shard = self.batches, self.batch_size, self.y_raw is self.y, self.shard
        if not self.continuing:
            self.next_batch = self.passes
        for _ in range(self.steps):
            if self.next_batch >= self.passes:  # a new pass over the data
                b.epoch(self.rng.permutation(self.n) if self.shuffle else None)
                self.next_batch = 0
            start = self.next_batch * bs
            self.next_batch += 1
            if shard is None:
                b.select(start, start + bs)
            else:
                stop = min(start + bs, self.n)
                self.global_rows = stop - start
                b.select(*shard.local_range(start, stop))
            yb = b.take(self.y)
            yield (b.take(self.x, host=self.x_on_host), yb, yb if same_raw else b.take(self.y_raw),
                   {k: b.take(v) for k, v in self.truths.items()}, None if self.w is None else b.take(self.w))


class IteratorSource:
    """Batches from an iterator, a generator or a PyDataset, each prepared as it comes."""

    def __init__(self, model, data, steps=None, class_weight=None, predict=False, where="x", shuffle=False, rng=None,
                 continuing=False, training=False, strategy=None):
        self.model, self.data, self.class_weight, self.predict, self.where = model, data, class_weight, predict, where
        self.shuffle, self.rng = shuffle, rng  # a PyDataset's batches in a new order each epoch (fit's shuffle)
        self.dataset = data if isinstance(data, PyDataset) else None
        self.iterator = None if self.dataset is not None else iter(data)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"steps must be a positive int, got {steps!r}")
        # data-parallel: a step takes `size` consecutive batches of the source, this process the rank-th
        self.shard = strategy if strategy is not None and strategy.data_parallel else None
        self.rank, self.size = (self.shard.rank, self.shard.size) if self.shard is not None else (0, 1)
        self.global_rows = 0
        self.ran_out_here = False
        self.given_steps = steps
        self.steps = steps if steps is not None else (
            -(-len(self.dataset) // self.size) if self.dataset is not None else None)
        self.index = 0
        self.continuing = continuing  # fit's steps_per_epoch: a PyDataset's next epoch goes on where one stopped
        self.exhausted = False
        self.training = training  # fit's data: reset once per fit (an evaluation's: once per run)
        self.started = False

    def _items(self):
        if self.dataset is not None:
            n = len(self.dataset)  # read each epoch: a PyDataset may change its length
            count = -(-n // self.size) if self.given_steps is None else self.given_steps
            if not self.continuing:
                self.index = 0
            order = self.rng.permutation(n) if self.shuffle and self.given_steps is None else None
            if not self.started or not self.training:
                self.dataset.on_epoch_end()  # as Keras: its epoch iterator's reset, before a run's first batch
                self.started = True
            self.dataset.on_epoch_begin()
            for _ in range(count):
                position = self.index + self.rank
                self.index += self.size
                if self.given_steps is None and position >= n:
                    yield _NO_BATCH  # data-parallel: the last step has fewer batches than processes
                    continue
                i = position % max(n, 1)
                yield self.dataset[int(order[i]) if order is not None else i]
            self.dataset.on_epoch_end()
            return
        count = self.given_steps
        taken = 0
        while count is None or taken < count:
            item = self._next_item()
            ran_out = item is _NO_BATCH
            if self.shard is not None and self.training:  # the job goes on while any process has a batch
                ran_out = not self.shard.any(not ran_out)
            if ran_out:
                if count is not None or taken == 0:
                    warnings.warn(f"your input ran out of data after {taken} batches of this epoch; interrupting "
                                  f"(make sure {self.where} can give steps_per_epoch * epochs batches)",
                                  stacklevel=4)
                    self.exhausted = True
                return
            taken += 1
            yield item

    def _next_item(self):
        """The iterator's next item (data-parallel: of the next `size`, the rank-th, the others read
        and dropped); _NO_BATCH when it has run out."""
        item = _NO_BATCH
        for r in range(self.size):
            if self.ran_out_here:
                break
            try:
                got = next(self.iterator)
            except StopIteration:
                self.ran_out_here = self.shard is not None  # one process: a later epoch reads on
                break
            if r == self.rank:
                item = got
        if item is _NO_BATCH and self.shard is not None:
            self.ran_out_here = True
        return item

    def epoch(self):
        model, dev = self.model, self.model._device
        for item in self._items():
            if item is _NO_BATCH:  # data-parallel: no batch here in this step; the others' go on
                self.global_rows = self.shard.sum_rows(0) if self.training else 0
                empty = dev.put(np.empty((0,) + tuple(model._input_shape or ()), dtype=np.float32))
                yield empty, empty, empty, {}, None
                continue
            x, y, sw = _unpack(item, self.predict, self.where)
            if self.predict:
                yield model._as_input(x), None, None, {}, None
                continue
            x, y_loss, y_raw = model._prepare(x, y)
            truths = model._metric_truths(y_raw) if model.metrics else {}
            w = sample_weights(sw, self.class_weight, y_raw, len(x), f"the sample weights of a batch of {self.where}")
            if self.shard is not None and self.training:
                self.global_rows = self.shard.sum_rows(len(x))
            yield (dev.put(x), dev.put(y_loss), dev.put(y_raw), {k: dev.put(v) for k, v in truths.items()},
                   None if w is None else dev.put(w))


def _unpack(item, predict, where):
    if isinstance(item, dict):
        raise TypeError(f"{where} gave a dict: fastdl models take (x, y) or (x, y, sample_weight) batches")
    if not isinstance(item, tuple):
        if predict:
            return item, None, None
        raise ValueError(f"{where} must give (x, y) or (x, y, sample_weight) batches, got a "
                         f"{type(item).__name__}")
    if predict:
        return item[0], None, None
    if len(item) == 2:
        return item[0], item[1], None
    if len(item) == 3:
        return item
    raise ValueError(f"{where} must give (x, y) or (x, y, sample_weight) batches, got a tuple of {len(item)}")


def split_arrays(data, where):
    """validation_data as Keras takes it: (x, y) or (x, y, sample_weight)."""
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise ValueError(f"{where} must be (x, y), (x, y, sample_weight), a generator or a PyDataset")
    return tuple(data) + (None,) * (3 - len(data))


def steps_argument(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


def batches_of(rows, batch_size):
    return math.ceil(rows / batch_size)
