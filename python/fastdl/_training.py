"""The loops of fit, evaluate and predict (and their *_on_batch forms), over a batch source
(fastdl/_sources.py), for a Sequential model: the model holds the structure and one step's work
(_forward, _train_step, _metric_inputs); this module holds the epochs, the batches, the callbacks
and the logs. The model's locks are taken by its public methods before these run."""

import functools

import numpy as np

from . import _blas_threads, _feed, _random, callbacks as callbacks_module
from ._checks import on_device
from .distributed import _strategy
from ._sources import ArraySource, IteratorSource, is_batch_source, sample_weights, split_arrays, steps_argument


def _one_thread_pool(loop):
    """Runs a loop on the CPU with one thread pool busy at a time (fastdl/_blas_threads.py: NumPy's
    BLAS and fastdl's kernels, both spinning, slowed a CNN's fit 4x): the BLAS's for a model of
    matmuls, the kernels' for one with an Embedding."""
    @functools.wraps(loop)
    def run(model, *args):
        if model._device is not None and model._device.kind != "cpu":
            return loop(model, *args)
        kernel_bound = any(type(layer).__name__ == "Embedding" for layer in model._compute_layers)
        with _blas_threads.one_thread_pool_in_loops(kernel_bound):
            return loop(model, *args)
    return run


def _batch_size(value, default=32, name="batch_size"):
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _array_source(model, x, y, sample_weight, class_weight, batch_size, **kw):
    x, y_loss, y_raw = model._prepare(x, y)
    w = sample_weights(sample_weight, class_weight, y_raw, len(x))
    return ArraySource(model, x, y_loss, y_raw, w, batch_size, **kw)


def _feed_metrics(model, feed, keep_batch, y_raw, out, truths, w):
    feed.update(model._metric_inputs(y_raw, out, truths, w, keep_batch, feed.deferred))


