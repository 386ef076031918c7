"""Preprocessing: one-hot labels, train/test split, standardisation and min-max scaling,
batches with seeded shuffling."""

import numpy as np

from .. import _random


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encoding of integer class ids: shape (..., num_classes), as keras.utils.to_categorical.

    A trailing axis of size 1 is dropped first ((n, 1) ids give (n, num_classes)).
    """
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y must hold integer class ids")
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise TypeError(f"y must hold integer class ids, got dtype {y.dtype}")
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    if y.size and y.min() < 0:
        raise ValueError(f"y contains a negative class id ({int(y.min())})")
    top = int(y.max()) + 1 if y.size else 0
    if num_classes is None:
        num_classes = top
    elif num_classes < top:
        raise ValueError(f"num_classes={num_classes} but y contains class id {top - 1}")
    out = np.zeros(y.shape + (num_classes,), dtype=dtype)
    np.put_along_axis(out, y[..., None].astype(np.int64), 1, axis=-1)
    return out


def train_test_split(*arrays, test_size=0.25, shuffle=True, seed=None, stratify=None):
    """Splits arrays (same first dimension) into train and test parts:
    returns [a_train, a_test, b_train, b_test, ...] as scikit-learn does.

    test_size: a fraction in (0, 1) or a number of samples. stratify: class ids (or one-hot
    rows) whose proportions the split keeps, as closely as whole samples allow.
    seed: an int or Generator (None: fastdl's seeded state).
    """
    if not arrays:
        raise ValueError("train_test_split needs at least one array")
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    for i, a in enumerate(arrays):
        if len(a) != n:
            raise ValueError(f"array {i} has {len(a)} samples but array 0 has {n}")
    if isinstance(test_size, float):
        if not 0 < test_size < 1:
            raise ValueError(f"test_size={test_size} must be in (0, 1) as a fraction")
        n_test = int(np.ceil(test_size * n))
    else:
        n_test = int(test_size)
    if not 0 < n_test < n:
        raise ValueError(f"test_size gives {n_test} test samples of {n}: need at least one of each")
    rng = _random.resolve(seed)
    if stratify is not None:
        labels = np.asarray(stratify)
        if len(labels) != n:
            raise ValueError("stratify must have one label per sample")
        if labels.ndim > 1:  # one-hot (or any) rows: a class per distinct row
            labels = labels.reshape(n, -1)
        classes, labels = np.unique(labels, axis=0, return_inverse=True)
        labels = labels.reshape(n)
        counts = np.bincount(labels, minlength=len(classes))
        # each class's share of the n_test places, rounded by largest remainder so they add up to n_test
        quota = counts * n_test / n
        take = np.floor(quota).astype(np.int64)
        extra = np.argsort(-(quota - take), kind="stable")[:n_test - int(take.sum())]
        take[extra] += 1
        test = []
        for c in range(len(classes)):
            members = np.flatnonzero(labels == c)
            if shuffle:
                members = rng.permutation(members)
            test.extend(members[:take[c]])
        test = np.sort(np.asarray(test, dtype=np.int64))
        train = np.setdiff1d(np.arange(n), test)
        if shuffle:
            train, test = rng.permutation(train), rng.permutation(test)
    else:
        order = rng.permutation(n) if shuffle else np.arange(n)
        train, test = order[:n - n_test], order[n - n_test:]
    out = []
    for a in arrays:
        out += [a[train], a[test]]
    return out


class StandardScaler:
    """x -> (x - mean) / std per feature, fitted on training data and applied to any data.

    Features with zero variance are left centred and unscaled (std taken as 1).
    """

    def __init__(self):
        self.mean_ = None
        self.scale_ = None

    def fit(self, x):
        x = _features(x)
        self.mean_ = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def transform(self, x):
        self._check_fitted()
        x = _features(x)
        _check_width(x, self.mean_)
        return ((x - self.mean_) / self.scale_).astype(_float_dtype(x), copy=False)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, x):
        self._check_fitted()
        x = _features(x)
        _check_width(x, self.mean_)
        return (x * self.scale_ + self.mean_).astype(_float_dtype(x), copy=False)

    def _check_fitted(self):
        if self.mean_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_train) first")


class MinMaxScaler:
    """x -> lo + (x - min) (hi - lo) / (max - min) per feature (feature_range=(lo, hi)),
    fitted on training data; constant features map to lo."""

    def __init__(self, feature_range=(0.0, 1.0)):
        lo, hi = feature_range
        if not lo < hi:
            raise ValueError(f"feature_range={feature_range!r} must be (low, high) with low < high")
        self.feature_range = (float(lo), float(hi))
        self.min_ = None
        self.scale_ = None

    def fit(self, x):
        x = _features(x)
        lo, hi = self.feature_range
        data_min, data_max = x.min(axis=0).astype(np.float64), x.max(axis=0).astype(np.float64)
        span = data_max - data_min
        self.scale_ = (hi - lo) / np.where(span > 0, span, 1.0)
        self.min_ = lo - data_min * self.scale_
        return self

    def transform(self, x):
        self._check_fitted()
        x = _features(x)
        _check_width(x, self.min_)
        return (x * self.scale_ + self.min_).astype(_float_dtype(x), copy=False)

    def fit_transform(self, x):
        return self.fit(x).transform(x)

    def inverse_transform(self, x):
        self._check_fitted()
        x = _features(x)
        _check_width(x, self.min_)
        return ((x - self.min_) / self.scale_).astype(_float_dtype(x), copy=False)

    def _check_fitted(self):
        if self.min_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x_train) first")


def _features(x):
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise TypeError(f"x must be numeric, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, features), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("x has no samples")
    return x


def _float_dtype(x):
    return x.dtype if x.dtype.kind == "f" else np.float32


def _check_width(x, fitted):
    if x.shape[1] != len(fitted):
        raise ValueError(f"x has {x.shape[1]} features but the scaler was fitted on {len(fitted)}")


def batches(x, y=None, batch_size=32, shuffle=True, seed=None, drop_last=False):
    """Yields (x_batch, y_batch) (or x_batch when y is None) over the first axis, in a seeded
    random order when shuffle. seed: an int or Generator (None: fastdl's seeded state)."""
    x = np.asarray(x)
    n = len(x)
    if y is not None:
        y = np.asarray(y)
        if len(y) != n:
            raise ValueError(f"y has {len(y)} samples but x has {n}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    order = _random.resolve(seed).permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size] if shuffle else slice(start, start + batch_size)
        yield x[idx] if y is None else (x[idx], y[idx])
