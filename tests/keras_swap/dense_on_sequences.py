# Dense on inputs of rank 3, applied to the last axis: a per-step classifier with sparse targets of
# shape (batch, steps) (and one-hot ones), sample weights per sequence, and an MSE regression.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x = d["x"][:400].reshape(100, 4, 20)
labels = d["y"][:400].reshape(100, 4)
onehot = d["y_onehot"][:400].reshape(100, 4, 4)
w = np.linspace(0.5, 1.5, 100).astype("float32")[:, None]  # one weight per sequence


def model(last):
    m = keras.Sequential([keras.Input((4, 20)), layers.Dense(16, activation="relu"), layers.Dense(4, activation=last)])
    m.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
    return m


sparse = model("softmax")
sparse.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["acc"],
               weighted_metrics=["acc"])
h1 = sparse.fit(x, labels, batch_size=16, epochs=2, shuffle=False, verbose=0, sample_weight=w)
dense = model("softmax")
dense.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["acc"])
h2 = dense.fit(x, onehot, batch_size=16, epochs=2, shuffle=False, verbose=0)
regression = model("linear")
regression.compile(optimizer=keras.optimizers.SGD(0.02), loss="mse", metrics=["mae"])
h3 = regression.fit(x, onehot, batch_size=20, epochs=2, shuffle=False, verbose=0, sample_weight=w)
RESULT = {"sparse": h1.history, "sparse_weights": sparse.get_weights(), "onehot": h2.history,
          "onehot_weights": dense.get_weights(), "mse": h3.history, "mse_weights": regression.get_weights(),
          "predict": sparse.predict(x[:3], verbose=0),
          "evaluate": sparse.evaluate(x, labels, sample_weight=w, verbose=0, return_dict=True)}
