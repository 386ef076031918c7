"""Weight initialisers by Keras name, drawing from fastdl's seeded random state.

fan_in / fan_out of a (in, out) kernel are in and out.
  glorot_uniform  U(-l, l), l = sqrt(6 / (fan_in + fan_out))      (Keras's Dense default)
  glorot_normal   N(0, 2 / (fan_in + fan_out)), truncated at 2 std
  he_uniform      U(-l, l), l = sqrt(6 / fan_in)
  he_normal       N(0, 2 / fan_in), truncated at 2 std
  lecun_normal    N(0, 1 / fan_in), truncated at 2 std
  random_normal   N(0, 0.05^2);  random_uniform  U(-0.05, 0.05);  zeros;  ones
"""

import numpy as np

from . import _random


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    return int(np.prod(shape[:-1])), shape[-1]


def _truncated_normal(rng, std, shape):
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2
    return x * std / 0.87962566103423978  # std of a standard normal truncated at +-2


def _uniform(limit):
    return lambda rng, shape: rng.uniform(-limit(shape), limit(shape), shape)


_INITIALIZERS = {
    "zeros": lambda rng, shape: np.zeros(shape),
    "ones": lambda rng, shape: np.ones(shape),
    "glorot_uniform": _uniform(lambda s: np.sqrt(6.0 / sum(_fans(s)))),
    "he_uniform": _uniform(lambda s: np.sqrt(6.0 / _fans(s)[0])),
    "random_uniform": _uniform(lambda s: 0.05),
    "glorot_normal": lambda rng, shape: _truncated_normal(rng, np.sqrt(2.0 / sum(_fans(shape))), shape),
    "he_normal": lambda rng, shape: _truncated_normal(rng, np.sqrt(2.0 / _fans(shape)[0]), shape),
    "lecun_normal": lambda rng, shape: _truncated_normal(rng, np.sqrt(1.0 / _fans(shape)[0]), shape),
    "random_normal": lambda rng, shape: rng.standard_normal(shape) * 0.05,
}


def check(name):
    if name not in _INITIALIZERS:
        raise ValueError(f"unknown initializer {name!r}; choose from {sorted(_INITIALIZERS)}")
    return name


def initialize(name, shape, out):
    """Fills `out` (an array of `shape`) with initializer `name`."""
    out[...] = _INITIALIZERS[check(name)](_random.generator(), tuple(shape))
