"""Fused losses for PyTorch models: a drop-in CrossEntropyLoss, and LinearCrossEntropyLoss (a linear
layer and cross-entropy without the logits in memory), with their functional forms."""

import torch

from . import functional


class CrossEntropyLoss(torch.nn.Module):
    """torch.nn.CrossEntropyLoss with the loss and its gradient computed in one fused pass
    (fastdl.torch.nn.functional.cross_entropy). inplace_backward=True writes the gradient over
    the logits' memory."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                 label_smoothing=0.0, *, inplace_backward=False):
        super().__init__()
        if weight is not None:
            raise NotImplementedError("fastdl.torch CrossEntropyLoss has no class weights (weight=): use torch's")
        if size_average is not None or reduce is not None:
            raise ValueError("size_average and reduce are deprecated in torch: use reduction='mean'|'sum'|'none'")
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.inplace_backward = inplace_backward

    def forward(self, input, target):
        return functional.cross_entropy(input, target, ignore_index=self.ignore_index, reduction=self.reduction,
                                        label_smoothing=self.label_smoothing,
                                        inplace_backward=self.inplace_backward)


class LinearCrossEntropyLoss(torch.nn.Module):
    """The loss of a linear layer followed by cross-entropy, without the logits in memory
    (fastdl.torch.nn.functional.linear_cross_entropy): ``loss(input, weight, target, bias=None)``."""

    def __init__(self, ignore_index=-100, reduction="mean", label_smoothing=0.0, *, chunk_rows=None):
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.chunk_rows = chunk_rows

    def forward(self, input, weight, target, bias=None):
        return functional.linear_cross_entropy(input, weight, target, bias, ignore_index=self.ignore_index,
                                               reduction=self.reduction, label_smoothing=self.label_smoothing,
                                               chunk_rows=self.chunk_rows)


__all__ = ["CrossEntropyLoss", "LinearCrossEntropyLoss", "functional"]
