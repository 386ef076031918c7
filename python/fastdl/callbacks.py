"""Callbacks, Keras's names and hooks: History, EarlyStopping, ModelCheckpoint,
LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN, LambdaCallback,
BackupAndRestore, and ProgbarLogger (the progress bar fit() shows with verbose)."""

import json
import math
import os
import sys
import time
import warnings

import numpy as np

from .optim import schedules as _schedules


class Callback:
    """Hooks called by fit() (train), evaluate() (test) and predict() (predict), Keras's names;
    `self.model` is the model. Set `model.stop_training = True` to stop after the current batch."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass


def _overrides(cb, hook):
    """Whether cb does something at `hook` (a method of its class, or a LambdaCallback's function)."""
    return getattr(type(cb), hook) is not getattr(Callback, hook) or hook in cb.__dict__


class CallbackList:
    """Calls every callback's hook in order. Batch hooks run only for callbacks that define
    them, so an epoch of small batches pays for none it does not use."""

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(params)
        self.batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_end")]
        self.batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_train_batch_begin")]
        self.test_batch_end = [cb for cb in self.callbacks if _overrides(cb, "on_test_batch_end")]
        self.test_batch_begin = [cb for cb in self.callbacks if _overrides(cb, "on_test_batch_begin")]

    def __getattr__(self, hook):
        def call(*args):
            for cb in self.callbacks:
                getattr(cb, hook)(*args)
        return call


class History(Callback):
    """Records each epoch's logs: history.history = {'loss': [...], 'accuracy': [...], ...}."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []  # as Keras: fit() makes a new History; one passed in again keeps its history dict

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)


def _monitor_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        mode = "max" if any(s in monitor for s in ("acc", "precision", "recall", "f1", "auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stops training when `monitor` has not improved by more than min_delta for `patience`
    epochs (or, with a baseline, has not beaten it within `patience` epochs); restore_best_weights
    puts back the weights of the best epoch."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor, self.min_delta, self.patience = monitor, abs(float(min_delta)), int(patience)
        self.verbose, self.mode = verbose, _monitor_mode(monitor, mode)
        self.baseline, self.restore_best_weights = baseline, bool(restore_best_weights)
        self.start_from_epoch = int(start_from_epoch)

    def _better(self, value, reference):
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = 0
        self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping monitors {self.monitor!r} but the logs have {sorted(logs or {})}")
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # the best so far, but patience restarts only once the baseline is beaten too (Keras)
            if self.baseline is None or self._better(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            _say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                _say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Saves the model (model.save) after each epoch, to filepath formatted with the epoch and
    the logs ('model-{epoch:02d}-{val_loss:.3f}.fastdl'); save_best_only keeps the best
    `monitor` value only."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.mode = bool(save_best_only), _monitor_mode(monitor, mode)
        self.save_weights_only = bool(save_weights_only)
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"save_freq must be 'epoch' or a positive number of batches, got {save_freq!r}")
        self.save_freq = save_freq
        self.best = initial_value_threshold if initial_value_threshold is not None else \
            (math.inf if self.mode == "min" else -math.inf)
        self._batches = 0
        self._epoch = 0
        if save_freq != "epoch":  # a batch hook only then: batch-end logs cost a GPU model a wait
            self.on_train_batch_end = self._on_batch

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def _on_batch(self, batch, logs=None):
        self._batches += 1
        if self._batches % self.save_freq == 0:  # every save_freq batches, counted across epochs
            self._save(self._epoch, dict(logs or {}, batch=batch + 1))

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, logs or {})

    def _save(self, epoch, logs):
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            value = logs.get(self.monitor)
            if value is None:
                raise KeyError(f"ModelCheckpoint monitors {self.monitor!r} but the logs have {sorted(logs)}")
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            if self.verbose and _writes():
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to {value:.5f}, saving to {path}")
            self.best = value
        if not _writes():
            return
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of each epoch to schedule(epoch, lr)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = float(self.schedule(epoch, float(self.model.optimizer.lr)))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"the schedule returned learning rate {lr} for epoch {epoch}")
        self.model.optimizer.lr = lr
        if self.verbose:
            _say(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.lr)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` has not improved by more than
    min_delta for `patience` epochs, then waits `cooldown` epochs, never going below min_lr
    (Keras's ReduceLROnPlateau; mode 'auto' maximises a monitor with 'acc' in its name)."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if not 0 <= float(factor) < 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0 or < 0, got {factor}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor, self.factor, self.patience, self.verbose = monitor, float(factor), int(patience), verbose
        self.min_delta, self.cooldown, self.min_lr = float(min_delta), int(cooldown), float(min_lr)
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode

    def _better(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        if isinstance(optimizer.hyperparams.get("lr"), _schedules.Schedule):
            raise TypeError("ReduceLROnPlateau sets the learning rate; the optimizer's is a schedule")
        logs["learning_rate"] = float(optimizer.lr)
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"ReduceLROnPlateau conditioned on {self.monitor!r}, which is not in the logs "
                          f"({sorted(logs)}): skipping", stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._better(value):
            self.best, self.wait = value, 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.lr)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    optimizer.lr = new
                    if self.verbose:
                        _say(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class TerminateOnNaN(Callback):
    """Stops training at the first batch whose running loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            _say(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ..., ...), any of
    the hooks (on_train_begin, on_epoch_begin, on_train_batch_end, on_test_end, ...)."""

    def __init__(self, **hooks):
        super().__init__()
        for name, fn in hooks.items():
            if not name.startswith("on_") or not hasattr(Callback, name):
                raise TypeError(f"LambdaCallback got {name!r}, which is not a callback hook")
            if fn is not None:
                setattr(self, name, fn)


class CSVLogger(Callback):
    """Writes each epoch's logs to a CSV file: a header 'epoch' + the log keys (sorted, as Keras),
    then a row per epoch; append=True goes on after an existing file's rows. The file is rewritten
    whole after each epoch (a temporary file renamed over it), so a crash never leaves a torn row."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename, self.sep, self.append = str(filename), separator, bool(append)

    def on_train_begin(self, logs=None):
        self.keys, self.rows = None, []
        self.head = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8") as f:
                self.head = f.read()
            first = self.head.splitlines()[0] if self.head.strip() else ""
            self.keys = first.split(self.sep)[1:] if first else None

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self.keys is None:
            self.keys = sorted(logs)
            self.rows.append(self.sep.join(["epoch"] + self.keys))
        self.rows.append(self.sep.join([str(epoch)] + [_csv_value(logs.get(k, "NA")) for k in self.keys]))
        text = self.head + "".join(row + "\n" for row in self.rows)
        if not _writes():
            return
        from . import _files
        _files.atomic_write(self.filename, lambda f: f.write(text.encode("utf-8")))


def _writes():
    """Whether this process writes files: always, but in a data-parallel job only rank 0 does (the
    others hold the same weights and logs)."""
    from .distributed import rank
    return rank() == 0


def _say(*args, **kwargs):
    """print, on rank 0 only in a data-parallel job (every process takes the same decisions)."""
    if _writes():
        print(*args, **kwargs)


def _from_chief(value):
    """Rank 0's value on every process of a data-parallel job (value itself in one process)."""
    from . import distributed
    if distributed.size() == 1:
        return value
    return distributed.context().comm.bcast(value, root=0)


def _csv_value(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


class BackupAndRestore(Callback):
    """Backs the training up into backup_dir at the end of every epoch (the model with its optimizer
    state, and the epoch); a fit that finds a backup there restores it and goes on from the next
    epoch, so an interrupted run resumes where it stopped. The backup is deleted when fit ends
    normally (delete_checkpoint=True)."""

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if save_freq != "epoch":
            raise NotImplementedError("BackupAndRestore backs up at each epoch's end (save_freq='epoch')")
        self.backup_dir, self.delete_checkpoint = str(backup_dir), bool(delete_checkpoint)
        self.model_path = os.path.join(self.backup_dir, "latest.fastdl")
        self.epoch_path = os.path.join(self.backup_dir, "training_metadata.json")

    def on_train_begin(self, logs=None):
        # data-parallel: rank 0 reads its backup and every process takes it (the others' disks may not have it)
        backup = _from_chief(self._read_backup() if _writes() else None)
        if backup is not None:
            epoch, weights, optimizer_state = backup
            self.model.set_weights(weights)
            if optimizer_state is not None:
                self.model.optimizer.load_state_dict(optimizer_state)
            self.model._resume_epoch = epoch + 1  # fit goes on from the epoch after the backup

    def _read_backup(self):
        """(epoch, weights, optimizer state or None) of the backup, or None without one."""
        if not (os.path.exists(self.model_path) and os.path.exists(self.epoch_path)):
            return None
        from . import saving
        with open(self.epoch_path, encoding="utf-8") as f:
            epoch = int(json.load(f)["epoch"])
        saved = saving.load_model(self.model_path)
        optimizer_state = None
        if saved.optimizer is not None and self.model.optimizer is not None:
            optimizer_state = saved.optimizer.state_dict()
        return epoch, saved.get_weights(), optimizer_state

    def on_epoch_end(self, epoch, logs=None):
        if not _writes():
            return
        from . import _files
        os.makedirs(self.backup_dir, exist_ok=True)
        self.model.save(self.model_path)
        payload = json.dumps({"epoch": int(epoch)}).encode("utf-8")
        _files.atomic_write(self.epoch_path, lambda f: f.write(payload))

    def on_train_end(self, logs=None):
        if self.delete_checkpoint and _writes():
            for path in (self.model_path, self.epoch_path):
                if os.path.exists(path):
                    os.remove(path)


class ProgbarLogger(Callback):
    """Keras's progress output. verbose=1: a live bar with the running loss and metrics and an
    ETA, redrawn in place (at most 10 times a second) when the stream is a terminal; when it
    is not (a log file, CI), one line per epoch and no carriage returns. verbose=2: one line
    per epoch."""

    def __init__(self, verbose=1, stream=None, width=30):
        super().__init__()
        self.verbose, self.stream, self.width = verbose, stream, width

    def _out(self):
        return self.stream or sys.stdout

    def on_train_begin(self, logs=None):
        out = self._out()
        self.live = self.verbose == 1 and hasattr(out, "isatty") and out.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            self._write(f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}\n")
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, step, logs_fn):
        """Called by fit after each batch (steps counted from 1); logs_fn() builds the running logs."""
        if not self.live:
            return
        now = time.perf_counter()
        total = self.params.get("steps")
        if now - self.last_draw < 0.1 and step != total:
            return
        self.last_draw = now
        elapsed = now - self.start
        eta = elapsed / step * (total - step) if total else 0.0
        self._write("\r" + self._bar(step, total) + f" - ETA: {_duration(eta)}" + _format_logs(logs_fn()) + "\x1b[K")

    def on_epoch_end(self, epoch, logs=None):
        if not self.verbose:
            return
        total = self.params.get("steps") or 0
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(total, 1)
        timing = f"{_duration(elapsed)} {per_step * 1e3:.0f}ms/step" if per_step >= 1e-3 else \
            f"{_duration(elapsed)} {per_step * 1e6:.0f}us/step"
        if self.verbose == 1:
            self._write(("\r" if self.live else "") + self._bar(total, total) + f" - {timing}" + _format_logs(logs)
                        + ("\x1b[K" if self.live else "") + "\n")
        else:
            self._write(f"{total}/{total} - {timing}" + _format_logs(logs) + "\n")

    def _bar(self, step, total):
        if not total:
            return f"{step}"
        digits = len(str(total))
        done = int(round(self.width * step / total))
        return f"{step:>{digits}}/{total} " + "━" * done + "─" * (self.width - done)

    def _write(self, text):
        out = self._out()
        out.write(text)
        out.flush()


def _duration(seconds):
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds * 1e3:.0f}ms"


def _format_logs(logs):
    parts = []
    for k, v in (logs or {}).items():
        if isinstance(v, (float, int, np.floating)):
            parts.append(f"{k}: {v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{k}: {v:.4e}")
    return "".join(" - " + p for p in parts)
