# Every Keras 3 optimizer fastdl has, with Keras's defaults and with options (momentum, centered,
# weight decay, a schedule, clipping) and the moving average of the weights (use_ema).
import numpy as np
import keras
from keras import layers, optimizers

d = np.load(DATA)
schedule = optimizers.schedules.ExponentialDecay(0.02, decay_steps=5, decay_rate=0.8)
cases = {
    "rmsprop": optimizers.RMSprop(),
    "rmsprop_centered_momentum": optimizers.RMSprop(learning_rate=schedule, momentum=0.8, centered=True),
    "adagrad": optimizers.Adagrad(learning_rate=0.05),
    "adagrad_decay": optimizers.Adagrad(learning_rate=0.05, initial_accumulator_value=0.5, weight_decay=0.01),
    "adadelta": optimizers.Adadelta(learning_rate=1.0),
    "adamax": optimizers.Adamax(learning_rate=0.01),
    "adamax_clip": optimizers.Adamax(learning_rate=0.01, beta_1=0.3, clipvalue=0.02),
    "nadam": optimizers.Nadam(learning_rate=0.01),
    "nadam_decay": optimizers.Nadam(learning_rate=schedule, weight_decay=0.05),
    "lion": optimizers.Lion(learning_rate=0.003),
    "lion_decay": optimizers.Lion(learning_rate=0.003, beta_2=0.9, weight_decay=0.1, global_clipnorm=0.5),
    "sgd_ema": optimizers.SGD(learning_rate=0.1, momentum=0.9, use_ema=True, ema_momentum=0.9),
    "adam_ema_overwrite": optimizers.Adam(learning_rate=0.01, use_ema=True, ema_overwrite_frequency=5),
    "rmsprop_name": "rmsprop",
    "adagrad_name": "adagrad",
}
RESULT = {}
for name, opt in cases.items():
    model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"),
                              layers.Dense(4, activation="softmax")])
    model.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
    model.compile(optimizer=opt, loss="categorical_crossentropy", metrics=["acc"])
    history = model.fit(d["x"], d["y_onehot"], batch_size=32, epochs=3, shuffle=False, verbose=0)
    RESULT[name] = {"loss": history.history["loss"], "weights": model.get_weights()}
