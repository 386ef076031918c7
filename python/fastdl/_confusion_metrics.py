"""Keras 3's confusion-count metrics, computed as Keras computes them: Precision, Recall, FBetaScore,
F1Score, AUC (exported by fastdl.metrics).

Precision and Recall judge every output on its own: an output counts as predicted positive when
it exceeds the threshold (0.5 by default; with top_k, only each row's top_k outputs can), and as
truly positive when its target is not 0; class_id restricts both to one output column. So a
softmax's (n, C) outputs against one-hot targets are n * C binary decisions, micro-averaged, as in
Keras (not a macro average over argmax classes). thresholds may be a list: then the result is one
value per threshold.

FBetaScore / F1Score count per class: a row's prediction is its largest output (threshold=None)
or every output above threshold; average None gives one score per class, else 'micro', 'macro'
or 'weighted' (by each class's true count).

AUC integrates the ROC curve (curve='ROC') or the precision-recall curve ('PR') over
num_thresholds thresholds spread over [0, 1] (and -eps, 1 + eps), summed with Keras's
'interpolation' (trapezoids for ROC, Davis & Goadrich's for PR), 'minoring' or 'majoring'.

Class ids given where the outputs are (n, C) rows are taken one-hot (Keras would refuse them).
Sample weights weigh each row's counts.
"""

import numpy as np

from ._checks import real, to_host
from ._metric_base import Metric

EPSILON = 1e-7


def _pairs(y_true, y_pred):
    """(targets, outputs) as float64 arrays of one shape; class ids against (n, C) rows one-hot."""
    t, p = to_host(y_true).astype(np.float64), to_host(y_pred).astype(np.float64)
    if t.shape != p.shape:
        if p.ndim == t.ndim + 1 and p.shape[-1] > 1 and np.all(t == np.round(t)):
            t = np.eye(p.shape[-1])[t.astype(np.int64)]
        elif t.size == p.size:
            t = t.reshape(p.shape)
        else:
            raise ValueError(f"y_true has shape {np.shape(y_true)} but y_pred has {np.shape(y_pred)}")
    return t, p


def _weights(w, t):
    """Per-element weights: one per row, repeated over the row's outputs (1 without weights)."""
    if w is None:
        return np.ones(t.shape)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if len(w) != len(t):
        raise ValueError(f"sample_weight has {len(w)} values for {len(t)} samples")
    return np.broadcast_to(w.reshape((-1,) + (1,) * (t.ndim - 1)), t.shape)


def _ratio(num, den):
    return np.divide(num, den, out=np.zeros_like(np.asarray(num, dtype=np.float64)), where=np.asarray(den) > 0)


class _ThresholdCounts:
    """Weighted counts of (label, prediction) pairs at each threshold: the state of Precision,
    Recall and AUC. Callers define name, default_name and kind via the Metric base."""

    kind = "values"
    _state = ("tp", "fp", "tn", "fn")

    def _setup(self, thresholds, top_k, class_id, default, check=True):
        if thresholds is None:
            thresholds = default
        elif check:
            for t in np.atleast_1d(np.asarray(thresholds, dtype=object)):
                if not (0.0 <= real(t, "thresholds", -np.inf) <= 1.0):
                    raise ValueError(f"thresholds must be in [0, 1], got {t!r}")
        self._single = np.ndim(thresholds) == 0
        self.thresholds = [float(t) for t in np.atleast_1d(thresholds)]
        self.top_k = None if top_k is None else int(top_k)
        self.class_id = None if class_id is None else int(class_id)

    def reset_state(self):
        n = len(self.thresholds)
        self.tp, self.fp, self.tn, self.fn = (np.zeros(n) for _ in range(4))

    def _update(self, t, p, w=None):
        t, p = _pairs(t, p)
        weights = _weights(w, t)
        if self.class_id is not None:
            t, p, weights = t[..., self.class_id], p[..., self.class_id], weights[..., self.class_id]
        if self.top_k is not None:  # only each row's top_k outputs can be predicted positive
            keep = np.argsort(-p, axis=-1, kind="stable")[..., :self.top_k]
            mask = np.zeros(p.shape, dtype=bool)
            np.put_along_axis(mask, keep, True, axis=-1)
            p = np.where(mask, p, -np.inf)
        label = (t != 0).ravel()
        pred_scores, wv = p.ravel(), weights.ravel()
        for i, th in enumerate(self.thresholds):
            pred = pred_scores > th
            self.tp[i] += np.sum(wv * (label & pred))
            self.fp[i] += np.sum(wv * (~label & pred))
            self.tn[i] += np.sum(wv * (~label & ~pred))
            self.fn[i] += np.sum(wv * (label & ~pred))

    def _one_or_many(self, values):
        return float(values[0]) if self._single else values

    def get_config(self):
        return {"name": self.name, "thresholds": self.thresholds[0] if self._single else list(self.thresholds),
                "top_k": self.top_k, "class_id": self.class_id}


