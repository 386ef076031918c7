"""Losses with Keras's names and argument order (y_true, y_pred).

Classes (MeanSquaredError, BinaryCrossentropy, CategoricalCrossentropy,
SparseCategoricalCrossentropy) return the batch mean, as Keras's default reduction does; the
functions (mean_squared_error, binary_crossentropy, ...) return one loss per sample.

In training, a model fuses its last activation with the loss when they cancel: softmax with
categorical / sparse categorical cross-entropy and sigmoid with binary cross-entropy are then
computed from the logits in one stable kernel (csrc/kernels/losses.h).
"""

import numpy as np

from . import _backend
from ._checks import array_module, flag, real, to_host as _host
from ._keras_losses import (BinaryFocalCrossentropy, CategoricalFocalCrossentropy, CategoricalHinge,  # noqa: F401
                            Hinge, Huber, KLDivergence, LogCosh, MeanAbsoluteError, MeanAbsolutePercentageError,
                            MeanSquaredLogarithmicError, Poisson, SquaredHinge)
from ._loss_base import Loss, KerasReduction, _float_targets, _loss_values, _matched, _weighted_rows  # noqa: F401
from .activations import get as _activation
from .backends import numpy_kernels

EPSILON = 1e-7  # Keras's clip for probabilities


class MeanSquaredError(KerasReduction, Loss):
    """mean((y_true - y_pred)^2) over the last axis; Keras's reduction over the batch."""

    name = "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        self._keras_arguments(reduction, name, dtype)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction}

    def per_sample(self, y_true, y_pred):
        t, p = _matched(y_true, y_pred)
        return np.mean((p - t) ** 2, axis=-1)

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        loss = _backend.kernels_for(out).mse(out, y, grad)
        if sample_weight is not None:
            xp = array_module(out)
            loss = _weighted_rows(xp.mean(xp.square(out - y), axis=tuple(range(1, out.ndim)), dtype=np.float64),
                                  grad, sample_weight)
        return self._rescale(loss, grad, _loss_values(out), sample_weight)


def _last_axis(axis):
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    if axis != -1:
        raise NotImplementedError(f"axis={axis}: fastdl's cross-entropies take the classes on the last axis (-1)")
    return -1


class _Crossentropy(KerasReduction, Loss):
    """Cross-entropies take from_logits and label_smoothing (and Keras's axis, reduction, name)."""

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size", name=None,
                 dtype=None):
        self.from_logits = flag(from_logits, "from_logits")
        self.label_smoothing = _smoothing(label_smoothing)
        self.axis = _last_axis(axis)
        self._keras_arguments(reduction, name, dtype)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class BinaryCrossentropy(_Crossentropy):
    """-mean(t log p + (1 - t) log(1 - p)), p clipped to [1e-7, 1 - 1e-7]; from logits z it is
    mean(max(z, 0) - z t + log(1 + exp(-|z|))). label_smoothing: t -> t (1 - s) + s / 2."""

    name = "binary_crossentropy"
    fuses_with = "sigmoid"

    def per_sample(self, y_true, y_pred):
        t, p = _matched(y_true, y_pred)
        t = t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        terms, _ = numpy_kernels.bce_terms(p, t, self.from_logits)
        return np.mean(terms, axis=-1)

    def prepare_targets(self, y, output_shape):
        y = _float_targets(y, output_shape)
        s = self.label_smoothing
        return (y * np.float32(1 - s) + np.float32(0.5 * s) if s else y), y

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        from_logits = logits or self.from_logits
        loss = _backend.kernels_for(out).binary_crossentropy(out, y, grad, from_logits)
        if sample_weight is not None:
            terms, _ = numpy_kernels.bce_terms(out, y, from_logits)
            loss = _weighted_rows(terms.mean(axis=tuple(range(1, out.ndim)), dtype=np.float64), grad, sample_weight)
        return self._rescale(loss, grad, _loss_values(out), sample_weight)


