"""Layers, Keras's names and arguments: Dense, Activation, Dropout, Flatten, Input, and the small
ones: ReLU, LeakyReLU, Softmax, Identity, Reshape, Rescaling, GaussianNoise; for images and text
(their own modules, imported at the end): convolutions (_conv_layers, _depthwise_conv_layers),
pooling (_pooling_layers), BatchNormalization / LayerNormalization (_norm_layers), Embedding
(_embedding), padding, cropping, upsampling and spatial dropout (_image_layers), augmentation
(_augment_layers).

A layer declares its weights in build(); the model then places every weight in one contiguous
parameter buffer and every gradient in one gradient buffer (layers hold views), so that an
optimizer step is one fused call over the whole model. Each layer keeps its activations in
buffers allocated once per batch size: a training step allocates nothing.
"""

import contextlib
import re
import threading

import numpy as np

from . import _backend, _random, activations, constraints, initializers, regularizers
from ._checks import array_module, flag, on_device, real

_IDENTITY = _backend.ACTIVATIONS["identity"]
_names = {}
_names_lock = threading.Lock()


def _auto_name(prefix):
    with _names_lock:  # layers made in several threads still get unique names
        _names[prefix] = _names.get(prefix, 0) + 1
        return prefix if _names[prefix] == 1 else f"{prefix}_{_names[prefix] - 1}"


