"""Keras-style optimizer specifications for model.compile: they carry Keras 3's argument names,
defaults and update rules, and become a fastdl.optim optimizer (one fused multi-tensor kernel
per step) over the model's parameter buffer when the model is built.

Every spec takes Keras's common arguments:
- ``weight_decay``: decoupled, p <- p - lr * weight_decay * p before the update, as Keras 3
  decays every optimizer's weights (Adam / AdamW do it inside their kernel; the others in the
  model, before the step, on the trainable weights);
- ``clipnorm`` (each weight's gradient to that L2 norm), ``clipvalue`` (each element to
  +-clipvalue), ``global_clipnorm`` (all gradients together, inside the step): one of them;
- ``use_ema``, ``ema_momentum``, ``ema_overwrite_frequency``: an exponential moving average of
  the trainable weights, ema <- m ema + (1 - m) w after each step (m = 0 at the first), copied
  into the weights every ema_overwrite_frequency steps and when fit ends (Keras 3's semantics).

Where Keras's formula differs from torch.optim's, the fastdl.optim optimizer runs Keras's:
eps added before Adam's bias correction, inside RMSprop's and Adagrad's square roots, outside
Adamax's max; RMSprop's momentum accumulates lr * g / d; Nadam's momentum schedule is
beta_1 (1 - 0.5 * 0.96^t).
"""

import numbers

from .. import optim
from . import schedules

_COMMON = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "use_ema", "ema_momentum",
           "ema_overwrite_frequency")


class OptimizerSpec:
    """Base: Keras's arguments in ``_config``; build(params) makes the fastdl.optim optimizer
    (subclasses give its class and arguments in _optim). Arguments are checked when the spec is
    made (build([]) checks them without arrays)."""

    name = None
    _decay_in_kernel = False  # Adam / AdamW: the kernel applies the decoupled decay

    def __init__(self, learning_rate, own, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None, name=None, loss_scale_factor=None,
                 gradient_accumulation_steps=None):
        for arg, value in (("loss_scale_factor", loss_scale_factor),
                           ("gradient_accumulation_steps", gradient_accumulation_steps)):
            if value is not None:
                raise NotImplementedError(f"{type(self).__name__}({arg}={value!r}): fastdl's optimizers do not have "
                                          f"{arg} (fastdl trains in float32; for a larger batch, raise batch_size)")
        self.optimizer_name = name or self.name  # Keras's optimizer name; not part of the saved config
        clipping = [k for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                   ("global_clipnorm", global_clipnorm)) if v is not None]
        if len(clipping) > 1:
            raise ValueError(f"only one of clipnorm, clipvalue and global_clipnorm can be set, got {clipping}")
        for name, value in (("clipnorm", clipnorm), ("clipvalue", clipvalue), ("weight_decay", weight_decay)):
            if value is not None and not (_number(value) and value >= (0 if name == "weight_decay" else 1e-300)):
                raise ValueError(f"{name} must be a number {'>= 0' if name == 'weight_decay' else '> 0'}, got {value!r}")
        if not isinstance(use_ema, bool):
            raise TypeError(f"use_ema must be True or False, got {use_ema!r}")
        if not (_number(ema_momentum) and 0 <= ema_momentum <= 1):
            raise ValueError(f"ema_momentum must be a number in [0, 1], got {ema_momentum!r}")
        if ema_overwrite_frequency is not None and not (isinstance(ema_overwrite_frequency, int)
                                                        and not isinstance(ema_overwrite_frequency, bool)
                                                        and ema_overwrite_frequency >= 1):
            raise ValueError(f"ema_overwrite_frequency must be None or an int >= 1, got {ema_overwrite_frequency!r}")
        self._config = {"learning_rate": schedules.from_config(learning_rate), **own, "weight_decay": weight_decay,
                        "clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm,
                        "use_ema": use_ema, "ema_momentum": ema_momentum,
                        "ema_overwrite_frequency": ema_overwrite_frequency}
        self.build([])  # checks the arguments now

    def _optim(self):
        """(fastdl.optim class, its keyword arguments) for this spec."""
        raise NotImplementedError

    def build(self, params):
        cls, kw = self._optim()
        kw = dict(kw, lr=self._config["learning_rate"], max_grad_norm=self._config["global_clipnorm"])
        if not params:
            cls._hyperparams(**kw)
            return None
        return cls(params, **kw)

    @property
    def clipnorm(self):
        return self._config["clipnorm"]

    @property
    def clipvalue(self):
        return self._config["clipvalue"]

    @property
    def use_ema(self):
        return self._config["use_ema"]

    @property
    def decoupled_decay(self):
        """The weight decay the model applies before the step (p -= lr * wd * p); 0 where the kernel does."""
        return 0.0 if self._decay_in_kernel else float(self._config["weight_decay"] or 0.0)

    def get_config(self):
        config = dict(self._config)
        config["learning_rate"] = schedules.to_config(config["learning_rate"])
        return config

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"


