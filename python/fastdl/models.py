"""Sequential models with Keras's API: add, compile, fit, evaluate, predict, summary,
get_weights / set_weights, save / load_model, export.

How a training step stays fast: all weights live in one float32 buffer and all gradients in
another (layers hold views), so the optimizer step is one fused kernel call over the whole
model; every activation, gradient and batch buffer is allocated once per batch size; a last
softmax (or sigmoid) is fused with its cross-entropy and computed from the logits.

Devices: a model built inside `with fastdl.device("gpu")` (or made with device="gpu") keeps its
two buffers on the GPU as CuPy arrays: matmuls run on cuBLAS, the epilogues, losses and optimizer
step are the CUDA kernels, and fit reads losses and metrics back once per logging interval
(fastdl/_feed.py). get_weights, predict, evaluate and save give NumPy arrays and numbers.

Threads: a model may be used from any number of threads. Two re-entrant locks keep every
result what one thread would get (the kernels are parallel inside, so a lock costs little):
- the compute lock is held by each forward or backward use of the layers' reused buffers: a
  whole predict / __call__ / evaluate call, and each fit step (forward, backward, optimizer
  step and the metric update that reads the step's output). Inference in other threads runs
  between fit's steps and sees the weights of a whole step.
- the run lock is held for a whole fit or evaluate (they own the compiled metrics, callbacks
  and history) and by anything that changes the model's structure (add, build, compile). A
  second fit or evaluate waits for the first; evaluate called by a callback inside fit (the
  same thread) runs at once and puts fit's metric states back afterwards.
The order is always run lock, then compute lock, so that they cannot deadlock.
"""

import copy
import threading

import numpy as np

from . import _device, _feed, _random, callbacks as callbacks_module, initializers, losses, \
    metrics as metrics_module, optimizers
from ._checks import array_module, on_device
from .layers import InputLayer, Layer


