"""Fused losses: one call returns ``(loss, grad)``, the mean loss as a 0-d array of the
prediction's dtype and its gradient with respect to the prediction (already divided by the
count for the mean). ``out`` receives the gradient when given (``out=pred`` works).

On CuPy arrays both stay on the device: the loss is a 0-d CuPy array, and nothing waits for
the GPU (``float(loss)`` does)."""

import math

import numpy as np

from .. import _backend
from .._checks import (array_module, flag, float_array, may_share_memory, on_device, output, real, same_as,
                       same_place)


def _result(loss, dtype, grad):
    if isinstance(loss, float):
        return np.asarray(loss, dtype=dtype), grad
    return loss.astype(dtype), grad  # a device scalar


def mse(pred, target, out=None):
    """Mean squared error over all elements: L = mean((pred - target)^2); dL/dpred = 2 (pred - target) / n."""
    pred = float_array(pred, "pred")
    target = same_as(target, pred, "target", "pred")
    out, (pred, target) = output(out, pred, "pred", (pred, target))
    return _result(_backend.kernels_for(pred).mse(pred, target, out), pred.dtype, out)


def binary_crossentropy(pred, target, from_logits=False, out=None):
    """Mean binary cross-entropy over all elements.

    Probabilities (Keras's definition, p clipped to [1e-7, 1 - 1e-7]):
        L = -mean(t log p + (1 - t) log(1 - p)),  dL/dp = (p - t) / (p (1 - p)) / n  (0 where p was clipped).
    Logits (from_logits=True), stable for any finite z:
        L = mean(max(z, 0) - z t + log(1 + exp(-|z|))),  dL/dz = (sigmoid(z) - t) / n.
    """
    pred = float_array(pred, "pred")
    target = same_as(target, pred, "target", "pred")
    out, (pred, target) = output(out, pred, "pred", (pred, target))
    loss = _backend.kernels_for(pred).binary_crossentropy(pred, target, out, bool(from_logits))
    return _result(loss, pred.dtype, out)


_TERMS = _backend.numpy_kernels.LOSS_TERMS


def elementwise_loss(name, pred, target, out=None, delta=1.0, alpha=0.25, gamma=2.0, apply_class_balancing=False,
                     from_logits=False):
    """The mean over all elements of Keras's elementwise loss `name` and its gradient, in one fused
    pass: 'mae', 'mape', 'msle', 'huber' (delta), 'log_cosh', 'poisson', 'hinge' (targets -1 / 1),
    'squared_hinge', 'kl_divergence' (the mean of t log(t / p): Keras sums over the last axis),
    'binary_focal' (alpha with apply_class_balancing, gamma, from_logits). Formulas:
    fastdl/_keras_losses.py; the kernels: csrc/kernels/losses.h."""
    if name == "binary_focal" and from_logits:
        name = "binary_focal_logits"
    if name not in _TERMS:
        raise ValueError(f"name must be one of {sorted(n for n in _TERMS if n != 'binary_focal_logits')}, "
                         f"got {name!r}")
    a, b = 0.0, 0.0
    if name == "huber":
        a = real(delta, "delta", 0.0)
    elif name.startswith("binary_focal"):
        a = real(alpha, "alpha", 0.0) if apply_class_balancing else -1.0
        b = real(gamma, "gamma", 0.0)
    pred = float_array(pred, "pred")
    target = same_as(target, pred, "target", "pred")
    out, (pred, target) = output(out, pred, "pred", (pred, target))
    return _result(_backend.kernels_for(pred).loss_term(_TERMS[name], pred, target, out, a, b), pred.dtype, out)


def _class_ids(target):
    xp = array_module(target)
    if target.dtype in (np.int64, np.int32):
        return target if target.flags.c_contiguous else xp.ascontiguousarray(target)
    # (on a device this check would wait for the GPU: there an id beyond int64 wraps to a negative
    # one, which the kernel answers with a NaN loss)
    if target.dtype == np.uint64 and not on_device(target) and target.size and target.max() > np.iinfo(np.int64).max:
        i = int(np.argmax(target.reshape(-1)))  # named as given, not as it would wrap to int64
        raise ValueError(f"target[{i}] = {target.reshape(-1)[i]} is not a class id")
    return target.astype(np.int64)


def softmax_cross_entropy(logits, target, label_smoothing=0.0, out=None):
    """Mean softmax cross-entropy of logits (..., C) against class ids (...) or probabilities (..., C).

    With lse = log(sum_c exp(x_c)) per row and the target distribution q (one-hot of the id, or the
    given probabilities), smoothed as q <- (1 - eps) q + eps / C:
        L = mean_rows(sum_c q_c (lse - x_c)),   dL/dx_c = (sum(q) softmax(x)_c - q_c) / rows.
    One fused pass per row (max, then exp-sum into the gradient, then the gradient in place);
    stable for any finite logits. Class ids must lie in [0, C): on the host an id outside raises
    ValueError; on a GPU (where checking would wait for the device) its row's loss and gradient
    are NaN, so the mean loss is NaN.
    """
    logits = float_array(logits, "logits")
    if logits.ndim == 0:
        raise ValueError("logits must have a class axis: shape (..., C)")
    if logits.shape[-1] == 0 and logits.size == 0 and np.prod(logits.shape[:-1]) > 0:
        raise ValueError("logits has no classes")
    eps = real(label_smoothing, "label_smoothing", 0.0, 1.0)
    if type(target) is np.ndarray or on_device(target):
        same_place(target, logits, "target", "logits")
    target = array_module(logits).asarray(target)
    probabilities = target.dtype.kind == "f"  # decided before reshaping: (C,) logits take a 0-d id
    if target.dtype.kind in "iu":
        if target.shape != logits.shape[:-1]:
            raise ValueError(f"target (class ids) has shape {target.shape} but logits {logits.shape} "
                             f"needs {logits.shape[:-1]}")
        target = _class_ids(target).reshape(-1)
    elif target.dtype.kind == "f":
        if target.shape != logits.shape:
            raise ValueError(f"target has shape {target.shape}; expected class ids of shape {logits.shape[:-1]} "
                             f"or probabilities of shape {logits.shape}")
        target = same_as(target, logits, "target", "logits")
    else:
        raise TypeError(f"target must be integer class ids or float probabilities, got dtype {target.dtype}")
    grad, (logits,) = output(out, logits, "logits", (logits,))  # out may be the logits themselves
    rows = logits.reshape(-1, logits.shape[-1])
    if probabilities:
        if may_share_memory(target, grad):  # the kernel reads the target after writing out
            target = target.copy()
        target = target.reshape(rows.shape)
    loss = _backend.kernels_for(rows).softmax_cross_entropy(rows, target, grad.reshape(rows.shape), eps)
    return _result(loss, logits.dtype, grad)