def _number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class SGD(OptimizerSpec):
    """SGD: learning_rate 0.01 (or a schedule), momentum 0, nesterov False (torch's momentum form,
    the same trajectory as Keras's m <- mu m - lr g at a constant learning rate)."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **common):
        super().__init__(learning_rate, {"momentum": momentum, "nesterov": nesterov}, **common)

    def _optim(self):
        c = self._config
        return optim.SGD, dict(momentum=c["momentum"], nesterov=c["nesterov"])


class Adam(OptimizerSpec):
    """Adam: learning_rate 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7, amsgrad False (Keras's
    defaults; eps where Keras adds it). With weight_decay, AdamW's decoupled decay, as Keras 3."""

    name = "adam"
    _decay_in_kernel = True
    _decoupled_default = None

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, weight_decay=None,
                 **common):
        if weight_decay is None:
            weight_decay = self._decoupled_default
        super().__init__(learning_rate, {"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon, "amsgrad": amsgrad},
                         weight_decay=weight_decay, **common)

    def _optim(self):
        c = self._config
        kw = dict(betas=(c["beta_1"], c["beta_2"]), eps=c["epsilon"], amsgrad=c["amsgrad"], eps_before_correction=True)
        if c["weight_decay"]:
            return optim.AdamW, dict(kw, weight_decay=c["weight_decay"])
        return optim.Adam, kw


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay, weight_decay 0.004 by default (Keras's)."""

    name = "adamw"
    _decoupled_default = 0.004


class RMSprop(OptimizerSpec):
    """RMSprop, Keras 3's: v <- rho v + (1 - rho) g^2; (centered: a <- rho a + (1 - rho) g, v - a^2
    in place of v); d = sqrt(v + epsilon); momentum: b <- momentum b + lr g / d, p <- p - b;
    else p <- p - lr g / d. learning_rate 0.001, rho 0.9, momentum 0, epsilon 1e-7."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **common):
        super().__init__(learning_rate, {"rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered},
                         **common)

    def _optim(self):
        c = self._config
        return optim.RMSprop, dict(alpha=c["rho"], eps=c["epsilon"], momentum=c["momentum"], centered=c["centered"],
                                   eps_inside_sqrt=True, lr_in_momentum=True)


class Adagrad(OptimizerSpec):
    """Adagrad, Keras 3's: s <- s + g^2 (s starts at initial_accumulator_value);
    p <- p - lr g / sqrt(s + epsilon). learning_rate 0.001, initial_accumulator_value 0.1, epsilon 1e-7."""

    name = "adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **common):
        super().__init__(learning_rate, {"initial_accumulator_value": initial_accumulator_value, "epsilon": epsilon},
                         **common)

    def _optim(self):
        c = self._config
        return optim.Adagrad, dict(initial_accumulator_value=c["initial_accumulator_value"], eps=c["epsilon"],
                                   eps_inside_sqrt=True)


class Adadelta(OptimizerSpec):
    """Adadelta: a <- rho a + (1 - rho) g^2; u = sqrt(d + eps) / sqrt(a + eps) g;
    d <- rho d + (1 - rho) u^2; p <- p - lr u. learning_rate 0.001, rho 0.95, epsilon 1e-7 (Keras's)."""

    name = "adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **common):
        super().__init__(learning_rate, {"rho": rho, "epsilon": epsilon}, **common)

    def _optim(self):
        c = self._config
        return optim.Adadelta, dict(rho=c["rho"], eps=c["epsilon"])


class Adamax(OptimizerSpec):
    """Adamax, Keras 3's: m <- beta_1 m + (1 - beta_1) g; u <- max(beta_2 u, |g|);
    p <- p - lr / (1 - beta_1^t) m / (u + epsilon). learning_rate 0.001, betas 0.9 / 0.999, epsilon 1e-7."""

    name = "adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        super().__init__(learning_rate, {"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}, **common)

    def _optim(self):
        c = self._config
        return optim.Adamax, dict(betas=(c["beta_1"], c["beta_2"]), eps=c["epsilon"], eps_outside_max=True)


class Nadam(OptimizerSpec):
    """Nadam, Keras 3's: torch's NAdam step with the momentum schedule u_t = beta_1 (1 - 0.5 * 0.96^t)
    (momentum_decay 1). learning_rate 0.001, betas 0.9 / 0.999, epsilon 1e-7."""

    name = "nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **common):
        super().__init__(learning_rate, {"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon}, **common)

    def _optim(self):
        c = self._config
        return optim.NAdam, dict(betas=(c["beta_1"], c["beta_2"]), eps=c["epsilon"], momentum_decay=1.0)


class Lion(OptimizerSpec):
    """Lion: p <- p - lr sign(beta_1 m + (1 - beta_1) g); m <- beta_2 m + (1 - beta_2) g.
    learning_rate 0.001, beta_1 0.9, beta_2 0.99 (Keras's)."""

    name = "lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **common):
        super().__init__(learning_rate, {"beta_1": beta_1, "beta_2": beta_2}, **common)

    def _optim(self):
        c = self._config
        return optim.Lion, dict(betas=(c["beta_1"], c["beta_2"]))


_BY_NAME = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax, Nadam, Lion)}


def get(identifier):
    """An OptimizerSpec from a name ('adam', 'sgd', 'rmsprop', ...) or an OptimizerSpec."""
    if isinstance(identifier, OptimizerSpec):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    if isinstance(identifier, optim.Optimizer):
        raise TypeError("compile takes an optimizer name or a fastdl.optimizers spec (e.g. "
                        "fastdl.optimizers.Adam(learning_rate=1e-3)), not a fastdl.optim optimizer bound to arrays")
    raise ValueError(f"unknown optimizer {identifier!r}; use one of {sorted(_BY_NAME)} or a fastdl.optimizers spec")


def from_config(name, config):
    """A spec from its saved name and config (files written before the EMA options: defaults)."""
    return _BY_NAME[name](**config)
