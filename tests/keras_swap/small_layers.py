# Keras's small layers in a trained model: Rescaling, LeakyReLU, Reshape, Identity, ReLU, a Softmax
# layer ending the model (fused with the loss in fastdl), and GaussianNoise at inference (the identity).
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
model = keras.Sequential([keras.Input((20,)), layers.Rescaling(0.5, offset=0.1), layers.Dense(16),
                          layers.LeakyReLU(negative_slope=0.1), layers.Reshape((4, 4)), layers.Identity(),
                          layers.ReLU(), layers.Reshape((16,)), layers.Dense(4), layers.Softmax()])
noisy = keras.Sequential([keras.Input((20,)), layers.GaussianNoise(0.2), layers.Dense(16)])
noisy.set_weights([d["w16x20"], d["b16"]])
model.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
model.compile(optimizer=keras.optimizers.SGD(0.05), loss="categorical_crossentropy", metrics=["acc"])
RESULT = {"predict_before": model.predict(d["x"][:5], verbose=0),
          "history": model.fit(d["x"], d["y_onehot"], batch_size=32, epochs=2, shuffle=False, verbose=0).history}
RESULT["weights"] = model.get_weights()
RESULT["names"] = [len(model.layers)]
RESULT["noise_at_inference"] = noisy.predict(d["x"][:5], verbose=0)  # none: the identity
