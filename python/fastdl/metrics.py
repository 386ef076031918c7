"""Metrics, Keras's argument order (y_true, y_pred).

Functions (scikit-learn's conventions): accuracy, precision, recall, f1_score (average 'binary',
'macro', 'micro' or None for one value per class), confusion_matrix. Labels may be class ids,
one-hot rows or probability rows (argmax), or binary scores (thresholded at 0.5).

Objects (for compile(metrics=[...]) or streaming use), Keras 3's semantics: Accuracy,
BinaryAccuracy, CategoricalAccuracy, SparseCategoricalAccuracy, Precision, Recall, F1Score,
FBetaScore, AUC (fastdl/_confusion_metrics.py), MeanSquaredError, RootMeanSquaredError,
MeanAbsoluteError, MeanAbsolutePercentageError, R2Score, TopKCategoricalAccuracy,
SparseTopKCategoricalAccuracy, Mean, Sum; update_state(y_true, y_pred, sample_weight=None),
result(), reset_state().
"""

import numpy as np

from ._checks import real, to_host, whole
from ._confusion_metrics import AUC, F1Score, FBetaScore, Precision, Recall  # noqa: F401  (Keras's semantics)
from ._metric_base import Metric


# ---- turning labels and predictions into class ids -------------------------------------------------

