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
import os
import threading

import numpy as np

from . import _device, _fusion, _training, initializers, losses, metrics as metrics_module, optimizers
from ._checks import array_module, on_device
from .layers import InputLayer, Layer


class Sequential:
    """A linear stack of layers: Sequential([layer, ...]) or Sequential() then .add(layer).

    device: where the weights live ('cpu', 'gpu', 'gpu:N'); by default the device of the
    enclosing `with fastdl.device(...)` when the model is built, else the CPU."""

    _masking = False  # set by build
    _run_layers = ()  # set by _plan_run: the layers as _forward and the backward run them

    def __init__(self, layers=None, name=None, device=None):
        self.name = name or "sequential"
        self._device_request = None if device is None else _device.get(device)
        self._device = None  # set at the first build
        self._layers = []  # as added, an Input first if any (Keras's model.layers leaves it out)
        self.built = False
        self.compiled = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self._fitting = False  # True while fit runs (in the thread holding the run lock)
        self._activity_outputs = None  # {layer: output} while fit / evaluate regularizes outputs
        self._weight_penalties, self._constraints, self._regularized, self._step_extras = [], [], False, False
        self._ema = None  # the optimizer's use_ema: a moving average of the parameter buffer
        self._data_parallel = None  # fit's strategy while a data-parallel fit runs (fastdl.distributed)
        self._weighted_metrics = set()  # ids of the compiled metrics that sample weights weigh
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
        if isinstance(layer, InputLayer) and self._layers:
            raise ValueError("an Input can only be the first layer")
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"layer {layer.name} is already in the model")
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"the model already has a layer named {layer.name!r}: layer names must be unique")
        with self._run_lock, self._compute_lock:
            self._layers.append(layer)
            layer._lock = self._compute_lock  # layer(x) shares the model's buffers, so its lock
            try:
                if self.built:
                    self.build(self._input_shape)
                elif self._declared_input_shape() is not None and self._compute_layers:
                    self.build()  # as Keras: the weights exist once the input shape is known
            except Exception:
                self._layers.pop()  # the model stays as it was: a layer it cannot build is not added
                raise

    @property
    def layers(self):
        """The model's layers, an Input left out (as Keras 3's model.layers)."""
        return self._compute_layers

    @property
    def _compute_layers(self):
        return [layer for layer in self._layers if not isinstance(layer, InputLayer)]

    def _declared_input_shape(self):
        return self._layers[0].input_shape if self._layers else None

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
        old = {id(layer): [np.array(dev.host(w)) for w in layer.weights] for layer in self._layers if layer.built}
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
        self._plan_run()
        self.built = True
        if self._optimizer_spec is not None:
            self._bind_optimizer(carry=False)
        self._configure_loss()

    def _plan_run(self):
        """What _forward and the backward run, from the layers as they are now (called at build and
        as each fit / evaluate / predict / call starts: an attribute set after build counts): the
        layers with some runs fused into one step (_fusion.py), and whether a mask
        (Embedding(mask_zero=True)) is carried along."""
        self._masking = any(getattr(layer, "mask_zero", False) for layer in self._compute_layers)
        self._run_layers = _fusion.plan(self._compute_layers)

    # -- which weights train ---------------------------------------------------------------------
    def _trainable_segments(self):
        """[(start, end)]: the element ranges of the parameter buffer that the optimizer updates,
        the weights of trainable layers (adjacent ones merged); [(0, size)] when all train."""
        segments, offset = [], 0
        for layer in self._compute_layers:
            trained = set(layer._trained_weights())
            for i, (_, shape, _) in enumerate(layer.weight_specs):
                size = int(np.prod(shape))
                if size and i in trained:
                    if segments and segments[-1][1] == offset:
                        segments[-1] = (segments[-1][0], offset + size)
                    else:
                        segments.append((offset, offset + size))
                offset += size
        return segments

    def _bind_optimizer(self, carry=True):
        """Builds the optimizer over the trainable segments: one array, the whole buffer, when every
        layer trains (one fused call, as always); views of the buffer when some are frozen. carry:
        the previous optimizer's state and counts go on, element by element (a layer frozen or
        unfrozen between fits keeps the moments it had)."""
        saved = self._optimizer_state_full() if carry and self.optimizer is not None else None
        segments = self._trainable_segments()
        whole = segments == [(0, int(self._params.size))]
        self._segments = segments
        self._grad_list = [self._grads] if whole else [self._grads[s:e] for s, e in segments]
        if not segments:  # nothing trains: the loss is computed, no step is taken
            self.optimizer = self.optimizer or self._optimizer_spec.build([self._params])
            return
        self.optimizer = self._optimizer_spec.build([self._params] if whole else
                                                    [self._params[s:e] for s, e in segments])
        if saved is not None:
            self.optimizer.load_state_dict(self._optimizer_state_dict(*saved))

    def _sync_trainable(self):
        """At the start of training: a `trainable` changed since the optimizer was bound rebinds it."""
        if self._trainable_segments() != getattr(self, "_segments", None):
            self._bind_optimizer()

    def _optimizer_state_full(self):
        """(the optimizer's state_dict, {state name: one array over the whole buffer}, its step count):
        the form a model file stores, whatever the segments (frozen weights' state is 0)."""
        state = self.optimizer.state_dict()
        segments = getattr(self, "_segments", [(0, int(self._params.size))]) or [(0, int(self._params.size))]
        full, state["scalars"] = {}, {}
        for name, arrays in state["state"].items():
            if arrays and np.ndim(arrays[0]) == 0:  # a per-tensor number (NAdam's mu_product): the segments
                state["scalars"][name] = float(arrays[0])  # step together, so they share it
                continue
            out = np.zeros(int(self._params.size), dtype=np.float32)
            for (s, e), a in zip(segments, arrays):
                out[s:e] = a
            full[name] = out
        steps = int(np.max(state["steps"], initial=0))
        return state, full, steps

    def _optimizer_state_dict(self, state, full, steps):
        """A state_dict for the bound optimizer from whole-buffer arrays (_optimizer_state_full's form)."""
        segments = self._segments or [(0, int(self._params.size))]
        arrays = {name: [a[s:e] for s, e in segments] for name, a in full.items()}
        arrays.update((name, [np.array(value, dtype=np.float64) for _ in segments])
                      for name, value in state.get("scalars", {}).items())
        return {"optimizer": state["optimizer"], "hyperparams": state["hyperparams"],
                "iterations": state["iterations"], "steps": np.full(len(segments), steps, dtype=np.int64),
                "state": arrays}

    @property
    def trainable(self):
        """Whether any layer trains; setting it sets every layer's (as Keras's Model.trainable)."""
        return any(layer.trainable for layer in self._compute_layers)

    @trainable.setter
    def trainable(self, value):
        for layer in self._compute_layers:
            layer.trainable = bool(value)

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
        if "layers" in self.__dict__:  # pickled before model.layers left the Input out
            self._layers = self.__dict__.pop("layers")
        self.__dict__.setdefault("_activity_outputs", None)
        self.__dict__.setdefault("_weight_penalties", [])
        self.__dict__.setdefault("_constraints", [])
        self.__dict__.setdefault("_regularized", False)
        self.__dict__.setdefault("_step_extras", False)
        self.__dict__.setdefault("_ema", None)
        self.__dict__["_data_parallel"] = None
        self.__dict__.setdefault("_weighted_metrics", set())
        if "_segments" not in self.__dict__:
            self._segments = [(0, int(self._params.size))] if self.built and self._params.size else []
        self._run_lock = threading.RLock()
        self._compute_lock = threading.RLock()
        for layer in self._layers:
            layer._lock = self._compute_lock
        if self.built:
            self._plan_run()
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

    @property
    def trainable_weights(self):
        return [layer.weights[i] for layer in self._compute_layers for i in layer._trained_weights()]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._compute_layers for i, w in enumerate(layer.weights)
                if i not in layer._trained_weights()]

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
    def compile(self, optimizer="adam", loss=None, metrics=None, weighted_metrics=None):
        """Sets the optimizer ('adam', 'sgd', 'adamw' or a fastdl.optimizers spec), the loss
        ('categorical_crossentropy', 'sparse_categorical_crossentropy', 'binary_crossentropy',
        'mse' or a fastdl.losses.Loss) and the metrics ('accuracy', 'precision', 'recall',
        'f1_score', 'mse', 'mae' or fastdl.metrics objects). As in Keras, sample weights (fit's
        sample_weight / class_weight, evaluate's sample_weight) weigh the loss and the
        weighted_metrics, not the metrics; a weighted metric named as a metric logs as weighted_<name>."""
        with self._run_lock, self._compute_lock:
            self._compile_locked(optimizer, loss, metrics, weighted_metrics)

    def _compile_locked(self, optimizer, loss, metrics, weighted_metrics=None):
        self._optimizer_spec = optimizers.get(optimizer)
        self.loss = losses.get(loss) if loss is not None else None
        plain, weighted = (_metric_list(m) for m in (metrics, weighted_metrics))
        names = [m.name for m in plain]
        for m in weighted:
            if m.name in names:
                m.name = f"weighted_{m.name}"
            names.append(m.name)
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, got {names}")
        self.metrics = plain + weighted
        self._weighted_metrics = {id(m) for m in weighted}
        self.compiled = True
        if not self.built and self._declared_input_shape() is not None:
            self.build()
        elif self.built:
            self.optimizer = None
            self._bind_optimizer(carry=False)
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
        if outputs is None and not self._masking:
            for layer in self._run_layers:
                h = layer.forward(h, training)
            return h
        mask = None  # an Embedding's mask_zero, through the layers that pass it on, to those that use it
        for layer in self._run_layers:
            if layer.supports_masking:
                layer.mask = mask
            h = layer.forward(h, training)
            mask = layer.output_mask(mask)
            if outputs is not None and layer.activity_regularizer is not None:
                outputs[layer] = h
        return h


    def _regularization(self):
        """Sets what fit / evaluate add to the loss: (weight, gradient, regularizer) triples, the
        layers whose outputs are regularized (their outputs recorded by _forward), and the
        (weight, constraint) pairs applied after each step."""
        self._plan_run()
        self._weight_penalties, self._constraints, activity = [], [], []
        for layer in self._compute_layers:
            for i, reg in layer.weight_regularizers.items():
                if layer.trainable:  # as Keras 3: a frozen layer's weights add no penalty to the loss
                    self._weight_penalties.append((layer.weights[i], layer.gradients[i], reg))
            for i, c in layer.weight_constraints.items():
                if layer.trainable:  # as Keras: the optimizer applies constraints to what it updates
                    self._constraints.append((layer.weights[i], c))
            if layer.activity_regularizer is not None:
                activity.append(layer)
        if activity and activity[-1] is self._last and self._fused:
            raise ValueError(f"{self._last.name}: an activity_regularizer on the last layer, whose "
                             f"{self._last.activation.name} is fused with the loss, is not supported; regularize an "
                             f"earlier layer's output or end with a separate Activation layer")
        self._activity_outputs = {} if activity else None
        self._regularized = bool(activity or self._weight_penalties or self._constraints)
        spec = self._optimizer_spec
        self._step_extras = bool(spec is not None and (spec.clipnorm or spec.clipvalue or spec.decoupled_decay
                                                       or spec.use_ema)) or self._data_parallel is not None
        if spec is not None and spec.use_ema and self._ema is None and self.built:
            self._ema = self._params.copy()  # the first step's average is the weights (momentum 0 there)

    def _before_step(self):
        """Keras's gradient clipping by each weight's norm or by value, and SGD's decoupled weight
        decay (p -= lr wd p), on the trainable weights, before the optimizer step."""
        spec = self._optimizer_spec
        trained = [(layer, i) for layer in self._compute_layers for i in layer._trained_weights()]
        if spec.clipnorm:
            xp = array_module(self._grads)
            for g in (layer.gradients[i] for layer, i in trained):
                norm = xp.sqrt(xp.sum(g * g, dtype=np.float64))
                g *= (spec.clipnorm / xp.maximum(norm, spec.clipnorm)).astype(g.dtype)
        elif spec.clipvalue:
            xp = array_module(self._grads)
            for g in (layer.gradients[i] for layer, i in trained):
                xp.clip(g, -spec.clipvalue, spec.clipvalue, out=g)
        if spec.decoupled_decay:
            factor = np.float32(1.0 - float(self.optimizer.lr) * spec.decoupled_decay)
            for w in (layer.weights[i] for layer, i in trained):
                w *= factor

    def _update_ema(self):
        """Keras's use_ema after a step: ema <- m ema + (1 - m) w on the trainable weights (m = 0 at
        the optimizer's first step, ema_momentum after), and w <- ema every ema_overwrite_frequency steps."""
        spec, it = self._optimizer_spec, self.optimizer.iterations  # steps taken, this one included
        m = 0.0 if it <= 1 else float(spec._config["ema_momentum"])
        for s, e in self._segments:
            ema, w = self._ema[s:e], self._params[s:e]
            ema *= np.float32(m)
            ema += np.float32(1.0 - m) * w
        freq = spec._config["ema_overwrite_frequency"]
        if freq and it % freq == 0:
            self._finalize_ema()

    def _finalize_ema(self):
        """The trainable weights replaced by their moving average (Keras: when fit ends)."""
        if self._ema is None or not self._optimizer_spec.use_ema:
            return
        with self._compute_lock:
            for s, e in self._segments:
                self._params[s:e] = self._ema[s:e]

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
            self._plan_run()
            y = self._forward(dev.put(x), training, False).copy()
        if place is not None and not on_device(y):  # a CPU model given a CuPy array: back to its device
            import cupy
            with place:
                return cupy.asarray(y)
        return dev.host(y) if place is None else y

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None):
        """Outputs for x (arrays, a generator or a PyDataset giving x or (x, ...) batches), batch by
        batch, as a NumPy array (probabilities for a softmax / sigmoid output). steps: at most this
        many batches. callbacks get on_predict_begin / _batch_begin / _batch_end / _end."""
        return _training.predict(self, x, batch_size, verbose, steps, callbacks)

    def predict_on_batch(self, x):
        """The outputs for one batch, as a NumPy array."""
        return self.predict(x, batch_size=max(len(x), 1))

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
        readings = []
        for m in self.metrics:
            if m.kind != "classes":
                readings.append(None)
            elif isinstance(m, metrics_module.BinaryAccuracy):
                readings.append(("binary", m.threshold))
            elif type(m) is metrics_module.Accuracy and m.variant == "binary":
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
            elif len(self.output_shape) > 1:  # a class per position of a (batch, ..., classes) output:
                ids = y.ndim == len(self.output_shape)  # (batch, positions) class ids (flattened per batch)
                truths[reading] = y.reshape(len(y), -1).astype(np.int64) if ids else \
                    np.argmax(y.reshape(len(y), -1, y.shape[-1]), axis=2)
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
        if out.ndim > 2:  # a class per position: rows over the last axis
            return out.reshape(-1, out.shape[-1]).argmax(axis=1)
        if out.shape[-1] == 1:
            return (out[:, 0] > (0.0 if self._logits_output else 0.5)).astype(np.int64)
        return out.argmax(axis=1)  # NumPy's or CuPy's method

    def _probabilities(self, out):
        """The outputs as the user sees them (applies a fused activation to logits)."""
        if not self._fused:
            return out
        from . import ops
        return ops.softmax(out) if self._last.activation.is_softmax else ops.sigmoid(out)

    def _metric_inputs(self, y_raw, out, truths, w, keep_batch, keep_out):
        """[(metric, truths, predictions, sample weights or None)] of a batch; y_raw: its raw
        targets, truths: its _metric_truths. For a deferred feed, copies of what a later batch
        overwrites: y_raw, truths and weights (keep_batch: reused batch buffers) and the layer
        output (keep_out)."""
        inputs, predictions, probabilities = [], {}, None
        if w is not None:
            if keep_batch:
                w = w.copy()
            weighted = self._weighted_metrics
            positions = int(np.prod(out.shape[1:-1])) if out.ndim > 2 else 1
        for m, reading in zip(self.metrics, self._readings):
            mw = w if w is not None and id(m) in weighted else None
            if mw is not None and reading is not None and reading[0] == "ids" and positions > 1:
                mw = array_module(mw).repeat(mw, positions)  # one per position, as the class ids
            if reading is not None:
                if reading not in predictions:
                    predictions[reading] = self._predictions(reading, out)
                t = truths[reading]
                if reading[0] == "ids" and t.ndim > 1:  # positions of a sequence output: one class each
                    t = t.reshape(-1)
                inputs.append((m, t.copy() if keep_batch else t, predictions[reading], mw))
            else:
                if probabilities is None:
                    probabilities = self._probabilities(out)
                    if keep_out and probabilities is out:
                        probabilities = out.copy()
                inputs.append((m, y_raw.copy() if keep_batch else y_raw, probabilities, mw))
        return inputs

    def _loss_value(self, y, out, grad, w=None):
        """The loss of a batch, its gradient written to grad (sample weights w: None or one per row)."""
        if w is None:
            return self.loss.value_and_grad(y, out, self._fused, grad)
        return self.loss.value_and_grad(y, out, self._fused, grad, sample_weight=w)

    def _train_step(self, xb, yb, wb=None):
        """One step: forward, fused loss and gradient, backward, one optimizer call (with
        regularizers and constraints: _regularized_step)."""
        if self._regularized or self._step_extras:
            return self._regularized_step(xb, yb, wb)
        h = self._forward(xb, True, self._fused)
        grad = self._grad_buffers.get(h.shape)
        if grad is None:
            grad = self._grad_buffers[h.shape] = array_module(h).empty(h.shape, dtype=np.float32)
        loss = self.loss.value_and_grad(yb, h, self._fused, grad) if wb is None else \
            self._loss_value(yb, h, grad, wb)
        d = grad
        for layer, need_dx in self._backward_plan:
            d = layer.backward(d, need_dx)
        if self._segments:
            self.optimizer.step(self._grad_list)
        return loss, h

    def _regularized_step(self, xb, yb, wb):
        """_train_step with the regularizers' penalties (in the loss) and gradients (before the
        optimizer step), the optimizer's clipping and decay (_before_step) and EMA (_update_ema),
        and the constraints applied after the step."""
        parallel = self._data_parallel
        if len(xb) or parallel is None:
            h = self._forward(xb, True, self._fused)
            grad = self._grad_buffers.get(h.shape)
            if grad is None:
                grad = self._grad_buffers[h.shape] = array_module(h).empty(h.shape, dtype=np.float32)
            loss = self._loss_value(yb, h, grad, wb)
            d = grad
            outputs = self._activity_outputs
            for layer, need_dx in self._backward_plan:
                if outputs and layer in outputs:  # d is dL/d(output): the output's penalty joins it
                    loss = loss + layer.activity_regularizer.add_to(outputs[layer], d, 1.0 / len(xb))
                d = layer.backward(d, need_dx)
            if outputs:  # outputs of layers before the first with weights: in the loss, no gradient to give
                loss = loss + self._output_penalty(len(xb), self._backward_layers)
        else:  # data-parallel, no rows of this (small, last) global batch here: nothing to add to the sum
            h, loss = None, 0.0
            self._grads[...] = 0
        if parallel is not None:  # the global batch's gradient, the same on every process
            parallel.reduce_gradients(self, len(xb), self._global_rows)
        for w, g, reg in self._weight_penalties:  # after the reduction: each penalty counted once
            loss = loss + reg.add_to(w, g)
        if self._step_extras:
            self._before_step()
        if self._segments:
            self.optimizer.step(self._grad_list)
            if self._ema is not None and self._optimizer_spec.use_ema:
                self._update_ema()  # before the constraints, as Keras
        for w, c in self._constraints:
            c.apply(w)
        return loss, h

    def _plan_backward(self):
        """(layer, need_dx) from last to first, stopping at the first layer with trainable weights:
        nothing before it needs a gradient."""
        plan = []
        self._plan_run()
        layers = self._run_layers
        for i in range(len(layers) - 1, -1, -1):
            earlier_weights = any(layer._trained_weights() for layer in layers[:i])
            plan.append((layers[i], earlier_weights))
            if not earlier_weights:
                break
        return plan

    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1,
            augment=None):
        """Trains for `epochs` epochs of mini-batches; returns a History (history.history holds a
        list per metric, val_ ones with validation data). Keras's arguments and meanings:

        x, y: arrays (NumPy, or CuPy for a GPU model), or x a generator / iterator / PyDataset giving
        (x, y) or (x, y, sample_weight) batches (then y=None). batch_size: 32 by default (arrays).
        sample_weight: a weight per sample; class_weight: {class id: weight} (multiplied together).
        The loss is then sum(w loss) / rows, and the metrics are weighted, as Keras computes them.
        steps_per_epoch: batches per epoch (the next epoch goes on where one stopped).
        validation_split: the last fraction of x / y (before any shuffling); validation_data:
        (x, y), (x, y, sample_weight), a generator or a PyDataset; validation_steps,
        validation_batch_size, validation_freq (validate every n epochs).
        augment: a function applied to each training batch of x (see fastdl.data.augmentation).
        """
        with self._run_lock:
            self._fitting = True
            try:
                return _training.fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
                                     validation_data, shuffle, class_weight, sample_weight, initial_epoch,
                                     steps_per_epoch, validation_steps, validation_batch_size, validation_freq,
                                     augment)
            finally:
                self._fitting = False

    def _end_run(self):
        """After fit / evaluate: the last layer computes its activation again when called, and no
        output is recorded for a regularizer."""
        with self._compute_lock:
            if self._last is not None and hasattr(self._last, "logits_out"):
                self._last.logits_out = False
            self._activity_outputs = None

    def _keeping_fit_metrics(self, run):
        """run() under the run lock; called from a callback inside fit (this thread holds the run
        lock), fit's metric states are put back afterwards, or its logs would report this run."""
        with self._run_lock:  # the compiled metrics are fit's while it runs
            saved = self._metric_states() if self._fitting else None
            try:
                return run()
            finally:
                if saved is not None:
                    self._restore_metric_states(saved)

    def _as_result(self, logs, return_dict):
        if return_dict:
            return logs
        if not self.metrics:
            return logs["loss"]
        return [logs["loss"]] + [logs[m.name] for m in self.metrics]

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """The loss (and metrics) over x, y (arrays, or a generator / PyDataset giving batches):
        loss if there are no metrics, else [loss, *metrics] in compile order (return_dict: a dict).
        sample_weight weighs the loss and metrics as in fit; steps: at most this many batches;
        callbacks get on_test_begin / _batch_begin / _batch_end / _end."""
        self._require_compiled()
        verbose = 1 if verbose == "auto" else verbose
        logs = self._keeping_fit_metrics(
            lambda: _training.evaluate(self, x, y, batch_size, verbose, sample_weight, steps, callbacks))
        return self._as_result(logs, return_dict)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on the batch (x, y); its loss and metrics (as evaluate returns them)."""
        self._require_compiled()
        logs = self._keeping_fit_metrics(lambda: _training.train_on_batch(self, x, y, sample_weight, class_weight))
        return self._as_result(logs, return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """The loss and metrics of the batch (x, y), without training."""
        self._require_compiled()
        logs = self._keeping_fit_metrics(lambda: _training.test_on_batch(self, x, y, sample_weight))
        return self._as_result(logs, return_dict)

    def reset_metrics(self):
        """Resets the compiled metrics' states."""
        for m in self.metrics:
            m.reset_state()

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
        trainable = sum(int(np.prod(layer.weight_specs[i][1])) for layer in self._compute_layers
                        for i in layer._trained_weights())
        lines.append(f" Total params: {self.count_params():,}")
        lines.append(f" Trainable params: {trainable:,}")
        lines.append(f" Non-trainable params: {self.count_params() - trainable:,}")
        for line in lines:
            print_fn(line)

    def get_config(self):
        return {"name": self.name, "input_shape": list(self._input_shape) if self.built else None,
                "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self._layers]}

    def save_weights(self, filepath, overwrite=True):
        """Writes the weights alone to one file, atomically: a name ending in .h5 gets Keras 3's
        .weights.h5 layout (with the optimizer's variables, as Keras writes them; needs h5py), any
        other an .npz of the parameter buffer and each weight's shape (no optimizer state)."""
        from . import saving
        with self._compute_lock:
            saving.save_weights(self, filepath, overwrite)

    def load_weights(self, filepath):
        """Reads weights written by save_weights (or Keras's .weights.h5) into this model (the same
        architecture: every weight's shape is checked before any is set)."""
        from . import saving
        saving.load_weights(self, filepath)

    def save(self, filepath):
        """Writes the model to one file: architecture, compile settings and weights, with the
        optimizer state so that training resumes exactly. No pickle; the write is atomic. A name
        ending in .keras gets Keras 3's format (keras.models.load_model opens it; needs h5py);
        any other, fastdl's own (.fastdl by convention)."""
        from . import saving
        name = os.fsdecode(os.fspath(filepath))
        if name.endswith(".h5"):
            raise ValueError(f"{name}: the legacy Keras 2 HDF5 model format is not written; use a name ending in "
                             f".keras (Keras 3's format) or .fastdl")
        with self._compute_lock:  # weights and optimizer state of one whole step
            if name.endswith(".keras"):
                from . import _keras_file
                _keras_file.save_model(self, name)
            else:
                saving._save_native(self, filepath)

    def export(self, filepath, format="onnx"):
        """Exports the model for inference; format 'onnx' (needs the `onnx` package)."""
        if format != "onnx":
            raise ValueError(f"format must be 'onnx', got {format!r}")
        from . import onnx_export
        with self._compute_lock:
            onnx_export.export(self, filepath)


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):
    """Loads a model written by Model.save (compiled, with its optimizer state, if it was), or a
    Keras 3 .keras file of layers fastdl has (Keras's arguments; compile=False: a .keras file's
    model uncompiled; custom_objects cannot be honoured and are refused)."""
    from . import saving
    return saving.load_model(filepath, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode)


def _metric_list(metrics):
    if metrics is None:
        return []
    if isinstance(metrics, (str, metrics_module.Metric)):
        metrics = [metrics]
    return [metrics_module.get(m) for m in metrics]