_ROW_LOSSES = _backend.numpy_kernels.ROW_LOSSES


def row_loss(name, pred, target, out=None, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0,
             scale=None, weights=None, row_losses=None):
    """Keras's loss `name` of each row over the last axis of pred (..., C), and its gradient, in one
    fused pass per row. Row r's loss and gradient are multiplied by f_r = scale * weights[r]:
    returns (sum_r f_r loss_r, grad = f_r dloss_r/dpred). scale defaults to 1 / rows (the mean over
    rows: NaN for no rows); weights (None: 1) has one value per row (shape pred.shape[:-1]), so
    Keras's reductions and sample weights are a scale and weights. row_losses, a float64 array of
    shape pred.shape[:-1] (or rows elements), receives each unweighted loss_r when given.

    'categorical_hinge':  pos = sum_j t_j p_j, neg = max_j (1 - t_j) p_j (first index j* on ties)
        loss = max(neg - pos + 1, 0);  dloss/dp_j = -t_j + (1 - t_j)[j = j*] where the margin is > 0
    'categorical_focal' (alpha, gamma, from_logits, label_smoothing s): t <- t (1 - s) + s / C,
        q = softmax(x) (from_logits) or x / sum(x), qc = clip(q, 1e-7, 1 - 1e-7)
        loss = sum_c alpha (1 - qc_c)^gamma (-t_c log qc_c); its gradient through the clip (0 where
        clipped), the normalisation and the softmax. Stable for any finite logits.
    Formulas once: csrc/kernels/losses.h."""
    if name not in _ROW_LOSSES:
        raise ValueError(f"name must be one of {sorted(_ROW_LOSSES)}, got {name!r}")
    opts = {}
    if name == "categorical_focal":
        opts = dict(alpha=real(alpha, "alpha", 0.0), gamma=real(gamma, "gamma", 0.0),
                    from_logits=bool(flag(from_logits, "from_logits")),
                    label_smoothing=real(label_smoothing, "label_smoothing", 0.0, 1.0))
    pred = float_array(pred, "pred")
    if pred.ndim == 0:
        raise ValueError("pred must have a class axis: shape (..., C)")
    rows_shape = pred.shape[:-1]
    rows = int(np.prod(rows_shape))
    if rows and not pred.shape[-1]:
        raise ValueError("pred has no classes")
    target = same_as(target, pred, "target", "pred")
    grad, (pred, target) = output(out, pred, "pred", (pred, target))
    # the kernels read pred and target after writing the gradient: no output may be an input
    pred = pred.copy() if may_share_memory(pred, grad) else pred
    target = target.copy() if may_share_memory(target, grad) else target
    xp = array_module(pred)
    if scale is None:
        scale = 1.0 / rows if rows else math.nan
    else:
        scale = real(scale, "scale")
    if weights is not None:
        if type(weights) is np.ndarray or on_device(weights):
            same_place(weights, pred, "weights", "pred")
        weights = xp.asarray(weights)
        if weights.dtype.kind not in "iuf":
            raise TypeError(f"weights must be a real array, got dtype {weights.dtype}")
        if weights.size != rows:
            raise ValueError(f"weights has shape {weights.shape}; expected one weight per row, {rows_shape}")
        weights = xp.ascontiguousarray(weights.reshape(rows), dtype=np.float64)
    if row_losses is not None:
        same_place(row_losses, pred, "row_losses", "pred")
        if row_losses.dtype != np.float64 or row_losses.size != rows or not row_losses.flags.c_contiguous:
            raise ValueError(f"row_losses must be a C-contiguous float64 array of {rows} elements (shape "
                             f"{rows_shape}), got {row_losses.dtype} {row_losses.shape}")
        if not on_device(row_losses) and not row_losses.flags.writeable:
            raise ValueError("row_losses is read-only")
    if rows == 0:
        loss = 0.0 * scale
        return _result(loss if xp is np else xp.full((), loss, dtype=np.float64), pred.dtype, grad)
    cols = pred.shape[-1]
    loss = _backend.kernels_for(pred).row_loss(
        _ROW_LOSSES[name], pred.reshape(rows, cols), target.reshape(rows, cols), grad.reshape(rows, cols),
        scale=scale, weights=weights, row_losses=None if row_losses is None else row_losses.reshape(rows), **opts)
    return _result(loss, pred.dtype, grad)
