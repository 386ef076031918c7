"""BatchNormalization and LayerNormalization, Keras 3's arguments and semantics, over the fused
batch_norm / layer_norm kernels (statistics, normalization and affine in one pass; the backward in
one more).

BatchNormalization (channels_last: axis -1) normalizes each channel over the batch and every
spatial position. In training (fit, with the layer trainable) it uses the batch's statistics and
moves its moving mean and variance towards them: moving = moving momentum + batch (1 - momentum)
(Keras's momentum: the weight of the old value; the batch variance is the biased one, as Keras's).
Otherwise (inference, or a frozen layer: Keras 3 runs a non-trainable BatchNormalization in
inference mode) it applies y = x scale + shift with scale = gamma / sqrt(moving_variance + eps),
shift = beta - moving_mean scale: one channel_affine pass. The moving statistics are weights the
optimizer never steps (Layer.state_weights).

LayerNormalization normalizes each sample over the axes given (the last by default; any set),
with gamma and beta of those axes' shape.
"""

import numpy as np

from . import _backend, constraints, initializers, regularizers
from ._checks import array_module, flag, real
from .layers import Layer



class _Normalization(Layer):
    propagates_mask = True

    def _affine_args(self, center, scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
                     beta_constraint, gamma_constraint, epsilon):
        self.center, self.scale = flag(center, "center"), flag(scale, "scale")
        self.epsilon = real(epsilon, "epsilon")
        if not self.epsilon > 0:
            raise ValueError(f"epsilon must be > 0, got {epsilon!r}")
        self.beta_initializer = initializers.check(beta_initializer)
        self.gamma_initializer = initializers.check(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def _add_affine(self, shape):
        """gamma then beta (those asked for), as Keras orders them; their indices."""
        self._gamma = self._beta = None
        if self.scale:
            self._gamma = len(self.weight_specs)
            self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer, self.gamma_constraint)
        if self.center:
            self._beta = len(self.weight_specs)
            self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer, self.beta_constraint)

    def _weight(self, index, arrays=None):
        return None if index is None else (self.weights if arrays is None else arrays)[index]

    def _grad(self, index):
        return self.gradients[index] if index is not None and self.trainable else None

    def _affine_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, center=self.center, scale=self.scale,
                      beta_initializer=initializers.serialize(self.beta_initializer),
                      gamma_initializer=initializers.serialize(self.gamma_initializer))
        for key in ("beta_regularizer", "gamma_regularizer"):
            if getattr(self, key) is not None:
                config[key] = regularizers.serialize(getattr(self, key))
        for key in ("beta_constraint", "gamma_constraint"):
            if getattr(self, key) is not None:
                config[key] = constraints.serialize(getattr(self, key))
        return config