class Layer:
    """Base class. Subclasses implement build (declaring weights, returning the output shape),
    forward(x, training) and backward(dy, need_dx).

    Masks (an Embedding's mask_zero): a layer that uses the mask of the layer before declares
    supports_masking (the model sets layer.mask before its forward); one that passes it on
    unchanged declares propagates_mask; output_mask gives the mask after the layer."""

    supports_masking = False
    propagates_mask = False

    def output_mask(self, mask):
        return mask if self.propagates_mask else None

    def __init__(self, name=None, input_shape=None, activity_regularizer=None, trainable=True):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        # False: the layer's weights stay as they are in training (Keras's freezing); its
        # gradients are not computed, and the optimizer steps the other layers only
        self.trainable = flag(trainable, "trainable")
        # a penalty on the layer's output, divided by the batch's rows (Keras 3), added to the loss
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.weight_regularizers = {}  # weight index -> Regularizer
        self.weight_constraints = {}   # weight index -> Constraint
        self.state_weights = set()     # indices of weights the optimizer never steps (BatchNorm's moving stats)
        self.name = name or _auto_name(_snake(type(self).__name__))
        self.input_shape = None if input_shape is None else _shape(input_shape, "input_shape")
        self.output_shape = None
        self.built = False
        self.weight_specs = []  # (name, shape, initializer)
        self.weights = []       # arrays: views into the model's parameter buffer
        self.gradients = []     # views into its gradient buffer
        self._buffers = {}
        self._lock = threading.RLock()  # replaced by the model's compute lock when added to one

    # -- structure -----------------------------------------------------------------------------
    def add_weight(self, name, shape, initializer, regularizer=None, constraint=None, trainable=True):
        """Declares a weight; its regularizer's penalty joins the loss, its constraint is applied
        after each optimizer step. trainable=False: a state the layer updates itself (Keras's
        non-trainable variables: BatchNormalization's moving mean and variance)."""
        index = len(self.weight_specs)
        if not trainable:
            self.state_weights.add(index)
        self.weight_specs.append((name, tuple(int(s) for s in shape), initializers.check(initializer)))
        if regularizer is not None:
            self.weight_regularizers[index] = regularizer
        if constraint is not None:
            self.weight_constraints[index] = constraint

    def build(self, input_shape):
        """Declares weights for inputs of shape (batch,) + input_shape; returns the output shape."""
        return input_shape

    def _build(self, input_shape):
        self.input_shape = tuple(input_shape)
        self.weight_specs = []
        self.weight_regularizers, self.weight_constraints, self.state_weights = {}, {}, set()
        self.output_shape = tuple(self.build(self.input_shape))
        self.built = True
        return self.output_shape

    def count_params(self):
        return int(sum(np.prod(s) for _, s, _ in self.weight_specs))

    def _trained_weights(self):
        """Indices of the weights the optimizer steps: none for a frozen layer, never the states."""
        if not self.trainable:
            return []
        return [i for i in range(len(self.weight_specs)) if i not in self.state_weights]

    def __setstate__(self, state):
        state.setdefault("state_weights", set())  # a layer pickled before state weights existed
        self.__dict__.update(state)
        self._lock = threading.RLock()  # the model that holds this layer sets its own

    def get_weights(self):
        """Copies of the layer's weights as NumPy arrays (Keras's layer.get_weights)."""
        with self._lock:
            return [np.array(w.get() if on_device(w) else w) for w in self.weights]

    def set_weights(self, weights):
        """Sets the layer's weights from arrays shaped as get_weights() gives them; all are checked first."""
        weights = list(weights)
        if len(weights) != len(self.weights):
            raise ValueError(f"{self.name}: set_weights got {len(weights)} arrays for {len(self.weights)} weights")
        arrays = []
        for i, (new, w) in enumerate(zip(weights, self.weights)):
            new = new.get() if on_device(new) else np.asarray(new)
            if new.shape != w.shape:
                raise ValueError(f"{self.name}: weights[{i}] has shape {new.shape}, the layer's {w.shape}")
            arrays.append(new.astype(np.float32))
        with self._lock:
            for new, w in zip(arrays, self.weights):
                w[...] = array_module(w).asarray(new)

    def get_config(self):
        config = {"name": self.name}
        if not self.trainable:
            config["trainable"] = False
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        trainable = config.pop("trainable", True)
        layer = cls(**config)
        layer.trainable = flag(trainable, "trainable")
        return layer

    # -- running ---------------------------------------------------------------------------------
    def forward(self, x, training=False):
        return x

    def backward(self, dy, need_dx=True):
        return dy

    def __call__(self, x):
        """Applies the layer (inference) to an array; the layer must belong to a built model. The
        result is on the device of x (a NumPy array in, a NumPy array out). A layer with weights
        runs where its weights are (x is moved there); one without runs where x is."""
        host_in = not on_device(x)
        if self.weights and on_device(self.weights[0]):  # a GPU model's layer: runs on its device
            xp, place = array_module(self.weights[0]), self.weights[0].device
        elif self.weights or host_in:
            xp, place = np, contextlib.nullcontext()
            x = x.get() if not host_in else x
        else:
            xp, place = array_module(x), x.device
        with place:
            x = xp.ascontiguousarray(xp.asarray(x, dtype=np.float32))
        with self._lock, place:  # the layer's buffers are shared with its model's other users
            if getattr(self, "logits_out", False):
                self.logits_out = False  # the activation itself, not fit's logits (fit sets it each step)
            y = self.forward(x, training=False).copy()
        return y.get() if host_in and on_device(y) else y

    def __getstate__(self):  # copy.deepcopy / pickle: no lock, no scratch buffers
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_buffers"] = {}
        state.pop("_device_rng", None)
        state.pop("_device_rng_source", None)
        return state

    def _buffer(self, key, shape, xp=np, dtype=np.float32):
        """An array kept for reuse: allocated on first use for each shape (usually one or two
        batch sizes), then the same memory every step. xp: numpy, or cupy for a GPU model."""
        shape = tuple(shape)
        buf = self._buffers.get((key, shape, xp))
        if buf is None:
            if len(self._buffers) > 64:  # many distinct batch sizes: start over rather than grow
                self._buffers.clear()
            buf = self._buffers[(key, shape, xp)] = xp.empty(shape, dtype=dtype)
        return buf

    def __repr__(self):
        return f"<{type(self).__name__} {self.name}>"


class InputLayer(Layer):
    """Marks the input shape of a Sequential model: models.Sequential([layers.Input((100,)), ...])."""

    def __init__(self, shape=None, name=None, input_shape=None):
        shape = shape if shape is not None else input_shape
        if shape is None:
            raise ValueError("Input needs a shape, e.g. layers.Input(shape=(100,))")
        super().__init__(name=name, input_shape=shape)

    @property
    def shape(self):
        return (None,) + self.input_shape

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape)}


