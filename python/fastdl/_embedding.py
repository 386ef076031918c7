"""Embedding: integer ids -> rows of a (input_dim, output_dim) table, Keras's arguments.

The forward is a gather; the backward sums each token's output gradient into its id's row with
the embedding_backward kernel, which adds in token order (no float atomics): the same bits every
run. The model feeds inputs as float32, which holds every id below 2**24 exactly. With
mask_zero=True, id 0 is padding: the layer gives the mask (ids != 0) to the layers after it
(GlobalAveragePooling1D leaves masked steps out of its mean).
"""

import numpy as np

from . import _backend, constraints, initializers, regularizers
from ._checks import array_module, flag
from .layers import Layer


class Embedding(Layer):
    """output[n, t] = embeddings[ids[n, t]] for (batch, steps) ids; embeddings (input_dim, output_dim)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, activity_regularizer=None, name=None,
                 input_shape=None, trainable=True):
        super().__init__(name=name, input_shape=input_shape, activity_regularizer=activity_regularizer,
                         trainable=trainable)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg} must be a positive int, got {value!r}")
        self.input_dim, self.output_dim = int(input_dim), int(output_dim)
        self.embeddings_initializer = initializers.check(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = flag(mask_zero, "mask_zero")
        if weights is not None:
            raise NotImplementedError("Embedding(weights=...): build the model, then layer.set_weights([matrix])")

    def build(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                        self.embeddings_regularizer, self.embeddings_constraint)
        return tuple(input_shape) + (self.output_dim,)

    def forward(self, x, training=False):
        xp = np if type(x) is np.ndarray else array_module(x)
        ids = x.astype(np.int64).reshape(-1)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.input_dim):
            raise IndexError(f"{self.name}: ids must be in [0, {self.input_dim}) (input_dim), got "
                             f"{int(ids.min())}..{int(ids.max())}")
        out = self._buffer("y", (len(ids), self.output_dim), xp)
        xp.take(self.weights[0], ids, axis=0, out=out)
        self._ids, self._mask = ids, (x != 0) if self.mask_zero else None
        return out.reshape(x.shape + (self.output_dim,))

    def output_mask(self, mask):
        return self._mask

    def backward(self, dy, need_dx=True):
        if self.trainable:
            _backend.layer_kernel(dy, "embedding_backward")(self._ids, dy.reshape(-1, self.output_dim),
                                                            self.gradients[0])
        if not need_dx:
            return None
        xp = np if type(dy) is np.ndarray else array_module(dy)
        dx = self._buffer("dx", dy.shape[:-1], xp)  # ids have no gradient
        dx[...] = 0
        return dx

    def bag_forward(self, x):
        """This layer then GlobalAveragePooling1D in one pass: out[n] = the mean of embeddings[ids[n, t]]
        over the steps (those with id 0 left out when mask_zero; none left: 0), without the (batch,
        steps, output_dim) gather."""
        xp = np if type(x) is np.ndarray else array_module(x)
        ids = x.astype(np.int64).reshape(len(x), -1)
        if self.mask_zero:  # Keras's masked mean: the sum over the kept steps / their count
            scale = (1.0 / xp.maximum(xp.count_nonzero(ids, axis=1), 1)).astype(self.weights[0].dtype)
        else:
            scale = xp.full(len(ids), 1.0 / max(ids.shape[1], 1), dtype=self.weights[0].dtype)
        out = self._buffer("bag", (len(ids), self.output_dim), xp)
        try:  # the kernel checks the ids' range (in the pass that copies them)
            _backend.layer_kernel(out, "embedding_bag")(ids, self.weights[0], scale, out, self._ignored_id)
        except IndexError as e:
            raise IndexError(f"{self.name}: {e} (input_dim)") from None
        self._ids, self._scale = ids, scale
        return out

    def bag_backward(self, dy, need_dx=True):
        """bag_forward's gradient: each kept token's row of the table gets its bag's dy / count."""
        if self.trainable:
            _backend.layer_kernel(dy, "embedding_bag_backward")(self._ids, dy, self._scale, self.gradients[0],
                                                                self._ignored_id)
        if not need_dx:
            return None
        xp = np if type(dy) is np.ndarray else array_module(dy)
        dx = self._buffer("dx", self._ids.shape, xp)  # ids have no gradient
        dx[...] = 0
        return dx

    @property
    def _ignored_id(self):
        return 0 if self.mask_zero else -1

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim, mask_zero=self.mask_zero,
                      embeddings_initializer=initializers.serialize(self.embeddings_initializer))
        if self.embeddings_regularizer is not None:
            config["embeddings_regularizer"] = regularizers.serialize(self.embeddings_regularizer)
        if self.embeddings_constraint is not None:
            config["embeddings_constraint"] = constraints.serialize(self.embeddings_constraint)
        return config

