"""Fused losses for PyTorch: ``cross_entropy`` with torch's arguments and results, computing the
loss and its gradient in one pass over the logits.

torch's ``F.cross_entropy`` runs log_softmax, then nll_loss, and its backward recomputes softmax
from the saved log-probabilities: the (N, C) logits are followed by an (N, C) log_softmax output
kept for backward and an (N, C) gradient. Here one pass over each row (max, log-sum-exp, then the
gradient) writes the gradient during the forward, and backward scales it: the memory kept for backward is the gradient
alone. With ``inplace_backward=True`` the gradient is written over the logits and handed to
autograd as it is: no (N, C) memory beyond the logits (its backward then runs once per forward).
"""

import numpy as np
import torch

from ... import _backend

_HOST_DTYPES = (torch.float32, torch.float64)
_REDUCTIONS = ("mean", "sum", "none")


class _CrossEntropy(torch.autograd.Function):
    """(N, C) logits -> loss; the gradient is computed with the loss and kept for backward."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, reduction, label_smoothing, inplace):
        rows = logits.shape[0]
        grad = logits if inplace else torch.empty_like(logits)
        row_losses = torch.empty(rows, dtype=torch.float64) if reduction == "none" else None
        total = _backend.host.softmax_cross_entropy(
            logits.detach().numpy(), target.numpy(), grad.detach().numpy(), label_smoothing,
            ignore_index if target.dtype != logits.dtype else None, reduction,
            None if row_losses is None else row_losses.numpy())
        if inplace:
            # the logits now hold their gradient: an op that saved them for its own backward must
            # fail there rather than read it (torch checks a saved tensor's version)
            torch.autograd.graph.increment_version(logits)
        ctx.reduction, ctx.inplace, ctx.used = reduction, inplace, False
        ctx.save_for_backward(grad)
        if reduction == "none":
            return row_losses.to(logits.dtype)
        return torch.tensor(total, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        scale = grad_output[:, None] if ctx.reduction == "none" else grad_output
        if not ctx.inplace:
            return grad * scale, None, None, None, None, None
        # inplace_backward: the buffer (the logits' own memory) is handed to autograd as it is,
        # scaled in place: no second (N, C) tensor, so this backward can run once per forward
        if ctx.used:
            raise RuntimeError("fastdl.torch cross_entropy(inplace_backward=True) ran its backward twice "
                               "(retain_graph=True?): its gradient was handed over the first time; compute the "
                               "loss again, or use inplace_backward=False")
        ctx.used = True
        if ctx.reduction == "none" or grad_output.item() != 1.0:
            grad.mul_(scale)
        return grad, None, None, None, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0, *, inplace_backward=False):
    """torch.nn.functional.cross_entropy, fused: the same arguments and results.

    With lse = log sum_c exp(x_c) per row and the target distribution q (one-hot at the class id,
    or the given probabilities), smoothed as q <- (1 - eps) q + eps / C:
        loss_n = sum_c q_c (lse - x_c),   dloss_n / dx_c = sum(q) softmax(x)_c - q_c,
    reduced by the mean over the rows whose id is not ignore_index (probabilities: over all rows),
    the sum, or not at all (reduction='none'). Rows with target == ignore_index contribute 0.

    input: (N, C), (C,) or (N, C, d1, ...) logits on the CPU, float32 or float64 (float16 and
    bfloat16 are computed in float32 and the gradient cast back); target: class ids (int64) or
    probabilities shaped like input. inplace_backward=True writes the gradient over input's memory
    and hands it to autograd (no (N, C) buffer beyond the logits); then input must not be needed
    afterwards (an op that saved it for its backward raises there), and the backward runs once
    (retain_graph=True and a second backward raise).
    ``weight``, ``size_average`` and ``reduce`` are not supported (a clear error, not ignored).
    CUDA tensors are not supported yet (use torch's cross_entropy there).
    """
    if weight is not None:
        raise NotImplementedError("fastdl.torch cross_entropy has no class weights (weight=): use torch's")
    if size_average is not None or reduce is not None:
        raise ValueError("size_average and reduce are deprecated in torch: use reduction='mean'|'sum'|'none'")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("cross_entropy takes torch tensors for input and target")
    if input.device.type != "cpu" or target.device.type != "cpu":
        raise NotImplementedError(f"fastdl.torch cross_entropy runs on the CPU for now; input is on {input.device}"
                                  f" (use torch.nn.functional.cross_entropy on the GPU)")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point logits, got {input.dtype}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    probabilities = target.is_floating_point()
    if input.dim() == 0:
        raise ValueError("input must have a class dimension: (C,), (N, C) or (N, C, d1, ...)")
    # (C,) -> one row; (N, C, d1, ...) -> the class axis last, one row per position
    unbatched = input.dim() == 1
    classes = input.shape[0] if unbatched else input.shape[1]
    expected = () if unbatched else (input.shape[0],) + tuple(input.shape[2:])  # one loss per row
    if input.dim() == 2:
        logits = input
    else:
        logits = input.reshape(1, classes) if unbatched else input.movedim(1, -1).reshape(-1, classes)
    if probabilities:
        if target.shape != input.shape:
            raise ValueError(f"target (probabilities) has shape {tuple(target.shape)}, input {tuple(input.shape)}")
        rows_target = (target.reshape(1, classes) if unbatched else target.movedim(1, -1).reshape(-1, classes))
        rows_target = rows_target.to(logits.dtype if logits.dtype in _HOST_DTYPES else torch.float32)
    else:
        if tuple(target.shape) != expected:
            raise ValueError(f"target (class ids) has shape {tuple(target.shape)}; input {tuple(input.shape)} needs "
                             f"{expected}")
        rows_target = target.reshape(-1).to(torch.int64)
    compute = (logits if logits.dtype in _HOST_DTYPES else logits.float()).contiguous()
    # in place only where the rows are the input's own memory (not a copy made above)
    inplace = bool(inplace_backward) and compute.data_ptr() == input.data_ptr() and input.is_contiguous()
    loss = _CrossEntropy.apply(compute, rows_target.contiguous(), int(ignore_index), reduction, eps, inplace)
    if reduction == "none":
        loss = loss.reshape(()) if unbatched else loss.reshape(expected)
    return loss.to(input.dtype)
