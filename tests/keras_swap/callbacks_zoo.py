# Keras's callbacks: ReduceLROnPlateau (the learning rate in the logs), CSVLogger, LambdaCallback,
# TerminateOnNaN, ModelCheckpoint(save_weights_only), EarlyStopping, on_test_* from evaluate.
import csv
import os
import tempfile

import numpy as np
import keras
from keras import callbacks, layers

d = np.load(DATA)
x, labels = d["x"], d["y"]
model = keras.Sequential([keras.Input((20,)), layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])
model.set_weights([d["w16x20"], d["b16"], d["w4x16"], d["b4"]])
model.compile(optimizer=keras.optimizers.SGD(0.3), loss="sparse_categorical_crossentropy", metrics=["acc"])
seen = []
tmp = tempfile.mkdtemp()
log = os.path.join(tmp, "log.csv")
cbs = [callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=0.05, min_lr=0.01),
       callbacks.CSVLogger(log),
       callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append((epoch, round(logs["loss"], 5)))),
       callbacks.TerminateOnNaN(),
       callbacks.ModelCheckpoint(os.path.join(tmp, "w{epoch}.weights.npz" if "fastdl" in keras.__name__
                                              else "w{epoch}.weights.h5"), save_weights_only=True),
       callbacks.EarlyStopping(monitor="val_acc", patience=2, mode="max")]
history = model.fit(x, labels, batch_size=64, epochs=8, shuffle=False, verbose=0, validation_split=0.25, callbacks=cbs)
with open(log) as f:
    rows = list(csv.DictReader(f))
tested = []
model.evaluate(x, labels, verbose=0, callbacks=[callbacks.LambdaCallback(
    on_test_begin=lambda logs: tested.append("begin"), on_test_end=lambda logs: tested.append("end"))])
RESULT = {"history": history.history, "weights": model.get_weights(), "lambda": [list(s) for s in seen],
          "csv_columns": [len(rows[0])], "csv_loss": [float(r["loss"]) for r in rows],
          "csv_lr": [float(r["learning_rate"]) for r in rows], "csv_epochs": [int(r["epoch"]) for r in rows],
          "checkpoints": [len(os.listdir(tmp)) - 1], "test_hooks": [len(tested)]}
