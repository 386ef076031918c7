"""Callbacks and the progress bar."""

import io

import numpy as np
import pytest

import fastdl
from fastdl import callbacks, layers, models


def _problem(rng):
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    fastdl.set_seed(0)
    model = models.Sequential([layers.Dense(8, "relu", input_shape=(4,)), layers.Dense(1, "sigmoid")])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    return model, x, y


class Recorder(callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.events = []

    def on_train_begin(self, logs=None): self.events.append("train_begin")
    def on_epoch_begin(self, epoch, logs=None): self.events.append(f"epoch_begin {epoch}")
    def on_train_batch_end(self, batch, logs=None): self.events.append(f"batch {batch} {sorted(logs)}")
    def on_epoch_end(self, epoch, logs=None): self.events.append(f"epoch_end {epoch} {sorted(logs)}")
    def on_train_end(self, logs=None): self.events.append("train_end")


def test_hooks_order_and_logs(rng):
    model, x, y = _problem(rng)
    rec = Recorder()
    model.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[rec], validation_split=0.25)
    assert rec.events[0] == "train_begin" and rec.events[-1] == "train_end"
    assert rec.events[1:5] == ["epoch_begin 0", "batch 0 ['accuracy', 'loss']", "batch 1 ['accuracy', 'loss']",
                               "epoch_end 0 ['accuracy', 'loss', 'val_accuracy', 'val_loss']"]
    assert rec.model is model and rec.params["epochs"] == 2 and rec.params["steps"] == 2


def test_early_stopping_restores_best_weights(rng):
    model, x, y = _problem(rng)
    snapshots = []

    class Snapshot(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append((logs["val_loss"], model.get_weights()))

    # learning rate far too high: the validation loss soon stops improving
    model.compile(fastdl.optimizers.SGD(learning_rate=5.0), "binary_crossentropy")
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    hist = model.fit(x, y, epochs=50, verbose=0, validation_data=(x, y), callbacks=[Snapshot(), stop])
    assert len(hist.history["loss"]) < 50 and stop.stopped_epoch > 0
    best_loss, best_weights = min(snapshots, key=lambda s: s[0])
    assert stop.best == best_loss
    for a, b in zip(model.get_weights(), best_weights):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_save_best_only(tmp_path, rng):
    model, x, y = _problem(rng)
    path = tmp_path / "best-{epoch:02d}.fastdl"
    ck = callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True)
    snapshots = []

    class Snapshot(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(model.get_weights())

    hist = model.fit(x, y, epochs=4, verbose=0, callbacks=[Snapshot(), ck])
    losses = hist.history["loss"]
    saved = sorted(p.name for p in tmp_path.iterdir())
    expected = [f"best-{e + 1:02d}.fastdl" for e in range(4) if losses[e] == min(losses[:e + 1])]
    assert saved == expected
    reloaded = models.load_model(tmp_path / saved[-1])
    best = int(np.argmin(losses))
    assert saved[-1] == f"best-{best + 1:02d}.fastdl"
    for a, b in zip(reloaded.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(a, b)


def test_learning_rate_scheduler(rng):
    model, x, y = _problem(rng)
    seen = []

    def schedule(epoch, lr):
        seen.append(lr)
        return 0.1 / (epoch + 1)

    hist = model.fit(x, y, epochs=3, verbose=0, callbacks=[callbacks.LearningRateScheduler(schedule)])
    assert seen[0] == pytest.approx(0.001)
    assert hist.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.1 / 3])
    assert model.optimizer.lr == pytest.approx(0.1 / 3)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _progress(stream, verbose, rng):
    model, x, y = _problem(rng)
    bar = callbacks.ProgbarLogger(verbose, stream=stream)
    bar.set_params({"epochs": 2, "steps": 2})
    bar.on_train_begin()
    for epoch in range(2):
        bar.on_epoch_begin(epoch)
        for step in (1, 2):
            bar.update(step, lambda: {"loss": 0.5, "accuracy": 0.75})
        bar.on_epoch_end(epoch, {"loss": 0.5, "accuracy": 0.75})
    return stream.getvalue()


def test_progress_bar_live_on_a_terminal(rng):
    out = _progress(FakeTTY(), 1, rng)
    assert "\r" in out and "ETA" in out and "Epoch 2/2" in out and "loss: 0.5000" in out
    assert out.count("\n") == 4


def test_progress_bar_plain_when_not_a_terminal(rng):
    out = _progress(io.StringIO(), 1, rng)
    assert "\r" not in out and "ETA" not in out and "\x1b" not in out
    assert out.splitlines()[1].startswith("2/2 ━") and "accuracy: 0.7500" in out


def test_verbose_2_is_one_line_per_epoch(rng):
    out = _progress(FakeTTY(), 2, rng)
    lines = out.splitlines()
    assert len(lines) == 4 and lines[1].startswith("2/2 - ") and "\r" not in out


def test_fit_verbose_0_prints_nothing(rng, capsys):
    model, x, y = _problem(rng)
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""


def test_early_stopping_baseline_gates_patience_but_best_is_the_real_best(rng):
    model, x, y = _problem(rng)
    values = iter([0.9, 0.8, 0.85, 0.7, 0.6])

    class FakeLoss(callbacks.Callback):  # runs before EarlyStopping: sets the monitored value
        def on_epoch_end(self, epoch, logs=None):
            logs["val_loss"] = next(values)

    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, baseline=0.1)
    hist = model.fit(x, y, epochs=5, verbose=0, callbacks=[FakeLoss(), stop])
    # never below the baseline, so patience runs from the start: the first epoch without an
    # improvement after two stops training (Keras's rule); best is the real best, not the baseline
    assert len(hist.history["loss"]) == 3 and stop.best == pytest.approx(0.8) and stop.best_epoch == 1
    values = iter([0.9, 0.8, 0.85, 0.7, 0.6])
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2)
    hist = model.fit(x, y, epochs=5, verbose=0, callbacks=[FakeLoss(), stop])
    assert len(hist.history["loss"]) == 5 and stop.best == pytest.approx(0.6)
