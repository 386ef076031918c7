"""keras.utils's everyday helpers: to_categorical, normalize, set_random_seed (and PyDataset, the
Keras base class for batch-by-batch data, in fastdl.data.pydataset)."""

import numpy as np

from ._random import set_seed
from .data import to_categorical
from .data.pydataset import PyDataset, Sequence

__all__ = ["to_categorical", "normalize", "set_random_seed", "PyDataset", "Sequence"]


def set_random_seed(seed):
    """Seeds fastdl's random state (weight initialisation, shuffling, dropout, augmentation), as
    keras.utils.set_random_seed seeds Python's, NumPy's and the backend's."""
    set_seed(seed)


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along `axis` (rows of zeros stay zeros), as keras.utils.normalize."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise TypeError(f"x must be numeric, got dtype {x.dtype}")
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
