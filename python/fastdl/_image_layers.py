"""Small image and sequence layers, channels_last, Keras's arguments: ZeroPadding2D, Cropping2D,
UpSampling2D (nearest), SpatialDropout1D / SpatialDropout2D (whole channels dropped per sample)."""

import numpy as np

from . import _random, _spatial
from ._checks import array_module, real
from .layers import Layer



def _pairs(value, name):
    """Keras's ((top, bottom), (left, right)) from an int, (rows, cols) or the pairs themselves."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, (rows, cols) or ((top, bottom), (left, right)), got {value!r}") \
            from None
    if len(items) != 2:
        raise ValueError(f"{name} must be an int, (rows, cols) or ((top, bottom), (left, right)), got {value!r}")
    pairs = tuple(_spatial.int_tuple(v, 2, name, minimum=0) for v in items)
    return pairs


class _Image2D(Layer):
    def __init__(self, data_format=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.data_format = _spatial.data_format_arg(data_format)

    def _check(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} takes inputs of shape (batch, rows, cols, "
                             f"channels), got (batch,) + {tuple(input_shape)}")


class ZeroPadding2D(_Image2D):
    """Zeros around each image: padding rows above and below, columns left and right."""

    def __init__(self, padding=(1, 1), data_format=None, name=None, input_shape=None):
        super().__init__(data_format, name, input_shape)
        self.padding = _pairs(padding, "padding")

    def build(self, input_shape):
        self._check(input_shape)
        (t, b), (l, r) = self.padding
        h, w, c = input_shape
        return h + t + b, w + l + r, c

    def forward(self, x, training=False):
        (t, b), (l, r) = self.padding
        y = self._buffer("y", (len(x),) + self.output_shape, array_module(x))
        y[...] = 0
        y[:, t:t + x.shape[1], l:l + x.shape[2], :] = x
        return y

    def backward(self, dy, need_dx=True):
        (t, _), (l, _) = self.padding
        h, w, _ = self.input_shape
        return array_module(dy).ascontiguousarray(dy[:, t:t + h, l:l + w, :]) if need_dx else None

    def get_config(self):
        config = super().get_config()
        config.update(padding=self.padding, data_format=self.data_format)
        return config


class Cropping2D(_Image2D):
    """Drops cropping rows above and below, columns left and right."""

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, name=None, input_shape=None):
        super().__init__(data_format, name, input_shape)
        self.cropping = _pairs(cropping, "cropping")

    def build(self, input_shape):
        self._check(input_shape)
        (t, b), (l, r) = self.cropping
        h, w, c = input_shape
        if t + b >= h or l + r >= w:
            raise ValueError(f"{self.name}: cropping {self.cropping} leaves nothing of a {h}x{w} image")
        return h - t - b, w - l - r, c

    def forward(self, x, training=False):
        (t, _), (l, _) = self.cropping
        h, w, _ = self.output_shape
        return array_module(x).ascontiguousarray(x[:, t:t + h, l:l + w, :])

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        (t, _), (l, _) = self.cropping
        dx = self._buffer("dx", (len(dy),) + self.input_shape, array_module(dy))
        dx[...] = 0
        dx[:, t:t + dy.shape[1], l:l + dy.shape[2], :] = dy
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(cropping=self.cropping, data_format=self.data_format)
        return config


class UpSampling2D(_Image2D):
    """Each pixel repeated size[0] times down and size[1] times across (interpolation='nearest')."""

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", name=None, input_shape=None):
        super().__init__(data_format, name, input_shape)
        self.size = _spatial.int_tuple(size, 2, "size")
        if interpolation != "nearest":
            raise NotImplementedError(f"interpolation={interpolation!r}: UpSampling2D repeats pixels ('nearest')")
        self.interpolation = interpolation

    def build(self, input_shape):
        self._check(input_shape)
        h, w, c = input_shape
        return h * self.size[0], w * self.size[1], c

    def forward(self, x, training=False):
        xp, (a, b) = array_module(x), self.size
        n, h, w, c = x.shape
        y = self._buffer("y", (n, h, a, w, b, c), xp)
        y[...] = x[:, :, None, :, None, :]
        return y.reshape((n,) + self.output_shape)

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        (a, b), (h, w, c) = self.size, self.input_shape
        return dy.reshape(len(dy), h, a, w, b, c).sum(axis=(2, 4), dtype=np.float64).astype(np.float32)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, data_format=self.data_format, interpolation=self.interpolation)
        return config


class _SpatialDropout(Layer):
    """Dropout of whole channels: one keep/drop draw per (sample, channel), the same at every step /
    position, kept values scaled by 1 / (1 - rate). Only in training."""
    rank = 1

    def __init__(self, rate, data_format=None, seed=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.data_format = _spatial.data_format_arg(data_format)
        self.rate = real(rate, "rate")
        if not 0.0 <= self.rate < 1.0:
            raise ValueError(f"rate must be in [0, 1), got {rate!r}")
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(f"{self.name}: {type(self).__name__} takes inputs of rank {self.rank + 2} (batch, ..., "
                             f"channels), got (batch,) + {tuple(input_shape)}")
        return input_shape

    def forward(self, x, training=False):
        self._scale = None
        if not training or self.rate == 0.0:
            return x
        xp = array_module(x)
        rng = self._rng if self._rng is not None else _random.generator()
        keep = rng.random((len(x),) + (1,) * self.rank + (x.shape[-1],)) >= self.rate
        self._scale = xp.asarray(keep.astype(np.float32) / np.float32(1.0 - self.rate))
        y = self._buffer("y", x.shape, xp)
        xp.multiply(x, self._scale, out=y)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        if self._scale is None:
            return dy
        dy *= self._scale
        return dy

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed, data_format=self.data_format)
        return config


class SpatialDropout1D(_SpatialDropout):
    rank = 1
    propagates_mask = True

    def __init__(self, rate, seed=None, name=None, input_shape=None):
        super().__init__(rate, seed=seed, name=name, input_shape=input_shape)

    def get_config(self):
        config = super().get_config()
        config.pop("data_format")
        return config


class SpatialDropout2D(_SpatialDropout):
    rank = 2
