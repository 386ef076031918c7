"""fastdl.optim: SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, NAdam and Lion over lists
of NumPy arrays, updated in place by one multi-tensor kernel call per step. Update rules are
torch.optim's (Lion: the paper's, as Keras 3's); a few flags select Keras 3's variants."""

import numpy as np

from . import schedules
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .lion import Lion
from .nadam import NAdam
from .optimizer import Optimizer, clip_coefficient
from .rmsprop import RMSprop
from .schedules import CosineDecay, ExponentialDecay, StepDecay
from .sgd import SGD


def clip_grad_norm(grads, max_norm):
    """Scales the arrays in `grads` in place so that their global L2 norm is at most max_norm
    (factor min(1, max_norm / (norm + 1e-6)), as torch.nn.utils.clip_grad_norm_); returns the
    norm before clipping (a 0-d device array for CuPy arrays: nothing waits for the GPU).
    Optimizers do the same inside their step with max_grad_norm=..."""
    from .. import _backend
    from .._checks import float_array, on_device, same_place
    grads = list(grads)
    for i, g in enumerate(grads):
        if not (on_device(g) or type(g) is np.ndarray and g.flags.writeable):
            raise TypeError(f"grads[{i}] must be a writeable numpy.ndarray (it is scaled in place)")
        if i:
            same_place(g, grads[0], f"grads[{i}]", "grads[0]")
    if not grads:
        return 0.0
    kernels = _backend.kernels_for(grads[0])
    total = 0.0
    for i, g in enumerate(grads):
        total = total + kernels.grad_sum_squares([float_array(g, f"grads[{i}]")])
    norm = total ** 0.5
    coef = clip_coefficient(norm, max_norm)
    if on_device(grads[0]):
        for g in grads:
            g *= coef.astype(g.dtype)  # on the device, without reading the factor back
    elif coef != 1.0:
        for g in grads:
            g *= g.dtype.type(coef)
    return norm


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax", "NAdam", "Lion",
           "schedules", "StepDecay", "ExponentialDecay", "CosineDecay", "clip_grad_norm"]