def Input(shape=None, name=None, **kwargs):
    """The input of a Sequential model, as keras.Input(shape): shape excludes the batch axis."""
    if "batch_size" in kwargs or "batch_shape" in kwargs:
        raise ValueError("fastdl models take any batch size: give Input only shape=(features...)")
    if kwargs:
        raise TypeError(f"Input() got unexpected arguments {sorted(kwargs)}")
    return InputLayer(shape=shape, name=name)


class Dense(Layer):
    """y = activation(x @ kernel + bias) on the last axis: inputs (batch, ..., features) give
    (batch, ..., units), as Keras's Dense (a (batch, steps, features) input is steps rows each).

    The matmul is NumPy's BLAS (cuBLAS through CuPy on a GPU); bias and activation are one fused
    pass after it, and their backward (with the bias gradient) one fused pass before the two
    gradient matmuls.
    """
    propagates_mask = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, input_shape=None, input_dim=None, name=None,
                 trainable=True):
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape, activity_regularizer=activity_regularizer,
                         trainable=trainable)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"units must be a positive int, got {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = flag(use_bias, "use_bias")
        self.kernel_initializer = initializers.check(kernel_initializer)
        self.bias_initializer = initializers.check(bias_initializer)
        self.logits_out = False  # set by the model when the loss takes this layer's logits

    def build(self, input_shape):
        if len(input_shape) < 1:
            raise ValueError(f"{self.name}: Dense takes inputs of shape (batch, ..., features), got (batch,)")
        self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer, self.kernel_regularizer,
                        self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer, self.bias_constraint)
        return tuple(input_shape[:-1]) + (self.units,)

    def _forward_nd(self, x):
        self._lead = x.shape[:-1]  # (batch, ...): the rows of a 2-D pass over the last axis
        return self.forward(x.reshape(-1, x.shape[-1])).reshape(self._lead + (self.units,))

    def _backward_nd(self, dy, need_dx):
        dx = self.backward(dy.reshape(-1, self.units), need_dx)
        return None if dx is None else dx.reshape(self._lead + (dx.shape[-1],))

    def forward(self, x, training=False):
        if x.ndim != 2:
            return self._forward_nd(x)
        xp = np if type(x) is np.ndarray else array_module(x)
        z = self._buffer("z", (len(x), self.units), xp)
        xp.matmul(x, self._kernel_matrix(), out=z)
        self._x = x
        return self._epilogue(z, xp)

    def _epilogue(self, z, xp):
        """y = activation(z + bias) from the matmul's (rows, units) result z (the layer's "z"
        buffer, overwritten): one fused pass, or the logits z + bias when the loss takes them.
        Keeps what _epilogue_backward needs; returns y (z itself or the "y" buffer)."""
        k = _backend.kernels_for(z)
        act = self.activation
        bias = self.weights[1] if self.use_bias else None
        if act.is_row or act.is_identity or self.logits_out:
            k.bias_activation(_IDENTITY, z, bias, None, z, 0.0)
            self._saved = z
            if act.is_row and not self.logits_out:
                y = self._buffer("y", z.shape, xp)
                k.softmax(z, y, act.is_log_softmax)
                self._saved = y
                return y
            return z
        if act.uses_output:  # y overwrites z: the backward needs only y
            k.bias_activation(act.kernel, z, bias, None, z, act.alpha)
            self._saved = z
            return z
        y = self._buffer("y", z.shape, xp)  # z becomes x = z + bias, kept for the backward
        k.bias_activation(act.kernel, z, bias, z, y, act.alpha)
        self._saved = z
        return y

    def backward(self, dy, need_dx=True):
        """dy: dL/d(output), or dL/d(logits) when the loss takes this layer's logits. Writes the
        weight gradients; returns dL/dx (in a reused buffer) when need_dx."""
        if dy.ndim != 2:
            return self._backward_nd(dy, need_dx)
        xp = np if type(dy) is np.ndarray else array_module(dy)
        dz = self._epilogue_backward(dy)
        if self.trainable:
            xp.matmul(self._x.T, dz, out=self._kernel_matrix(self.gradients))
        if not need_dx:
            return None
        dx = self._buffer("dx", self._x.shape, xp)
        xp.matmul(dz, self._kernel_matrix().T, out=dx)
        return dx

    def _epilogue_backward(self, dy):
        """dz = dL/dz from dy = dL/dy (or dL/d(logits)), written over dy and returned; writes the
        bias gradient sum_rows dz unless the layer is frozen."""
        k = _backend.kernels_for(dy)
        act = self.activation
        db = self.gradients[1] if self.use_bias else None
        if act.is_row and not self.logits_out:
            k.softmax_backward(dy, self._saved, dy, act.is_log_softmax)
            op, alpha = _IDENTITY, 0.0
        elif act.is_identity or self.logits_out or act.is_row:
            op, alpha = _IDENTITY, 0.0
        else:
            op, alpha = act.kernel, act.alpha
        if not self.trainable:
            db = None  # frozen: no weight gradients, only dx for the layers before
        if op != _IDENTITY:
            k.bias_activation_backward(op, dy, self._saved, dy, db, alpha)  # dz overwrites dy
        elif db is not None:  # dz = dy: the kernel only sums the columns (threaded, in double: 3x NumPy's sum)
            k.bias_activation_backward(op, dy, dy, dy, db, 0.0)
        return dy

    def _kernel_matrix(self, arrays=None):
        """The kernel (or, from self.gradients, its gradient) as the (inputs, units) matrix of the
        matmul: Dense's kernel itself; a convolution's (kh, kw, C, F) kernel viewed as (kh kw C, F)."""
        return (self.weights if arrays is None else arrays)[0]

    def get_config(self):
        config = {"name": self.name, "units": self.units, "activation": activations.serialize(self.activation),
                  "use_bias": self.use_bias, "kernel_initializer": initializers.serialize(self.kernel_initializer),
                  "bias_initializer": initializers.serialize(self.bias_initializer)}
        if not self.trainable:
            config["trainable"] = False
        for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer"):
            if getattr(self, key) is not None:
                config[key] = regularizers.serialize(getattr(self, key))
        for key in ("kernel_constraint", "bias_constraint"):
            if getattr(self, key) is not None:
                config[key] = constraints.serialize(getattr(self, key))
        return config