class Precision(_ThresholdCounts, Metric):
    """TP / (TP + FP) over every output decision (Keras's Precision; see the module)."""
    default_name = "precision"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        self._setup(thresholds, top_k, class_id, 0.5 if top_k is None else -np.inf)
        Metric.__init__(self, name)

    def result(self):
        return self._one_or_many(_ratio(self.tp, self.tp + self.fp))

class Recall(_ThresholdCounts, Metric):
    """TP / (TP + FN) over every output decision (Keras's Recall)."""
    default_name = "recall"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        self._setup(thresholds, top_k, class_id, 0.5 if top_k is None else -np.inf)
        Metric.__init__(self, name)

    def result(self):
        return self._one_or_many(_ratio(self.tp, self.tp + self.fn))

class FBetaScore(Metric):
    """(1 + beta^2) P R / (beta^2 P + R) per class (Keras's FBetaScore; see the module)."""
    default_name = "fbeta_score"
    kind = "values"
    _state = ("tp", "fp", "fn", "support")

    def __init__(self, average=None, beta=1.0, threshold=None, name=None):
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(f"average must be None, 'micro', 'macro' or 'weighted', got {average!r}")
        if not float(beta) > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        self.average, self.beta = average, float(beta)
        self.threshold = None if threshold is None else float(threshold)
        Metric.__init__(self, name)

    def reset_state(self):
        self.tp = self.fp = self.fn = self.support = None

    def _update(self, t, p, w=None):
        t, p = _pairs(t, p)
        t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
        if self.threshold is None:  # each row's largest output is its prediction (ties: all of them)
            pred = (p == p.max(axis=-1, keepdims=True)).astype(np.float64)
        else:
            pred = (p > self.threshold).astype(np.float64)
        weights = _weights(w, t)
        counts = [np.sum(weights * pred * t, axis=0), np.sum(weights * pred * (1 - t), axis=0),
                  np.sum(weights * (1 - pred) * t, axis=0), np.sum(weights * t, axis=0)]
        if self.tp is None:
            self.tp, self.fp, self.fn, self.support = counts
        else:
            self.tp, self.fp, self.fn, self.support = (a + b for a, b in
                                                      zip((self.tp, self.fp, self.fn, self.support), counts))

    def result(self):
        if self.tp is None:
            return 0.0
        tp, fp, fn = self.tp, self.fp, self.fn
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        b2 = self.beta ** 2
        f = _ratio((1 + b2) * precision * recall, b2 * precision + recall)
        if self.average == "micro":
            return float(f)
        if self.average == "macro":
            return float(np.mean(f))
        if self.average == "weighted":
            return float(_ratio(np.sum(f * self.support), np.sum(self.support)))
        return f

    def get_config(self):
        return {"name": self.name, "average": self.average, "beta": self.beta, "threshold": self.threshold}

class F1Score(FBetaScore):
    """2 P R / (P + R) per class (Keras's F1Score: FBetaScore with beta = 1)."""
    default_name = "f1_score"

    def __init__(self, average=None, threshold=None, name=None):
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name)

    def get_config(self):
        return {"name": self.name, "average": self.average, "threshold": self.threshold}

