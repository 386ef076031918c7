"""Weight and activity regularizers, Keras's names and semantics (keras.regularizers).

    Dense(64, kernel_regularizer=regularizers.l2(1e-4), activity_regularizer="l1")

A regularizer's penalty is added to the loss that training minimises and reports (weights: the
penalty itself; a layer's output: the penalty divided by the batch's rows, as Keras 3 does), and
its gradient to the weights' gradients (or to the output's), before the optimizer step:
    L1(l1=0.01)              l1 sum|w|                 gradient l1 sign(w)
    L2(l2=0.01)              l2 sum w^2                gradient 2 l2 w
    L1L2(l1=0.0, l2=0.0)     both
l1, l2 and l1_l2 are the same classes (Keras 3's aliases). A regularizer of your own subclasses
Regularizer with __call__ (the penalty) and gradient (its derivative): fastdl has no autograd.
"""

import math

import numpy as np

from ._checks import array_module


class Regularizer:
    """Base: __call__(x) is the penalty, gradient(x) its derivative with respect to x."""

    def __call__(self, x):
        return 0.0

    def gradient(self, x):
        raise NotImplementedError(f"{type(self).__name__} defines no gradient(x): fastdl has no autograd, so a "
                                  f"regularizer gives the derivative of its penalty too")

    def add_to(self, x, grad, scale=1.0):
        """grad += scale * gradient(x); returns scale * penalty (a number, or a 0-d device array)."""
        g = self.gradient(x)
        grad += g if scale == 1.0 else g * np.float32(scale)
        return self(x) * scale

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _factor(value, name):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _total(x):
    total = x.sum(dtype=np.float64)
    return float(total) if array_module(x) is np else total  # a device scalar stays on the device


class L1L2(Regularizer):
    """l1 sum|x| + l2 sum x^2."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        xp = array_module(x)
        penalty = 0.0
        if self.l1:
            penalty = penalty + self.l1 * _total(xp.abs(x))
        if self.l2:
            penalty = penalty + self.l2 * _total(xp.square(x))
        return penalty

    def gradient(self, x):
        xp = array_module(x)
        g = xp.zeros_like(x)
        if self.l1:
            g += np.float32(self.l1) * xp.sign(x)
        if self.l2:
            g += np.float32(2 * self.l2) * x
        return g

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 sum|x| (Keras's default l1=0.01)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=0.01 if l1 is None else l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 sum x^2 (Keras's default l2=0.01)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=0.01 if l2 is None else l2)

    def get_config(self):
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2  # Keras 3's aliases (l1_l2() is L1L2(): no penalty unless given)

_BY_NAME = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}
CLASSES = {cls.__name__: cls for cls in (L1, L2, L1L2)}


def get(identifier):
    """A Regularizer from None, a name ('l1', 'l2', 'l1_l2'), a Keras config dict
    ({'class_name': 'L2', 'config': {'l2': 0.01}}) or a Regularizer."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        return CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier):
        raise TypeError(f"regularizer {identifier!r} is a function: fastdl needs its gradient too (no autograd); "
                        f"subclass fastdl.regularizers.Regularizer with __call__ and gradient, or use l1, l2, l1_l2")
    raise ValueError(f"unknown regularizer {identifier!r}; use 'l1', 'l2', 'l1_l2' or a fastdl.regularizers object")


def serialize(regularizer):
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


deserialize = get