class Activation(Layer):
    """Applies an activation: layers.Activation('relu'), ..., Activation('softmax') over the last axis."""
    propagates_mask = True

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.activation = activations.get(activation)
        self.logits_out = False

    def forward(self, x, training=False):
        act = self.activation
        if act.is_identity or self.logits_out:
            return x
        y = self._buffer("y", x.shape, array_module(x))
        if act.is_row:
            _backend.kernels_for(x).softmax(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]), act.is_log_softmax)
        else:
            _backend.kernels_for(x).activation(act.kernel, x, y, act.alpha)
        self._saved = y if act.uses_output else x
        return y

    def backward(self, dy, need_dx=True):
        act = self.activation
        if act.is_identity or self.logits_out or not need_dx:
            return dy
        dx = self._buffer("dx", dy.shape, array_module(dy))
        if act.is_row:
            c = dy.shape[-1]
            _backend.kernels_for(dy).softmax_backward(dy.reshape(-1, c), self._saved.reshape(-1, c), dx.reshape(-1, c),
                                                      act.is_log_softmax)
        else:
            _backend.kernels_for(dy).activation_backward(act.kernel, dy, self._saved, dx, act.alpha)
        return dx

    def get_config(self):
        return {"name": self.name, "activation": activations.serialize(self.activation)}


