"""keras.optimizers.schedules: the learning-rate schedules of fastdl.optim.schedules under Keras's
module path (from fastdl.optimizers.schedules import ExponentialDecay)."""

from ..optim.schedules import (CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay,  # noqa: F401
                               LearningRateSchedule, PiecewiseConstantDecay, PolynomialDecay, Schedule, StepDecay,
                               deserialize, from_config, serialize, to_config)

__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "PolynomialDecay",
           "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts", "StepDecay", "serialize", "deserialize"]
