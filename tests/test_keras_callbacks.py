"""Keras's callbacks that issue #11 adds, where Keras is not needed to judge them: a run resumed by
BackupAndRestore equals an uninterrupted one, save_weights / load_weights, CSVLogger's append and
atomic rewrite, ModelCheckpoint every n batches, LambdaCallback and ReduceLROnPlateau errors.
Their values beside Keras 3's: tests/keras_swap/callbacks_zoo.py."""

import numpy as np
import pytest

import fastdl as keras
from fastdl import callbacks


def _model():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)])
    m.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return m


def _data():
    rng = np.random.default_rng(1)
    return rng.standard_normal((64, 5)).astype(np.float32), rng.standard_normal((64, 3)).astype(np.float32)


class Crash(callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt("the machine went away")


def test_backup_and_restore_resumes_an_interrupted_run_exactly(tmp_path):
    x, y = _data()
    whole = _model()
    whole.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    run = _model()
    backup = callbacks.BackupAndRestore(tmp_path / "backup")
    with pytest.raises(KeyboardInterrupt):
        run.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0, callbacks=[backup, Crash(at=2)])
    again = _model()  # a new process would build the model afresh
    hist = again.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0, callbacks=[backup])
    assert len(hist.history["loss"]) == 2  # epochs 3 and 4 only
    for a, b in zip(again.get_weights(), whole.get_weights()):
        np.testing.assert_array_equal(a, b)  # the momentum buffers came back too
    assert not (tmp_path / "backup" / "latest.fastdl").exists()  # deleted at the end


def test_save_and_load_weights(tmp_path):
    x, y = _data()
    a, b = _model(), _model()
    a.fit(x, y, verbose=0)
    a.save_weights(tmp_path / "a.weights.npz")
    b.load_weights(tmp_path / "a.weights.npz")
    for u, v in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(u, v)
    a.save_weights(tmp_path / "a.weights.h5")  # Keras's layout (tests/test_keras_file.py)
    assert (tmp_path / "a.weights.h5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    with pytest.raises(FileExistsError):
        a.save_weights(tmp_path / "a.weights.npz", overwrite=False)
    other = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4)])
    with pytest.raises(ValueError, match="its weights have shapes"):
        other.load_weights(tmp_path / "a.weights.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastdl weights file"):
        b.load_weights(tmp_path / "junk.npz")


def test_csv_logger_appends_and_checkpoints_every_n_batches(tmp_path):
    x, y = _data()
    m = _model()
    log = tmp_path / "log.csv"
    m.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.CSVLogger(log)])
    m.fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.CSVLogger(log, append=True)])
    lines = log.read_text().splitlines()
    assert lines[0] == "epoch,loss" and [line.split(",")[0] for line in lines[1:]] == ["0", "1", "0"]
    ck = callbacks.ModelCheckpoint(str(tmp_path / "b{batch}.weights.npz"), save_weights_only=True, save_freq=3)
    m.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[ck])  # 8 batches: saves after 3 and 6
    saved = sorted(p.name for p in tmp_path.glob("b*.weights.npz"))
    assert saved == ["b2.weights.npz", "b3.weights.npz"]  # the batch of its epoch (1-based) in the name


def test_lambda_callback_and_reduce_lr_errors():
    with pytest.raises(TypeError, match="not a callback hook"):
        callbacks.LambdaCallback(on_epoch_ends=print)
    with pytest.raises(ValueError, match="factor"):
        callbacks.ReduceLROnPlateau(factor=1.5)
    x, y = _data()
    m = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    m.compile(keras.optimizers.SGD(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)), "mse")
    with pytest.raises(TypeError, match="schedule"):
        m.fit(x, y, verbose=0, callbacks=[callbacks.ReduceLROnPlateau(monitor="loss")])
    stops = []
    m2 = _model()
    m2.fit(x, y * np.inf, verbose=0, epochs=3, callbacks=[callbacks.TerminateOnNaN(),
                                                          callbacks.LambdaCallback(on_train_end=stops.append)])
    assert m2.stop_training and len(stops) == 1