class Dropout(Layer):
    """Training only: zeroes each input with probability `rate` and scales the rest by
    1 / (1 - rate); the identity at inference. Draws from fastdl's seeded random state."""
    propagates_mask = True

    def __init__(self, rate, name=None, input_shape=None, seed=None):
        super().__init__(name=name, input_shape=input_shape)
        rate = real(rate, "rate", 0.0, 1.0, high_open=True)
        self.rate = rate
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        rng = self._rng if self._rng is not None else _random.generator()
        xp = np if type(x) is np.ndarray else array_module(x)
        mask = self._buffer("mask", x.shape, xp)
        if xp is np:
            draw = self._buffer("draw", x.shape)
            rng.random(out=draw, dtype=np.float32)
            np.greater_equal(draw, self.rate, out=mask, casting="unsafe")
        else:  # drawn on the device by a generator seeded from fastdl's random state (again after a reseed)
            if getattr(self, "_device_rng_source", None) is not rng:
                self._device_rng = xp.random.default_rng(int(rng.integers(2 ** 63)))
                self._device_rng_source = rng
            xp.greater_equal(self._device_rng.random(x.shape, dtype=np.float32), self.rate, out=mask)
        mask *= np.float32(1.0 / (1.0 - self.rate))
        self._mask = mask
        y = self._buffer("y", x.shape, xp)
        xp.multiply(x, mask, out=y)
        return y

    def backward(self, dy, need_dx=True):
        if self._mask is None or not need_dx:
            return dy
        dx = self._buffer("dx", dy.shape, array_module(dy))
        array_module(dy).multiply(dy, self._mask, out=dx)
        return dx

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed}


