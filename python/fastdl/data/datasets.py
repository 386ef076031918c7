"""Data sets shipped inside the package (no network access at run time)."""

import gzip
import os

import numpy as np

_FILES = os.path.join(os.path.dirname(__file__), "files")


def load_digits(flatten=True):
    """The UCI handwritten digits (test part, 1,797 samples, 10 classes), as (x, y).

    x: float32 pixel intensities 0..16, shape (1797, 64), or (1797, 8, 8, 1) images when
    flatten=False. y: int64 class ids 0..9. Source and licence: fastdl/data/files/README.md.
    """
    with gzip.open(os.path.join(_FILES, "digits.csv.gz"), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x = table[:, :64].astype(np.float32)
    y = table[:, 64]
    return (x, y) if flatten else (x.reshape(-1, 8, 8, 1), y)
