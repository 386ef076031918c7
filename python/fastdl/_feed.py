"""How fit and evaluate move data between the host and a model's device.

Batches: a fit's arrays and the batches taken from them. On the CPU a batch is a slice or a take
into a reused buffer, as always. On a GPU, NumPy arrays are copied to the device once for the
whole fit when they fit in its memory (then each batch is a take on the device), else batch by
batch; CuPy arrays are used where they are.

LossSum: the running loss, summed on the device between reads.

MetricFeed: the metrics' inputs. On the CPU each batch updates the metrics at once. On a GPU the
inputs of each batch (predicted class ids, targets) stay on the device, and are brought back and
fed to the metrics only when a result is read (the progress bar's interval, an epoch's end):
reading a value makes the host wait for the GPU, and waiting once per batch would leave the GPU
idle between batches.
"""

import numpy as np

from ._checks import array_module, on_device


class Batches:
    """Rows [start, stop) of the order of this epoch (or in order), on the model's device."""

    def __init__(self, device, arrays, keep_on_host=()):
        """arrays: the fit's arrays (NumPy or CuPy); keep_on_host: indices of arrays batched on the
        host whatever happens (augmentation functions take NumPy batches)."""
        self.device = device
        self.on_cpu = device.kind == "cpu"
        if not self.on_cpu:
            moving = {id(a): a for i, a in enumerate(arrays) if not device.holds(a) and i not in keep_on_host}
            if device.fits(sum(a.nbytes for a in moving.values())):
                moved = {key: device.put(a) for key, a in moving.items()}  # an array listed twice moves once
                arrays = [a if i in keep_on_host else moved.get(id(a), a) for i, a in enumerate(arrays)]
        self.arrays = arrays
        self.order = self.device_order = None
        self._buffers = {}
        # On the CPU a batch goes into a buffer reused by the next batch (no allocation per step); on
        # a GPU each batch is a new array (CuPy's pool makes that cheap), so that a deferred feed can
        # keep it without a copy.
        self.reuses_buffers = self.on_cpu

    def epoch(self, order):
        """order: this epoch's permutation of the rows (host int64), or None for the rows in turn."""
        self.order = order
        self.device_order = None if order is None or self.on_cpu else self.device.put(order)

    def select(self, start, stop):
        """Makes rows start:stop of the epoch's order the batch that take() returns."""
        if self.order is None:
            self.rows = slice(start, stop)
        else:
            self.rows = self.order[start:stop]
            if self.device_order is not None:
                self.device_rows = self.device_order[start:stop]

    def take(self, a, host=False):
        """The selected rows of a, on the model's device (on the host if host)."""
        rows = self.rows
        if type(rows) is slice:
            b = a[rows]
        elif type(a) is np.ndarray:
            b = self._buffers.get((id(a), len(rows))) if self.reuses_buffers else None
            if b is None:
                b = self._buffer(a, len(rows), np)
            a.take(rows, axis=0, out=b)  # the method: no dispatch layer (0.6 us a call at batch 32)
        else:
            b = self.device.xp.take(a, self.device_rows, axis=0)
        return b if self.on_cpu or host else self.device.put(b)

    def _buffer(self, src, rows, xp):
        if not self.reuses_buffers:
            return xp.empty((rows,) + src.shape[1:], dtype=src.dtype)
        key = (id(src), rows)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = xp.empty((rows,) + src.shape[1:], dtype=src.dtype)
        return buf


class LossSum:
    """The running sum of batch losses times batch rows. On the CPU a loss is a number; on a GPU it
    is a 0-d device array, kept as it is until the mean is read (one reduction then)."""

    MAX_PENDING = 512  # batch losses kept before they are summed into one, on the device

    def __init__(self):
        self.total, self.rows, self.pending = 0.0, 0, []

    def add(self, loss, rows):
        if type(loss) is float or isinstance(loss, np.floating) or not on_device(loss):
            self.total += loss * rows
        else:
            self.pending.append((loss, rows))
            if len(self.pending) >= self.MAX_PENDING:
                self.pending = [(self._weighted_sum(), 1)]
        self.rows += rows

    def _weighted_sum(self):
        """sum of loss * rows over the pending losses, as a 0-d device array (nothing waits)."""
        xp = array_module(self.pending[0][0])
        losses = xp.stack([loss for loss, _ in self.pending])
        return losses @ xp.asarray([rows for _, rows in self.pending], dtype=losses.dtype)

    def mean(self):
        if self.pending:
            self.total += float(self._weighted_sum())
            self.pending = []
        return self.total / max(self.rows, 1)


class MetricFeed:
    """Feeds each batch's metric inputs to the metrics, at once or (deferred) at the next read."""

    # a deferred feed brings its inputs back early rather than hold more than this on the device, and
    # joins them there into one batch's worth when they come from this many batches
    MAX_PENDING_BYTES = 64 << 20
    MAX_PENDING = 256

    def __init__(self, deferred):
        self.deferred = deferred
        self.pending, self.pending_bytes = [], 0

    def update(self, inputs):
        """inputs: [(metric, truths, predictions, sample weights or None)] of one batch; with a
        deferred feed, arrays that the next batch does not overwrite."""
        if not self.deferred:
            for m, t, p, w in inputs:
                if w is None:
                    m._update(t, p)
                else:
                    m._update(t, p, _host(w))
            return
        self.pending.append(inputs)
        self.pending_bytes += sum(t.nbytes + p.nbytes for _, t, p, _ in inputs)
        if self.pending_bytes > self.MAX_PENDING_BYTES:
            self.flush()
        elif len(self.pending) >= self.MAX_PENDING:
            self.pending = [self._joined()]

    def _joined(self):
        """The pending inputs as one batch's: each metric's truths, predictions (and weights) joined."""
        return [(m, _concat([b[k][1] for b in self.pending]), _concat([b[k][2] for b in self.pending]),
                 None if w is None else _concat([b[k][3] for b in self.pending]))
                for k, (m, _, _, w) in enumerate(self.pending[0])]

    def flush(self):
        """Brings the pending inputs to the host (one copy per array and metric) and feeds them."""
        if not self.pending:
            return
        joined, self.pending, self.pending_bytes = self._joined(), [], 0
        for m, t, p, w in joined:
            if w is None:
                m._update(_host(t), _host(p))
            else:
                m._update(_host(t), _host(p), _host(w))


def _concat(arrays):
    if len(arrays) == 1:
        return arrays[0]
    return array_module(arrays[0]).concatenate(arrays, axis=0)


def _host(a):
    return a if type(a) is np.ndarray else a.get()
