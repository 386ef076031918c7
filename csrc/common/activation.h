// Activation ids: the same numbers in the CPU module, the CUDA module and the NumPy fallback
// (fastdl.backends.numpy_kernels.ACTIVATIONS; fastdl checks at import that they agree).
#pragma once

namespace fastdl {

enum class Activation : int {
  sigmoid = 0, tanh, relu, leaky_relu, gelu, gelu_tanh, silu, identity,
  elu, selu, softplus, softsign, relu6, hard_sigmoid, mish, exponential, count
};

// The names, in id order, as Python sees them.
constexpr const char* kActivationNames[] = {"sigmoid", "tanh", "relu", "leaky_relu", "gelu", "gelu_tanh", "silu",
                                            "identity", "elu", "selu", "softplus", "softsign", "relu6",
                                            "hard_sigmoid", "mish", "exponential"};

// Which tensor an activation's backward needs: its output y (sigmoid, tanh, exponential) or its input x.
constexpr bool backward_uses_output(Activation op) {
  return op == Activation::sigmoid || op == Activation::tanh || op == Activation::exponential;
}

}  // namespace fastdl
