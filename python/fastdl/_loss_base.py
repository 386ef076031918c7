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
