"""Pooling, channels_last: MaxPooling1D/2D, AveragePooling1D/2D (the max_pool / avg_pool kernels,
which keep each maximum's position for the backward), and GlobalAveragePooling1D/2D,
GlobalMaxPooling1D/2D (reductions over the steps / positions). A 1-D pooling is a 2-D one over an
image of height 1. GlobalAveragePooling1D honours an Embedding's mask_zero, as Keras's does:
masked steps are left out of the mean."""

import numpy as np

from . import _backend, _spatial
from ._checks import array_module, flag
from .layers import Layer



class _Pooling(Layer):
    rank = 2
    kind = "max"

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.pool_size = _spatial.int_tuple(pool_size, self.rank, "pool_size")
        self.strides = self.pool_size if strides is None else _spatial.int_tuple(strides, self.rank, "strides")
        self.padding = _spatial.padding_arg(padding)
        self.data_format = _spatial.data_format_arg(data_format)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(f"{self.name}: {type(self).__name__} takes inputs of shape (batch, "
                             f"{'steps' if self.rank == 1 else 'rows, cols'}, channels), got (batch,) + "
                             f"{tuple(input_shape)}")
        lift = (1,) * (2 - self.rank)
        size, pool, strides = lift + tuple(input_shape[:-1]), lift + self.pool_size, lift + self.strides
        padding = ("valid",) * (2 - self.rank) + (self.padding,) * self.rank
        (oh, pt), (ow, pl) = (_spatial.window(n, k, s, 1, p, self.name)
                              for n, k, s, p in zip(size, pool, strides, padding))
        self._image = size + (input_shape[-1],)
        self._out = (oh, ow, input_shape[-1])
        self._geometry = pool + strides + (pt, pl)
        return ((ow,) if self.rank == 1 else (oh, ow)) + (input_shape[-1],)

    def forward(self, x, training=False):
        n, xp = len(x), array_module(x)
        y = self._buffer("y", (n,) + self._out, xp)
        image = x.reshape((n,) + self._image)
        if self.kind == "max":
            self._argmax = self._buffer("argmax", y.shape, xp, np.int64)
            _backend.layer_kernel(x, "max_pool")(image, y, self._argmax, *self._geometry)
        else:
            _backend.layer_kernel(x, "avg_pool")(image, y, *self._geometry)
        return y.reshape((n,) + self.output_shape)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        n, xp = len(dy), array_module(dy)
        dx = self._buffer("dx", (n,) + self._image, xp)
        d = dy.reshape((n,) + self._out)
        if self.kind == "max":
            _backend.layer_kernel(dy, "max_pool_backward")(d, self._argmax, dx)
        else:
            _backend.layer_kernel(dy, "avg_pool_backward")(d, dx, *self._geometry)
        return dx.reshape((n,) + self.input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding,
                      data_format=self.data_format)
        return config


class MaxPooling2D(_Pooling):
    """y[n, p, q, c] = max of x over the (pool_size) window at (p sh - pt, q sw - pl), padding never
    the maximum; the gradient goes to each window's (first) maximum."""
    rank, kind = 2, "max"


class MaxPooling1D(_Pooling):
    rank, kind = 1, "max"


class AveragePooling2D(_Pooling):
    """y = mean of x over the window's positions inside the input ('same' padding not counted)."""
    rank, kind = 2, "avg"


class AveragePooling1D(_Pooling):
    rank, kind = 1, "avg"


class _GlobalPooling(Layer):
    """A reduction over every axis between the batch and the channels."""
    kind = "avg"
    rank = 2
    supports_masking = False

    def __init__(self, data_format=None, keepdims=False, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.data_format = _spatial.data_format_arg(data_format)
        self.keepdims = flag(keepdims, "keepdims")
        self.mask = None  # (batch, steps) booleans set by the model before forward (mask_zero)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(f"{self.name}: {type(self).__name__} takes inputs of shape (batch, "
                             f"{'steps' if self.rank == 1 else 'rows, cols'}, channels), got (batch,) + "
                             f"{tuple(input_shape)}")
        self._positions = int(np.prod(input_shape[:-1]))
        return ((1,) * self.rank if self.keepdims else ()) + (input_shape[-1],)

    def forward(self, x, training=False):
        n, xp = len(x), array_module(x)
        flat = x.reshape(n, self._positions, -1)
        mask = self.mask
        if self.kind == "avg":
            if mask is None:  # float32 sums (NumPy's pairwise summation keeps them close to float64's)
                y = self._buffer("y", (n, flat.shape[-1]), xp)
                xp.sum(flat, axis=1, out=y)
                y *= np.float32(1.0 / self._positions)
            else:
                keep = mask.reshape(n, self._positions, 1).astype(bool)
                self._weights = keep.astype(np.float32)
                # Keras divides by the count too (0 / 0 = NaN for a fully masked row: 0 here)
                self._counts = xp.maximum(self._weights.sum(axis=1), 1.0)
                y = xp.where(keep, flat, np.float32(0)).sum(axis=1, dtype=np.float64) / self._counts
                y = y.astype(np.float32)
        else:  # (Keras's GlobalMaxPooling1D ignores masks)
            self._arg = flat.argmax(axis=1)
            y = xp.take_along_axis(flat, self._arg[:, None, :], axis=1)[:, 0, :]
        self._n = n
        return xp.ascontiguousarray(y).reshape((n,) + self.output_shape)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        n, xp = len(dy), array_module(dy)
        d = dy.reshape(n, 1, -1)
        dx = self._buffer("dx", (n, self._positions, d.shape[-1]), xp)
        if self.kind == "avg":
            if self.mask is None:
                dx[...] = d / np.float32(self._positions)
            else:
                dx[...] = d * (self._weights / self._counts[:, None, :])
        else:
            dx[...] = 0
            xp.put_along_axis(dx, self._arg[:, None, :], d, axis=1)
        return dx.reshape((n,) + self.input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(data_format=self.data_format, keepdims=self.keepdims)
        return config


class GlobalAveragePooling2D(_GlobalPooling):
    rank, kind = 2, "avg"


class GlobalAveragePooling1D(_GlobalPooling):
    """The mean over the steps (masked steps left out when the layer before gives a mask)."""
    rank, kind, supports_masking = 1, "avg", True


class GlobalMaxPooling2D(_GlobalPooling):
    rank, kind = 2, "max"


class GlobalMaxPooling1D(_GlobalPooling):
    rank, kind = 1, "max"
