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
_CUDA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_REDUCTIONS = ("mean", "sum", "none")


def _no_double_backward(name):
    """The gradient is computed in the forward and saved: a constant to autograd, so a backward with
    create_graph=True (double backward, MAML, gradient penalties) would silently drop the loss's
    second derivative. Refuse it instead."""
    if torch.is_grad_enabled():
        raise RuntimeError(f"fastdl.torch {name} has no double backward (create_graph=True): its gradient is "
                           f"computed in the forward; use torch's cross_entropy for second derivatives")


def _cuda_ce(logits, target, grad, ignore_index, reduction, label_smoothing, row_losses=None):
    """The CUDA module's softmax cross-entropy on contiguous tensors of one CUDA device, queued on torch's
    current stream (nothing waits for the GPU): logits (N, C), target (N,) int64 ids or (N, C)
    probabilities of the logits' dtype, the gradient written to grad (may be logits), each row's loss into
    row_losses (float64) for reduction='none'. Returns the reduced loss as a 0-d float64 device tensor."""
    from .. import _cuda
    device = logits.device.index if logits.device.index is not None else torch.cuda.current_device()
    loss = torch.empty((), dtype=torch.float64, device=logits.device)
    kind = "probs" if target.is_floating_point() else "int64"
    has_ignore = ignore_index is not None and kind == "int64"
    _cuda.module().softmax_ce(
        _cuda.DTYPES[logits.dtype], logits.data_ptr(), target.data_ptr(), kind, grad.data_ptr(), logits.shape[0],
        logits.shape[1], float(label_smoothing), loss.data_ptr(), device,
        torch.cuda.current_stream(device).cuda_stream, has_ignore, int(ignore_index) if has_ignore else 0, reduction,
        0 if row_losses is None else row_losses.data_ptr())
    return loss


def _check_cuda(name, tensors):
    """CUDA tensors of one device in a dtype the kernels take; False for CPU tensors (all of them)."""
    tensors = [t for t in tensors if t is not None]
    if all(t.device.type == "cpu" for t in tensors):
        return False
    device = tensors[0].device
    if device.type != "cuda" or any(t.device != device for t in tensors):
        raise NotImplementedError(f"fastdl.torch {name} takes CPU tensors or CUDA tensors of one device; got "
                                  f"{', '.join(str(t.device) for t in tensors)}")
    if tensors[0].is_floating_point() and tensors[0].dtype not in _CUDA_DTYPES:
        raise TypeError(f"fastdl.torch {name} on CUDA takes float32, float64, float16 or bfloat16, got "
                        f"{tensors[0].dtype}")
    return True


