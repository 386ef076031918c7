# An MLP with weight, bias and activity regularizers and weight constraints, trained with SGD.
import numpy as np
import keras
from keras import constraints, layers, regularizers

d = np.load(DATA)
model = keras.Sequential([
    keras.Input((20,)),
    layers.Dense(16, activation="relu", kernel_regularizer=regularizers.l2(1e-3), bias_regularizer="l1",
                 kernel_constraint=constraints.MaxNorm(1.5)),
    layers.Dense(8, activation="tanh", activity_regularizer=regularizers.L1(1e-3),
                 kernel_constraint=constraints.UnitNorm(), bias_constraint=constraints.NonNeg()),
    layers.Dense(4, activation="softmax", kernel_regularizer=regularizers.L1L2(l1=1e-4, l2=1e-4),
                 kernel_constraint=constraints.MinMaxNorm(0.5, 1.0, rate=0.5)),
])
model.set_weights([d["w16x20"], d["b16"], d["w8x16"], d["b8"], d["w4x8"], d["b4"]])
model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="sparse_categorical_crossentropy",
              metrics=["acc"])
history = model.fit(d["x"], d["y"], batch_size=32, epochs=3, shuffle=False, verbose=0)
RESULT = {"history": history.history, "weights": model.get_weights(),
          "evaluate": model.evaluate(d["x"], d["y"], batch_size=64, verbose=0, return_dict=True)}
