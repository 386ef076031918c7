"""Augmentation of NHWC image batches (batch, height, width, channels): vectorised over the
batch, drawn from fastdl's seeded random state (or the `rng` given: an int or Generator).

Each returns a new batch; use them as fit(..., augment=fn), e.g.

    augment = lambda b: random_flip(random_crop(b, padding=2), "horizontal")
"""

import numpy as np

from .. import _random


def _images(images):
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be a batch of shape (batch, height, width, channels), got {images.shape}")
    return images


def random_flip(images, mode="horizontal", rng=None):
    """Flips each image with probability 1/2: mode 'horizontal' (left-right), 'vertical'
    (up-down) or 'horizontal_and_vertical' (each axis independently)."""
    images = _images(images)
    if mode not in ("horizontal", "vertical", "horizontal_and_vertical"):
        raise ValueError(f"mode must be 'horizontal', 'vertical' or 'horizontal_and_vertical', got {mode!r}")
    rng = _random.resolve(rng)
    out = images.copy()
    n = len(images)
    if mode in ("horizontal", "horizontal_and_vertical"):
        flip = rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
    if mode in ("vertical", "horizontal_and_vertical"):
        flip = rng.random(n) < 0.5
        out[flip] = out[flip, ::-1]
    return out


def random_crop(images, size=None, padding=0, fill=0, rng=None):
    """Pads each image by `padding` pixels of `fill` on every side, then cuts a window of `size`
    (height, width) at a uniformly random position (default size: the original one)."""
    images = _images(images)
    n, h, w, c = images.shape
    ch, cw = (h, w) if size is None else tuple(int(s) for s in size)
    if padding < 0:
        raise ValueError("padding must be >= 0")
    ph, pw = h + 2 * padding, w + 2 * padding
    if not (0 < ch <= ph and 0 < cw <= pw):
        raise ValueError(f"crop size {(ch, cw)} does not fit in the padded image {(ph, pw)}")
    padded = np.full((n, ph, pw, c), fill, dtype=images.dtype)
    padded[:, padding:padding + h, padding:padding + w] = images
    rng = _random.resolve(rng)
    top = rng.integers(0, ph - ch + 1, n)
    left = rng.integers(0, pw - cw + 1, n)
    rows = top[:, None] + np.arange(ch)   # (n, ch)
    cols = left[:, None] + np.arange(cw)  # (n, cw)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def random_rotation(images, degrees, fill=0.0, rng=None, fill_mode="constant"):
    """Rotates each image about its centre by an angle drawn uniformly from [-degrees, degrees]
    (positive: counter-clockwise as displayed, as Keras's RandomRotation), with bilinear
    interpolation; pixels from outside the image follow fill_mode (see affine_sample; 'constant'
    takes `fill`). Returns float32 (float64 for float64 input). A rotation by 0 returns the images
    unchanged."""
    images = _images(images)
    degrees = float(degrees)
    if degrees < 0:
        raise ValueError("degrees must be >= 0")
    rng = _random.resolve(rng)
    theta = np.deg2rad(rng.uniform(-degrees, degrees, len(images)))
    return affine_sample(images, rotation_matrices(theta, images.shape[1], images.shape[2]), fill_mode, fill)


def rotation_matrices(theta, h, w):
    """(n, 2, 3): the source (x, y) of each output pixel of a rotation by theta (radians,
    counter-clockwise as displayed) about the image's centre. With rows growing downwards, a
    counter-clockwise turn on screen is a clockwise one in (x, y)."""
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    cos, sin = np.cos(theta), np.sin(theta)
    m = np.zeros((len(theta), 2, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, -sin, cx - cos * cx + sin * cy
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = sin, cos, cy - sin * cx - cos * cy
    return m


FILL_MODES = ("constant", "reflect", "wrap", "nearest")


def _fold(i, size, mode):
    """Indices outside [0, size) mapped back in as Keras's fill modes do: 'reflect' mirrors about
    the edge (d c b a | a b c d | d c b a), 'wrap' tiles, 'nearest' repeats the edge pixel."""
    if mode == "nearest":
        return np.clip(i, 0, size - 1)
    if mode == "wrap":
        return np.mod(i, size)
    period = 2 * size  # reflect
    i = np.mod(i, period)
    return np.where(i >= size, period - 1 - i, i)


def affine_sample(images, matrices, fill_mode="constant", fill=0.0, interpolation="bilinear"):
    """out[n, y, x] = images[n] sampled at matrices[n] @ (x, y, 1) (bilinear or nearest); a source
    outside the image follows fill_mode: 'constant' (fill), 'reflect', 'wrap' or 'nearest'.
    Returns float32 (float64 for float64 input)."""
    images = _images(images)
    if fill_mode not in FILL_MODES:
        raise ValueError(f"fill_mode must be one of {FILL_MODES}, got {fill_mode!r}")
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', got {interpolation!r}")
    n, h, w, c = images.shape
    dtype = np.float64 if images.dtype == np.float64 else np.float32
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    m = np.asarray(matrices, dtype=np.float64)[:, :, :, None, None]
    src_x = m[:, 0, 0] * xx + m[:, 0, 1] * yy + m[:, 0, 2]
    src_y = m[:, 1, 0] * xx + m[:, 1, 1] * yy + m[:, 1, 2]
    batch = np.arange(n)[:, None, None]
    src = images.astype(dtype, copy=False)

    def at(yi, xi):
        if fill_mode == "constant":
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            v = src[batch, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            return np.where(inside[..., None], v, dtype(fill))
        return src[batch, _fold(yi, h, fill_mode), _fold(xi, w, fill_mode)]

    if interpolation == "nearest":
        return at(np.floor(src_y + 0.5).astype(np.int64), np.floor(src_x + 0.5).astype(np.int64)).astype(dtype)
    x0 = np.floor(src_x).astype(np.int64)
    y0 = np.floor(src_y).astype(np.int64)
    wx = (src_x - x0)[..., None]
    wy = (src_y - y0)[..., None]
    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return (top * (1 - wy) + bottom * wy).astype(dtype, copy=False)
