"""Learning-rate schedules: functions of the optimizer's step count (0 for the first step).

Pass one as the learning rate of a fastdl.optim optimizer, of a fastdl.torch optimizer, or of a
Keras-style spec (fastdl.optimizers.Adam(learning_rate=CosineDecay(...))). The names and
arguments are Keras's.

    StepDecay(lr0, step_size, gamma=0.1)                      lr0 gamma^floor(t / step_size)
    ExponentialDecay(lr0, decay_steps, decay_rate, staircase) lr0 rate^(t / decay_steps)   (floor if staircase)
    InverseTimeDecay(lr0, decay_steps, decay_rate, staircase) lr0 / (1 + rate t / decay_steps)  (floor if staircase)
    PiecewiseConstantDecay(boundaries, values)                values[i] for boundaries[i-1] < t <= boundaries[i]
    PolynomialDecay(lr0, decay_steps, end_learning_rate=1e-4, power=1, cycle=False)
        (lr0 - end) (1 - t / d)^power + end, t capped at d = decay_steps (cycle: d grows to the next multiple)
    CosineDecay(lr0, decay_steps, alpha=0, warmup_target=None, warmup_steps=0)
        with warmup: lr0 -> warmup_target linearly over warmup_steps, then from the peak p:
        p ((1 - alpha) (1 + cos(pi min(t', decay_steps) / decay_steps)) / 2 + alpha), t' = t - warmup_steps
    CosineDecayRestarts(lr0, first_decay_steps, t_mul=2, m_mul=1, alpha=0)
        cosine decay restarted after first_decay_steps, each period t_mul times longer and m_mul times lower

Every schedule also takes Keras's name= (kept in its config).
"""

import bisect
import math


class Schedule:
    """Base: a learning rate for each step t >= 0 (Keras's LearningRateSchedule: subclass it and
    define __call__(step), and get_config for saving)."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        config = dict(getattr(self, "_config", {}))
        if getattr(self, "name", None) is not None:
            config["name"] = self.name
        return config

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items())})"


LearningRateSchedule = Schedule  # Keras's name


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

    def __init__(self, initial_learning_rate, step_size, gamma=0.1, name=None):
        self.name = name
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.step_size = int(_positive(step_size, "step_size"))
        self.gamma = _non_negative(gamma, "gamma")
        self._config = {"initial_learning_rate": self.initial_learning_rate, "step_size": self.step_size,
                        "gamma": self.gamma}

    def __call__(self, step):
        return self.initial_learning_rate * self.gamma ** (int(step) // self.step_size)


class ExponentialDecay(Schedule):
    """lr0 * decay_rate ** (t / decay_steps), the exponent floored when staircase (Keras's)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.name = name
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.decay_rate = _non_negative(decay_rate, "decay_rate")
        self.staircase = bool(staircase)
        self._config = {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                        "decay_rate": self.decay_rate, "staircase": self.staircase}

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate * self.decay_rate ** (math.floor(p) if self.staircase else p)


class InverseTimeDecay(ExponentialDecay):
    """lr0 / (1 + decay_rate * t / decay_steps), t / decay_steps floored when staircase (Keras's)."""

    def __call__(self, step):
        p = step / self.decay_steps
        return self.initial_learning_rate / (1 + self.decay_rate * (math.floor(p) if self.staircase else p))


class PiecewiseConstantDecay(Schedule):
    """values[0] up to boundaries[0] (inclusive), values[i] for boundaries[i-1] < t <= boundaries[i],
    values[-1] after the last boundary (Keras's)."""

    def __init__(self, boundaries, values, name=None):
        self.name = name
        boundaries, values = [float(b) for b in boundaries], [_non_negative(v, "values[i]") for v in values]
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstantDecay needs one more value than boundaries, got {len(boundaries)} "
                             f"boundaries and {len(values)} values")
        if any(a >= b for a, b in zip(boundaries, boundaries[1:])):
            raise ValueError(f"boundaries must increase, got {boundaries}")
        self.boundaries, self.values = boundaries, values
        self._config = {"boundaries": boundaries, "values": values}

    def __call__(self, step):
        return self.values[bisect.bisect_left(self.boundaries, float(step))]


class PolynomialDecay(Schedule):
    """(lr0 - end) (1 - t / d)^power + end with t capped at d = decay_steps; with cycle, d is instead
    decay_steps times ceil(t / decay_steps) (at least 1), so the decay restarts from a lower peak (Keras's)."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name=None):
        self.name = name
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _positive(decay_steps, "decay_steps")
        self.end_learning_rate = _non_negative(end_learning_rate, "end_learning_rate")
        self.power = _non_negative(power, "power")
        self.cycle = bool(cycle)
        self._config = {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                        "end_learning_rate": self.end_learning_rate, "power": self.power, "cycle": self.cycle}

    def __call__(self, step):
        step, d = float(step), self.decay_steps
        if self.cycle:
            d *= 1.0 if step == 0 else math.ceil(step / d)
        else:
            step = min(step, d)
        return (self.initial_learning_rate - self.end_learning_rate) * (1 - step / d) ** self.power + \
            self.end_learning_rate


class CosineDecay(Schedule):
    """Optional linear warmup, then cosine decay to alpha times the peak (Keras's CosineDecay)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, warmup_target=None, warmup_steps=0, name=None):
        self.name = name
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


class CosineDecayRestarts(Schedule):
    """SGDR: cosine decay over first_decay_steps, then restarts, period i lasting t_mul^i times the
    first and peaking at m_mul^i times lr0; alpha is the floor as a fraction of the peak (Keras's)."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0, name=None):
        self.name = name
        self.initial_learning_rate = _non_negative(initial_learning_rate, "initial_learning_rate")
        self.first_decay_steps = _positive(first_decay_steps, "first_decay_steps")
        self.t_mul = _positive(t_mul, "t_mul")
        self.m_mul = _non_negative(m_mul, "m_mul")
        self.alpha = _non_negative(alpha, "alpha")
        self._config = {"initial_learning_rate": self.initial_learning_rate,
                        "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul, "m_mul": self.m_mul,
                        "alpha": self.alpha}

    def __call__(self, step):
        fraction = float(step) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
            fraction -= restart
        else:  # period i lasts t_mul^i: the restart is where the geometric sum passes the fraction
            restart = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul ** restart) / (1.0 - self.t_mul)
            fraction = (fraction - done) / self.t_mul ** restart
        cosine = 0.5 * self.m_mul ** restart * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


SCHEDULES = {cls.__name__: cls for cls in (StepDecay, ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay,
                                           PolynomialDecay, CosineDecay, CosineDecayRestarts)}


def to_config(lr):
    """A learning rate or schedule as JSON-able data."""
    if isinstance(lr, Schedule):
        if type(lr).__name__ not in SCHEDULES:
            raise ValueError(f"{type(lr).__name__} is not one of fastdl's schedules ({sorted(SCHEDULES)}): a model "
                             f"compiled with it cannot be saved")
        return {"schedule": type(lr).__name__, "config": lr.get_config()}
    return lr


serialize = to_config  # Keras's names


def from_config(value):
    if isinstance(value, dict) and "schedule" in value:
        if value["schedule"] not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {value['schedule']!r}")
        return SCHEDULES[value["schedule"]](**value["config"])
    return value


deserialize = from_config