def class_ids(y, threshold=0.5, role="y"):
    """Class ids from ids (n,), one-hot / probability rows (n, C), or binary scores (n,) / (n, 1)
    (floats compared with threshold). CuPy arrays are read back to the host."""
    y = to_host(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return np.argmax(y, axis=1)
    if y.ndim == 2:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{role} must have shape (n,), (n, 1) or (n, classes), got {y.shape}")
    if y.dtype.kind in "iub":
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        if np.all(y == np.round(y)) and (y.size == 0 or y.max() > 1 or role == "y_true"):
            return y.astype(np.int64)
        return (y > threshold).astype(np.int64)
    raise TypeError(f"{role} must be numeric, got dtype {y.dtype}")


def _pair(y_true, y_pred):
    t = class_ids(y_true, role="y_true")
    p = class_ids(y_pred, role="y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} samples but y_pred has {len(p)}")
    return t, p


# ---- functions -----------------------------------------------------------------------------------

def accuracy(y_true, y_pred):
    """Fraction of samples whose predicted class equals the true one."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p)) if len(t) else float("nan")


def confusion_matrix(y_true, y_pred, num_classes=None):
    """counts[i, j] = samples of true class i predicted as j (int64, num_classes x num_classes)."""
    t, p = _pair(y_true, y_pred)
    if len(t) and min(t.min(), p.min()) < 0:
        raise ValueError("class ids must be >= 0")
    top = int(max(t.max(initial=-1), p.max(initial=-1))) + 1
    c = top if num_classes is None else int(num_classes)
    if c < top:
        raise ValueError(f"num_classes={num_classes} but the labels contain class {top - 1}")
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


def _from_confusion(cm, which, average, pos_label=1):
    tp = np.diag(cm).astype(np.float64)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)

    def ratio(num, den):
        return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)

    if average == "micro":
        tp, predicted, actual = tp.sum(), predicted.sum(), actual.sum()
    prec, rec = ratio(tp, predicted), ratio(tp, actual)
    value = {"precision": prec, "recall": rec, "f1": ratio(2 * prec * rec, prec + rec)}[which]
    if average == "micro":
        return float(value)
    if average == "binary":
        if len(cm) > 2:
            raise ValueError("average='binary' needs two classes; use 'macro' or 'micro'")
        return float(value[pos_label]) if len(cm) > pos_label else 0.0
    if average == "macro":
        return float(np.mean(value)) if len(value) else 0.0
    if average is None:
        return value
    raise ValueError(f"average must be 'binary', 'macro', 'micro' or None, got {average!r}")


def _scored(y_true, y_pred, which, average, num_classes):
    """Without num_classes only the classes that occur in y_true or y_pred are scored (scikit-learn's
    convention: an id no sample has is no class), per class in increasing id order; with it, every
    class 0 .. num_classes - 1."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if num_classes is None and average != "binary" and len(cm):
        t, p = _pair(y_true, y_pred)
        present = np.union1d(t, p)
        cm = cm[np.ix_(present, present)]
    return _from_confusion(cm, which, average)


def precision(y_true, y_pred, average="binary", num_classes=None):
    """TP / (TP + FP): for the positive class 1 ('binary'), the mean over classes ('macro'),
    over all decisions ('micro'), or per class (None). 0 where nothing was predicted."""
    return _scored(y_true, y_pred, "precision", average, num_classes)


def recall(y_true, y_pred, average="binary", num_classes=None):
    """TP / (TP + FN), averaged as in precision(). 0 for a class with no true samples."""
    return _scored(y_true, y_pred, "recall", average, num_classes)


def f1_score(y_true, y_pred, average="binary", num_classes=None):
    """2 P R / (P + R) per class, averaged as in precision() (macro: the mean of per-class F1)."""
    return _scored(y_true, y_pred, "f1", average, num_classes)


# ---- streaming metric objects ----------------------------------------------------------------------

class _AccuracyBase(Metric):
    _state = ("_correct", "_count")
    def _classes(self, y_true, y_pred):
        return _pair(y_true, y_pred)

    def reset_state(self):
        self._correct = 0
        self._count = 0

    def _update(self, t, p, w=None):
        """w: None, or a weight per sample (row): Keras's weighted accuracy sum(w [t == p]) / sum(w)."""
        if t.shape != p.shape:  # never broadcast: a count over the wrong shape exceeds 1
            raise ValueError(f"{self.name}: y_true gives labels of shape {t.shape} but y_pred {p.shape}")
        if w is None:
            self._correct += int(np.count_nonzero(t == p))
            self._count += t.size
            return
        w = _row_weights(w, t)
        self._correct += float(np.sum(w * (t == p)))
        self._count += float(np.sum(w))

    def result(self):
        return self._correct / self._count if self._count else 0.0


class Accuracy(_AccuracyBase):
    """'accuracy': a compiled model picks binary, categorical or sparse from its loss and output
    (variant); standalone, labels are compared as class ids (see class_ids)."""
    default_name = "accuracy"
    variant = None


class BinaryAccuracy(_AccuracyBase):
    """mean(y_true == (y_pred > threshold)) over every output (Keras's binary_accuracy)."""
    default_name = "binary_accuracy"

    def __init__(self, name=None, threshold=0.5):
        self.threshold = real(threshold, "threshold")
        super().__init__(name)

    def _classes(self, y_true, y_pred):
        """Every output against its 0/1 target (multi-label rows count label by label)."""
        t, p = np.atleast_1d(to_host(y_true)), np.atleast_1d(to_host(y_pred))
        for a, role in ((t, "y_true"), (p, "y_pred")):
            if a.dtype.kind not in "iufb":
                raise TypeError(f"{role} must be numeric, got dtype {a.dtype}")
        t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
        if t.shape != p.shape:
            raise ValueError(f"y_true has shape {np.shape(y_true)} but y_pred has {np.shape(y_pred)}")
        return (t > 0.5).astype(np.int64), (p > self.threshold).astype(np.int64)

    def get_config(self):
        return {"name": self.name, "threshold": self.threshold}


class CategoricalAccuracy(_AccuracyBase):
    default_name = "categorical_accuracy"


class SparseCategoricalAccuracy(_AccuracyBase):
    default_name = "sparse_categorical_accuracy"


class _MeanOfSamples(Metric):
    _state = ("_total", "_count")
    kind = "values"

    def reset_state(self):
        self._total = 0.0
        self._count = 0

    def _update(self, t, p, w=None):
        terms = self._term(p - t.reshape(p.shape))
        if w is None:
            self._total += float(np.sum(terms))
            self._count += p.size
            return
        # Keras: each sample's mean over its last axis, then the w-weighted mean over samples
        per_sample = terms.reshape(len(terms), -1).mean(axis=1)
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        self._total += float(np.sum(w * per_sample)) * (p.size / max(len(p), 1))
        self._count += float(np.sum(w)) * (p.size / max(len(p), 1))

    def result(self):
        return self._total / self._count if self._count else 0.0


class MeanSquaredError(_MeanOfSamples):
    default_name = "mean_squared_error"
    _term = staticmethod(np.square)


class MeanAbsoluteError(_MeanOfSamples):
    default_name = "mean_absolute_error"
    _term = staticmethod(np.abs)


class MeanAbsolutePercentageError(Metric):
    """100 mean(|(y - p) / max(|y|, eps)|) over the last axis, then the (weighted) mean of samples."""
    _state = ("_total", "_count")
    default_name = "mean_absolute_percentage_error"
    kind = "values"

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def _update(self, t, p, w=None):
        t = t.reshape(p.shape)
        per_sample = (100.0 * np.abs((t - p) / np.maximum(np.abs(t), 1e-7))).reshape(len(p), -1).mean(axis=1)
        w = np.ones(len(p)) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
        self._total += float(np.sum(w * per_sample))
        self._count += float(np.sum(w))

    def result(self):
        return self._total / self._count if self._count else 0.0


class RootMeanSquaredError(MeanSquaredError):
    """sqrt of the mean squared error over every output (weighted by sample)."""
    default_name = "root_mean_squared_error"

    def result(self):
        return float(np.sqrt(super().result()))


class R2Score(Metric):
    """The coefficient of determination, 1 - sum (y - p)^2 / sum (y - mean y)^2, per output then
    aggregated ('uniform_average', 'variance_weighted_average' or None: one per output); with
    num_regressors the adjusted R2 (Keras's R2Score)."""
    _state = ("_sums",)
    default_name = "r2_score"
    kind = "values"

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name=None):
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError(f"class_aggregation must be None, 'uniform_average' or 'variance_weighted_average', "
                             f"got {class_aggregation!r}")
        self.class_aggregation, self.num_regressors = class_aggregation, whole(num_regressors, "num_regressors", 0)
        super().__init__(name)

    def reset_state(self):
        self._sums = None

    def _update(self, t, p, w=None):
        t, p = t.reshape(len(p), -1), p.reshape(len(p), -1)
        w = np.ones((len(p), 1)) if w is None else np.asarray(w, dtype=np.float64).reshape(-1, 1)
        sums = [np.sum(w * t, axis=0), np.sum(w * t * t, axis=0), np.sum(w * (t - p) ** 2, axis=0),
                np.sum(np.broadcast_to(w, t.shape), axis=0)]
        self._sums = sums if self._sums is None else [a + b for a, b in zip(self._sums, sums)]

    def result(self):
        if self._sums is None:
            return 0.0
        total_y, total_y2, residual, count = self._sums
        mean = np.divide(total_y, count, out=np.zeros_like(total_y), where=count > 0)
        total = total_y2 - total_y * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            raw = 1 - residual / total
        raw = np.where(np.isinf(raw) | np.isnan(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            r2 = float(np.mean(raw))
        elif self.class_aggregation == "variance_weighted_average":
            r2 = float(np.sum(raw * total) / np.sum(total)) if np.sum(total) else 0.0
        else:
            r2 = raw
        n = float(count[0]) if len(count) else 0.0
        if self.num_regressors:
            if n - self.num_regressors - 1 <= 0:
                raise ValueError(f"R2Score with num_regressors={self.num_regressors} needs more than "
                                 f"{self.num_regressors + 1} samples, got {n:g}")
            r2 = 1 - (1 - r2) * (n - 1) / (n - self.num_regressors - 1)
        return r2

    def get_config(self):
        return {"name": self.name, "class_aggregation": self.class_aggregation, "num_regressors": self.num_regressors}


class _TopK(Metric):
    _state = ("_correct", "_count")
    kind = "values"

    def __init__(self, k=5, name=None):
        self.k = whole(k, "k", 1)
        super().__init__(name)

    def reset_state(self):
        self._correct, self._count = 0.0, 0.0

    def _update(self, t, p, w=None):
        p = p.reshape(-1, p.shape[-1])
        truth = self._true_ids(t, p)
        # in the top k: fewer than k outputs beat the true class's (ties count for it, as in_top_k)
        better = np.sum(p > p[np.arange(len(p)), truth][:, None], axis=1)
        w = np.ones(len(p)) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
        self._correct += float(np.sum(w * (better < self.k)))
        self._count += float(np.sum(w))

    def result(self):
        return self._correct / self._count if self._count else 0.0

    def get_config(self):
        return {"name": self.name, "k": self.k}


class TopKCategoricalAccuracy(_TopK):
    """How often the one-hot target's class is among the k largest outputs."""
    default_name = "top_k_categorical_accuracy"

    def _true_ids(self, t, p):
        return np.argmax(t.reshape(-1, p.shape[-1]), axis=1)


class SparseTopKCategoricalAccuracy(_TopK):
    """How often the class id is among the k largest outputs."""
    default_name = "sparse_top_k_categorical_accuracy"

    def _true_ids(self, t, p):
        return t.reshape(-1).astype(np.int64)


class Mean(Metric):
    """The (weighted) mean of the values given to update_state(values, sample_weight=None)."""
    _state = ("_total", "_count")
    default_name = "mean"
    kind = "values"

    def reset_state(self):
        self._total, self._count = 0.0, 0.0

    def update_state(self, values, sample_weight=None):
        v = to_host(values).astype(np.float64)
        w = np.ones(v.shape) if sample_weight is None else \
            np.broadcast_to(to_host(sample_weight).astype(np.float64).reshape(
                to_host(sample_weight).shape + (1,) * (v.ndim - np.ndim(sample_weight))), v.shape)
        self._total += float(np.sum(w * v))
        self._count += float(np.sum(w))

    def result(self):
        return self._total / self._count if self._count else 0.0

    def __call__(self, values, sample_weight=None):
        self.reset_state()
        self.update_state(values, sample_weight)
        return self.result()


class Sum(Mean):
    """The (weighted) sum of the values given to update_state."""
    default_name = "sum"

    def result(self):
        return self._total


_BY_NAME = {
    "accuracy": Accuracy, "acc": Accuracy, "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy, "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "precision": Precision, "recall": Recall, "f1_score": F1Score, "f1": F1Score,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError, "auc": AUC,
    "mape": MeanAbsolutePercentageError, "mean_absolute_percentage_error": MeanAbsolutePercentageError,
    "root_mean_squared_error": RootMeanSquaredError, "r2_score": R2Score,
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
}


def _row_weights(w, t):
    """A weight per sample, broadcast over t's other axes (each of a row's labels has its weight)."""
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if len(w) != len(t):
        raise ValueError(f"sample_weight has {len(w)} values for {len(t)} samples")
    return np.broadcast_to(w.reshape((-1,) + (1,) * (t.ndim - 1)), t.shape)


def get(identifier):
    """A new Metric from a name ('accuracy', 'precision', 'f1_score', 'mse', ...) or a Metric."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier](name=identifier)  # logged as spelled ('acc' logs acc), as Keras does
    raise ValueError(f"unknown metric {identifier!r}; use one of {sorted(_BY_NAME)} or a fastdl.metrics.Metric")


METRIC_CLASSES = {cls.__name__: cls for cls in (Accuracy, BinaryAccuracy, CategoricalAccuracy,
                                                 SparseCategoricalAccuracy, Precision, Recall, F1Score, FBetaScore,
                                                 AUC, MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError,
                                                 MeanAbsolutePercentageError, R2Score, TopKCategoricalAccuracy,
                                                 SparseTopKCategoricalAccuracy, Mean, Sum)}
