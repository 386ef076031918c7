# Transfer learning's freezing: layer.trainable = False before compile, a fit that leaves the frozen
# weights as they were; then unfrozen, compiled again (Keras's fine-tuning recipe) and trained on.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x, labels = d["x"], d["y"]
model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"),
                          layers.Dense(8, activation="tanh"), layers.Dense(4, activation="softmax")])
model.set_weights([d["w16x20"], d["b16"], d["w8x16"], d["b8"], d["w4x8"], d["b4"]])
model.layers[0].trainable = False
model.layers[2].trainable = False
model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["acc"])
frozen = model.fit(x, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
after_frozen = model.get_weights()
counts = [len(model.trainable_weights), len(model.non_trainable_weights)]
for layer in model.layers:
    layer.trainable = True
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["acc"])
tuned = model.fit(x, labels, batch_size=32, epochs=2, shuffle=False, verbose=0)
RESULT = {"frozen": frozen.history, "after_frozen": after_frozen, "counts": counts, "tuned": tuned.history,
          "weights": model.get_weights(), "all_trainable": len(model.trainable_weights)}