@_one_thread_pool
def fit(model, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
        class_weight, sample_weight, initial_epoch, steps_per_epoch, validation_steps, validation_batch_size,
        validation_freq, augment):
    model._require_compiled()
    batch_size = _batch_size(batch_size)
    steps_per_epoch = steps_argument(steps_per_epoch, "steps_per_epoch")
    validation_steps = steps_argument(validation_steps, "validation_steps")
    if isinstance(validation_freq, bool) or not isinstance(validation_freq, (int, np.integer)) or validation_freq < 1:
        raise ValueError(f"validation_freq must be a positive int (validate every n epochs), got {validation_freq!r}")
    if verbose == "auto":
        verbose = 1
    if not 0.0 <= float(validation_split) < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    rng = _random.generator()
    dev = model._device
    strategy = _strategy.current()
    model._readings = model._metric_readings()
    if is_batch_source(x):
        if y is not None or sample_weight is not None:
            raise ValueError("x is a generator / PyDataset: it gives y (and sample weights) itself; pass y=None")
        if validation_split:
            raise ValueError("validation_split needs arrays: give a generator's validation batches as validation_data")
        rng = strategy.begin(model, rng)  # data-parallel: rank 0's weights, one epoch order for all
        source = IteratorSource(model, x, steps_per_epoch, class_weight, shuffle=shuffle, rng=rng,
                                continuing=steps_per_epoch is not None, training=True, strategy=strategy)
        val = None
    else:
        if y is None:
            raise ValueError("fit needs targets: fit(x, y) with arrays, or a generator / PyDataset giving (x, y)")
        x, y_loss, y_raw = model._prepare(x, y)
        w = sample_weights(sample_weight, class_weight, y_raw, len(x))
        val = None
        if validation_data is None and validation_split:
            cut = int(len(x) * (1.0 - float(validation_split)))
            if cut in (0, len(x)):
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples")
            val = (x[cut:], y_loss[cut:], y_raw[cut:] if y_raw is not y_loss else y_loss[cut:],
                   None if w is None else w[cut:])
            same = y_raw is y_loss
            x, y_loss, y_raw, w = x[:cut], y_loss[:cut], y_raw[:cut], None if w is None else w[:cut]
            if same:
                y_raw = y_loss  # one array still: no extra take per batch for value metrics
        if len(x) == 0:
            raise ValueError("x has no samples")
        rng = strategy.begin(model, rng)  # data-parallel: rank 0's weights, one epoch order for all
        source = ArraySource(model, x.get() if augment is not None and on_device(x) else x, y_loss, y_raw, w,
                             batch_size, shuffle=shuffle, steps=steps_per_epoch, rng=rng,
                             continuing=steps_per_epoch is not None, x_on_host=augment is not None,
                             strategy=strategy)
    val_batch_size = _batch_size(validation_batch_size, batch_size, "validation_batch_size")
    if validation_data is not None:
        if is_batch_source(validation_data):
            val_source = IteratorSource(model, validation_data, validation_steps, where="validation_data",
                                        strategy=strategy)
        else:
            vx, vy, vw = split_arrays(validation_data, "validation_data")
            val_source = _array_source(model, vx, vy, vw, None, val_batch_size, steps=validation_steps,
                                       strategy=strategy)
    elif val is not None:
        vx, vy, vraw, vw = val
        val_source = ArraySource(model, vx, vy, vraw, vw, val_batch_size, steps=validation_steps, strategy=strategy)
    else:
        val_source = None

    strategy.check_same("fit", samples=getattr(source, "n", None), steps=source.steps, epochs=epochs,
                        initial_epoch=initial_epoch, validation_freq=validation_freq,
                        validation=None if val_source is None else (getattr(val_source, "n", None), val_source.steps))
    model._grad_buffers = {}
    model._sync_trainable()
    model._backward_plan = model._plan_backward()
    model._backward_layers = {layer for layer, _ in model._backward_plan}
    model._data_parallel = parallel = strategy if strategy.data_parallel else None
    model._regularization()
    history = callbacks_module.History()
    progbar = callbacks_module.ProgbarLogger(verbose) if verbose and strategy.is_chief else None
    cb_list = callbacks_module.CallbackList(list(callbacks or []) + [history] + ([progbar] if progbar else []),
                                            model, {"epochs": epochs, "steps": source.steps, "verbose": verbose})
    model.history = history
    model.stop_training = False
    feed = _feed.MetricFeed(dev.defers_reads)
    keep_batch = feed.deferred and getattr(getattr(source, "batches", None), "reuses_buffers", False)

    model._resume_epoch = None
    cb_list.on_train_begin({})
    if model._resume_epoch is not None:  # BackupAndRestore found a backup: go on after its epoch
        initial_epoch = model._resume_epoch
    logs = {}
    try:
        with dev.activate():
            for epoch in range(initial_epoch, epochs):
                cb_list.on_epoch_begin(epoch, {})
                for m in model.metrics:
                    m.reset_state()
                total_loss = _feed.LossSum()

                def running_logs():
                    feed.flush()
                    out = {"loss": total_loss.mean()}
                    out.update((m.name, m.result()) for m in model.metrics)
                    return out

                def epoch_logs():  # data-parallel: the job's loss and metrics, the same on every process
                    if parallel is None:
                        return running_logs()
                    strategy.average_states(model)
                    feed.flush()
                    strategy.reduce_metrics(model.metrics)
                    out = {"loss": strategy.reduce_loss(total_loss.mean(), total_loss.rows)}
                    out.update((m.name, m.result()) for m in model.metrics)
                    return out

                step = -1
                for step, (xb, yb, y_raw_b, truths_b, wb) in enumerate(source.epoch()):
                    if augment is not None and len(xb):
                        xb = np.ascontiguousarray(augment(xb), dtype=np.float32)
                        if xb.shape[1:] != model._input_shape:
                            raise ValueError(f"augment returned batches of shape {xb.shape}; the model takes "
                                             f"(batch,) + {model._input_shape}")
                        xb = dev.put(xb)
                    for cb in cb_list.batch_begin:
                        cb.on_train_batch_begin(step, {})
                    with model._compute_lock:  # `out` is a layer buffer: read it before another thread runs
                        if parallel is not None:
                            model._global_rows = source.global_rows
                        loss, out = model._train_step(xb, yb, wb)
                        if model.metrics and (parallel is None or len(xb)):
                            feed.update(model._metric_inputs(y_raw_b, out, truths_b, wb, keep_batch, feed.deferred))
                    total_loss.add(loss, len(xb))
                    if progbar is not None:
                        progbar.update(step + 1, running_logs)
                    for cb in cb_list.batch_end:
                        cb.on_train_batch_end(step, running_logs())
                    if parallel is not None:  # one process's stop stops all (every batch: the callbacks
                        model.stop_training = strategy.any(model.stop_training)  # may differ by rank)
                    if model.stop_training:  # a callback may stop mid-epoch, as in Keras
                        break
                if getattr(source, "exhausted", False) and step < 0:
                    break  # the input ran out before this epoch (warned): training stops, as Keras's
                logs = epoch_logs()
                if val_source is not None and (epoch + 1 - initial_epoch) % validation_freq == 0:
                    val_logs = run_evaluation(model, val_source)
                    logs.update(("val_" + k, v) for k, v in val_logs.items())
                cb_list.on_epoch_end(epoch, logs)
                if parallel is not None:
                    model.stop_training = strategy.any(model.stop_training)
                if model.stop_training or getattr(source, "exhausted", False):
                    break
    finally:
        model._end_run()
        model._data_parallel = None
        strategy.end()
    if epochs > 0:
        model._finalize_ema()  # use_ema: the weights become their moving average, as Keras's fit ends
    cb_list.on_train_end(logs)
    return history


