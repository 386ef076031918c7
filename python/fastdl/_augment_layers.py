"""Keras's image augmentation layers: RandomFlip, RandomRotation, RandomCrop, RandomTranslation,
RandomZoom. They act in fit only (training=True) and are the identity otherwise (RandomCrop: a
centre crop), drawing from fastdl's seeded random state (or their own seed), over
fastdl.data.augmentation's vectorised samplers. They work on the host (a GPU model's batch is
copied there and back). Place them first: the geometric ones have no backward, so no layer with
weights may come before them.
"""

import numpy as np

from . import _random
from ._checks import array_module, on_device
from .data import augmentation
from .layers import Layer


def _factor_range(factor, name):
    """Keras's factor: a number f for [-f, f], or a (lower, upper) pair."""
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2:
            raise ValueError(f"{name} must be a number or a (lower, upper) pair, got {factor!r}")
        lower, upper = (float(v) for v in factor)
    else:
        lower, upper = -abs(float(factor)), abs(float(factor))
    if lower > upper:
        raise ValueError(f"{name}: lower {lower} is above upper {upper}")
    return lower, upper


class _Augmentation(Layer):
    geometric = True

    def __init__(self, seed=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{self.name}: {type(self).__name__} takes images (batch, rows, cols, channels), got "
                             f"(batch,) + {tuple(input_shape)}")
        return input_shape

    def forward(self, x, training=False):
        if not training:
            return self._inference(x)
        rng = self._rng if self._rng is not None else _random.generator()
        host = x.get() if on_device(x) else x
        y = np.ascontiguousarray(self._augment(host, rng), dtype=np.float32)
        return array_module(x).asarray(y) if on_device(x) else y

    def _inference(self, x):
        return x

    def backward(self, dy, need_dx=True):
        if need_dx:
            raise NotImplementedError(f"{self.name}: {type(self).__name__} has no backward: put the augmentation "
                                      f"layers before every layer with weights")
        return None

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


class _AffineAugmentation(_Augmentation):
    def __init__(self, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, name=None,
                 input_shape=None):
        super().__init__(seed=seed, name=name, input_shape=input_shape)
        if fill_mode not in augmentation.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {augmentation.FILL_MODES}, got {fill_mode!r}")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
        self.fill_mode, self.interpolation, self.fill_value = fill_mode, interpolation, float(fill_value)

    def _augment(self, x, rng):
        return augmentation.affine_sample(x, self._matrices(x.shape, rng), self.fill_mode, self.fill_value,
                                          self.interpolation)

    def get_config(self):
        config = super().get_config()
        config.update(fill_mode=self.fill_mode, interpolation=self.interpolation, fill_value=self.fill_value)
        return config


class RandomFlip(_Augmentation):
    """Flips each image with probability 1/2: 'horizontal', 'vertical' or 'horizontal_and_vertical'."""

    def __init__(self, mode="horizontal_and_vertical", seed=None, name=None, input_shape=None):
        super().__init__(seed=seed, name=name, input_shape=input_shape)
        if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
            raise ValueError(f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}")
        self.mode = mode

    def _augment(self, x, rng):
        return augmentation.random_flip(x, self.mode, rng=rng)

    def get_config(self):
        config = super().get_config()
        config["mode"] = self.mode
        return config


class RandomRotation(_AffineAugmentation):
    """Rotates each image by an angle drawn from factor x 2 pi: [-f, f] turns, or (lower, upper)."""

    def __init__(self, factor, fill_mode="reflect", interpolation="bilinear", seed=None, fill_value=0.0, name=None,
                 input_shape=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, input_shape)
        self.factor = factor
        self._range = _factor_range(factor, "factor")

    def _matrices(self, shape, rng):
        theta = rng.uniform(*self._range, shape[0]) * 2.0 * np.pi
        return augmentation.rotation_matrices(theta, shape[1], shape[2])

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


class RandomTranslation(_AffineAugmentation):
    """Shifts each image by fractions of its height and width drawn from height_factor / width_factor."""

    def __init__(self, height_factor, width_factor, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, input_shape=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, input_shape)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h, self._w = _factor_range(height_factor, "height_factor"), _factor_range(width_factor, "width_factor")

    def _matrices(self, shape, rng):
        n, h, w = shape[:3]
        dy, dx = rng.uniform(*self._h, n) * h, rng.uniform(*self._w, n) * w
        m = np.zeros((n, 2, 3))
        m[:, 0, 0] = m[:, 1, 1] = 1.0
        m[:, 0, 2], m[:, 1, 2] = -dx, -dy  # output (x, y) comes from (x - dx, y - dy)
        return m

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return config


class RandomZoom(_AffineAugmentation):
    """Zooms each image about its centre by 1 + a factor drawn from height_factor (and width_factor;
    None: the same zoom both ways). A positive factor zooms out, a negative one in (Keras's sense)."""

    def __init__(self, height_factor, width_factor=None, fill_mode="reflect", interpolation="bilinear", seed=None,
                 fill_value=0.0, name=None, input_shape=None):
        super().__init__(fill_mode, interpolation, seed, fill_value, name, input_shape)
        self.height_factor, self.width_factor = height_factor, width_factor
        self._h = _factor_range(height_factor, "height_factor")
        self._w = None if width_factor is None else _factor_range(width_factor, "width_factor")
        if self._h[0] <= -1 or (self._w is not None and self._w[0] <= -1):
            raise ValueError("a zoom factor must be above -1")

    def _matrices(self, shape, rng):
        n, h, w = shape[:3]
        zy = 1.0 + rng.uniform(*self._h, n)
        zx = zy if self._w is None else 1.0 + rng.uniform(*self._w, n)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        m = np.zeros((n, 2, 3))
        m[:, 0, 0], m[:, 1, 1] = zx, zy  # output pixel d from the centre reads the input at zoom x d
        m[:, 0, 2], m[:, 1, 2] = cx - zx * cx, cy - zy * cy
        return m

    def get_config(self):
        config = super().get_config()
        config.update(height_factor=self.height_factor, width_factor=self.width_factor)
        return config


class RandomCrop(_Augmentation):
    """In fit, a (height, width) window at a random position of each image; otherwise the centre one."""

    def __init__(self, height, width, seed=None, name=None, input_shape=None):
        super().__init__(seed=seed, name=name, input_shape=input_shape)
        for arg, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.height, self.width = int(height), int(width)

    def build(self, input_shape):
        super().build(input_shape)
        h, w, c = input_shape
        if self.height > h or self.width > w:
            raise ValueError(f"{self.name}: a {self.height}x{self.width} crop does not fit in {h}x{w} images")
        return self.height, self.width, c

    def _augment(self, x, rng):
        return augmentation.random_crop(x, (self.height, self.width), rng=rng)

    def _inference(self, x):
        h, w, _ = self.input_shape
        top, left = (h - self.height) // 2, (w - self.width) // 2
        return array_module(x).ascontiguousarray(x[:, top:top + self.height, left:left + self.width])

    def get_config(self):
        config = super().get_config()
        config.update(height=self.height, width=self.width)
        return config
