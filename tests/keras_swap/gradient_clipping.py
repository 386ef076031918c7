# The optimizers' clipping and decay options: clipnorm (each weight's gradient), clipvalue,
# global_clipnorm, and SGD's weight_decay (decoupled in Keras 3), one model per option.
import numpy as np
import keras
from keras import layers, optimizers

d = np.load(DATA)
RESULT = {}
for name, opt in [("clipnorm", optimizers.SGD(learning_rate=0.5, clipnorm=0.05)),
                  ("clipvalue", optimizers.SGD(learning_rate=0.3, momentum=0.9, clipvalue=0.01)),
                  ("sgd_decay", optimizers.SGD(learning_rate=0.1, momentum=0.5, nesterov=True, weight_decay=0.05)),
                  ("adam_global", optimizers.Adam(learning_rate=0.01, global_clipnorm=0.1)),
                  ("adam_clipnorm_decay", optimizers.Adam(learning_rate=0.01, clipnorm=0.02, weight_decay=0.1))]:
    model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"),
                              layers.Dense(4, activation="softmax")])
    model.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    history = model.fit(d["x"], d["y_onehot"], batch_size=32, epochs=2, shuffle=False, verbose=0)
    RESULT[name] = {"loss": history.history["loss"], "weights": model.get_weights()}
