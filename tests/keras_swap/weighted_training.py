# sample_weight and class_weight in fit (loss and metrics weighted), evaluate with sample_weight,
# train_on_batch / test_on_batch / predict_on_batch.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x, labels = d["x"], d["y"]
weights = np.linspace(0.2, 2.0, len(x)).astype("float32")


def mlp(last, units):
    model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"),
                              layers.Dense(units, activation=last)])
    model.set_weights([d["w16x20"], d["b16"], d["w4x16"] if units == 4 else d["w1x16"], d["b4"] if units == 4 else d["b1"]])
    return model


RESULT = {}
sparse = mlp("softmax", 4)
sparse.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["acc"])
h = sparse.fit(x, labels, batch_size=50, epochs=2, shuffle=False, verbose=0, class_weight={0: 2.0, 1: 0.5, 3: 1.5})
h2 = sparse.fit(x, labels, batch_size=50, epochs=1, shuffle=False, verbose=0, sample_weight=weights)
RESULT["sparse"] = {"history": h.history, "history2": h2.history, "weights": sparse.get_weights(),
                    "evaluate": sparse.evaluate(x, labels, sample_weight=weights, verbose=0, return_dict=True)}

onehot = mlp("softmax", 4)
onehot.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy", metrics=["acc", "mse"])
h = onehot.fit(x, d["y_onehot"], batch_size=64, epochs=2, shuffle=False, verbose=0, class_weight={2: 3.0})
RESULT["onehot"] = {"history": h.history, "weights": onehot.get_weights()}

binary = mlp("sigmoid", 1)
binary.compile(optimizer=keras.optimizers.SGD(0.1), loss="binary_crossentropy", metrics=["acc", "mae"])
h = binary.fit(x, d["y_binary"], batch_size=32, epochs=2, shuffle=False, verbose=0, sample_weight=weights)
RESULT["binary"] = {"history": h.history, "weights": binary.get_weights()}

regression = mlp("linear", 4)
regression.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", metrics=["mae"])
h = regression.fit(x, d["y_onehot"], batch_size=40, epochs=2, shuffle=False, verbose=0, sample_weight=weights)
RESULT["mse"] = {"history": h.history, "weights": regression.get_weights()}

on_batch = mlp("softmax", 4)
on_batch.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["acc"])
RESULT["train_on_batch"] = [on_batch.train_on_batch(x[:32], labels[:32]),
                            on_batch.train_on_batch(x[32:64], labels[32:64], sample_weight=weights[32:64],
                                                    return_dict=True),
                            on_batch.train_on_batch(x[64:96], labels[64:96], class_weight={1: 4.0})]
RESULT["test_on_batch"] = on_batch.test_on_batch(x[:50], labels[:50], sample_weight=weights[:50], return_dict=True)
RESULT["predict_on_batch"] = on_batch.predict_on_batch(x[:7])
RESULT["on_batch_weights"] = on_batch.get_weights()