class Flatten(Layer):
    """(batch, d1, d2, ...) -> (batch, d1 * d2 * ...)."""

    def build(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(self._shape)


class ReLU(Activation):
    """Keras's ReLU layer: max(x, 0), negative_slope * x below 0, or min(max(x, 0), 6) with
    max_value=6 (the fused relu / leaky_relu / relu6 kernels). Other max_value / threshold
    combinations are refused clearly rather than computed wrongly."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None, input_shape=None):
        slope = real(negative_slope, "negative_slope", 0.0)
        threshold = real(threshold, "threshold")
        if max_value is not None and (real(max_value, "max_value", 0.0) != 6.0 or slope or threshold):
            raise NotImplementedError("ReLU(max_value=m) is in fastdl for m = 6 (relu6) without negative_slope or "
                                      "threshold only")
        if threshold != 0.0:
            raise NotImplementedError("ReLU(threshold=...) is not in fastdl yet")
        act = "relu6" if max_value is not None else ({"name": "leaky_relu", "alpha": slope} if slope else "relu")
        super().__init__(act, name=name, input_shape=input_shape)
        self.max_value, self.negative_slope = (None if max_value is None else 6.0), slope

    def get_config(self):
        return {"name": self.name, "max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": 0.0}


class ELU(Activation):
    """x for x > 0, alpha (exp(x) - 1) otherwise (the fused elu kernel)."""

    def __init__(self, alpha=1.0, name=None, input_shape=None):
        alpha = real(alpha, "alpha", 0.0)
        super().__init__({"name": "elu", "alpha": alpha}, name=name, input_shape=input_shape)
        self.alpha = alpha

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}


class LeakyReLU(Activation):
    """x for x >= 0, negative_slope * x below (Keras 3's default slope 0.3)."""

    def __init__(self, negative_slope=0.3, name=None, input_shape=None):
        slope = real(negative_slope, "negative_slope", 0.0)
        super().__init__({"name": "leaky_relu", "alpha": slope}, name=name, input_shape=input_shape)
        self.negative_slope = slope

    def get_config(self):
        return {"name": self.name, "negative_slope": self.negative_slope}


class Softmax(Activation):
    """Softmax over the last axis (fused with a cross-entropy loss when it ends the model)."""

    def __init__(self, axis=-1, name=None, input_shape=None):
        if axis != -1:
            raise NotImplementedError(f"Softmax(axis={axis!r}): fastdl's softmax runs over the last axis (axis=-1)")
        super().__init__("softmax", name=name, input_shape=input_shape)

    def get_config(self):
        return {"name": self.name, "axis": -1}


class Identity(Layer):
    """Returns its input (keras.layers.Identity)."""
    propagates_mask = True


class Reshape(Layer):
    """(batch,) + input_shape -> (batch,) + target_shape; one entry may be -1 (inferred)."""

    def __init__(self, target_shape, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        target = tuple(int(t) for t in target_shape) if isinstance(target_shape, (tuple, list)) else None
        if target is None or any(t < 1 and t != -1 for t in target) or target.count(-1) > 1:
            raise ValueError(f"target_shape must be a tuple of positive ints with at most one -1, got {target_shape!r}")
        self.target_shape = target

    def build(self, input_shape):
        size, known = int(np.prod(input_shape)), int(np.prod([t for t in self.target_shape if t != -1]))
        if -1 in self.target_shape:
            if known == 0 or size % known:
                raise ValueError(f"{self.name}: cannot reshape {tuple(input_shape)} to {self.target_shape}")
            return tuple(size // known if t == -1 else t for t in self.target_shape)
        if known != size:
            raise ValueError(f"{self.name}: cannot reshape {tuple(input_shape)} ({size} values) to "
                             f"{self.target_shape} ({known})")
        return self.target_shape

    def forward(self, x, training=False):
        return x.reshape((len(x),) + self.output_shape)

    def backward(self, dy, need_dx=True):
        return dy.reshape((len(dy),) + self.input_shape)

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape)}


class Rescaling(Layer):
    """y = x * scale + offset (keras.layers.Rescaling, e.g. scale=1/255 for pixels)."""

    def __init__(self, scale, offset=0.0, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.scale, self.offset = real(scale, "scale", -np.inf), real(offset, "offset", -np.inf)

    def forward(self, x, training=False):
        y = self._buffer("y", x.shape, array_module(x))
        array_module(x).multiply(x, np.float32(self.scale), out=y)
        if self.offset:
            y += np.float32(self.offset)
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        dx = self._buffer("dx", dy.shape, array_module(dy))
        array_module(dy).multiply(dy, np.float32(self.scale), out=dx)
        return dx

    def get_config(self):
        return {"name": self.name, "scale": self.scale, "offset": self.offset}


class GaussianNoise(Layer):
    """Training only: adds N(0, stddev^2) noise to each input (fastdl's seeded random state, or
    seed); the identity at inference (keras.layers.GaussianNoise)."""

    def __init__(self, stddev, seed=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.stddev = real(stddev, "stddev", 0.0)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)

    def forward(self, x, training=False):
        if not training or self.stddev == 0.0:
            return x
        rng = self._rng if self._rng is not None else _random.generator()
        noise = rng.standard_normal(x.shape, dtype=np.float32) * np.float32(self.stddev)
        y = self._buffer("y", x.shape, array_module(x))
        array_module(x).add(x, array_module(x).asarray(noise), out=y)
        return y

    def get_config(self):
        return {"name": self.name, "stddev": self.stddev, "seed": self.seed}


class Normalization(Layer):
    """y = (x - mean) / max(sqrt(variance), 1e-7) over the last axis (invert: y = x sqrt(variance)
    + mean), Keras's Normalization: mean and variance given, or learnt from data by adapt(data).
    They are weights of the model that training leaves alone (non-trainable, with the sample
    count, as Keras counts them), saved with it."""

    EPSILON = 1e-7

    def __init__(self, axis=-1, mean=None, variance=None, invert=False, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape, trainable=False)
        if axis not in (-1, None) and not (isinstance(axis, int) and input_shape is not None
                                           and axis == len(_shape(input_shape, "input_shape"))):
            raise NotImplementedError(f"Normalization(axis={axis!r}): fastdl normalizes over the last axis "
                                      f"(axis=-1)")
        if (mean is None) != (variance is None):
            raise ValueError("Normalization takes both mean and variance, or neither (then adapt() sets them)")
        self.axis, self.invert = -1, flag(invert, "invert")
        self._given = None if mean is None else (np.asarray(mean, dtype=np.float64),
                                                 np.asarray(variance, dtype=np.float64))
        self._adapted = None

    def build(self, input_shape):
        d = input_shape[-1]
        mean, variance, count = self._statistics(d)
        self.add_weight("mean", (d,), initializers.Constant(0.0) if mean is None else _Values(mean))
        self.add_weight("variance", (d,), initializers.Constant(1.0) if variance is None else _Values(variance))
        self.add_weight("count", (), _Values(np.array(count, dtype=np.float64)))
        return input_shape

    def _statistics(self, d):
        if self._adapted is not None:
            return self._adapted
        if self._given is not None:
            mean, variance = (np.broadcast_to(a.reshape(-1) if a.ndim else a, (d,)) for a in self._given)
            return mean, variance, 0.0
        return None, None, 0.0

    def adapt(self, data, batch_size=None, steps=None):
        """Sets mean and variance from data (an array, or an iterable of arrays) over every axis but the last."""
        if isinstance(data, np.ndarray) or on_device(data):
            x = array_module(data).asarray(data, dtype=np.float64)
            x = x.get() if on_device(x) else x
            flat = x.reshape(-1, x.shape[-1])
        else:
            flat = np.concatenate([np.asarray(b, dtype=np.float64).reshape(-1, np.shape(b)[-1]) for b in data])
        self._adapted = (flat.mean(axis=0), flat.var(axis=0), float(len(flat)))
        if self.built and self.weights:  # in a built model: written into its weights
            for w, values in zip(self.weights, self._adapted):
                w[...] = array_module(w).asarray(np.asarray(values, dtype=np.float32))

    def forward(self, x, training=False):
        xp = array_module(x)
        mean, variance = self.weights[0], self.weights[1]
        scale = xp.maximum(xp.sqrt(variance), np.float32(self.EPSILON))
        y = self._buffer("y", x.shape, xp)
        if self.invert:
            xp.multiply(x, scale, out=y)
            y += mean
        else:
            xp.subtract(x, mean, out=y)
            y /= scale
        return y

    def backward(self, dy, need_dx=True):
        if not need_dx:
            return None
        xp = array_module(dy)
        scale = xp.maximum(xp.sqrt(self.weights[1]), np.float32(self.EPSILON))
        dx = self._buffer("dx", dy.shape, xp)
        if self.invert:
            xp.multiply(dy, scale, out=dx)
        else:
            xp.divide(dy, scale, out=dx)
        return dx

    def get_config(self):
        config = {"name": self.name, "axis": -1, "invert": self.invert}
        if self._given is not None:
            config.update(mean=self._given[0].tolist(), variance=self._given[1].tolist())
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config.pop("trainable", None)
        return cls(**config)


class _Values(initializers.Initializer):
    """Fixed values (a Normalization's statistics) as an initializer."""

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)

    def __call__(self, shape, dtype=None):
        return np.broadcast_to(self.values, tuple(shape)).astype(np.float32 if dtype is None else dtype)


from ._conv_layers import Conv1D, Conv2D  # noqa: E402  (they build on Layer and Dense above)
from ._depthwise_conv_layers import DepthwiseConv1D, DepthwiseConv2D  # noqa: E402
from ._pooling_layers import (MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D,  # noqa: E402
                              GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D)
from ._norm_layers import BatchNormalization, LayerNormalization  # noqa: E402
from ._embedding import Embedding  # noqa: E402
from ._image_layers import ZeroPadding2D, Cropping2D, UpSampling2D, SpatialDropout1D, SpatialDropout2D  # noqa: E402
from ._augment_layers import RandomFlip, RandomRotation, RandomCrop, RandomTranslation, RandomZoom  # noqa: E402

MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D, GlobalMaxPool2D = (GlobalAveragePooling1D, GlobalAveragePooling2D,
                                                                      GlobalMaxPooling1D, GlobalMaxPooling2D)
Convolution1D, Convolution2D = Conv1D, Conv2D  # Keras's aliases

LAYERS = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Dropout, Flatten, ReLU, LeakyReLU, ELU, Softmax, Identity, Reshape, Rescaling,
    GaussianNoise, Normalization, Conv1D, Conv2D, DepthwiseConv1D, DepthwiseConv2D, MaxPooling1D, MaxPooling2D,
    AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D,
    GlobalMaxPooling2D, BatchNormalization, LayerNormalization, Embedding, ZeroPadding2D, Cropping2D, UpSampling2D,
    SpatialDropout1D, SpatialDropout2D, RandomFlip, RandomRotation, RandomCrop, RandomTranslation, RandomZoom)}


def from_config(class_name, config):
    if class_name not in LAYERS:
        raise ValueError(f"unknown layer class {class_name!r} in the saved model")
    return LAYERS[class_name].from_config(dict(config))


def _shape(shape, name):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from None
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in shape):
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}")  # 3.9 is not truncated to 3
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"{name}={shape} must have positive sizes")
    return shape


def _snake(name):
    """Keras's default layer names: Dense -> dense, LeakyReLU -> leaky_re_lu, ReLU -> re_lu."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
