// Activation forward and backward: elementwise maps of the functors in
// csrc/kernels/activations.h, one kernel per (activation, dtype), in the compute type.
#include "map.cuh"

#include "../kernels/activations.h"

namespace fastdl {
namespace cuda {

void activation(Activation op, DType dt, uintptr_t x, uintptr_t y, int64_t n, double alpha, Place at) {
  require(n >= 0, "activation: n must be >= 0");
  if (n == 0) return;
  DeviceGuard guard(at.device, "activation");
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::visit_activation<compute_t<T>>(op, alpha, [&](auto fwd, auto, bool) {
      launch_map<1>(fwd, reinterpret_cast<T*>(y), reinterpret_cast<const T*>(x), static_cast<const T*>(nullptr), n,
                    stream_of(at), "activation");
    });
  });
}

void activation_backward(Activation op, DType dt, uintptr_t grad, uintptr_t saved, uintptr_t out, int64_t n,
                         double alpha, Place at) {
  require(n >= 0, "activation_backward: n must be >= 0");
  if (n == 0) return;
  DeviceGuard guard(at.device, "activation_backward");
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::visit_activation<compute_t<T>>(op, alpha, [&](auto, auto bwd, bool) {
      launch_map<2>(bwd, reinterpret_cast<T*>(out), reinterpret_cast<const T*>(grad),
                    reinterpret_cast<const T*>(saved), n, stream_of(at), "activation_backward");
    });
  });
}

}  // namespace cuda
}  // namespace fastdl
