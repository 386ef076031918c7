"""fastdl.ops: fused activations and losses on NumPy arrays (C++ kernels, or NumPy when the
extension is absent or FASTDL_BACKEND=numpy)."""

from .activations import (
    elu, elu_backward, exponential, exponential_backward, gelu, gelu_backward, hard_sigmoid, hard_sigmoid_backward,
    leaky_relu, leaky_relu_backward, log_softmax, log_softmax_backward, mish, mish_backward, relu, relu6,
    relu6_backward, relu_backward, selu, selu_backward, sigmoid, sigmoid_backward, silu, silu_backward, softmax,
    softmax_backward, softplus, softplus_backward, softsign, softsign_backward, tanh, tanh_backward,
)
from .losses import binary_crossentropy, elementwise_loss, mse, row_loss, softmax_cross_entropy

__all__ = [
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward", "relu", "relu_backward", "leaky_relu",
    "leaky_relu_backward", "gelu", "gelu_backward", "silu", "silu_backward", "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward", "elu", "elu_backward", "selu", "selu_backward", "softplus",
    "softplus_backward", "softsign", "softsign_backward", "relu6", "relu6_backward", "hard_sigmoid",
    "hard_sigmoid_backward", "mish", "mish_backward", "exponential", "exponential_backward",
    "mse", "binary_crossentropy", "softmax_cross_entropy", "elementwise_loss", "row_loss",
]
