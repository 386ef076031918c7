# Keras 3's activations by name (elu, selu, softplus, softsign, relu6, hard_sigmoid, mish,
# exponential, log_softmax) and the ELU / ReLU(max_value=6) layers: values, and a model trained
# through them.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x = d["x"]
RESULT = {}
for name in ["elu", "selu", "softplus", "softsign", "relu6", "hard_sigmoid", "mish", "exponential", "log_softmax"]:
    probe = keras.Sequential([keras.Input((20,)), layers.Activation(name)])
    RESULT[name] = probe.predict(x[:6] * 3, verbose=0)
for layer in [layers.ELU(alpha=0.5), layers.ReLU(max_value=6)]:
    probe = keras.Sequential([keras.Input((20,)), layer])
    RESULT[type(layer).__name__] = probe.predict(x[:6] * 4, verbose=0)

model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="selu"), layers.Dense(8, activation="mish"),
                          layers.Dense(4, activation="softplus")])
model.set_weights([d["w16x20"], d["b16"], d["w8x16"], d["b8"], d["w4x8"], d["b4"]])
model.compile(optimizer=keras.optimizers.SGD(0.02), loss="mse", metrics=["mae"])
RESULT["history"] = model.fit(x, d["y_onehot"], batch_size=32, epochs=2, shuffle=False, verbose=0).history
RESULT["weights"] = model.get_weights()
model2 = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="elu"), layers.Dense(8, activation="softsign"),
                           layers.Dense(4, activation="hard_sigmoid")])
model2.set_weights([d["w16x20"], d["b16"], d["w8x16"], d["b8"], d["w4x8"], d["b4"]])
model2.compile(optimizer=keras.optimizers.SGD(0.05), loss="binary_crossentropy")
RESULT["history2"] = model2.fit(x, d["y_onehot"], batch_size=32, epochs=2, shuffle=False, verbose=0).history
RESULT["weights2"] = model2.get_weights()
