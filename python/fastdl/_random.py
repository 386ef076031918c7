"""fastdl's random state: one NumPy Generator behind weight initialisation, shuffling, dropout
and augmentation, reseeded by fastdl.set_seed(n)."""

import numpy as np

_generator = np.random.default_rng()


def generator():
    """The Generator fastdl draws from (replaced by set_seed: do not keep it across a reseed)."""
    return _generator


def set_seed(seed):
    """Makes weight initialisation, shuffling, dropout and augmentation reproducible: after
    set_seed(n) the same program draws the same numbers."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def resolve(rng):
    """A Generator from an argument that may be None (fastdl's own), an int seed or a Generator."""
    if rng is None:
        return _generator
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def replace(generator_):
    """Makes generator_ fastdl's Generator (data-parallel fit: each process its own stream)."""
    global _generator
    _generator = generator_