class BatchNormalization(_Normalization):
    """y = gamma (x - mean) / sqrt(var + epsilon) + beta per channel (see the module)."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 synchronized=False, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if axis not in (-1, [-1], (-1,)) and not isinstance(axis, (int, np.integer)):
            raise TypeError(f"axis must be an int, got {axis!r}")
        self.axis = int(axis if isinstance(axis, (int, np.integer)) else axis[0])
        self.momentum = real(momentum, "momentum")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if flag(synchronized, "synchronized"):
            raise NotImplementedError("synchronized=True (statistics over every process's batch) is not "
                                      "implemented: each process normalizes with its own batch's statistics")
        self._affine_args(center, scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
                          beta_constraint, gamma_constraint, epsilon)
        self.moving_mean_initializer = initializers.check(moving_mean_initializer)
        self.moving_variance_initializer = initializers.check(moving_variance_initializer)

    def build(self, input_shape):
        rank = len(input_shape) + 1
        if self.axis not in (-1, rank - 1):
            raise NotImplementedError(f"{self.name}: axis={self.axis}: BatchNormalization normalizes the last "
                                      f"(channels) axis, channels_last")
        channels = input_shape[-1]
        self._add_affine((channels,))
        self._moving_mean = len(self.weight_specs)
        self.add_weight("moving_mean", (channels,), self.moving_mean_initializer, trainable=False)
        self._moving_variance = len(self.weight_specs)
        self.add_weight("moving_variance", (channels,), self.moving_variance_initializer, trainable=False)
        self._channels = channels
        return input_shape

    def forward(self, x, training=False):
        xp, c = array_module(x), self._channels
        rows = x.reshape(-1, c)
        y = self._buffer("y", rows.shape, xp)
        self._batch_statistics = training and self.trainable and len(rows) > 0
        if self._batch_statistics:
            mean, var, rstd = (self._buffer(k, (c,), xp) for k in ("mean", "var", "rstd"))
            _backend.layer_kernel(x, "batch_norm")(rows, self._weight(self._gamma), self._weight(self._beta), y,
                                                   mean, var, rstd, self.epsilon)
            m, rest = np.float32(self.momentum), np.float32(1.0 - self.momentum)  # Keras's float32 factors
            for moving, batch in ((self.weights[self._moving_mean], mean), (self.weights[self._moving_variance], var)):
                moving *= m
                moving += rest * batch
            self._x, self._mean, self._rstd = rows, mean, rstd
        else:
            scale, shift = self._inference_affine(xp)
            _backend.layer_kernel(x, "channel_affine")(rows, scale, shift, y)
        return y.reshape(x.shape)

    def _inference_affine(self, xp):
        """(scale, shift) of y = x scale + shift from the moving statistics (float64, then float32)."""
        var = self.weights[self._moving_variance].astype(np.float64)
        scale = 1.0 / xp.sqrt(var + self.epsilon)
        if self._gamma is not None:
            scale = scale * self.weights[self._gamma]
        shift = -self.weights[self._moving_mean] * scale
        if self._beta is not None:
            shift = shift + self.weights[self._beta]
        self._scale = scale.astype(np.float32)
        return self._scale, shift.astype(np.float32)

    def backward(self, dy, need_dx=True):
        xp, c = array_module(dy), self._channels
        d = dy.reshape(-1, c)
        if not self._batch_statistics:  # inference mode (a frozen layer): y = x scale + shift
            if not need_dx:
                return None
            dx = self._buffer("dx", d.shape, xp)
            _backend.layer_kernel(dy, "channel_affine")(d, self._scale, xp.zeros(c, np.float32), dx)
            return dx.reshape(dy.shape)
        dx = self._buffer("dx", d.shape, xp) if need_dx else None
        _backend.layer_kernel(dy, "batch_norm_backward")(d, self._x, self._weight(self._gamma), self._mean,
                                                         self._rstd, dx, self._grad(self._gamma),
                                                         self._grad(self._beta))
        return None if dx is None else dx.reshape(dy.shape)

    def get_config(self):
        config = self._affine_config()
        config.update(axis=self.axis, momentum=self.momentum,
                      moving_mean_initializer=initializers.serialize(self.moving_mean_initializer),
                      moving_variance_initializer=initializers.serialize(self.moving_variance_initializer))
        return config


class LayerNormalization(_Normalization):
    """y = gamma (x - mean) / sqrt(var + epsilon) + beta, mean and (biased) var over `axis` of each
    sample; gamma and beta shaped as those axes."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, name=None, input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer)) for a in axes):
            raise TypeError(f"axis must be an int or a list of ints, got {axis!r}")
        self.axis = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        if flag(rms_scaling, "rms_scaling"):
            raise NotImplementedError("rms_scaling=True is not implemented")
        self.rms_scaling = False
        self._affine_args(center, scale, beta_initializer, gamma_initializer, beta_regularizer, gamma_regularizer,
                          beta_constraint, gamma_constraint, epsilon)

    def build(self, input_shape):
        rank = len(input_shape) + 1  # with the batch axis, as Keras's axis counts
        axes = sorted({a % rank for a in (self.axis if isinstance(self.axis, list) else [self.axis])})
        if any(a == 0 or not -rank <= a < rank for a in axes):
            raise ValueError(f"{self.name}: axis={self.axis} must name axes of the sample, not the batch axis, "
                             f"for inputs of rank {rank}")
        kept = [a for a in range(1, rank) if a not in axes]
        # the normalized axes last, so that each sample's group is one contiguous row
        self._perm = None if kept == list(range(1, len(kept) + 1)) else [0] + kept + axes
        self._inverse = None if self._perm is None else list(np.argsort(self._perm))
        self._width = int(np.prod([input_shape[a - 1] for a in axes]))
        self._add_affine(tuple(input_shape[a - 1] for a in axes))
        return input_shape

    def forward(self, x, training=False):
        xp = array_module(x)
        moved = x if self._perm is None else xp.ascontiguousarray(x.transpose(self._perm))
        rows = moved.reshape(-1, self._width)
        y = self._buffer("y", rows.shape, xp)
        mean, rstd = self._buffer("mean", (len(rows),), xp), self._buffer("rstd", (len(rows),), xp)
        _backend.layer_kernel(x, "layer_norm")(rows, self._flat(self._gamma), self._flat(self._beta), y, mean, rstd,
                                               self.epsilon)
        self._x, self._mean, self._rstd, self._moved_shape = rows, mean, rstd, moved.shape
        return self._back(y.reshape(moved.shape), xp)

    def _flat(self, index, arrays=None):
        w = self._weight(index, arrays)
        return None if w is None else w.reshape(-1)

    def _back(self, a, xp):
        return a if self._inverse is None else xp.ascontiguousarray(a.transpose(self._inverse))

    def backward(self, dy, need_dx=True):
        xp = array_module(dy)
        if self._perm is not None:
            dy = xp.ascontiguousarray(dy.transpose(self._perm))
        d = dy.reshape(-1, self._width)
        dx = self._buffer("dx", d.shape, xp) if need_dx else None
        grads = [None if not self.trainable or i is None else self.gradients[i].reshape(-1)
                 for i in (self._gamma, self._beta)]
        _backend.layer_kernel(d, "layer_norm_backward")(d, self._x, self._flat(self._gamma), self._mean, self._rstd,
                                                        dx, *grads)
        return None if dx is None else self._back(dx.reshape(self._moved_shape), xp)

    def get_config(self):
        config = self._affine_config()
        config.update(axis=self.axis, rms_scaling=self.rms_scaling)
        return config