def run_evaluation(model, source, cb_list=None):
    """Mean loss and metrics over a source's batches (the metrics reset first). Inside fit (a
    validation pass, or a callback's evaluate) fit's regularization state is put back after."""
    for m in model.metrics:
        m.reset_state()
    model._readings = model._metric_readings()
    dev = model._device
    feed = _feed.MetricFeed(dev.defers_reads)
    keep_batch = feed.deferred and getattr(getattr(source, "batches", None), "reuses_buffers", False)
    total, grad_buffers = _feed.LossSum(), {}
    fit_state = (model._activity_outputs, model._weight_penalties, model._constraints, model._regularized)
    model._regularization()
    test_begin = cb_list.test_batch_begin if cb_list is not None else ()
    test_end = cb_list.test_batch_end if cb_list is not None else ()
    try:
        with dev.activate():
            weight_penalty = model._weight_penalty()  # the weights do not change in evaluate
            for step, (xb, yb, y_raw_b, truths_b, wb) in enumerate(source.epoch()):
                if not len(xb):  # data-parallel: this process has no rows of a small last batch
                    continue
                for cb in test_begin:
                    cb.on_test_batch_begin(step, {})
                with model._compute_lock:
                    out = model._forward(xb, False, model._fused)
                    grad = grad_buffers.get(out.shape)
                    if grad is None:
                        grad = grad_buffers[out.shape] = dev.xp.empty(out.shape, dtype=np.float32)
                    loss = model._loss_value(yb, out, grad, wb)
                    if model._weight_penalties or model._activity_outputs:  # as Keras, the loss includes them
                        loss = loss + weight_penalty + (model._output_penalty(len(xb)) if model._activity_outputs
                                                        else 0.0)
                    if model.metrics:
                        _feed_metrics(model, feed, keep_batch, y_raw_b, out, truths_b, wb)
                total.add(loss, len(xb))
                for cb in test_end:
                    feed.flush()
                    cb.on_test_batch_end(step, {"loss": total.mean(), **{m.name: m.result() for m in model.metrics}})
            feed.flush()
            shard = getattr(source, "shard", None)
            if shard is None:
                logs = {"loss": total.mean()}
            else:  # data-parallel: each process evaluated its share; the job's loss and metrics
                shard.reduce_metrics(model.metrics)
                logs = {"loss": shard.reduce_loss(total.mean(), total.rows)}
    finally:
        model._end_run()
        if model._fitting:  # a validation pass (or a callback's evaluate) inside fit: fit's state back
            model._activity_outputs, model._weight_penalties, model._constraints, model._regularized = fit_state
    logs.update((m.name, m.result()) for m in model.metrics)
    return logs


@_one_thread_pool
def evaluate(model, x, y, batch_size, verbose, sample_weight, steps, callbacks):
    model._require_compiled()
    batch_size = _batch_size(batch_size)
    steps = steps_argument(steps, "steps")
    model._readings = model._metric_readings()
    if is_batch_source(x):
        if y is not None or sample_weight is not None:
            raise ValueError("x is a generator / PyDataset: it gives y (and sample weights) itself; pass y=None")
        source = IteratorSource(model, x, steps, strategy=_strategy.current())
    else:
        if y is None:
            raise ValueError("evaluate needs targets: evaluate(x, y), or a generator / PyDataset giving (x, y)")
        source = _array_source(model, x, y, sample_weight, None, batch_size, steps=steps,
                               strategy=_strategy.current())
    _strategy.current().check_same("evaluate", samples=getattr(source, "n", None), steps=source.steps)
    cb_list = callbacks_module.CallbackList(list(callbacks or []), model, {"steps": source.steps, "verbose": verbose})
    cb_list.on_test_begin({})
    logs = run_evaluation(model, source, cb_list)
    cb_list.on_test_end(logs)
    if verbose and _strategy.current().is_chief:
        n = source.steps if source.steps is not None else "?"
        print(f"{n}/{n}" + callbacks_module._format_logs(logs))
    return logs


