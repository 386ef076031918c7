# Keras 3's losses: trained through (value and gradient) by name and as objects with arguments, with
# sample weights, and called directly with each reduction.
import numpy as np
import keras
from keras import layers, losses

d = np.load(DATA)
x, onehot, binary = d["x"], d["y_onehot"], d["y_binary"][:, None]
w = np.linspace(0.3, 1.7, len(x)).astype("float32")
positive = onehot * 0.8 + 0.05  # strictly positive targets (msle, poisson, kl, mape)


def mlp(last, units=4):
    m = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="tanh"), layers.Dense(units, activation=last)])
    m.set_weights([d["w16x20"], d["b16"], d["w4x16"] if units == 4 else d["w1x16"], d["b4"] if units == 4 else d["b1"]])
    return m


RESULT = {}
cases = [("mae", "linear", onehot), ("mape", "softplus", positive), ("msle", "softplus", positive),
         ("huber", "linear", onehot), (losses.Huber(delta=0.3), "linear", onehot), ("log_cosh", "linear", onehot),
         ("kl_divergence", "softmax", positive), ("poisson", "softplus", positive), ("hinge", "tanh", onehot),
         ("squared_hinge", "tanh", onehot), ("categorical_hinge", "linear", onehot),
         (losses.CategoricalFocalCrossentropy(alpha=0.5, gamma=1.5), "softmax", onehot),
         (losses.CategoricalFocalCrossentropy(from_logits=True, label_smoothing=0.1), "linear", onehot),
         (losses.CategoricalFocalCrossentropy(gamma=0.5, alpha=0.5), "softmax", onehot),
         (losses.CategoricalFocalCrossentropy(gamma=0.5, from_logits=True), "linear", onehot),
         (losses.MeanAbsoluteError(reduction="sum"), "linear", onehot)]
for i, (loss, last, y) in enumerate(cases):
    model = mlp(last)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=loss)
    h = model.fit(x, y, batch_size=50, epochs=2, shuffle=False, verbose=0, sample_weight=w if i % 2 else None)
    RESULT[f"case{i}"] = {"loss": h.history["loss"], "weights": model.get_weights()}

for i, loss in enumerate([losses.BinaryFocalCrossentropy(), losses.BinaryFocalCrossentropy(apply_class_balancing=True,
                                                                                           alpha=0.3, gamma=1.0),
                          losses.BinaryFocalCrossentropy(from_logits=True, label_smoothing=0.2)]):
    model = mlp("linear" if loss.from_logits else "sigmoid", units=1)
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=loss)
    h = model.fit(x, binary, batch_size=50, epochs=2, shuffle=False, verbose=0)
    RESULT[f"focal{i}"] = {"loss": h.history["loss"], "weights": model.get_weights()}

p = np.abs(d["x"][:6, :4]) / 3
for red in ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]:
    for cls in [losses.MeanAbsoluteError, losses.Poisson, losses.KLDivergence, losses.CategoricalHinge]:
        RESULT[f"{cls.__name__}_{red}"] = np.asarray(cls(reduction=red)(positive[:6], p, sample_weight=w[:6]))
