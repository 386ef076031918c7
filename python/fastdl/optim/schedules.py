"""Learning-rate schedules: functions of the optimizer's step count (0 for the first step).

Pass one as the learning rate of a fastdl.optim optimizer, of a fastdl.torch optimizer, or of a
Keras-style spec (fastdl.optimizers.Adam(learning_rate=CosineDecay(...))). The names and
arguments are Keras's.

    StepDecay(lr0, step_size, gamma=0.1)                      lr0 gamma^floor(t / step_size)
    ExponentialDecay(lr0, decay_steps, decay_rate, staircase) lr0 rate^(t / decay_steps)   (floor if staircase)
    CosineDecay(lr0, decay_steps, alpha=0, warmup_target=None, warmup_steps=0)
        with warmup: lr0 -> warmup_target linearly over warmup_steps, then from the peak p:
        p ((1 - alpha) (1 + cos(pi min(t', decay_steps) / decay_steps)) / 2 + alpha), t' = t - warmup_steps
"""

import math


class Schedule:
    """Base: a learning rate for each step t >= 0."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        return dict(self._config)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._config.items())})"


def _positive(value, name):
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def _non_negative(value, name):
    value = float(value)
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


class StepDecay(Schedule):
    """lr0 * gamma ** (t // step_size): torch's StepLR, per step."""

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.step_size = int(_positive(step_size, "step_size"))
        self.gamma = _non_negative(gamma, "gamma")
        self._config = {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size,
                        "gamma": self.gamma}

    def __call__(self, step):
        return self.initial_learning_rate * self.gamma ** (int(step) // self.step_size)


class ExponentialDecay(Schedule):
    """lr0 * decay_rate ** (t / decay_steps), the exponent floored when staircase (Keras's)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False):
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _non_negative(decay_rate, "decay_rate")
        self.staircase = bool(staircase)
        self._config = {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                        "decay_rate": self.decay_rate, "staircase": self.staircase}

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)


class CosineDecay(Schedule):
    """Optional linear warmup, then cosine decay to alpha times the peak (Keras's CosineDecay)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = int(_positive(decay_steps, "decay_steps"))
        self.alpha = _non_negative(alpha, "alpha")
        self.warmup_target = None if warmup_target is None else _non_negative(warmup_target, "warmup_target")
        self.warmup_steps = int(_non_negative(warmup_steps, "warmup_steps"))
        self._config = {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                        "alpha": self.alpha, "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}

    def __call__(self, step):
        step = int(step)
        peak = self.initial_learning_rate if self.warmup_target is None else self.warmup_target
        if self.warmup_steps and step < self.warmup_steps:
            return self.initial_learning_rate + (peak - self.initial_learning_rate) * step / self.warmup_steps
        t = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return peak * ((1 - self.alpha) * 0.5 * (1 + math.cos(math.pi * t)) + self.alpha)


SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)}


def to_config(lr):
    """A learning rate or schedule as JSON-able data."""
    if isinstance(lr, Schedule):
        return {"schedule": type(lr).__name__, "config": lr.get_config()}
    return lr


def from_config(value):
    if isinstance(value, dict) and "schedule" in value:
        if value["schedule"] not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {value['schedule']!r}")
        return SCHEDULES[value["schedule"]](**value["config"])
    return value
