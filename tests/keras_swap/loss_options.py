# The four core losses with Keras's options: reduction (trained and called), name, axis, and
# SparseCategoricalCrossentropy's ignore_class (a label inside the classes, and 255 outside them,
# as segmentation masks use), on per-sample outputs and on sequences (Dense over steps).
import numpy as np
import keras
from keras import layers, losses

d = np.load(DATA)
x, labels, onehot, binary = d["x"], d["y"], d["y_onehot"], d["y_binary"][:, None]
w = np.linspace(0.3, 1.7, len(x)).astype("float32")
seq_x, seq_labels = d["x"][:400].reshape(100, 4, 20), d["y"][:400].reshape(100, 4)


def mlp(last, units=4, steps=None):
    m = keras.Sequential([keras.Input((20,) if steps is None else (steps, 20)), layers.Dense(16, activation="tanh"),
                          layers.Dense(units, activation=last)])
    m.set_weights([d["w16x20"], d["b16"], d["w4x16"] if units == 4 else d["w1x16"], d["b4"] if units == 4 else d["b1"]])
    return m


ignored = labels.copy()
ignored[::5] = 2  # class 2 ignored where it is the label, and every fifth label made 2
padded = labels.copy()
padded[::3] = 255  # an out-of-range 'void' label
seq_padded = seq_labels.copy()
seq_padded[:, 3] = 255  # the last step of every sequence is padding

RESULT = {}
cases = [
    ("scce_sum", "softmax", losses.SparseCategoricalCrossentropy(reduction="sum"), labels, None, None),
    ("scce_ignore", "softmax", losses.SparseCategoricalCrossentropy(ignore_class=2), ignored, None, None),
    ("scce_ignore_logits_w", "linear", losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
     padded, w, None),
    ("scce_ignore_mwsw", "softmax", losses.SparseCategoricalCrossentropy(ignore_class=255,
                                                                         reduction="mean_with_sample_weight"),
     padded, w, None),
    ("scce_ignore_sum_probs", "softmax", losses.SparseCategoricalCrossentropy(ignore_class=255, reduction="sum"),
     padded, None, None),
    ("scce_seq_ignore", "softmax", losses.SparseCategoricalCrossentropy(ignore_class=255), seq_padded, None, 4),
    ("cce_named_sum", "softmax", losses.CategoricalCrossentropy(reduction="sum", name="my_cce", axis=-1), onehot, w,
     None),
    ("mse_mwsw", "linear", losses.MeanSquaredError(reduction="mean_with_sample_weight"), onehot, w, None),
    ("bce_sum", "sigmoid", losses.BinaryCrossentropy(reduction="sum", label_smoothing=0.1), binary, None, None),
]
for name, last, loss, y, sw, steps in cases:
    model = mlp(last, units=1 if y is binary else 4, steps=steps)
    model.compile(optimizer=keras.optimizers.SGD(0.002 if "sum" in name else 0.05), loss=loss, metrics=["acc"])
    xs = x if steps is None else seq_x
    h = model.fit(xs, y, batch_size=50 if steps is None else 20, epochs=2, shuffle=False, verbose=0,
                  sample_weight=sw)
    RESULT[name] = {"history": h.history, "weights": model.get_weights(),
                    "evaluate": model.evaluate(xs, y, verbose=0, return_dict=True)}

p = np.abs(d["x"][:6, :4]) + 0.1
p = p / p.sum(axis=1, keepdims=True)
ids = np.array([0, 1, 255, 3, 255, 2])
for red in ["sum_over_batch_size", "sum", "mean_with_sample_weight", "none"]:
    RESULT[f"call_scce_{red}"] = np.asarray(losses.SparseCategoricalCrossentropy(ignore_class=255, reduction=red)(
        ids, p, sample_weight=w[:6]))
    RESULT[f"call_mse_{red}"] = np.asarray(losses.MeanSquaredError(reduction=red)(onehot[:6], p, sample_weight=w[:6]))
    RESULT[f"call_bce_{red}"] = np.asarray(losses.BinaryCrossentropy(reduction=red)(onehot[:6], p))
    RESULT[f"call_cce_{red}"] = np.asarray(losses.CategoricalCrossentropy(reduction=red)(onehot[:6], p,
                                                                                       sample_weight=w[:6]))
config = losses.SparseCategoricalCrossentropy(ignore_class=255, reduction="sum", name="seg").get_config()
RESULT["config"] = [config["name"] == "seg", config["reduction"] == "sum", config["ignore_class"], config["from_logits"]]
