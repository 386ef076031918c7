"""Conv1D and Conv2D, channels_last: im2col, then Dense's matmul and fused epilogue.

A convolution of a (N, H, W, C) batch with a Keras kernel (kh, kw, C, F) is a matmul: the im2col
kernel lays each output position's window out as a row of kh kw C values (ordered (i, j, c), the
kernel's own order), so rows (N OH OW, kh kw C) @ kernel viewed as (kh kw C, F) gives the output
(N OH OW, F). The layer is therefore a Dense over those rows: the same BLAS matmul, the same fused
bias + activation epilogue (and its fused backward), the same logits path when it ends the model.
The backward's input gradient is col2im (the adjoint of im2col: each input position sums what its
windows' rows received, in a fixed order). A 1x1 convolution with stride 1 needs no im2col: its
rows are the input's. A 1-D convolution is a 2-D one on an image of height 1.

With groups > 1 (and in DepthwiseConv1D / 2D, _depthwise_conv_layers.py) the one matmul becomes
a batched matmul over the groups (_grouped_matmul.py) between im2col and the same epilogue.
"""

import numpy as np

from . import _backend, _grouped_matmul, _spatial
from ._checks import array_module
from .layers import Dense


class _Conv(Dense):
    rank = 2

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None, dilation_rate=1, groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, input_shape=None, name=None, trainable=True):
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"filters must be a positive int, got {filters!r}")
        super().__init__(filters, activation=activation, use_bias=use_bias, kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, activity_regularizer=activity_regularizer,
                         kernel_constraint=kernel_constraint, bias_constraint=bias_constraint,
                         input_shape=input_shape, name=name, trainable=trainable)
        self.filters = int(filters)
        self.kernel_size = _spatial.int_tuple(kernel_size, self.rank, "kernel_size")
        self.strides = _spatial.int_tuple(strides, self.rank, "strides")
        self.dilation_rate = _spatial.int_tuple(dilation_rate, self.rank, "dilation_rate")
        if any(s > 1 for s in self.strides) and any(d > 1 for d in self.dilation_rate):
            raise ValueError("strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")
        self.padding = _spatial.padding_arg(padding, ("valid", "same", "causal") if self.rank == 1
                                            else ("valid", "same"))
        self.data_format = _spatial.data_format_arg(data_format)
        if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
            raise ValueError(f"groups must be a positive int, got {groups!r}")
        if filters % groups:
            raise ValueError(f"filters must be divisible by groups: got filters={filters}, groups={groups}")
        self.groups = int(groups)

    # -- structure -----------------------------------------------------------------------------------
    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            raise ValueError(f"{self.name}: {type(self).__name__} takes inputs of shape (batch, "
                             f"{'steps' if self.rank == 1 else 'rows, cols'}, channels), got (batch,) + "
                             f"{tuple(input_shape)}")
        channels = input_shape[-1]
        self._input_channels(channels)
        self.add_weight("kernel", self._kernel_shape(channels), self.kernel_initializer,
                        self.kernel_regularizer, self.kernel_constraint)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer,
                            self.bias_constraint)
        size = (1,) * (2 - self.rank) + tuple(input_shape[:-1])  # (H, W); a sequence is H = 1
        kernel = (1,) * (2 - self.rank) + self.kernel_size
        strides = (1,) * (2 - self.rank) + self.strides
        dilation = (1,) * (2 - self.rank) + self.dilation_rate
        padding = ("valid",) * (2 - self.rank) + (self.padding,) * self.rank
        (oh, pt), (ow, pl) = (_spatial.window(n, k, s, d, p, self.name)
                              for n, k, s, d, p in zip(size, kernel, strides, dilation, padding))
        self._image = size + (channels,)
        self._out = (oh, ow)
        self._geometry = kernel + strides + dilation + (pt, pl)  # im2col's arguments after the arrays
        self._pointwise = kernel == (1, 1) and strides == (1, 1) and (pt, pl) == (0, 0)
        return ((ow,) if self.rank == 1 else (oh, ow)) + (self.filters,)

    @property
    def _taps(self):
        """kh kw: the window's positions (im2col's geometry starts with kh, kw)."""
        return self._geometry[0] * self._geometry[1]

    def _input_channels(self, channels):
        """Checks the input's channel count against groups (a depthwise convolution adopts it)."""
        if channels % self.groups:
            raise ValueError(f"{self.name}: the input's channels must be divisible by groups: got {channels} "
                             f"channels, groups={self.groups}")

    def _kernel_shape(self, channels):
        """Keras's kernel shape: kernel_size + (channels per group, filters)."""
        return self.kernel_size + (channels // self.groups, self.filters)

    def _kernel_matrix(self, arrays=None):
        k = (self.weights if arrays is None else arrays)[0]
        return k.reshape(-1, self.filters)

    # -- running --------------------------------------------------------------------------------------
    def _rows(self, x):
        """The matmul's rows for a batch x: each output position's window (im2col), or for a 1x1
        convolution with stride 1 the image's pixels themselves."""
        n = len(x)
        image = x.reshape((n,) + self._image)
        if self._pointwise:
            return image.reshape(-1, self._image[-1])
        xp = np if type(x) is np.ndarray else array_module(x)
        cols = self._buffer("cols", (n,) + self._out + (self._taps * self._image[-1],), xp)
        _backend.layer_kernel(x, "im2col")(image, cols, *self._geometry)
        return cols.reshape(-1, cols.shape[-1])

    def forward(self, x, training=False):
        n = len(x)
        rows = self._rows(x)
        if self.groups == 1:
            y = Dense.forward(self, rows, training)
        else:
            y = self._grouped_forward(rows)
        return y.reshape((n,) + self.output_shape)

    def backward(self, dy, need_dx=True):
        n = len(dy)
        if self.groups == 1:
            d_rows = Dense.backward(self, dy.reshape(-1, self.filters), need_dx)
        else:
            d_rows = self._grouped_backward(dy.reshape(-1, self.filters), need_dx)
        if d_rows is None:
            return None
        if self._pointwise:
            return d_rows.reshape((n,) + self.input_shape)
        xp = np if type(dy) is np.ndarray else array_module(dy)
        dx = self._buffer("dimage", (n,) + self._image, xp)
        _backend.layer_kernel(dy, "col2im")(d_rows.reshape((n,) + self._out + (-1,)), dx, *self._geometry)
        return dx.reshape((n,) + self.input_shape)

    def _grouped_forward(self, rows):
        """Dense.forward with the grouped matmul: z = the groups' products, then the same epilogue."""
        xp = np if type(rows) is np.ndarray else array_module(rows)
        z = self._buffer("z", (len(rows), self.filters), xp)
        self._group_rows = _grouped_matmul.forward(rows, self._kernel_matrix(), z, self._taps, self._buffer, xp)
        return self._epilogue(z, xp)

    def _grouped_backward(self, dy, need_dx):
        """Dense.backward with the grouped matmul: the epilogue's backward (bias gradient), then the
        kernel's gradient and, when need_dx, the im2col rows' gradient (M, kh kw C)."""
        xp = np if type(dy) is np.ndarray else array_module(dy)
        dz = self._epilogue_backward(dy)
        r = self._group_rows  # (G, M, kh kw C / G)
        dkernel = self._kernel_matrix(self.gradients) if self.trainable else None
        d_rows = self._buffer("dx", (r.shape[1], r.shape[0] * r.shape[2]), xp) if need_dx else None
        if dkernel is not None or d_rows is not None:
            _grouped_matmul.backward(r, dz, self._kernel_matrix(), dkernel, d_rows, self._taps, self._buffer, xp)
        return d_rows

    def get_config(self):
        config = Dense.get_config(self)
        config.pop("units")
        kernel_size, strides, dilation = self.kernel_size, self.strides, self.dilation_rate
        config.update(filters=self.filters, kernel_size=kernel_size, strides=strides, padding=self.padding,
                      data_format=self.data_format, dilation_rate=dilation, groups=self.groups)
        return config


class Conv2D(_Conv):
    """2-D convolution over (batch, rows, cols, channels) inputs, Keras's arguments:
    y[n, p, q, f] = activation(bias[f] + sum_{i, j, c} x[n, p sh + i dh - pt, q sw + j dw - pl, c]
    kernel[i, j, c, f]), zero outside the image; padding 'valid' or 'same' (TensorFlow's split).
    groups G: the kernel is (kh, kw, C / G, F) and filter f sees only the input channels
    g C/G + c, c < C/G, of its group g = f // (F / G) (the sum above runs over those c)."""
    rank = 2


class Conv1D(_Conv):
    """1-D convolution over (batch, steps, channels) inputs, Keras's arguments; padding 'valid',
    'same' or 'causal' (output t sees inputs <= t); groups as Conv2D's."""
    rank = 1
