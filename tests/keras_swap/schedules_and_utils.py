# Learning-rate schedules (keras.optimizers.schedules) and keras.utils helpers, value by value.
import numpy as np
import keras
from keras.optimizers.schedules import CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay
from keras.optimizers.schedules import PiecewiseConstantDecay, PolynomialDecay

d = np.load(DATA)
schedules = {
    "exponential": ExponentialDecay(0.1, decay_steps=7, decay_rate=0.5),
    "exponential_staircase": ExponentialDecay(0.1, decay_steps=7, decay_rate=0.5, staircase=True),
    "inverse_time": InverseTimeDecay(0.1, decay_steps=5, decay_rate=0.3),
    "inverse_time_staircase": InverseTimeDecay(0.1, decay_steps=5, decay_rate=0.3, staircase=True),
    "piecewise": PiecewiseConstantDecay([10, 20, 35], [0.1, 0.05, 0.01, 0.001]),
    "polynomial": PolynomialDecay(0.1, decay_steps=30, end_learning_rate=0.001, power=2.0),
    "polynomial_cycle": PolynomialDecay(0.1, decay_steps=12, end_learning_rate=0.001, power=0.5, cycle=True),
    "cosine": CosineDecay(0.1, decay_steps=30, alpha=0.1),
    "cosine_warmup": CosineDecay(0.0, decay_steps=30, warmup_target=0.2, warmup_steps=10),
    "cosine_restarts": CosineDecayRestarts(0.1, first_decay_steps=8, t_mul=2.0, m_mul=0.7, alpha=0.05),
    "cosine_restarts_t1": CosineDecayRestarts(0.1, first_decay_steps=8, t_mul=1.0, m_mul=0.5),
}
steps = [0, 1, 5, 7, 8, 10, 11, 14, 20, 21, 29, 30, 35, 36, 50, 100]
RESULT = {name: [float(s(t)) for t in steps] for name, s in schedules.items()}
RESULT["to_categorical"] = keras.utils.to_categorical(d["y"][:10], 4)
RESULT["to_categorical_n"] = keras.utils.to_categorical([[0], [2], [1]], num_classes=5)
RESULT["normalize"] = keras.utils.normalize(d["x"][:5])
RESULT["normalize_l1"] = keras.utils.normalize(d["x"][:5], axis=1, order=1)
RESULT["normalize_zero_row"] = keras.utils.normalize(np.array([[0.0, 0.0], [3.0, 4.0]]))