class CategoricalCrossentropy(_Crossentropy):
    """-sum_c t_c log p_c per sample, for one-hot (or probability) targets. From logits it is
    computed as logsumexp(z) - sum_c t_c z_c. label_smoothing: t -> t (1 - s) + s / C."""

    name = "categorical_crossentropy"
    fuses_with = "softmax"

    def per_sample(self, y_true, y_pred):
        t, p = _host(y_true), _host(y_pred)
        if t.shape != p.shape or t.ndim == 0:
            raise ValueError(f"categorical_crossentropy takes y_true and y_pred of one shape (batch, classes), got "
                             f"y_true {t.shape} and y_pred {p.shape}; for class ids use "
                             f"sparse_categorical_crossentropy")
        t, p = _matched(t, p)
        c = t.shape[-1]
        t = t * (1 - self.label_smoothing) + self.label_smoothing / c
        return _categorical_per_sample(t, p, self.from_logits)

    def prepare_targets(self, y, output_shape):
        y = np.asarray(y)
        if y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1 and output_shape[-1] > 1):
            raise ValueError(f"categorical_crossentropy needs one-hot targets of shape (batch, {output_shape[-1]}), "
                             f"got {y.shape}: use data.to_categorical(y) or loss='sparse_categorical_crossentropy'")
        y = _float_targets(y, output_shape)
        return y, y

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        if logits or self.from_logits:
            loss = _softmax_ce(out, y, grad, self.label_smoothing, sample_weight)
        else:
            c = y.shape[-1]
            rows, t, g, w = _as_rows(out, y, grad, sample_weight)
            loss = _categorical_on_probabilities(t * (1 - self.label_smoothing) + self.label_smoothing / c, rows, g, w)
        return self._rescale(loss, grad, _loss_values(out), sample_weight)


class SparseCategoricalCrossentropy(KerasReduction, Loss):
    """-log p_y per sample for integer class ids y; from logits, logsumexp(z) - z_y.
    ignore_class: targets equal to it add nothing, and Keras's reduction leaves them out (the mean is
    over the other values: sum_over_batch_size divides by their count)."""

    name = "sparse_categorical_crossentropy"
    fuses_with = "softmax"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size", axis=-1, name=None,
                 dtype=None):
        self.from_logits = flag(from_logits, "from_logits")
        if ignore_class is not None and (isinstance(ignore_class, bool)
                                         or not isinstance(ignore_class, (int, np.integer))):
            raise TypeError(f"ignore_class must be an int class id or None, got {ignore_class!r}")
        self.ignore_class = None if ignore_class is None else int(ignore_class)
        self.axis = _last_axis(axis)
        self._keras_arguments(reduction, name, dtype)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "from_logits": self.from_logits,
                "ignore_class": self.ignore_class, "axis": self.axis}

    def _ids(self, y, classes, role):
        """Class ids, with -1 where y is ignore_class."""
        y = _host(y)
        if self.ignore_class is None:
            return _class_ids(y, classes, role)
        ignored = y == self.ignore_class
        return np.where(ignored, -1, _class_ids(np.where(ignored, 0, y), classes, role))

    def _values_and_mask(self, y_true, y_pred):
        """(loss values, mask of the kept ones or None) for y_pred (batch, ..., classes)."""
        p = _host(y_pred)
        if p.dtype.kind not in "iufb":
            raise TypeError(f"y_pred must be numeric, got dtype {p.dtype}")
        if p.ndim < 2:
            raise ValueError(f"y_pred must have shape (batch, ..., classes), got {p.shape}")
        y = _host(y_true)
        y = y.reshape(1) if y.ndim == 0 else y
        if y.shape == p.shape[:-1] + (1,):
            y = y[..., 0]
        if len(y) != len(p):
            raise ValueError(f"y_true has {len(y)} samples but y_pred has {len(p)}")
        if y.shape != p.shape[:-1]:
            raise ValueError(f"y_true has shape {y.shape} but y_pred {p.shape} takes class ids of shape {p.shape[:-1]}")
        ids = self._ids(y.reshape(-1), p.shape[-1], "y_true").reshape(y.shape)
        keep = ids >= 0
        t = np.zeros(p.shape)
        np.put_along_axis(t, np.where(keep, ids, 0)[..., None], 1.0, axis=-1)
        values = _categorical_per_sample(t, p.astype(np.float64), self.from_logits)
        return np.where(keep, values, 0.0), (None if self.ignore_class is None else keep)

    def per_sample(self, y_true, y_pred):
        return self._values_and_mask(y_true, y_pred)[0]

    def prepare_targets(self, y, output_shape):
        if len(output_shape) > 1:  # a class id per position of a (batch, ..., classes) output
            y = _host(y)
            if y.shape[1:] == tuple(output_shape[:-1]) + (1,):
                y = y[..., 0]
            if y.shape[1:] != tuple(output_shape[:-1]):
                raise ValueError(f"y has shape {y.shape}: sparse targets of a (batch,) + {tuple(output_shape)} "
                                 f"output are class ids of shape (batch,) + {tuple(output_shape[:-1])}")
            ids = self._ids(y.reshape(-1), output_shape[-1], "y").reshape(y.shape)
        else:
            y = _host(y)
            y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
            ids = self._ids(y, output_shape[-1], "y")
        # the metrics see the labels as given (Keras's compares an ignored label like any other)
        return ids, (ids if self.ignore_class is None else np.ascontiguousarray(y, dtype=np.int64))

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        if self.ignore_class is not None:
            return self._masked_value_and_grad(y, out, logits, grad, sample_weight)
        if logits or self.from_logits:
            loss = _softmax_ce(out, y, grad, 0.0, sample_weight)
        else:
            rows, ids, g, w = _as_rows(out, y, grad, sample_weight)
            loss = _categorical_on_probabilities(_one_hot(ids, rows), rows, g, w)
        return self._rescale(loss, grad, _loss_values(out), sample_weight)

    def _masked_value_and_grad(self, y, out, logits, grad, sample_weight):
        """With ignore_class: each row's loss weighted as Keras merges the mask into the weights."""
        rows, ids, g, w = _as_rows(out, y, grad, sample_weight)
        xp = array_module(out)
        keep = ids >= 0
        weights = self._value_weights(keep, w)
        ids = xp.where(keep, ids, 0)
        divisor = self._divisor(weights)
        if logits or self.from_logits:
            values = xp.empty(len(rows), dtype=np.float64)
            _backend.kernels_for(rows).softmax_cross_entropy(rows, ids, g, 0.0, None, "none", values)
            g *= (weights / divisor).astype(np.float32)[:, None]
            loss = (values * weights).sum() / divisor
            return float(loss) if xp is np else loss
        loss = _categorical_on_probabilities(_one_hot(ids, rows), rows, g, weights)  # sum(w v) / rows
        scale = len(rows) / divisor
        g *= np.float32(scale)
        return loss * scale


