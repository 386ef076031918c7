"""fastdl.optim: SGD, Adam and AdamW over lists of NumPy arrays, updated in place by one
multi-tensor kernel call per step. Update rules are torch.optim's."""

import numpy as np

from . import schedules
from .adam import Adam, AdamW
from .optimizer import Optimizer, clip_coefficient
from .schedules import CosineDecay, ExponentialDecay, StepDecay
from .sgd import SGD


def clip_grad_norm(grads, max_norm):
    """Scales the arrays in `grads` in place so that their global L2 norm is at most max_norm
    (factor min(1, max_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_); returns the
    norm before clipping. Optimizers do the same inside their step with max_grad_norm=..."""
    from .. import _backend
    from .._checks import float_array
    grads = list(grads)
    for i, g in enumerate(grads):
        if type(g) is not np.ndarray or not g.flags.writeable:
            raise TypeError(f"grads[{i}] must be a writeable numpy.ndarray (it is scaled in place)")
    norm = sum(_backend.kernels.grad_sum_squares([float_array(g, f"grads[{i}]")]) for i, g in enumerate(grads)) ** 0.5
    coef = clip_coefficient(norm, max_norm)
    if coef != 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return norm


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "schedules", "StepDecay", "ExponentialDecay", "CosineDecay",
           "clip_grad_norm"]
