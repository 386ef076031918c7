"""Activations by name, as Keras spells them, for layers.Dense(activation=...) and
layers.Activation(...): 'linear' (or None), 'relu', 'sigmoid', 'tanh', 'softmax', 'gelu'
(exact, erf form, as Keras's default approximate=False; also 'gelu_exact'), 'gelu_tanh' (the
tanh approximation), 'silu' / 'swish', 'leaky_relu' (slope 0.2, Keras's default), 'elu',
'selu', 'softplus', 'softsign', 'relu6', 'hard_sigmoid', 'mish', 'exponential' (each a fused
kernel), 'log_softmax' (over the last axis, a row kernel as softmax).

fastdl.ops functions are accepted too (ops.relu, ...) and mean what calling them means:
ops.leaky_relu has slope 0.01 (its default, as torch's), so Dense(activation=ops.leaky_relu)
uses 0.01 and Dense(activation='leaky_relu') uses Keras's 0.2. An activation whose slope
is not the one its name implies is saved as {"name": "leaky_relu", "alpha": slope}."""

from dataclasses import dataclass

from . import _backend, ops
from ._checks import real


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
    def is_log_softmax(self):
        return self.name == "log_softmax"

    @property
    def is_row(self):
        """softmax or log_softmax: a row kernel over the last axis, not an elementwise one."""
        return self.name in ("softmax", "log_softmax")

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
    "elu": Activation("elu", _IDS["elu"], alpha=1.0, uses_output=False),
    "selu": Activation("selu", _IDS["selu"], uses_output=False),
    "softplus": Activation("softplus", _IDS["softplus"], uses_output=False),
    "softsign": Activation("softsign", _IDS["softsign"], uses_output=False),
    "relu6": Activation("relu6", _IDS["relu6"], uses_output=False),
    "hard_sigmoid": Activation("hard_sigmoid", _IDS["hard_sigmoid"], uses_output=False),
    "mish": Activation("mish", _IDS["mish"], uses_output=False),
    "exponential": Activation("exponential", _IDS["exponential"]),
    "log_softmax": Activation("log_softmax"),
}
_ALIASES = {None: "linear", "swish": "silu", "identity": "linear", "gelu_exact": "gelu"}
_FUNCTIONS = {ops.relu: _BY_NAME["relu"], ops.sigmoid: _BY_NAME["sigmoid"], ops.tanh: _BY_NAME["tanh"],
              ops.softmax: _BY_NAME["softmax"], ops.silu: _BY_NAME["silu"], ops.gelu: _BY_NAME["gelu"],
              ops.leaky_relu: Activation("leaky_relu", _IDS["leaky_relu"], alpha=0.01),
              ops.log_softmax: _BY_NAME["log_softmax"]}
_FUNCTIONS.update({getattr(ops, name): _BY_NAME[name] for name in ("elu", "selu", "softplus", "softsign", "relu6",
                                                                   "hard_sigmoid", "mish", "exponential")})


def serialize(activation):
    """What get_config stores: the name, or {"name", "alpha"} when the slope is not the name's."""
    if _BY_NAME.get(activation.name) == activation:
        return activation.name
    return {"name": activation.name, "alpha": activation.alpha}


def _from_dict(config):
    if set(config) != {"name", "alpha"} or config["name"] not in ("leaky_relu", "elu"):
        raise ValueError(f"an activation given as a dict must be {{'name': 'leaky_relu' or 'elu', 'alpha': a}}, "
                         f"got {config!r}")
    name = config["name"]
    try:
        alpha = real(config["alpha"], f"{name}'s alpha", 0.0)
    except TypeError as exc:  # a config value: any wrong value is a ValueError
        raise ValueError(str(exc)) from None
    return Activation(name, _IDS[name], alpha=alpha, uses_output=name != "elu")


def get(activation):
    """The Activation for a name, a fastdl.ops function, an Activation, a dict from serialize,
    or None (linear)."""
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, dict):
        return _from_dict(activation)
    if callable(activation) and not isinstance(activation, str):
        if activation in _FUNCTIONS:
            return _FUNCTIONS[activation]
        raise ValueError(f"activation {activation!r} is not one fastdl can differentiate; use one of "
                         f"{sorted(_BY_NAME)}")
    if not (activation is None or isinstance(activation, str)):
        raise ValueError(f"activation must be a name, a fastdl.ops function or None, got {activation!r}")
    name = _ALIASES.get(activation, activation)
    if name not in _BY_NAME:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(_BY_NAME)}")
    return _BY_NAME[name]