class _CrossEntropy(torch.autograd.Function):
    """(N, C) logits -> loss; the gradient is computed with the loss and kept for backward."""

    @staticmethod
    def forward(ctx, logits, target, ignore_index, reduction, label_smoothing, inplace):
        rows = logits.shape[0]
        grad = logits if inplace else torch.empty_like(logits)
        row_losses = torch.empty(rows, dtype=torch.float64, device=logits.device) if reduction == "none" else None
        if logits.is_cuda:
            total = _cuda_ce(logits, target, grad, ignore_index if target.dtype != logits.dtype else None, reduction,
                             label_smoothing, row_losses)
            if inplace:
                torch.autograd.graph.increment_version(logits)
            ctx.reduction, ctx.inplace, ctx.used = reduction, inplace, False
            ctx.save_for_backward(grad)
            return (row_losses if reduction == "none" else total).to(logits.dtype)
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
        _no_double_backward("cross_entropy")
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
        if ctx.reduction == "none" or grad.is_cuda or grad_output.item() != 1.0:  # no .item() (a sync) on CUDA
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
    and hands it to autograd (no (N, C) buffer beyond the logits; only where a backward will use it:
    under grad mode, for logits that require grad and are not a leaf or a view of one); then input must not be needed
    afterwards (an op that saved it for its backward raises there), and the backward runs once
    (retain_graph=True and a second backward raise).
    ``weight``, ``size_average`` and ``reduce`` are not supported (a clear error, not ignored).
    CUDA tensors (float32, float64, and float16 / bfloat16 in their own dtype, computed in float32) run
    fastdl's CUDA kernel on torch's current stream; the loss is a device tensor and nothing waits for
    the GPU (a class id outside [0, C) that is not ignore_index gives a NaN loss there, not an error).
    """
    if weight is not None:
        raise NotImplementedError("fastdl.torch cross_entropy has no class weights (weight=): use torch's")
    if size_average is not None or reduce is not None:
        raise ValueError("size_average and reduce are deprecated in torch: use reduction='mean'|'sum'|'none'")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if not isinstance(input, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError("cross_entropy takes torch tensors for input and target")
    if not input.is_floating_point():
        raise TypeError(f"input must be floating point logits, got {input.dtype}")
    on_cuda = _check_cuda("cross_entropy", (input, target))
    host_dtypes = _CUDA_DTYPES if on_cuda else _HOST_DTYPES  # 16-bit runs in its own dtype on CUDA
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    probabilities = target.is_floating_point()
    if probabilities and target.requires_grad and torch.is_grad_enabled():
        raise NotImplementedError("fastdl.torch cross_entropy computes no gradient for the target probabilities "
                                  "(target.requires_grad): detach the target, or use torch's cross_entropy")
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
        rows_target = rows_target.to(logits.dtype if logits.dtype in host_dtypes else torch.float32)
    else:
        if tuple(target.shape) != expected:
            raise ValueError(f"target (class ids) has shape {tuple(target.shape)}; input {tuple(input.shape)} needs "
                             f"{expected}")
        rows_target = target.reshape(-1).to(torch.int64)
    compute = (logits if logits.dtype in host_dtypes else logits.float()).contiguous()
    # in place only where the rows are the input's own memory (not a copy made above), and only where
    # a backward will use the gradient: not under no_grad or for logits that need none (an evaluation
    # pass keeps its logits), and never over a leaf's memory (a parameter, or a view of one)
    base = input if input._base is None else input._base
    inplace = (bool(inplace_backward) and compute.data_ptr() == input.data_ptr() and input.is_contiguous()
               and torch.is_grad_enabled() and input.requires_grad and not base.is_leaf)
    loss = _CrossEntropy.apply(compute, rows_target.contiguous(), int(ignore_index), reduction, eps, inplace)
    if reduction == "none":
        loss = loss.reshape(()) if unbatched else loss.reshape(expected)
    return loss.to(input.dtype)


# ---- linear + cross-entropy, without the (N, V) logits ------------------------------------------------

_CHUNK_ELEMENTS = 1 << 22  # logits per chunk: 16 MiB in float32, a few hundred rows of a large vocabulary


def _linear_ce_chunks(input, w, b, ids, ignore_index, label_smoothing, chunk_rows, work, row_losses=None):
    """For each chunk of rows: (r0, r1, its input rows in the work dtype, the gradient of the chunk's
    summed loss w.r.t. its logits (written over the logits in a reused buffer), the chunk's loss sum).
    row_losses (float64, one per row) receives each row's loss when given."""
    kernels = _backend.host
    rows, classes = input.shape[0], w.shape[0]
    buffer = torch.empty((min(chunk_rows, rows), classes), dtype=work, device=input.device)
    for r0 in range(0, rows, chunk_rows):
        r1 = min(r0 + chunk_rows, rows)
        x = input[r0:r1] if input.dtype == work else input[r0:r1].to(work)
        logits = buffer[:r1 - r0]
        if b is None:
            torch.matmul(x, w.T, out=logits)
        else:
            torch.addmm(b, x, w.T, out=logits)
        if logits.is_cuda:  # ids: a CUDA tensor; the chunk's total: a 0-d float64 device tensor
            total = _cuda_ce(logits, ids[r0:r1], logits, ignore_index, "sum" if row_losses is None else "none",
                             label_smoothing, None if row_losses is None else row_losses[r0:r1])
            yield r0, r1, x, logits, total
            continue
        lg = logits.numpy()
        per_row = None if row_losses is None else row_losses[r0:r1].numpy()
        total = kernels.softmax_cross_entropy(lg, ids[r0:r1], lg, label_smoothing, ignore_index,
                                              "sum" if per_row is None else "none", per_row)
        yield r0, r1, x, logits, total


class _LinearCrossEntropy(torch.autograd.Function):
    """mean / sum: forward computes the loss and every gradient chunk by chunk of rows (logits of a
    chunk by a matmul, their fused softmax cross-entropy with its gradient written over them, then
    that gradient's products with the weight (grad_input rows) and the input (grad_weight,
    accumulated)); backward scales the saved gradients by the upstream one.
    none: forward computes each row's loss; backward, which needs each row's upstream gradient,
    computes the chunks again and scales each gradient row by it before the matmuls."""

    @staticmethod
    def forward(ctx, input, weight, bias, target, ignore_index, reduction, label_smoothing, chunk_rows):
        rows, classes = input.shape[0], weight.shape[0]
        work = torch.float32 if input.dtype not in _HOST_DTYPES and not input.is_cuda else input.dtype
        w = weight if weight.dtype == work else weight.to(work)
        b = None if bias is None else (bias if bias.dtype == work else bias.to(work))
        ctx.dtypes = (input.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.reduction = reduction
        if reduction == "none":
            row_losses = torch.empty(rows, dtype=torch.float64, device=input.device)
            for _ in _linear_ce_chunks(input, w, b, _ids(target), ignore_index, label_smoothing, chunk_rows, work,
                                       row_losses):
                pass
            ctx.args = (ignore_index, label_smoothing, chunk_rows, work)
            ctx.save_for_backward(input, weight, bias, target)
            return row_losses.to(input.dtype)
        grads = _linear_ce_grads(ctx.needs_input_grad, input, w, b, _ids(target), ignore_index, label_smoothing,
                                 chunk_rows, work)
        total = grads.pop()
        ctx.has = tuple(g is not None for g in grads)
        if input.is_cuda:  # everything stays on the device: the count, the division, the gradients' scaling
            denom = (target != ignore_index).sum().double() if reduction == "mean" else 1.0
            if reduction == "mean":
                inv = 1.0 / denom.clamp(min=1.0)  # every row ignored: the gradients are 0 already
                for g in grads:
                    if g is not None:
                        g.mul_(inv)
            ctx.save_for_backward(*[g for g in grads if g is not None])
            return (total / denom).to(input.dtype)  # no rows kept (or none at all) with mean: 0 / 0 = NaN, as torch
        kept = rows if ignore_index is None else int((target != ignore_index).sum())
        denom = kept if reduction == "mean" else 1
        loss = total / denom if denom else float("nan")  # every row ignored (or none): NaN, as torch
        if denom > 1:
            for g in grads:
                if g is not None:
                    g.mul_(1.0 / denom)
        ctx.save_for_backward(*[g for g in grads if g is not None])
        return torch.tensor(loss, dtype=input.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        _no_double_backward("linear_cross_entropy")
        if ctx.reduction == "none":
            input, weight, bias, target = ctx.saved_tensors
            ignore_index, label_smoothing, chunk_rows, work = ctx.args
            w = weight if weight.dtype == work else weight.to(work)
            b = None if bias is None else (bias if bias.dtype == work else bias.to(work))
            grads = _linear_ce_grads(ctx.needs_input_grad, input, w, b, _ids(target), ignore_index, label_smoothing,
                                     chunk_rows, work, row_scale=grad_output.to(work))
            grads.pop()
        else:
            saved = iter(ctx.saved_tensors)
            grads = [next(saved) if has else None for has in ctx.has]
            if grad_output.is_cuda:  # no .item() (a sync) on CUDA
                grads = [None if g is None else g * grad_output for g in grads]
            else:
                scale = grad_output.item()
                grads = [None if g is None else (g if scale == 1.0 else g * scale) for g in grads]
        out = [None if g is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return out[0], out[1], out[2], None, None, None, None, None


def _ids(target):
    """The class ids as the chunks take them: a NumPy array on the CPU, the tensor itself on CUDA."""
    return target if target.is_cuda else target.numpy()


_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()  # torch.mm(a, b, out_dtype=float32): torch >= 2.8


def _mm_float32(a, b):
    """a @ b of 16-bit CUDA matrices as float32: 16-bit operands, float32 product (torch >= 2.8), else in float32."""
    return torch.mm(a, b, out_dtype=torch.float32) if _MM_OUT_DTYPE else torch.mm(a.float(), b.float())


def _linear_ce_grads(needs, input, w, b, ids, ignore_index, label_smoothing, chunk_rows, work, row_scale=None):
    """[grad_input, grad_weight, grad_bias (None where not needed), summed loss] of the summed loss, each
    row's gradient multiplied by row_scale[row] when given. On CUDA the summed loss is a 0-d float64
    device tensor, and 16-bit weight and bias gradients are accumulated over the chunks in float32."""
    rows, classes = input.shape[0], w.shape[0]
    dev = input.device
    acc = torch.float32 if work in (torch.float16, torch.bfloat16) else work  # 16-bit: CUDA only
    grad_input = torch.empty((rows, input.shape[1]), dtype=work, device=dev) if needs[0] else None
    grad_weight = torch.zeros((classes, w.shape[1]), dtype=acc, device=dev) if needs[1] else None
    grad_bias = torch.zeros(classes, dtype=acc, device=dev) if b is not None and needs[2] else None
    total = torch.zeros((), dtype=torch.float64, device=dev) if input.is_cuda else 0.0
    for r0, r1, x, grad, chunk_total in _linear_ce_chunks(input, w, b, ids, ignore_index, label_smoothing, chunk_rows,
                                                          work):
        total += chunk_total
        if row_scale is not None:
            grad.mul_(row_scale[r0:r1, None])
        if grad_input is not None:
            torch.matmul(grad, w, out=grad_input[r0:r1])
        if grad_weight is not None:
            if acc == work:
                grad_weight.addmm_(grad.T, x)
            else:  # the chunk's product in float32: a 16-bit one (the summed loss's gradient) overflows float16
                grad_weight += _mm_float32(grad.T, x)
        if grad_bias is not None:
            grad_bias += grad.sum(0) if acc == work else grad.sum(0, dtype=acc)
    return [grad_input, grad_weight, grad_bias, total]


def linear_cross_entropy(input, weight, target, bias=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                         *, chunk_rows=None):
    """cross_entropy(input @ weight.T + bias, target) without the (N, V) logits in memory.

    input (..., D), weight (V, D), bias (V,) or None, target (...) class ids; the loss and its
    gradients for input, weight and bias equal torch's F.linear + F.cross_entropy (mean over rows
    whose id is not ignore_index, sum, or each row's loss; label smoothing as there). Rows are processed in chunks
    of chunk_rows (default: about 4M logits per chunk): a chunk's logits by one matmul, their fused
    cross-entropy and gradient written over them, then the gradient's matmuls with the weight and
    the input. Extra memory: one chunk of logits, and the gradients themselves.
    reduction='none' computes the chunks twice (once for the losses, again in backward, where each
    row's upstream gradient is known). CPU tensors in float32 / float64 (bfloat16 / float16 computed
    in float32); CUDA tensors of one device in float32 / float64 / float16 / bfloat16 (16-bit logits and
    matmuls in their own dtype, the cross-entropy computed in float32, 16-bit weight and bias gradients
    accumulated in float32), on torch's current stream without waiting for the GPU.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    for name, t in (("input", input), ("weight", weight), ("target", target), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not input.is_floating_point() or input.dtype != weight.dtype or (bias is not None and bias.dtype != input.dtype):
        raise TypeError(f"input, weight and bias must be floating point of one dtype, got {input.dtype}, "
                        f"{weight.dtype}{'' if bias is None else ', ' + str(bias.dtype)}")
    _check_cuda("linear_cross_entropy", (input, weight, target, bias))
    if weight.dim() != 2 or input.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"weight must be (V, D) with D = input's last dimension; got input {tuple(input.shape)}, "
                         f"weight {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"bias must be ({weight.shape[0]},), got {tuple(bias.shape)}")
    if target.is_floating_point() or tuple(target.shape) != tuple(input.shape[:-1]):
        raise ValueError(f"target must be class ids of shape {tuple(input.shape[:-1])}, got {target.dtype} "
                         f"{tuple(target.shape)}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    classes = weight.shape[0]
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_ELEMENTS // max(classes, 1))
    elif not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
    x = input.reshape(-1, input.shape[-1]).contiguous()
    ids = target.reshape(-1).to(torch.int64).contiguous()
    loss = _LinearCrossEntropy.apply(x, weight.contiguous(), None if bias is None else bias.contiguous(), ids,
                                     int(ignore_index), reduction, eps, chunk_rows)
    return loss.reshape(target.shape) if reduction == "none" else loss
