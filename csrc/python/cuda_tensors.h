// The CUDA glue's multi-tensor arguments, shared by the optimizer bindings (cuda_optim.cpp: SGD,
// Adam, the gradient norm; cuda_adaptive_optim.cpp: the adaptive optimizers): one call's device
// addresses, sizes and step counts as a TensorList, and the device clip factor / found_inf checks.
#pragma once

#include <string>
#include <vector>

#include "cuda_args.h"
#include "list_args.h"

namespace fastdl {
namespace glue {
namespace cuda_args {

// One call's tensors, copied out of the Python lists while the GIL is held.
struct DeviceTensors {
  cuda::DType dt;
  std::vector<int64_t> offsets{0}, steps;
  std::vector<void*> params, momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq;
  std::vector<const void*> grads;
  std::vector<void*> states[3];     // the adaptive optimizers' state, by their rule's slot order
  std::vector<double> mu_products;  // NAdam

  DeviceTensors(cuda::DType dtype, const py::sequence& sizes) : dt(dtype) { append_sizes(sizes, offsets); }

  size_t count() const { return offsets.size() - 1; }

  // One address per tensor, checked against the tensor's size (elements of `as`, by default dt).
  std::vector<void*> addresses(const py::object& seq, const char* name) const { return addresses(seq, name, dt); }
  std::vector<void*> addresses(const py::object& seq, const char* name, cuda::DType as) const {
    if (!py::isinstance<py::sequence>(seq)) throw py::type_error(std::string(name) + " must be a list of addresses");
    py::sequence s = seq.cast<py::sequence>();
    if (static_cast<size_t>(py::len(s)) != count())
      throw py::value_error(std::string(name) + " has " + std::to_string(py::len(s)) + " entries, expected " +
                            std::to_string(count()));
    std::vector<void*> out(count());
    for (size_t i = 0; i < count(); ++i) {
      uintptr_t a = s[i].cast<uintptr_t>();
      check_address(a, offsets[i + 1] - offsets[i], as, item(name, i).c_str());
      out[i] = reinterpret_cast<void*>(a);
    }
    return out;
  }

  void set_steps(const py::object& counts) { steps = step_counts(counts, count()); }

  TensorList<void> list() const {
    auto ptr = [](const std::vector<void*>& v) { return v.empty() ? nullptr : v.data(); };
    return {static_cast<int64_t>(count()), offsets.data(), ptr(params), grads.empty() ? nullptr : grads.data(),
            ptr(momentum_buffer), ptr(exp_avg), ptr(exp_avg_sq), ptr(max_exp_avg_sq),
            steps.empty() ? nullptr : steps.data(), nullptr, nullptr, nullptr, nullptr, nullptr,
            mu_products.empty() ? nullptr : mu_products.data()};
  }
};

// With clip_ptr != 0 the kernel reads the clipping factor from the device, and options.clip_coef
// (then typically a device array) is not read.
inline bool device_clip(uintptr_t clip_ptr) {
  if (clip_ptr % 8 != 0) throw py::value_error("clip_ptr must be the address of a device double");
  return clip_ptr != 0;
}

// found_inf: 0, or the address of GradScaler's device float (a step skipped where it is not 0).
inline uintptr_t checked_found_inf(uintptr_t found_inf) {
  if (found_inf % 4 != 0) throw py::value_error("found_inf must be the address of a device float");
  return found_inf;
}

// step_ptrs: None, or one device float address per tensor: the tensors' step counts on the device.
inline std::vector<const float*> step_addresses(const py::object& step_ptrs, size_t count) {
  std::vector<const float*> out;
  if (step_ptrs.is_none()) return out;
  if (!py::isinstance<py::sequence>(step_ptrs)) throw py::type_error("step_ptrs must be None or a list of addresses");
  py::sequence s = step_ptrs.cast<py::sequence>();
  if (static_cast<size_t>(py::len(s)) != count)
    throw py::value_error("step_ptrs has " + std::to_string(py::len(s)) + " entries, expected " +
                          std::to_string(count));
  for (size_t i = 0; i < count; ++i) {
    uintptr_t a = s[i].cast<uintptr_t>();
    if (a == 0 || a % 4 != 0) throw py::value_error(item("step_ptrs", i) + " must be the address of a device float");
    out.push_back(reinterpret_cast<const float*>(a));
  }
  return out;
}

}  // namespace cuda_args
}  // namespace glue
}  // namespace fastdl