class Sequential:
    """A linear stack of layers: Sequential([layer, ...]) or Sequential() then .add(layer).

    device: where the weights live ('cpu', 'gpu', 'gpu:N'); by default the device of the
    enclosing `with fastdl.device(...)` when the model is built, else the CPU."""

    def __init__(self, layers=None, name=None, device=None):
        self.name = name or "sequential"
        self._device_request = None if device is None else _device.get(device)
        self._device = None  # set at the first build
        self.layers = []
        self.built = False
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self._fitting = False  # True while fit runs (in the thread holding the run lock)
        self._activity_outputs = None  # {layer: output} while fit / evaluate regularizes outputs
        self._weight_penalties, self._constraints = [], []
        self.history = None
        self._optimizer_spec = None
        self._params = None
        self._grads = None
        self._run_lock = threading.RLock()
        self._compute_lock = threading.RLock()
        for layer in layers or []:
            self.add(layer)

    # -- structure -----------------------------------------------------------------------------
    def add(self, layer):
        """Appends a layer (an Input first, if any). The model is built as soon as its input shape
        is known (from an Input or the first layer's input_shape); weights already built are kept."""
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add takes a fastdl layer, got {type(layer).__name__}")
        if isinstance(layer, InputLayer) and self.layers:
            raise ValueError("an Input can only be the first layer")
        if any(existing is layer for existing in self.layers):
            raise ValueError(f"layer {layer.name} is already in the model")
        if any(existing.name == layer.name for existing in self.layers):
            raise ValueError(f"the model already has a layer named {layer.name!r}: layer names must be unique")
        with self._run_lock, self._compute_lock:
            self.layers.append(layer)
            layer._lock = self._compute_lock  # layer(x) shares the model's buffers, so its lock
            if self.built:
                self.build(self._input_shape)
            elif self._declared_input_shape() is not None and self._compute_layers:
                self.build()  # as Keras: the weights exist once the input shape is known

    @property
    def _compute_layers(self):
        return [layer for layer in self.layers if not isinstance(layer, InputLayer)]

    def _declared_input_shape(self):
        return self.layers[0].input_shape if self.layers else None

    def build(self, input_shape=None):
        """Creates the weights for inputs of shape (batch,) + input_shape (input_shape may
        include a leading None or batch dimension, as Keras's build takes)."""
        with self._run_lock, self._compute_lock:
            self._build_locked(input_shape)

    def _build_locked(self, input_shape):
        if input_shape is None:
            input_shape = self._declared_input_shape()
            if input_shape is None:
                raise ValueError("the model does not know its input shape: give the first layer input_shape=..., "
                                 "start with layers.Input(shape), or call build(input_shape)")
        else:
            input_shape = tuple(input_shape)
            declared = self._declared_input_shape()
            if declared is not None and len(input_shape) == len(declared) + 1:
                input_shape = input_shape[1:]
            if declared is not None and tuple(input_shape) != tuple(declared):
                raise ValueError(f"input shape {input_shape} does not match the declared {declared}")
        if not self._compute_layers:
            raise ValueError("the model has no layers")
        if self._device is None:
            self._device = self._device_request or _device.current()
        dev = self._device
        old = {id(layer): [np.array(dev.host(w)) for w in layer.weights] for layer in self.layers if layer.built}
        shape = tuple(int(s) for s in input_shape)
        for layer in self._compute_layers:
            shape = layer._build(shape)
        specs = [(layer, name, s, init) for layer in self._compute_layers for name, s, init in layer.weight_specs]
        total = int(sum(np.prod(s) for _, _, s, _ in specs))
        self._params = np.zeros(total, dtype=np.float32)
        self._grads = np.zeros(total, dtype=np.float32)
        self._link_views()
        for layer in self._compute_layers:  # weights are made on the host, then moved in one copy
            kept = old.get(id(layer))
            for i, ((name, s, init), w) in enumerate(zip(layer.weight_specs, layer.weights)):
                if kept is not None and i < len(kept) and kept[i].shape == w.shape:
                    w[...] = kept[i]
                else:
                    initializers.initialize(init, s, w)
        if dev.kind != "cpu":
            with dev.activate():
                self._params = dev.put(self._params)
                self._grads = dev.xp.zeros(total, dtype=np.float32)
            self._link_views()
        self._input_shape = tuple(input_shape)
        self.output_shape = shape
        self.built = True
        if self._optimizer_spec is not None:
            self.optimizer = self._optimizer_spec.build([self._params])
        self._configure_loss()

    def _link_views(self):
        """Makes every layer's weights and gradients views into the model's two buffers."""
        offset = 0
        for layer in self._compute_layers:
            layer.weights, layer.gradients = [], []
            for _, shape, _ in layer.weight_specs:
                size = int(np.prod(shape))
                layer.weights.append(self._params[offset:offset + size].reshape(shape))
                layer.gradients.append(self._grads[offset:offset + size].reshape(shape))
                offset += size

    # copy.deepcopy and pickle: locks are not copied (each copy gets its own), and the copy's
    # layers are made views into the copy's buffers again (a deep copy of a view is no view).
    def __getstate__(self):
        state = dict(self.__dict__)
        del state["_run_lock"], state["_compute_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("_activity_outputs", None)
        self.__dict__.setdefault("_weight_penalties", [])
        self.__dict__.setdefault("_constraints", [])
        self._run_lock = threading.RLock()
        self._compute_lock = threading.RLock()
        for layer in self.layers:
            layer._lock = self._compute_lock
        if self.built:
            self._link_views()  # the copied buffers hold the values

    @property
    def input_shape(self):
        return (None,) + self._input_shape if self.built else None

    @property
    def device(self):
        """Where the weights live: 'cpu' or 'gpu:N' (None before the model is built)."""
        return None if self._device is None else repr(self._device)

    @property
    def weights(self):
        """The weight arrays (views into the parameter buffer), layer by layer."""
        return [w for layer in self._compute_layers for w in layer.weights]

    trainable_weights = weights

    def count_params(self):
        return int(self._params.size) if self.built else sum(layer.count_params() for layer in self._compute_layers)

    def get_weights(self):
        """Copies of the weights, in layer order (kernel, bias, kernel, bias, ...)."""
        with self._compute_lock:  # not halfway through another thread's optimizer step
            return [np.array(self._device.host(w)) for w in self.weights]

    def set_weights(self, weights):
        """Sets every weight from a list shaped like get_weights(); checks all before writing."""
        self._require_built()
        current = self.weights
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(f"set_weights got {len(weights)} arrays but the model has {len(current)} weights")
        arrays = []
        for i, (new, w) in enumerate(zip(weights, current)):
            new = new.get() if on_device(new) else np.asarray(new)
            if new.dtype.kind not in "iufb":
                raise TypeError(f"weights[{i}] must be numeric, got dtype {new.dtype}")
            if new.shape != w.shape:
                raise ValueError(f"weights[{i}] has shape {new.shape} but the model's weight {i} is {w.shape}")
            arrays.append(new.astype(w.dtype))
        with self._compute_lock, self._device.activate():  # between fit's steps (a callback's thread)
            for new, w in zip(arrays, current):
                w[...] = self._device.put(new)

    # -- compile -------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Sets the optimizer ('adam', 'sgd', 'adamw' or a fastdl.optimizers spec), the loss
        ('categorical_crossentropy', 'sparse_categorical_crossentropy', 'binary_crossentropy',
        'mse' or a fastdl.losses.Loss) and the metrics ('accuracy', 'precision', 'recall',
        'f1_score', 'mse', 'mae' or fastdl.metrics objects)."""
        with self._run_lock, self._compute_lock:
            self._compile_locked(optimizer, loss, metrics)

    def _compile_locked(self, optimizer, loss, metrics):
        self._optimizer_spec = optimizers.get(optimizer)
        self.loss = losses.get(loss) if loss is not None else None
        if metrics is None:
            metrics = []
        if isinstance(metrics, (str, metrics_module.Metric)):
            metrics = [metrics]
        self.metrics = [metrics_module.get(m) for m in metrics]
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, got {names}")
        self.compiled = True
        if not self.built and self._declared_input_shape() is not None:
            self.build()
        elif self.built:
            self.optimizer = self._optimizer_spec.build([self._params])
            self._configure_loss()

    def _configure_loss(self):
        """Decides whether the loss takes the last layer's logits, and how 'accuracy' reads."""
        self._fused = False
        last = self._compute_layers[-1] if self._compute_layers else None
        for layer in self._compute_layers:
            if hasattr(layer, "logits_out"):
                layer.logits_out = False
        self._last = last
        self._logits_output = bool(self.loss is not None and self.loss.from_logits)
        if self.loss is None or last is None:
            return
        for m in self.metrics:
            if type(m) is metrics_module.Accuracy:
                m.variant = self._accuracy_variant()
        if not hasattr(last, "activation"):
            return
        self._fused = losses.fusable(self.loss, last.activation.name)
        # what the model's output means: probabilities, or logits (fused, or from_logits)
        self._logits_output = self._fused or self.loss.from_logits

    def _accuracy_variant(self):
        if isinstance(self.loss, losses.SparseCategoricalCrossentropy):
            return "sparse"
        if isinstance(self.loss, losses.BinaryCrossentropy) or (self.built and self.output_shape[-1] == 1):
            return "binary"
        return "categorical"

    # -- running ---------------------------------------------------------------------------------
    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model is not built yet: fit it, call build(input_shape), or give the first "
                               "layer an input_shape")

    def _require_compiled(self):
        if not self.compiled or self.loss is None:
            raise RuntimeError("compile the model with a loss before fit / evaluate: model.compile(optimizer, loss)")

    def _as_input(self, x):
        """x checked, as float32: a NumPy array, or a CuPy array on the model's GPU (a NumPy x for a
        GPU model is moved batch by batch, or once by fit)."""
        x = x if on_device(x) else np.asarray(x)
        if x.dtype.kind not in "iufb":
            raise TypeError(f"x must be numeric, got dtype {x.dtype}")
        if not self.built:
            self.build(x.shape[1:])
        if x.shape[1:] != self._input_shape:
            raise ValueError(f"x has shape {x.shape} but the model takes (batch,) + {self._input_shape}")
        if on_device(x):
            dev = self._device
            if dev.kind == "cpu":
                x = x.get()
            else:
                with dev.activate():
                    return dev.xp.ascontiguousarray(dev.put(x), dtype=np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _forward(self, x, training, logits):
        """The output, or the last layer's logits when `logits` (the flag stays set on the layer
        for the backward pass that follows; every forward sets it anew)."""
        if self._last is not None and hasattr(self._last, "logits_out"):
            self._last.logits_out = logits
        h = x
        outputs = self._activity_outputs  # None unless fit / evaluate needs regularized outputs
        for layer in self._compute_layers:
            h = layer.forward(h, training)
            if outputs is not None and layer.activity_regularizer is not None:
                outputs[layer] = h
        return h

    def _regularization(self):
        """Sets what fit / evaluate add to the loss: (weight, gradient, regularizer) triples, the
        layers whose outputs are regularized (their outputs recorded by _forward), and the
        (weight, constraint) pairs applied after each step."""
        self._weight_penalties, self._constraints, activity = [], [], []
        for layer in self._compute_layers:
            for i, reg in layer.weight_regularizers.items():
                self._weight_penalties.append((layer.weights[i], layer.gradients[i], reg))
            for i, c in layer.weight_constraints.items():
                self._constraints.append((layer.weights[i], c))
            if layer.activity_regularizer is not None:
                activity.append(layer)
        if activity and activity[-1] is self._last and self._fused:
            raise ValueError(f"{self._last.name}: an activity_regularizer on the last layer, whose "
                             f"{self._last.activation.name} is fused with the loss, is not supported; regularize an "
                             f"earlier layer's output or end with a separate Activation layer")
        self._activity_outputs = {} if activity else None

    def _weight_penalty(self):
        total = 0.0
        for w, _, reg in self._weight_penalties:
            total = total + reg(w)
        return total

    def _output_penalty(self, rows, skip=()):
        """The output penalties / rows of the regularized layers not in `skip`."""
        total = 0.0
        for layer, out in self._activity_outputs.items():
            if layer not in skip:
                total = total + layer.activity_regularizer(out) / rows
        return total

    def __call__(self, x, training=False):
        """The model's output for x, in one pass (no batching), on the device of x."""
        place = None if not on_device(x) else x.device
        x = self._as_input(x)  # may build the model: before the compute lock (lock order)
        dev = self._device
        with self._compute_lock, dev.activate():
            y = self._forward(dev.put(x), training, False).copy()
        if place is not None and not on_device(y):  # a CPU model given a CuPy array: back to its device
            import cupy
            with place:
                return cupy.asarray(y)
        return dev.host(y) if place is None else y

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for x, batch by batch (probabilities for a softmax / sigmoid output), as a NumPy
        array (on a GPU they are gathered there and copied back once)."""
        x = self._as_input(x)
        batch_size = _positive(batch_size, "batch_size")
        dev = self._device
        shape = (len(x),) + tuple(self.output_shape)
        # on a GPU the outputs are gathered there and copied back once, unless they would crowd it
        xp = dev.xp if dev.fits(int(np.prod(shape)) * 4) else np
        with self._compute_lock, dev.activate():  # the whole call: every batch sees the same weights
            out = xp.empty(shape, dtype=np.float32)
            for start in range(0, len(x), batch_size):
                y = self._forward(dev.put(x[start:start + batch_size]), False, False)
                out[start:start + batch_size] = y if xp is not np else dev.host(y)
            out = dev.host(out)
        if verbose:
            print(f"{-(-len(x) // batch_size)}/{-(-len(x) // batch_size)} predicted")
        return out

    # -- training --------------------------------------------------------------------------------
    def _prepare(self, x, y):
        """x as float32; y as the loss takes it, and as the metrics take it (the same array unless
        the loss bakes label smoothing into its targets)."""
        x = self._as_input(x)
        prepared = self.loss.prepare_targets(y.get() if on_device(y) else y, self.output_shape)
        # fastdl's losses return (loss targets, metric targets); a custom loss may return one array
        y_loss, y_raw = prepared if isinstance(prepared, tuple) and len(prepared) == 2 else (prepared, prepared)
        if len(y_loss) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y_loss)}")
        return x, y_loss, y_raw

    def _metric_readings(self):
        """How fit / evaluate feed each class metric, as (kind, threshold): ('ids', None) compares
        one class id per sample (argmax, or a single output thresholded at 0.5); ('binary', t)
        compares every output, thresholded at t, with its 0/1 target, as Keras's binary_accuracy
        does (so multi-label sigmoid outputs are judged label by label)."""
        multi_label = isinstance(self.loss, losses.BinaryCrossentropy) and self.output_shape[-1] > 1
        readings = []
        for m in self.metrics:
            if m.kind != "classes":
                readings.append(None)
            elif isinstance(m, metrics_module.BinaryAccuracy):
                readings.append(("binary", m.threshold))
            elif (type(m) is metrics_module.Accuracy and m.variant == "binary") or \
                    (multi_label and isinstance(m, metrics_module.ConfusionMetric)):
                readings.append(("binary", 0.5))
            else:
                readings.append(("ids", None))
        return readings

    def _metric_truths(self, y):
        """Per-sample truths for each reading in use, from raw (unsmoothed) targets."""
        truths = {}
        for reading in set(r for r in self._readings if r is not None):
            if reading[0] == "binary":
                width = int(np.prod(self.output_shape))
                if y.reshape(len(y), -1).shape[1] != width:
                    names = [m.name for m, r in zip(self.metrics, self._readings) if r == reading]
                    raise ValueError(f"metrics {names} compare each of the model's {width} outputs with its own 0/1 "
                                     f"target, but y has shape {y.shape}")
                truths[reading] = (y.reshape(len(y), -1) > 0.5).astype(np.int64)
            elif y.ndim == 1:
                truths[reading] = y.astype(np.int64)
            elif y.shape[1] == 1:
                truths[reading] = (y[:, 0] > 0.5).astype(np.int64)
            else:
                truths[reading] = np.argmax(y, axis=1)
        return truths

    def _predictions(self, reading, out):
        if reading[0] == "binary":
            threshold = reading[1]
            if self._logits_output and isinstance(self.loss, losses.BinaryCrossentropy):
                # sigmoid logits: sigmoid(z) > t  <=>  z > log(t / (1 - t))
                threshold = -np.inf if threshold <= 0 else np.inf if threshold >= 1 else \
                    np.log(threshold / (1 - threshold))
            else:
                out = self._probabilities(out)  # a fused softmax's logits become probabilities
            return (out.reshape(len(out), -1) > threshold).astype(np.int64)
        if out.shape[-1] == 1:
            return (out[:, 0] > (0.0 if self._logits_output else 0.5)).astype(np.int64)
        return array_module(out).argmax(out, axis=1)

    def _probabilities(self, out):
        """The outputs as the user sees them (applies a fused activation to logits)."""
        if not self._fused:
            return out
        from . import ops
        return ops.softmax(out) if self._last.activation.is_softmax else ops.sigmoid(out)

    def _metric_inputs(self, y_raw, out, truths, keep_batch, keep_out):
        """[(metric, truths, predictions)] of a batch; y_raw: its raw targets, truths: its
        _metric_truths. For a deferred feed, copies of what a later batch overwrites: y_raw and
        truths (keep_batch: they are reused batch buffers) and the layer output (keep_out)."""
        inputs, predictions, probabilities = [], {}, None
        for m, reading in zip(self.metrics, self._readings):
            if reading is not None:
                if reading not in predictions:
                    predictions[reading] = self._predictions(reading, out)
                t = truths[reading]
                inputs.append((m, t.copy() if keep_batch else t, predictions[reading]))
            else:
                if probabilities is None:
                    probabilities = self._probabilities(out)
                    if keep_out and probabilities is out:
                        probabilities = out.copy()
                inputs.append((m, y_raw.copy() if keep_batch else y_raw, probabilities))
        return inputs

    def _train_step(self, xb, yb):
        """One step: forward, fused loss and gradient, backward, one optimizer call."""
        h = self._forward(xb, True, self._fused)
        grad = self._grad_buffers.get(h.shape)
        if grad is None:
            grad = self._grad_buffers[h.shape] = array_module(h).empty(h.shape, dtype=np.float32)
        loss = self.loss.value_and_grad(yb, h, self._fused, grad)
        d = grad
        outputs = self._activity_outputs
        for layer, need_dx in self._backward_plan:
            if outputs and layer in outputs:  # d is dL/d(output): the output's penalty joins it
                loss = loss + layer.activity_regularizer.add_to(outputs[layer], d, 1.0 / len(xb))
            d = layer.backward(d, need_dx)
        for w, g, reg in self._weight_penalties:
            loss = loss + reg.add_to(w, g)
        if outputs:  # outputs of layers before the first with weights: in the loss, no gradient to give
            loss = loss + self._output_penalty(len(xb), self._backward_layers)
        self.optimizer.step(self._grad_list)
        for w, c in self._constraints:
            c.apply(w)
        return loss, h

    def _plan_backward(self):
        """(layer, need_dx) from last to first, stopping at the first layer with weights: nothing
        before it needs a gradient."""
        plan = []
        layers = self._compute_layers
        for i in range(len(layers) - 1, -1, -1):
            earlier_weights = any(layer.weight_specs for layer in layers[:i])
            plan.append((layers[i], earlier_weights))
            if not earlier_weights:
                break
        return plan

    def fit(self, x, y, batch_size=32, epochs=1, verbose=1, callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, initial_epoch=0, augment=None):
        """Trains for `epochs` epochs of mini-batches; returns a History (history.history holds a
        list per metric, val_ ones with validation data).

        validation_split takes the last fraction of x / y (before any shuffling), as Keras does.
        augment: a function applied to each training batch of x (see fastdl.data.augmentation).
        """
        with self._run_lock:
            self._fitting = True
            try:
                return self._fit_locked(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                                        validation_data, shuffle, initial_epoch, augment)
            finally:
                self._fitting = False

    def _fit_locked(self, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
                    shuffle, initial_epoch, augment):
        self._require_compiled()
        batch_size = _positive(batch_size, "batch_size")
        if verbose == "auto":
            verbose = 1
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        x, y, y_raw = self._prepare(x, y)
        if validation_data is None and validation_split:
            cut = int(len(x) * (1.0 - float(validation_split)))
            if cut in (0, len(x)):
                raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples")
            same = y_raw is y
            val = (x[cut:], y[cut:], y[cut:] if same else y_raw[cut:])
            x, y, y_raw = x[:cut], y[:cut], y_raw[:cut]
            if same:
                y_raw = y  # one array still: no extra take per batch for value metrics
        elif validation_data is not None:
            if len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (x_val, y_val)")
            val = self._prepare(*validation_data)
        else:
            val = None
        if len(x) == 0:
            raise ValueError("x has no samples")
        n = len(x)
        steps = -(-n // batch_size)
        self._grad_buffers = {}
        self._grad_list = [self._grads]
        self._backward_plan = self._plan_backward()
        self._backward_layers = {layer for layer, _ in self._backward_plan}
        self._regularization()
        self._readings = self._metric_readings()
        truths = self._metric_truths(y_raw)
        raw_for_metrics = y_raw is not y and any(r is None for r in self._readings)

        history = callbacks_module.History()
        progbar = callbacks_module.ProgbarLogger(verbose) if verbose else None
        cbs = list(callbacks or [])
        cb_list = callbacks_module.CallbackList(cbs + [history] + ([progbar] if progbar else []), self,
                                                {"epochs": epochs, "steps": steps, "verbose": verbose})
        self.history = history
        self.stop_training = False
        rng = _random.generator()
        dev = self._device
        if augment is not None and on_device(x):
            x = x.get()  # augmentation functions take NumPy batches
        # x, y, raw targets and metric truths, on the device for the whole fit where they fit
        batches = _feed.Batches(dev, [x, y, y_raw] + list(truths.values()), keep_on_host={0} if augment else ())
        x, y, y_raw = batches.arrays[:3]
        truths = dict(zip(truths, batches.arrays[3:]))
        feed = _feed.MetricFeed(dev.defers_reads)
        keep_batch = feed.deferred and batches.reuses_buffers

        cb_list.on_train_begin({})
        logs = {}
        try:
            with dev.activate():
                for epoch in range(initial_epoch, epochs):
                    cb_list.on_epoch_begin(epoch, {})
                    for m in self.metrics:
                        m.reset_state()
                    batches.epoch(rng.permutation(n) if shuffle else None)
                    total_loss = _feed.LossSum()

                    def running_logs():
                        feed.flush()
                        out = {"loss": total_loss.mean()}
                        out.update((m.name, m.result()) for m in self.metrics)
                        return out

                    for step in range(steps):
                        batches.select(step * batch_size, (step + 1) * batch_size)
                        if augment is not None:
                            xb = np.ascontiguousarray(augment(batches.take(x, host=True)),
                                                      dtype=np.float32)
                            if xb.shape[1:] != self._input_shape:
                                raise ValueError(f"augment returned batches of shape {xb.shape}; the model takes "
                                                 f"(batch,) + {self._input_shape}")
                            xb = dev.put(xb)
                        else:
                            xb = batches.take(x)
                        yb = batches.take(y)
                        for cb in cb_list.batch_begin:
                            cb.on_train_batch_begin(step, {})
                        with self._compute_lock:  # `out` is a layer buffer: read it before another thread runs
                            loss, out = self._train_step(xb, yb)
                            if self.metrics:
                                feed.update(self._metric_inputs(
                                    batches.take(y_raw) if raw_for_metrics else yb, out,
                                    {k: batches.take(v) for k, v in truths.items()}, keep_batch, feed.deferred))
                        total_loss.add(loss, len(xb))
                        if progbar is not None:
                            progbar.update(step + 1, running_logs)
                        for cb in cb_list.batch_end:
                            cb.on_train_batch_end(step, running_logs())
                        if self.stop_training:  # a callback may stop mid-epoch, as in Keras
                            break
                    logs = running_logs()
                    if val is not None:
                        val_logs = self._evaluate_arrays(*val, batch_size)
                        logs.update(("val_" + k, v) for k, v in val_logs.items())
                    cb_list.on_epoch_end(epoch, logs)
                    if self.stop_training:
                        break
        finally:
            self._end_run()
        cb_list.on_train_end(logs)
        return history

    def _end_run(self):
        """After fit / evaluate: the last layer computes its activation again when called, and no
        output is recorded for a regularizer."""
        with self._compute_lock:
            if self._last is not None and hasattr(self._last, "logits_out"):
                self._last.logits_out = False
            self._activity_outputs = None

    def _evaluate_arrays(self, x, y, y_raw, batch_size):
        """Mean loss and metrics over prepared arrays (no callbacks)."""
        with self._compute_lock:
            return self._evaluate_locked(x, y, y_raw, batch_size)

    def _evaluate_locked(self, x, y, y_raw, batch_size):
        for m in self.metrics:
            m.reset_state()
        self._readings = self._metric_readings()
        truths = self._metric_truths(y_raw)
        dev = self._device
        batches = _feed.Batches(dev, [x, y, y_raw] + list(truths.values()))
        x, y, y_raw = batches.arrays[:3]
        truths = dict(zip(truths, batches.arrays[3:]))
        batches.epoch(None)
        feed = _feed.MetricFeed(dev.defers_reads)
        keep_batch = feed.deferred and batches.reuses_buffers
        total, grad_buffers = _feed.LossSum(), {}
        fit_state = (self._activity_outputs, self._weight_penalties, self._constraints)
        self._regularization()
        try:
            with dev.activate():
                weight_penalty = self._weight_penalty()  # the weights do not change in evaluate
                for start in range(0, len(x), batch_size):
                    batches.select(start, start + batch_size)
                    xb, yb = batches.take(x), batches.take(y)
                    out = self._forward(xb, False, self._fused)
                    grad = grad_buffers.get(out.shape)
                    if grad is None:
                        grad = grad_buffers[out.shape] = array_module(out).empty(out.shape, dtype=np.float32)
                    loss = self.loss.value_and_grad(yb, out, self._fused, grad)
                    if self._weight_penalties or self._activity_outputs:  # as Keras, the loss includes them
                        loss = loss + weight_penalty + (self._output_penalty(len(xb)) if self._activity_outputs
                                                        else 0.0)
                    total.add(loss, len(xb))
                    if self.metrics:
                        feed.update(self._metric_inputs(batches.take(y_raw), out,
                                                        {k: batches.take(v) for k, v in truths.items()},
                                                        keep_batch, feed.deferred))
                feed.flush()
                logs = {"loss": total.mean()}
        finally:
            self._end_run()
            if self._fitting:  # a validation pass (or a callback's evaluate) inside fit: fit's state back
                self._activity_outputs, self._weight_penalties, self._constraints = fit_state
        logs.update((m.name, m.result()) for m in self.metrics)
        return logs

    def evaluate(self, x, y, batch_size=32, verbose=1, return_dict=False):
        """The loss (and metrics) over x, y: loss if there are no metrics, else [loss, *metrics]
        in compile order (return_dict: a dict)."""
        self._require_compiled()
        with self._run_lock:  # the compiled metrics are fit's while it runs
            # called from a callback inside fit (this thread holds the run lock): fit's metric states
            # are put back afterwards, or its logs would report this evaluation
            saved = self._metric_states() if self._fitting else None
            try:
                logs = self._evaluate_arrays(*self._prepare(x, y), _positive(batch_size, "batch_size"))
            finally:
                if saved is not None:
                    self._restore_metric_states(saved)
        if verbose:
            steps = -(-len(x) // batch_size)
            print(f"{steps}/{steps}" + callbacks_module._format_logs(logs))
        if return_dict:
            return logs
        if not self.metrics:
            return logs["loss"]
        return [logs["loss"]] + [logs[m.name] for m in self.metrics]

    def _metric_states(self):
        return [copy.deepcopy(m.__dict__) for m in self.metrics], getattr(self, "_readings", None)

    def _restore_metric_states(self, saved):
        states, self._readings = saved
        for m, state in zip(self.metrics, states):
            m.__dict__.clear()
            m.__dict__.update(state)

    # -- description, saving, export ---------------------------------------------------------------
    def summary(self, print_fn=print):
        """Prints a table of the layers, their output shapes and parameter counts."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self._compute_layers:
            shape = str((None,) + tuple(layer.output_shape)) if layer.built else "?"
            rows.append((f"{layer.name} ({type(layer).__name__})", shape, f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        rule = "─" * sum(widths)
        lines = [f'Model: "{self.name}"', rule]
        for i, r in enumerate(rows):
            lines.append("".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            lines.append("═" * sum(widths) if i == 0 else rule)
        lines.append(f" Total params: {self.count_params():,}")
        for line in lines:
            print_fn(line)

    def get_config(self):
        return {"name": self.name, "input_shape": list(self._input_shape) if self.built else None,
                "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers]}

    def save(self, filepath):
        """Writes the model to one file: architecture, compile settings and weights, with the
        optimizer state so that training resumes exactly. No pickle; the write is atomic."""
        from . import saving
        with self._compute_lock:  # weights and optimizer state of one whole step
            saving.save_model(self, filepath)

    def export(self, filepath, format="onnx"):
        """Exports the model for inference; format 'onnx' (needs the `onnx` package)."""
        if format != "onnx":
            raise ValueError(f"format must be 'onnx', got {format!r}")
        from . import onnx_export
        with self._compute_lock:
            onnx_export.export(self, filepath)


def load_model(filepath):
    """Loads a model written by Model.save (compiled, with its optimizer state, if it was)."""
    from . import saving
    return saving.load_model(filepath)


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)
