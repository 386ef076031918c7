"""The model's run plan: its layers, with some runs of adjacent layers replaced by one fused step.

A fused step is not a layer: the layers keep their weights, configs and places in model.layers;
the step only changes how the model runs them (Sequential._plan_run puts the steps in
_run_layers, which _forward and the backward plan walk). A step offers what the run asks of a
layer: forward, backward, output_mask, _trained_weights and the masking / regularizer attributes.
Layers with an activity regularizer are never fused (their outputs must exist).

- FusedEmbeddingMean: Embedding -> GlobalAveragePooling1D, in training and inference: one pass
  over the table's rows (the embedding_bag kernel) instead of a (batch, steps, dim) gather.
- FusedConvNorm: Conv1D / Conv2D (no activation, groups 1) -> BatchNormalization [-> Activation]:
  at inference the normalization's per-channel affine y = z s + t (s = gamma / sqrt(moving_var +
  eps), t = beta - moving_mean s) is folded into the convolution, act(rows @ (W s) + (b s + t)): one
  matmul and one fused epilogue instead of three passes over the output. In training the layers
  run one by one (the batch statistics need the convolution's output).
"""

import numpy as np

from . import _backend
from ._checks import array_module
from ._conv_layers import Conv1D, Conv2D
from ._embedding import Embedding
from ._norm_layers import BatchNormalization
from ._pooling_layers import GlobalAveragePooling1D
from .layers import _IDENTITY, Activation


class _Step:
    supports_masking = False
    activity_regularizer = None

    def __init__(self, *layers):
        self.layers = layers

    def output_mask(self, mask):
        return None

    def _trained_weights(self):
        return [i for layer in self.layers for i in layer._trained_weights()]


class FusedEmbeddingMean(_Step):
    """Embedding -> GlobalAveragePooling1D as one pass (Embedding.bag_forward / bag_backward)."""

    def forward(self, x, training=False):
        return self.layers[0].bag_forward(x)

    def backward(self, dy, need_dx=True):
        return self.layers[0].bag_backward(dy, need_dx)


class FusedConvNorm(_Step):
    """Conv -> BatchNormalization [-> Activation]; folded into one matmul and epilogue at inference."""

    def forward(self, x, training=False):
        if training:
            for layer in self.layers:
                x = layer.forward(x, True)
            return x
        return self._folded(x)

    def backward(self, dy, need_dx=True):
        *after, conv = self.layers[::-1]
        for layer in after:
            dy = layer.backward(dy, True)
        return conv.backward(dy, need_dx)

    def _folded(self, x):
        conv, norm = self.layers[:2]
        act = self.layers[2].activation if len(self.layers) == 3 and not self.layers[2].logits_out else None
        xp = np if type(x) is np.ndarray else array_module(x)
        scale, shift = norm._inference_affine(xp)
        kernel = conv._kernel_matrix() * scale
        bias = shift + conv.weights[1] * scale if conv.use_bias else shift
        rows = conv._rows(x)
        z = conv._buffer("folded", (len(rows), conv.filters), xp)
        xp.matmul(rows, kernel, out=z)
        op, alpha = (_IDENTITY, 0.0) if act is None or act.is_identity else (act.kernel, act.alpha)
        _backend.kernels_for(z).bias_activation(op, z, bias, None, z, alpha)
        return z.reshape((len(x),) + conv.output_shape)


def _fuses_conv_norm(conv, norm):
    return (type(conv) in (Conv1D, Conv2D) and conv.groups == 1 and conv.activation.is_identity
            and type(norm) is BatchNormalization)


def _fuses_embedding_mean(embedding, pooling):
    return (type(embedding) is Embedding and type(pooling) is GlobalAveragePooling1D
            and pooling.data_format == "channels_last" and not pooling.keepdims and len(embedding.input_shape) == 1)


def _unregularized(*layers):
    return all(layer is not None and layer.activity_regularizer is None for layer in layers)


def plan(layers):
    """The steps a model runs for its (built) layers, in order."""
    steps, i = [], 0
    while i < len(layers):
        a, b, c = (layers[j] if j < len(layers) else None for j in (i, i + 1, i + 2))
        if _unregularized(a, b) and _fuses_embedding_mean(a, b):
            steps.append(FusedEmbeddingMean(a, b))
            i += 2
        elif _unregularized(a, b) and _fuses_conv_norm(a, b):
            elementwise = type(c) is Activation and _unregularized(c) and not c.activation.is_row
            steps.append(FusedConvNorm(a, b, c) if elementwise else FusedConvNorm(a, b))
            i += 3 if elementwise else 2
        else:
            steps.append(a)
            i += 1
    return steps
