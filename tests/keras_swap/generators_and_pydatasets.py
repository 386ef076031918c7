# Data given batch by batch: a Python generator with steps_per_epoch, a PyDataset (with
# on_epoch_end), validation_data as a PyDataset with validation_steps and validation_freq,
# evaluate and predict on PyDatasets; arrays with steps_per_epoch and validation_batch_size.
import numpy as np
import keras
from keras import layers

d = np.load(DATA)
x, labels = d["x"], d["y"]


class Batches(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size, self.epochs_seen = x, y, batch_size, 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        if self.y is None:
            return self.x[s]
        return self.x[s], self.y[s]

    def on_epoch_end(self):
        self.epochs_seen += 1


def batches_forever(batch_size):
    i = 0
    while True:
        start = (i * batch_size) % (len(x) - batch_size)
        yield x[start:start + batch_size], labels[start:start + batch_size]
        i += 1


def mlp():
    model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"),
                              layers.Dense(4, activation="softmax")])
    model.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model


RESULT = {}
gen = mlp()
h = gen.fit(batches_forever(32), steps_per_epoch=5, epochs=3, verbose=0)
RESULT["generator"] = {"history": h.history, "weights": gen.get_weights()}

ds_model = mlp()
train, val = Batches(x[:300], labels[:300], 40), Batches(x[300:], labels[300:], 25)
h = ds_model.fit(train, validation_data=val, validation_steps=3, validation_freq=2, epochs=4, verbose=0,
                 shuffle=False)
RESULT["pydataset"] = {"history": h.history, "weights": ds_model.get_weights(), "epochs_seen": train.epochs_seen,
                       "evaluate": ds_model.evaluate(val, verbose=0, return_dict=True),
                       "predict": ds_model.predict(Batches(x[:70], None, 30), verbose=0)}

arrays = mlp()
h = arrays.fit(x, labels, batch_size=32, steps_per_epoch=5, epochs=4, shuffle=False, verbose=0,
               validation_split=0.25, validation_batch_size=17)
RESULT["steps_per_epoch"] = {"history": h.history, "weights": arrays.get_weights(),
                             "evaluate_steps": arrays.evaluate(x, labels, batch_size=50, steps=3, verbose=0)}
