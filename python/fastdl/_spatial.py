"""What the windowed layers (convolution, pooling) share: their arguments' checks and the output
size and padding of a window sliding over one axis, as Keras (TensorFlow's rules) computes them."""

import numpy as np


def int_tuple(value, n, name, minimum=1):
    """An int or a sequence of n ints, each >= minimum, as a tuple of n ints."""
    items = (value,) * n if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}") from None
    if len(items) != n or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in items):
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def padding_arg(value, allowed=("valid", "same")):
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"padding must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value.lower()


def data_format_arg(value):
    """Only channels_last (Keras's default) is implemented: the kernels are written for it."""
    if value in (None, "channels_last"):
        return "channels_last"
    if value == "channels_first":
        raise NotImplementedError("data_format='channels_first': fastdl's layers take channels_last inputs "
                                  "(batch, ..., channels); transpose the data once instead")
    raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {value!r}")


def window(size, kernel, stride, dilation, padding, name):
    """(output size, padding before) of a window of `kernel` taps `dilation` apart sliding by
    `stride` over `size` positions. 'valid': windows inside the input; 'same': ceil(size / stride)
    outputs, the padding split with the smaller half before (TensorFlow's rule); 'causal' (1-D
    convolutions): all the padding before, so output t sees inputs <= t."""
    span = dilation * (kernel - 1) + 1
    if padding == "valid":
        if size < span:
            raise ValueError(f"{name}: a window of {span} positions does not fit in an input of size {size} "
                             f"with padding='valid'")
        return (size - span) // stride + 1, 0
    out = -(-size // stride)
    if padding == "causal":
        return out, span - 1
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2
