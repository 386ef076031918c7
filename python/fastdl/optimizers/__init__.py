"""Keras-style optimizer specifications for model.compile: they carry Keras's argument names
and defaults and become a fastdl.optim optimizer over the model's one parameter buffer when
the model is built. The update rules are torch.optim's (see fastdl.optim), with eps where Keras
puts it for Adam / AdamW (added to sqrt(v) before the bias correction: eps_before_correction)."""

from .. import optim
from . import schedules


class OptimizerSpec:
    """Base: name + arguments; build(params) makes the fastdl.optim optimizer. clipnorm (each
    weight's gradient clipped to that norm) and clipvalue (each gradient element to +-clipvalue)
    are applied by the model before the step, global_clipnorm inside it; Keras allows one of them."""

    name = None

    def _clipping(self, clipnorm, clipvalue, global_clipnorm):
        set_ = [k for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("global_clipnorm", global_clipnorm))
                if v is not None]
        if len(set_) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set, got {set_}")
        for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        return {"clipnorm": clipnorm, "clipvalue": clipvalue}

    @property
    def clipnorm(self):
        return self._config.get("clipnorm")

    @property
    def clipvalue(self):
        return self._config.get("clipvalue")

    @property
    def decoupled_decay(self):
        """A weight decay the model applies before the step (p -= lr * wd * p), as Keras 3 does for SGD."""
        return 0.0

    def get_config(self):
        config = dict(self._config)
        config["learning_rate"] = schedules.to_config(config["learning_rate"])
        return config

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"


class SGD(OptimizerSpec):
    """SGD: learning_rate 0.01 (or a schedule), momentum 0, nesterov False. weight_decay is
    decoupled, p -= lr * weight_decay * p before the update, as Keras 3 decays every optimizer's
    weights; global_clipnorm clips the gradients' global norm inside the step, clipnorm / clipvalue
    before it."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None, clipnorm=None,
                 clipvalue=None, global_clipnorm=None):
        self._config = {"learning_rate": schedules.from_config(learning_rate), "momentum": momentum,
                        "nesterov": nesterov, "weight_decay": weight_decay, "global_clipnorm": global_clipnorm}
        self._config.update(self._clipping(clipnorm, clipvalue, global_clipnorm))
        self.build([])  # checks the arguments now

    @property
    def decoupled_decay(self):
        return float(self._config["weight_decay"] or 0.0)

    def build(self, params):
        c = self._config
        kw = dict(lr=c["learning_rate"], momentum=c["momentum"], nesterov=c["nesterov"],
                  max_grad_norm=c["global_clipnorm"])
        if not params:
            optim.SGD._hyperparams(**kw)
            return None
        return optim.SGD(params, **kw)


class Adam(OptimizerSpec):
    """Adam: learning_rate 0.001 (or a schedule), beta_1 0.9, beta_2 0.999, epsilon 1e-7
    (Keras's defaults). With weight_decay, the decay is decoupled (AdamW), as in Keras 3;
    global_clipnorm clips the gradients' global norm inside the step."""

    name = "adam"
    _decoupled_default = None

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        if weight_decay is None:
            weight_decay = self._decoupled_default
        self._config = {"learning_rate": schedules.from_config(learning_rate), "beta_1": beta_1, "beta_2": beta_2,
                        "epsilon": epsilon, "amsgrad": amsgrad, "weight_decay": weight_decay,
                        "global_clipnorm": global_clipnorm}
        self._config.update(self._clipping(clipnorm, clipvalue, global_clipnorm))
        self.build([])

    def build(self, params):
        c = self._config
        kw = dict(lr=c["learning_rate"], betas=(c["beta_1"], c["beta_2"]), eps=c["epsilon"], amsgrad=c["amsgrad"],
                  max_grad_norm=c["global_clipnorm"], eps_before_correction=True)
        if c["weight_decay"]:
            kw["weight_decay"] = c["weight_decay"]
            cls = optim.AdamW
        else:
            cls = optim.Adam
        if not params:
            cls._hyperparams(**kw)
            return None
        return cls(params, **kw)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, weight_decay 0.004 by default (Keras's)."""

    name = "adamw"
    _decoupled_default = 0.004


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def get(identifier):
    """An OptimizerSpec from a name ('adam', 'sgd', 'adamw') or an OptimizerSpec."""
    if isinstance(identifier, OptimizerSpec):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, optim.Optimizer):
        raise TypeError("compile takes an optimizer name or a fastdl.optimizers spec (e.g. "
                        "fastdl.optimizers.Adam(learning_rate=1e-3)), not a fastdl.optim optimizer bound to arrays")
    raise ValueError(f"unknown optimizer {identifier!r}; use one of {sorted(_BY_NAME)} or a fastdl.optimizers spec")


def from_config(name, config):
    return _BY_NAME[name](**config)
