"""Metrics, Keras's argument order (y_true, y_pred).

Functions: accuracy, precision, recall, f1_score (average 'binary', 'macro', 'micro' or None
for one value per class), confusion_matrix. Labels may be class ids, one-hot rows or
probability rows (argmax), or binary scores (thresholded at 0.5).

Objects (for compile(metrics=[...]) or streaming use): Accuracy, BinaryAccuracy,
CategoricalAccuracy, SparseCategoricalAccuracy, Precision, Recall, F1Score,
MeanSquaredError, MeanAbsoluteError; update_state(y_true, y_pred), result(), reset_state().
"""

import numpy as np

from ._checks import real, to_host, whole


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


def precision(y_true, y_pred, average="binary", num_classes=None):
    """TP / (TP + FP): for the positive class 1 ('binary'), the mean over classes ('macro'),
    over all decisions ('micro'), or per class (None). 0 where nothing was predicted."""
    return _from_confusion(confusion_matrix(y_true, y_pred, num_classes), "precision", average)


def recall(y_true, y_pred, average="binary", num_classes=None):
    """TP / (TP + FN), averaged as in precision(). 0 for a class with no true samples."""
    return _from_confusion(confusion_matrix(y_true, y_pred, num_classes), "recall", average)


def f1_score(y_true, y_pred, average="binary", num_classes=None):
    """2 P R / (P + R) per class, averaged as in precision() (macro: the mean of per-class F1)."""
    return _from_confusion(confusion_matrix(y_true, y_pred, num_classes), "f1", average)


# ---- streaming metric objects ----------------------------------------------------------------------

class Metric:
    """A metric accumulated over batches. `kind` tells the model what to feed it in fit:
    'classes' (true and predicted class ids) or 'values' (targets and outputs)."""

    kind = "classes"

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.name = name or self.default_name
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch; sample_weight: None or one weight per sample (a weighted mean, as Keras)."""
        w = None if sample_weight is None else to_host(sample_weight).astype(np.float64).reshape(-1)
        if self.kind == "classes":
            self._update(*self._classes(y_true, y_pred), w)
        else:
            self._update(to_host(y_true).astype(np.float64), to_host(y_pred).astype(np.float64), w)

    def _classes(self, y_true, y_pred):
        return _pair(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.reset_state()
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return {"name": self.name}


class _AccuracyBase(Metric):
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


class ConfusionMetric(Metric):
    """Accumulates a confusion matrix; 'binary' averaging for two classes, else `average`."""

    which = None

    def __init__(self, name=None, average=None, num_classes=None):
        if average not in (None, "binary", "macro", "micro"):
            raise ValueError(f"average must be 'binary', 'macro', 'micro' or None, got {average!r}")
        self.average = average
        self.num_classes = None if num_classes is None else whole(num_classes, "num_classes", 1)
        super().__init__(name)

    def reset_state(self):
        self._cm = np.zeros((0, 0), dtype=np.int64)

    def _update(self, t, p, w=None):
        w = None if w is None else _row_weights(w, t).ravel()
        t, p = t.ravel(), p.ravel()  # multi-label decisions count one by one
        c = max(len(self._cm), self.num_classes or 0, int(max(t.max(initial=-1), p.max(initial=-1))) + 1, 2)
        if c > len(self._cm):
            grown = np.zeros((c, c), dtype=np.int64 if w is None and self._cm.dtype == np.int64 else np.float64)
            grown[:len(self._cm), :len(self._cm)] = self._cm
            self._cm = grown
        counts = np.bincount(t * c + p, weights=w, minlength=c * c).reshape(c, c)
        if w is not None and self._cm.dtype != np.float64:
            self._cm = self._cm.astype(np.float64)  # weighted counts (Keras's weighted precision / recall)
        self._cm += counts

    def result(self):
        if not self._cm.sum():
            return 0.0
        average = self.average or ("binary" if len(self._cm) == 2 else "macro")
        return _from_confusion(self._cm, self.which, average)

    def get_config(self):
        return {"name": self.name, "average": self.average, "num_classes": self.num_classes}


class Precision(ConfusionMetric):
    default_name = "precision"
    which = "precision"


class Recall(ConfusionMetric):
    default_name = "recall"
    which = "recall"


class F1Score(ConfusionMetric):
    default_name = "f1_score"
    which = "f1"


class _MeanOfSamples(Metric):
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


_BY_NAME = {
    "accuracy": Accuracy, "acc": Accuracy, "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy, "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "precision": Precision, "recall": Recall, "f1_score": F1Score, "f1": F1Score,
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
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
                                                 SparseCategoricalAccuracy, Precision, Recall, F1Score,
                                                 MeanSquaredError, MeanAbsoluteError)}
