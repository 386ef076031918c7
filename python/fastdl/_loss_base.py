"""The base of fastdl's losses (fastdl.losses) and the target handling every loss shares."""

import numpy as np

from ._checks import array_module, to_host as _host


class Loss:
    """Base class. `fuses_with` names the activation whose logits the loss can take instead."""

    name = "loss"
    fuses_with = None
    from_logits = False

    def __call__(self, y_true, y_pred):
        """The batch mean of the loss (Keras order)."""
        return float(np.mean(self.per_sample(y_true, y_pred)))

    def get_config(self):
        return {}

    # -- for the model ---------------------------------------------------------------------------
    def prepare_targets(self, y, output_shape):
        """y converted once, before training: (what value_and_grad takes, what the metrics take).
        The two are one array unless the loss bakes something (label smoothing) into its targets."""
        y = _float_targets(y, output_shape)
        return y, y

    def value_and_grad(self, y, out, logits, grad, sample_weight=None):
        """Mean loss of the batch; writes dL/d(out) to grad. out: the last layer's output, or
        its logits (pre-activation) when logits is True (a fused pair). sample_weight: None, or
        one weight per row: the loss is then sum_r w_r loss_r / rows (Keras's default
        reduction, sum_over_batch_size) and each row's gradient is scaled by w_r."""
        raise NotImplementedError


REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _loss_values(out):
    """How many loss values Keras reduces for a model output: one per row of its last axis."""
    return out.size // out.shape[-1] if out.ndim > 1 and out.shape[-1] else (len(out) if out.ndim else 1)


class KerasReduction:
    """Keras's `reduction` and `name` arguments of a loss (mixed into Loss subclasses). The values a
    loss reduces are one per row of the last axis (per_sample gives them, shape y_pred.shape[:-1]):
        sum_over_batch_size, mean   sum_i w_i v_i / (number of values)
        sum                         sum_i w_i v_i
        mean_with_sample_weight     sum_i w_i v_i / sum_b w_b   (no weights: as the first)
        none / None                 the values w_i v_i (for calling the loss, not for training)
    w: the sample weights, one per sample (broadcast over its values), or none."""

    def _keras_arguments(self, reduction, name, dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {[r for r in REDUCTIONS if r]} or None, got {reduction!r}")
        self.reduction = "none" if reduction is None else reduction
        if name is not None:
            if not isinstance(name, str):
                raise TypeError(f"name must be a string, got {type(name).__name__}")
            self.name = name
        if dtype is not None and np.dtype(getattr(dtype, "name", dtype)) != np.float32:
            raise NotImplementedError(f"dtype={dtype!r}: fastdl's losses compute in float32")

    def _one_number(self):
        if self.reduction == "none":
            raise ValueError(f"{type(self).__name__}(reduction='none') gives one loss per sample: training needs "
                             f"one number (use 'sum_over_batch_size', 'sum' or 'mean_with_sample_weight')")

    def _value_weights(self, keep, w):
        """Keras's merge of a mask into the sample weights (per loss value): for sum_over_batch_size and
        mean the kept values weigh (values / kept), so that the mean is over the kept ones; otherwise
        0 / 1; times each value's sample weight."""
        weights = keep.astype(np.float64)
        if self.reduction in ("sum_over_batch_size", "mean"):
            kept = float(weights.sum())
            weights *= weights.size / kept if kept else 0.0
        if w is not None:
            per_value = w.size == weights.size
            weights *= w.reshape(weights.shape if per_value else (-1,) + (1,) * (weights.ndim - 1))
        return weights

    def _divisor(self, weights):
        """What Keras divides the sum of masked, weighted values by (the mask merged into the weights)."""
        self._one_number()
        if self.reduction == "sum":
            return 1.0
        if self.reduction == "mean_with_sample_weight":
            total = float(weights.sum())
            return total if total else float("inf")  # Keras's divide_no_nan: 0
        return float(max(weights.size, 1))

    def _values_and_mask(self, y_true, y_pred):
        """The loss values of a call, and the mask of those kept (None: all)."""
        return self.per_sample(y_true, y_pred), None

    def _reduce(self, values, w, keep=None):
        """The reduced loss of the loss values (and per-sample weights, and a mask of the kept
        values): a number, or the values."""
        if keep is not None:
            weights = self._value_weights(keep, w)
            weighted = values * weights
            return weighted if self.reduction == "none" else weighted.sum() / self._divisor(weights)
        if w is not None:
            values = values * w.reshape((-1,) + (1,) * (values.ndim - 1))
        if self.reduction == "none":
            return values
        total = values.sum()
        if self.reduction == "sum":
            return total
        if self.reduction == "mean_with_sample_weight" and w is not None:
            return total / max(float(w.sum()), 1e-30)
        return total / max(values.size, 1)

    def _scale(self, values, w):
        """The factor from the loss as trained (sum_over_batch_size: sum_i w_i v_i over `values`
        loss values, divided by their number) to this reduction's."""
        self._one_number()
        if self.reduction == "sum":
            return float(values)
        if self.reduction == "mean_with_sample_weight" and w is not None:
            return values / max(float(w.sum()), 1e-30)
        return 1.0

    def _rescale(self, loss, grad, values, w):
        """The sum_over_batch_size loss and gradient of a training step turned into this reduction's."""
        scale = self._scale(values, w)
        if scale != 1.0:
            grad *= np.float32(scale)
            loss = loss * scale
        return loss

    def __call__(self, y_true, y_pred, sample_weight=None):
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        values, keep = self._values_and_mask(y_true, y_pred)
        out = self._reduce(values, w, keep)
        return out if self.reduction == "none" else float(out)


def _matched(y_true, y_pred):
    """y_true and y_pred as float64 arrays of one shape. As in Keras, one may have an extra last
    axis of size 1 ((n,) against (n, 1)); it is added to the other, so each sample keeps its loss."""
    t, p = _host(y_true), _host(y_pred)
    for a, role in ((t, "y_true"), (p, "y_pred")):
        if a.dtype.kind not in "iufb":
            raise TypeError(f"{role} must be numeric, got dtype {a.dtype}")
    if t.shape != p.shape:
        if t.ndim + 1 == p.ndim and p.shape[-1] == 1:
            t = t[..., None]
        elif p.ndim + 1 == t.ndim and t.shape[-1] == 1:
            p = p[..., None]
        if t.shape != p.shape:
            raise ValueError(f"y_true has shape {np.shape(y_true)} but y_pred has {np.shape(y_pred)}")
    return t.astype(np.float64), p.astype(np.float64)


def _float_targets(y, output_shape):
    """y as a contiguous float32 array shaped like the model's output ((n,) is taken as (n, 1))."""
    y = np.asarray(y)
    if y.dtype.kind not in "iufb":
        raise TypeError(f"y must be numeric, got dtype {y.dtype}")
    y = y.astype(np.float32)
    if y.shape[1:] != tuple(output_shape):
        if y.ndim == 1 and tuple(output_shape) == (1,):
            y = y[:, None]
        else:
            raise ValueError(f"y has shape {y.shape} but the model's output is (batch,) + {tuple(output_shape)}")
    return np.ascontiguousarray(y)


def _weighted_rows(row_losses, grad, w):
    """sum_r w_r loss_r / rows, after scaling grad (the unweighted mean's gradient) row by row by w_r."""
    grad *= w.reshape((-1,) + (1,) * (grad.ndim - 1))
    total = (row_losses * w).sum() / max(len(w), 1)
    return float(total) if array_module(grad) is np else total