def _one_hot(ids, rows):
    xp = array_module(rows)
    t = xp.zeros(rows.shape, dtype=np.float32)
    t[xp.arange(len(ids)), ids] = 1
    return t


def _class_ids(y, classes, role):
    """Sparse targets as int64 class ids in [0, classes), shape (batch,) (or (batch, 1))."""
    y = _host(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{role}: sparse targets must be class ids of shape (batch,), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(y == np.round(y)):
            raise ValueError(f"{role}: sparse targets must be integer class ids")
    elif y.dtype.kind not in "iu":
        raise TypeError(f"{role}: sparse targets must be integer class ids, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= classes):
        raise ValueError(f"{role} holds class ids outside [0, {classes}) for {classes} classes")
    return np.ascontiguousarray(y, dtype=np.int64)


def _categorical_per_sample(t, p, from_logits):
    if from_logits:
        c = p.shape[-1]
        loss, _ = numpy_kernels.softmax_ce_rows(p.reshape(-1, c), t.reshape(-1, c))
        return loss.reshape(p.shape[:-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.clip(p / p.sum(axis=-1, keepdims=True), EPSILON, 1 - EPSILON)
    return -(t * np.log(q)).sum(axis=-1)


def _as_rows(logits, y, grad, w):
    """(batch, ..., classes) logits as rows of classes (views), with the targets (class ids of shape
    (batch, ...), or probability rows) and the per-sample weights repeated over each sample's rows."""
    if logits.ndim == 2:
        return logits, y, grad, w
    c = logits.shape[-1]
    per_sample = int(np.prod(logits.shape[1:-1]))
    y = y.reshape(-1) if y.dtype.kind in "iu" else y.reshape(-1, c)
    if w is not None:
        w = array_module(w).repeat(w, per_sample)
    return logits.reshape(-1, c), y, grad.reshape(-1, c), w


def _softmax_ce(logits, y, grad, smoothing, w):
    """The fused softmax cross-entropy; weighted: each row's loss from the same pass (reduction
    'none'), its gradient scaled by w_r / rows. Logits of any rank: over the last axis."""
    logits, y, grad, w = _as_rows(logits, y, grad, w)
    k = _backend.kernels_for(logits)
    if w is None:
        return k.softmax_cross_entropy(logits, y, grad, smoothing)
    xp = array_module(logits)
    rows = xp.empty(len(logits), dtype=np.float64)
    k.softmax_cross_entropy(logits, y, grad, smoothing, None, "none", rows)
    grad *= (w / np.float32(max(len(w), 1)))[:, None]
    total = (rows * w).sum() / max(len(w), 1)
    return float(total) if xp is np else total


def _categorical_on_probabilities(t, p, grad, w=None):
    """Keras's cross-entropy on probabilities that did not come from a fusable softmax: p is
    renormalised, q = p / S with S = sum_c p_c, then clipped to [eps, 1 - eps]:
        L = -mean_rows sum_c t_c log q_c
        dL/dp_j = -(w_j - sum_c w_c q_c) / S / rows,   w_c = t_c / q_c inside the clip, 0 outside.
    The rare path (a model ending in softmax is fused instead), so it is written in NumPy (CuPy on a
    GPU: the same calls). Returns the loss as a float (a 0-d device array on a GPU)."""
    xp = array_module(p)
    p = p.astype(np.float64)
    s = p.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = p / s
    qc = xp.clip(q, EPSILON, 1 - EPSILON)
    inside = (q >= EPSILON) & (q <= 1 - EPSILON)
    rows = len(p)
    r = xp.where(inside, t / qc, 0.0)
    row_weight = 1.0 if w is None else w[:, None]
    grad[...] = (-(r - (r * q).sum(axis=-1, keepdims=True)) / s) / rows * row_weight
    row_losses = -(t * xp.log(qc)).sum(axis=-1)
    loss = (row_losses if w is None else row_losses * w).sum() / rows
    return float(loss) if xp is np else loss


def _smoothing(value):
    return real(value, "label_smoothing", 0.0, 1.0)


# ---- Keras-style functions: one loss per sample ---------------------------------------------------

def mean_squared_error(y_true, y_pred):
    """Per-sample mean((y_true - y_pred)^2) over the last axis."""
    return MeanSquaredError().per_sample(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample binary cross-entropy, averaged over the last axis."""
    return BinaryCrossentropy(from_logits, label_smoothing).per_sample(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Per-sample categorical cross-entropy for one-hot / probability targets."""
    return CategoricalCrossentropy(from_logits, label_smoothing).per_sample(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample cross-entropy for integer class ids."""
    return SparseCategoricalCrossentropy(from_logits).per_sample(y_true, y_pred)


mse = mean_squared_error

_CLASSES = {"mean_squared_error": MeanSquaredError, "mse": MeanSquaredError,
            "binary_crossentropy": BinaryCrossentropy, "categorical_crossentropy": CategoricalCrossentropy,
            "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
            "mean_absolute_error": MeanAbsoluteError, "mae": MeanAbsoluteError,
            "mean_absolute_percentage_error": MeanAbsolutePercentageError, "mape": MeanAbsolutePercentageError,
            "mean_squared_logarithmic_error": MeanSquaredLogarithmicError, "msle": MeanSquaredLogarithmicError,
            "huber_loss": Huber, "huber": Huber, "log_cosh": LogCosh, "logcosh": LogCosh,
            "kl_divergence": KLDivergence, "kld": KLDivergence, "kullback_leibler_divergence": KLDivergence,
            "poisson": Poisson, "hinge": Hinge, "squared_hinge": SquaredHinge, "categorical_hinge": CategoricalHinge,
            "binary_focal_crossentropy": BinaryFocalCrossentropy,
            "categorical_focal_crossentropy": CategoricalFocalCrossentropy}


def get(identifier):
    """A Loss from a Keras name ('categorical_crossentropy', 'mse', ...) or a Loss instance."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier in _CLASSES:
        return _CLASSES[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; use one of {sorted(_CLASSES)} or a fastdl.losses.Loss")


def from_config(name, config):
    return _CLASSES[name](**config)


def fusable(loss, activation):
    """Whether the model can hand `loss` the logits of a last layer with `activation`."""
    return not loss.from_logits and loss.fuses_with is not None and _activation(activation).name == loss.fuses_with
