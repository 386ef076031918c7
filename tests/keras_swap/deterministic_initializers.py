# Initializers given as objects and names whose values do not depend on a random generator:
# Constant, Identity, Zeros, Ones; then a fit from them.
import numpy as np
import keras
from keras import initializers, layers

d = np.load(DATA)
model = keras.Sequential([
    keras.Input((20,)),
    layers.Dense(20, activation="tanh", kernel_initializer=initializers.Identity(gain=0.5), bias_initializer="ones"),
    layers.Dense(8, activation="relu", kernel_initializer=initializers.Constant(0.05), bias_initializer="zeros"),
    layers.Dense(4, activation="softmax", kernel_initializer=keras.initializers.Constant(-0.02)),
])
RESULT = {"initial": model.get_weights()}
model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["acc"])
RESULT["history"] = model.fit(d["x"], d["y"], batch_size=32, epochs=2, shuffle=False, verbose=0).history
RESULT["weights"] = model.get_weights()