@_one_thread_pool
def predict(model, x, batch_size, verbose, steps, callbacks):
    """Outputs as a NumPy array: arrays batch by batch (gathered on a GPU and copied back once when
    they fit there), or a generator's / PyDataset's batches concatenated."""
    batch_size = _batch_size(batch_size)
    steps = steps_argument(steps, "steps")
    cb_list = callbacks_module.CallbackList(list(callbacks or []), model, {"steps": steps, "verbose": verbose})
    batch_begin = [cb for cb in cb_list.callbacks if callbacks_module._overrides(cb, "on_predict_batch_begin")]
    batch_end = [cb for cb in cb_list.callbacks if callbacks_module._overrides(cb, "on_predict_batch_end")]
    cb_list.on_predict_begin({})
    if model.built:
        model._plan_run()  # (a model built by its first batch plans its run as it builds)
    dev = model._device
    if is_batch_source(x):
        parts = []
        with model._compute_lock, dev.activate():
            for step, (xb, *_) in enumerate(IteratorSource(model, x, steps, predict=True).epoch()):
                for cb in batch_begin:
                    cb.on_predict_batch_begin(step, {})
                y = dev.host(model._forward(dev.put(xb), False, False))
                parts.append(np.array(y))
                for cb in batch_end:
                    cb.on_predict_batch_end(step, {"outputs": parts[-1]})
        out = np.concatenate(parts) if parts else np.empty((0,) + tuple(model.output_shape), np.float32)
    else:
        x = model._as_input(x)
        rows = len(x) if steps is None else min(len(x), steps * batch_size)
        shape = (rows,) + tuple(model.output_shape)
        # on a GPU the outputs are gathered there and copied back once, unless they would crowd it
        xp = dev.xp if dev.fits(int(np.prod(shape)) * 4) else np
        with model._compute_lock, dev.activate():  # the whole call: every batch sees the same weights
            out = xp.empty(shape, dtype=np.float32)
            for step, start in enumerate(range(0, rows, batch_size)):
                for cb in batch_begin:
                    cb.on_predict_batch_begin(step, {})
                y = model._forward(dev.put(x[start:min(start + batch_size, rows)]), False, False)
                out[start:start + batch_size] = y if xp is not np else dev.host(y)
                for cb in batch_end:
                    cb.on_predict_batch_end(step, {"outputs": out[start:start + batch_size]})
            out = dev.host(out)
    cb_list.on_predict_end({})
    if verbose and _strategy.current().is_chief:
        n = -(-len(out) // batch_size)
        print(f"{n}/{n} predicted")
    return out


def _prepare_steps(model):
    """The backward plan and gradient buffers fit sets up, for a step outside fit."""
    model._grad_buffers = {}
    model._sync_trainable()
    model._backward_plan = model._plan_backward()
    model._backward_layers = {layer for layer, _ in model._backward_plan}


def train_on_batch(model, x, y, sample_weight, class_weight):
    """One optimizer step on one batch; the logs of that batch (the metrics reset first, as Keras 3)."""
    model._require_compiled()
    model._readings = model._metric_readings()
    source = _array_source(model, x, y, sample_weight, class_weight, max(len(x), 1))
    _prepare_steps(model)
    model._regularization()
    for m in model.metrics:
        m.reset_state()
    feed = _feed.MetricFeed(False)
    try:
        with model._device.activate():
            for xb, yb, y_raw_b, truths_b, wb in source.epoch():
                with model._compute_lock:
                    loss, out = model._train_step(xb, yb, wb)
                    if model.metrics:
                        _feed_metrics(model, feed, False, y_raw_b, out, truths_b, wb)
            loss = float(loss)
    finally:
        model._end_run()
    return {"loss": loss, **{m.name: m.result() for m in model.metrics}}


def test_on_batch(model, x, y, sample_weight):
    """The loss and metrics of one batch (evaluate on it)."""
    model._require_compiled()
    model._readings = model._metric_readings()
    return run_evaluation(model, _array_source(model, x, y, sample_weight, None, max(len(x), 1)))
