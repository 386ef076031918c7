# keras.layers.Normalization: adapt() on data, given mean / variance, invert; first layer of a trained model.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x = d["x"] * np.linspace(0.5, 3.0, 20).astype("float32") + np.linspace(-2, 2, 20).astype("float32")
norm = layers.Normalization()
norm.adapt(x)
model = keras.Sequential([keras.Input((20,)), norm, layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])
model.layers[1].set_weights([d["w16x20"], d["b16"]])
model.layers[2].set_weights([d["w4x16"], d["b4"]])
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["acc"])
RESULT = {"normalized": norm(x[:5]), "history": model.fit(x, d["y"], batch_size=32, epochs=2, shuffle=False,
                                                          verbose=0).history,
          "dense_weights": model.layers[1].get_weights() + model.layers[2].get_weights(),
          "counts": [len(model.trainable_weights), model.count_params()]}
given = keras.Sequential([keras.Input((3,)), layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25])])
inverted = keras.Sequential([keras.Input((3,)), layers.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 1.0, 0.25],
                                                                     invert=True)])
probe = np.array([[1.0, 2.0, 3.0], [3.0, 0.0, 4.0]], dtype="float32")
RESULT["given"] = given.predict(probe, verbose=0)
RESULT["inverted"] = inverted.predict(probe, verbose=0)
