"""Activations by name, as Keras spells them, for layers.Dense(activation=...) and
layers.Activation(...): 'linear' (or None), 'relu', 'sigmoid', 'tanh', 'softmax', 'gelu'
(exact, erf form, as Keras's default approximate=False; also 'gelu_exact'), 'gelu_tanh' (the
tanh approximation), 'silu' / 'swish', 'leaky_relu' (slope 0.2, Keras's default). fastdl.ops functions are accepted too (ops.relu, ...)."""

from dataclasses import dataclass

from . import _backend, ops


@dataclass(frozen=True)
class Activation:
    """An activation a layer can fuse: `kernel` is its id for the fused kernels (None for
    softmax, which works on rows); `uses_output` says whether its backward needs y rather than x."""

    name: str
    kernel: int = None
    alpha: float = 0.0
    uses_output: bool = True

    @property
    def is_softmax(self):
        return self.name == "softmax"

    @property
    def is_identity(self):
        return self.name == "linear"


_IDS = _backend.ACTIVATIONS
# relu and leaky relu (slope >= 0) can take their backward from y: y > 0 exactly where x > 0.
_BY_NAME = {
    "linear": Activation("linear", _IDS["identity"]),
    "relu": Activation("relu", _IDS["relu"]),
    "sigmoid": Activation("sigmoid", _IDS["sigmoid"]),
    "tanh": Activation("tanh", _IDS["tanh"]),
    "softmax": Activation("softmax"),
    "gelu": Activation("gelu", _IDS["gelu"], uses_output=False),
    "gelu_tanh": Activation("gelu_tanh", _IDS["gelu_tanh"], uses_output=False),
    "silu": Activation("silu", _IDS["silu"], uses_output=False),
    "leaky_relu": Activation("leaky_relu", _IDS["leaky_relu"], alpha=0.2),
}
_ALIASES = {None: "linear", "swish": "silu", "identity": "linear", "gelu_exact": "gelu"}
_FUNCTIONS = {ops.relu: "relu", ops.sigmoid: "sigmoid", ops.tanh: "tanh", ops.softmax: "softmax",
              ops.silu: "silu", ops.gelu: "gelu", ops.leaky_relu: "leaky_relu"}


def get(activation):
    """The Activation for a name, a fastdl.ops function, an Activation, or None (linear)."""
    if isinstance(activation, Activation):
        return activation
    if callable(activation) and not isinstance(activation, str):
        if activation in _FUNCTIONS:
            return _BY_NAME[_FUNCTIONS[activation]]
        raise ValueError(f"activation {activation!r} is not one fastdl can differentiate; use one of "
                         f"{sorted(_BY_NAME)}")
    name = _ALIASES.get(activation, activation)
    if name not in _BY_NAME:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_BY_NAME)}")
    return _BY_NAME[name]
