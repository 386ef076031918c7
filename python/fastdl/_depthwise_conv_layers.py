"""DepthwiseConv1D and DepthwiseConv2D, Keras's arguments: each input channel convolved with its
own depth_multiplier filters, no sum across channels.

    y[n, p, q, c dm + m] = activation(bias[c dm + m]
                                      + sum_{i, j} x[n, p sh + i dh - pt, q sw + j dw - pl, c] kernel[i, j, c, m])

with dm = depth_multiplier and Keras's kernel (kh, kw, C, dm). That is a grouped convolution with
groups = C and filters = C dm: its kernel (kh, kw, C / groups = 1, C dm) is the same memory as
(kh, kw, C, dm), output channel c dm + m belonging to group c. So the layer is a _Conv whose
groups and filters are set from the input's channels at build, and whose kernel is declared in
Keras's shape (the file formats and the initializers' fans see Keras's weight).
"""

import numpy as np

from . import _spatial
from ._conv_layers import _Conv
from .layers import Dense


class _DepthwiseConv(_Conv):

    def __init__(self, kernel_size, strides=1, padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=1, activation=None, use_bias=True, depthwise_initializer="glorot_uniform",
                 bias_initializer="zeros", depthwise_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, depthwise_constraint=None, bias_constraint=None, input_shape=None,
                 name=None, trainable=True):
        if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, (int, np.integer)) \
                or depth_multiplier < 1:
            raise ValueError(f"depth_multiplier must be a positive int, got {depth_multiplier!r}")
        _spatial.padding_arg(padding)  # 'valid' or 'same' (Keras's depthwise layers have no 'causal')
        # filters and groups are placeholders until build, where the input's channels set them
        super().__init__(int(depth_multiplier), kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=depthwise_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=depthwise_regularizer,
                         bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                         kernel_constraint=depthwise_constraint, bias_constraint=bias_constraint,
                         input_shape=input_shape, name=name, trainable=trainable)
        self.depth_multiplier = int(depth_multiplier)

    def _input_channels(self, channels):
        """One group per input channel, depth_multiplier filters each."""
        self.groups = channels
        self.filters = self.units = channels * self.depth_multiplier

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.depth_multiplier)

    def get_config(self):
        config = Dense.get_config(self)
        config.pop("units")
        for key in ("initializer", "regularizer", "constraint"):
            if f"kernel_{key}" in config:
                config[f"depthwise_{key}"] = config.pop(f"kernel_{key}")
        config.update(depth_multiplier=self.depth_multiplier, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, data_format=self.data_format, dilation_rate=self.dilation_rate)
        return config


class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2-D convolution over (batch, rows, cols, channels) inputs (keras.layers.DepthwiseConv2D):
    kernel (kh, kw, C, depth_multiplier), output channels C depth_multiplier ordered (channel, multiplier)."""
    rank = 2

    def __init__(self, kernel_size, strides=(1, 1), padding="valid", depth_multiplier=1, data_format=None,
                 dilation_rate=(1, 1), **kwargs):
        super().__init__(kernel_size, strides=strides, padding=padding, depth_multiplier=depth_multiplier,
                         data_format=data_format, dilation_rate=dilation_rate, **kwargs)


class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1-D convolution over (batch, steps, channels) inputs (keras.layers.DepthwiseConv1D):
    kernel (k, C, depth_multiplier); padding 'valid' or 'same'."""
    rank = 1