class AUC(_ThresholdCounts, Metric):
    """Area under the ROC or precision-recall curve (Keras's AUC; see the module). multi_label:
    one curve per output column (y_pred of shape (n, labels)), the result their mean, or their
    label_weights-weighted mean; otherwise every output is a decision of one curve, label_weights
    weighing each column's decisions. from_logits: a sigmoid is applied to y_pred first."""
    default_name = "auc"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation", name=None,
                 thresholds=None, multi_label=False, num_labels=None, label_weights=None, from_logits=False,
                 dtype=None):
        if curve not in ("ROC", "PR"):
            raise ValueError(f"curve must be 'ROC' or 'PR', got {curve!r}")
        if summation_method not in ("interpolation", "minoring", "majoring"):
            raise ValueError(f"summation_method must be 'interpolation', 'minoring' or 'majoring', got "
                             f"{summation_method!r}")
        if dtype not in (None, "float32"):
            raise ValueError(f"AUC: dtype {dtype!r}; fastdl's metrics are float32")
        if num_labels is not None and not multi_label:
            raise ValueError("num_labels is needed only when multi_label is True")
        if num_labels is not None and not (isinstance(num_labels, int) and num_labels >= 1):
            raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
        if label_weights is not None:
            label_weights = np.asarray(label_weights, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(label_weights)) or np.any(label_weights < 0):
                raise ValueError("label_weights must be non-negative finite numbers")
        if thresholds is None:
            if int(num_thresholds) < 2:
                raise ValueError(f"num_thresholds must be > 1, got {num_thresholds!r}")
            n = int(num_thresholds)
            inner = [(i + 1) / (n - 1) for i in range(n - 2)]
        else:
            for t in thresholds:
                if not (0.0 <= real(t, "thresholds", -np.inf) <= 1.0):
                    raise ValueError(f"thresholds must be in [0, 1], got {t!r}")
            inner = sorted(float(t) for t in thresholds)
        self.curve, self.summation_method, self.num_thresholds = curve, summation_method, len(inner) + 2
        self.multi_label, self.num_labels, self.from_logits = bool(multi_label), num_labels, bool(from_logits)
        self.label_weights = label_weights
        self._given_thresholds = None if thresholds is None else list(inner)
        self._setup([-EPSILON] + inner + [1.0 + EPSILON], None, None, None, check=False)
        Metric.__init__(self, name)

    def reset_state(self):
        super().reset_state()
        self._labels = None  # the label count, fixed by the first batch (multi_label)

    def _update(self, t, p, w=None):
        t, p = _pairs(t, p)
        if self.from_logits:
            p = 0.5 * (1.0 + np.tanh(0.5 * p))  # the sigmoid, without overflow
        weights = _weights(w, t)
        labels = t.shape[-1] if t.ndim >= 2 else 1
        t, p, weights = (a.reshape(-1, labels) for a in (t, p, weights))
        if self.multi_label:
            if (self.num_labels is not None and labels != self.num_labels) or \
                    (self._labels is not None and labels != self._labels):
                want = self._labels or self.num_labels or "labels"
                raise ValueError(f"AUC(multi_label=True) takes y_pred of shape (n, {want}), got {labels} labels")
            self._labels = labels
            if self.tp.ndim == 1:
                self.tp, self.fp, self.tn, self.fn = (np.zeros((len(self.thresholds), labels)) for _ in range(4))
        if self.label_weights is not None:
            if len(self.label_weights) != labels:
                raise ValueError(f"label_weights has {len(self.label_weights)} values for {labels} labels")
            if not self.multi_label:
                weights = weights * self.label_weights
        label = t != 0
        axis = 0 if self.multi_label else None
        for i, th in enumerate(self.thresholds):
            pred = p > th
            self.tp[i] += np.sum(weights * (label & pred), axis=axis)
            self.fp[i] += np.sum(weights * (~label & pred), axis=axis)
            self.tn[i] += np.sum(weights * (~label & ~pred), axis=axis)
            self.fn[i] += np.sum(weights * (label & ~pred), axis=axis)

    def result(self):
        if self.tp.ndim == 1:
            return float(self._area(self.tp, self.fp, self.tn, self.fn))
        by_label = np.array([self._area(*(a[:, j] for a in (self.tp, self.fp, self.tn, self.fn)))
                             for j in range(self.tp.shape[1])])
        if self.label_weights is None:
            return float(np.mean(by_label))
        return float(_ratio(np.sum(by_label * self.label_weights), np.sum(self.label_weights)))

    def _area(self, tp, fp, tn, fn):
        if self.curve == "PR" and self.summation_method == "interpolation":
            return _interpolated_pr_auc(tp, fp, fn)
        recall = _ratio(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _ratio(fp, fp + tn), recall
        else:
            x, y = recall, _ratio(tp, tp + fp)
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return np.sum((x[:-1] - x[1:]) * heights)

    def get_config(self):
        return {"name": self.name, "num_thresholds": self.num_thresholds, "curve": self.curve,
                "summation_method": self.summation_method, "thresholds": self._given_thresholds,
                "multi_label": self.multi_label, "num_labels": self.num_labels,
                "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
                "from_logits": self.from_logits}


def _interpolated_pr_auc(tp, fp, fn):
    """Davis & Goadrich's interpolation of the precision-recall curve between thresholds, as Keras's
    AUC(curve='PR') sums it."""
    dtp = tp[:-1] - tp[1:]
    p = tp + fp
    dp = p[:-1] - p[1:]
    slope = _ratio(dtp, np.maximum(dp, 0))
    intercept = tp[1:] - slope * p[1:]
    safe_ratio = np.where((p[:-1] > 0) & (p[1:] > 0), _ratio(p[:-1], np.maximum(p[1:], 0)), 1.0)
    with np.errstate(divide="ignore"):
        increments = _ratio(slope * (dtp + intercept * np.log(safe_ratio)), np.maximum(tp[1:] + fn[1:], 0))
    return np.sum(increments)
