"""Weight constraints, Keras's names and semantics (keras.constraints): after every optimizer
step each constrained weight is replaced by constraint(weight), in place.

    MaxNorm(max_value=2, axis=0)     w * clip(n, 0, max_value) / (eps + n)
    NonNeg()                         max(w, 0)
    UnitNorm(axis=0)                 w / (eps + n)
    MinMaxNorm(min_value=0.0, max_value=1.0, rate=1.0, axis=0)
                                     w * (rate clip(n, min, max) + (1 - rate) n) / (eps + n)
n = the L2 norm of w along `axis` (axis 0 of a Dense kernel: each unit's incoming weights),
eps = 1e-7 (Keras's backend epsilon). max_norm, non_neg, unit_norm, min_max_norm are aliases.
"""

import numpy as np

from ._checks import array_module

EPSILON = 1e-7


class Constraint:
    """Base: __call__(w) returns the projected weights (w itself here)."""

    def __call__(self, w):
        return w

    def apply(self, w):
        """w[...] = self(w): the projection written over the weights (a view into the model's buffer)."""
        w[...] = self(w)

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


def _norms(w, axis):
    xp = array_module(w)
    return xp.sqrt(xp.sum(xp.square(w), axis=axis, keepdims=True))


def _axis(axis):
    if isinstance(axis, (list, tuple)):
        return tuple(int(a) for a in axis)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int or a list of ints, got {axis!r}")
    return int(axis)


class MaxNorm(Constraint):
    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = float(max_value), _axis(axis)

    def __call__(self, w):
        n = _norms(w, self.axis)
        return (w * (array_module(w).clip(n, 0, self.max_value) / (EPSILON + n))).astype(w.dtype)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    def __call__(self, w):
        return array_module(w).maximum(w, 0)


class UnitNorm(Constraint):
    def __init__(self, axis=0):
        self.axis = _axis(axis)

    def __call__(self, w):
        return (w / (EPSILON + _norms(w, self.axis))).astype(w.dtype)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate = float(min_value), float(max_value), float(rate)
        self.axis = _axis(axis)

    def __call__(self, w):
        n = _norms(w, self.axis)
        desired = self.rate * array_module(w).clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return (w * (desired / (EPSILON + n))).astype(w.dtype)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

CLASSES = {cls.__name__: cls for cls in (MaxNorm, NonNeg, UnitNorm, MinMaxNorm)}
_BY_NAME = dict(CLASSES, max_norm=MaxNorm, non_neg=NonNeg, unit_norm=UnitNorm, min_max_norm=MinMaxNorm)


def get(identifier):
    """A Constraint from None, a name ('max_norm', 'non_neg', 'unit_norm', 'min_max_norm'), a Keras
    config dict or a Constraint."""
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str) and identifier in _BY_NAME:
        return _BY_NAME[identifier]()
    if isinstance(identifier, dict) and identifier.get("class_name") in CLASSES:
        return CLASSES[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier):
        raise TypeError(f"constraint {identifier!r} is a function: subclass fastdl.constraints.Constraint (its "
                        f"__call__(w) returns the projected weights)")
    raise ValueError(f"unknown constraint {identifier!r}; use {sorted(_BY_NAME)} or a fastdl.constraints object")


def serialize(constraint):
    if constraint is None:
        return None
    return {"class_name": type(constraint).__name__, "config": constraint.get_config()}


deserialize = get
