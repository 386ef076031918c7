// The CPU glue's multi-tensor arguments, shared by the optimizer bindings (cpu_optim.cpp: SGD, Adam,
// the gradient norm; cpu_adaptive_optim.cpp: the adaptive optimizers): the tensors of one call,
// checked and turned into a TensorList, and the kernel table of a dtype.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include "../cpu/dispatch.h"
#include "array_args.h"
#include "list_args.h"

namespace fastdl {
namespace glue {
namespace cpu_args {

template <class T>
constexpr DType dtype_of() { return std::is_same<T, float>::value ? DType::f32 : DType::f64; }

// One call's tensors. When built from arrays it keeps a reference to each of them until the
// kernel has returned: the sequences passed in need not hold their own references (a
// generator-like sequence, or a list another thread changes while the GIL is released).
template <class T>
struct Tensors {
  std::vector<py::array> owners;
  std::vector<int64_t> offsets{0};
  std::vector<T*> params, momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq;
  std::vector<const T*> grads;
  std::vector<int64_t> steps;
  std::vector<T*> states[3];        // the adaptive optimizers' state, by their rule's slot order
  std::vector<double> mu_products;  // NAdam

  size_t count() const { return offsets.size() - 1; }

  static std::vector<py::array> arrays(const py::sequence& seq, const char* name, size_t count) {
    if (static_cast<size_t>(py::len(seq)) != count)
      throw py::value_error(std::string(name) + " has " + std::to_string(py::len(seq)) + " arrays but params has " +
                            std::to_string(count));
    std::vector<py::array> out;
    out.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      py::object o = seq[i];
      if (!py::isinstance<py::array>(o)) throw py::type_error(item(name, i) + " is not a NumPy array");
      out.push_back(o.cast<py::array>());
    }
    return out;
  }

  // From NumPy arrays: params (written), grads (read).
  void from_arrays(const py::sequence& p, const py::sequence& g) {
    size_t n = py::len(p);
    std::vector<py::array> ps = arrays(p, "params", n), gs = arrays(g, "grads", n);
    for (size_t i = 0; i < n; ++i) {
      std::string pn = item("params", i), gn = item("grads", i);
      require_dtype(ps[i], dtype_of<T>(), pn.c_str(), "params[0]");
      require_dtype(gs[i], dtype_of<T>(), gn.c_str(), pn.c_str());
      require_size(gs[i], ps[i].size(), gn.c_str(), pn.c_str());
      params.push_back(output<T>(ps[i], pn.c_str()));
      grads.push_back(input<T>(gs[i], gn.c_str()));
      offsets.push_back(offsets.back() + static_cast<int64_t>(ps[i].size()));
    }
    owners.insert(owners.end(), ps.begin(), ps.end());
    owners.insert(owners.end(), gs.begin(), gs.end());
  }

  // One state slot (exp_avg, ...) of arrays: the sizes of params, writeable.
  void add_state(std::vector<T*>& dst, const py::object& seq, const char* name) {
    if (!py::isinstance<py::sequence>(seq)) throw py::type_error(std::string(name) + " must be a list of arrays");
    std::vector<py::array> ss = arrays(seq.cast<py::sequence>(), name, count());
    for (size_t i = 0; i < count(); ++i) {
      std::string sn = item(name, i);
      require_dtype(ss[i], dtype_of<T>(), sn.c_str(), "params");
      require_size(ss[i], offsets[i + 1] - offsets[i], sn.c_str(), item("params", i).c_str());
      dst.push_back(output<T>(ss[i], sn.c_str()));
    }
    owners.insert(owners.end(), ss.begin(), ss.end());
  }

  // From raw addresses (fastdl.torch): sizes in elements.
  static std::vector<uintptr_t> addresses(const py::sequence& seq, const char* name, size_t count) {
    if (static_cast<size_t>(py::len(seq)) != count)
      throw py::value_error(std::string(name) + " has " + std::to_string(py::len(seq)) + " entries, expected " +
                            std::to_string(count));
    std::vector<uintptr_t> out(count);
    for (size_t i = 0; i < count; ++i) {
      out[i] = seq[i].cast<uintptr_t>();
      if (out[i] == 0 || out[i] % alignof(T) != 0) throw py::value_error(item(name, i) + " is not a valid address");
    }
    return out;
  }

  void from_addresses(const py::sequence& p, const py::sequence& g, const py::sequence& sizes) {
    append_sizes(sizes, offsets);
    const size_t n = count();
    for (uintptr_t a : addresses(p, "params", n)) params.push_back(reinterpret_cast<T*>(a));
    for (uintptr_t a : addresses(g, "grads", n)) grads.push_back(reinterpret_cast<const T*>(a));
  }

  void add_state_addresses(std::vector<T*>& dst, const py::object& seq, const char* name) {
    if (!py::isinstance<py::sequence>(seq)) throw py::type_error(std::string(name) + " must be a list of addresses");
    for (uintptr_t a : addresses(seq.cast<py::sequence>(), name, count())) dst.push_back(reinterpret_cast<T*>(a));
  }

  void set_steps(const py::array& counts) { steps = step_counts(counts, count()); }

  TensorList<T> list() const {
    auto ptr = [](const std::vector<T*>& v) { return v.empty() ? nullptr : v.data(); };
    return {static_cast<int64_t>(count()), offsets.data(), ptr(params), grads.empty() ? nullptr : grads.data(),
            ptr(momentum_buffer), ptr(exp_avg), ptr(exp_avg_sq), ptr(max_exp_avg_sq),
            steps.empty() ? nullptr : steps.data(), nullptr, nullptr, nullptr, nullptr, nullptr,
            mu_products.empty() ? nullptr : mu_products.data()};
  }
};

template <class T>
const cpu::Kernels<T>& table() {
  if constexpr (std::is_same<T, float>::value) return cpu::kernels().f32;
  else return cpu::kernels().f64;
}

inline DType params_dtype(const py::sequence& params) {
  if (py::len(params) == 0) return DType::f32;
  py::object first = params[0];
  if (!py::isinstance<py::array>(first)) throw py::type_error("params[0] is not a NumPy array");
  return float_dtype(first.cast<py::array>(), "params[0]");
}

template <class F>
auto with_dtype(DType dt, F f) {
  return dt == DType::f32 ? f(float{}) : f(double{});
}

// The raw entry points (fastdl.torch) name the dtype: the storage type T and the kernel table
// (adaptive(options): the adaptive optimizer's entry of options' type). 16-bit parameters
// (bfloat16, float16) are stepped with float math (cpu::HalfKernels), their state in their dtype or
// in float32 (adaptive_f32_state).
struct F32 {
  using T = float;
  static const cpu::Kernels<float>& k() { return cpu::kernels().f32; }
  template <class O>
  static cpu::StepFn<T, O> adaptive(const O& o) { return cpu::kernels().adaptive->of(o).f32; }
};
struct F64 {
  using T = double;
  static const cpu::Kernels<double>& k() { return cpu::kernels().f64; }
  template <class O>
  static cpu::StepFn<T, O> adaptive(const O& o) { return cpu::kernels().adaptive->of(o).f64; }
};
struct BF16 {
  using T = uint16_t;
  static const cpu::HalfKernels& k() { return cpu::kernels().bf16; }
  template <class O>
  static cpu::StepFn<T, O> adaptive(const O& o) { return cpu::kernels().adaptive->of(o).bf16; }
  template <class O>
  static cpu::F32StateStepFn<O> adaptive_f32_state(const O& o) { return cpu::kernels().adaptive->of(o).bf16_f32_state; }
};
struct FP16 {
  using T = uint16_t;
  static const cpu::HalfKernels& k() { return cpu::kernels().f16; }
  template <class O>
  static cpu::StepFn<T, O> adaptive(const O& o) { return cpu::kernels().adaptive->of(o).f16; }
  template <class O>
  static cpu::F32StateStepFn<O> adaptive_f32_state(const O& o) { return cpu::kernels().adaptive->of(o).f16_f32_state; }
};

template <class F>
auto with_named_dtype(const std::string& name, F f) {
  if (name == "float32") return f(F32{});
  if (name == "float64") return f(F64{});
  if (name == "bfloat16") return f(BF16{});
  if (name == "float16") return f(FP16{});
  throw py::type_error("dtype must be 'float32', 'float64', 'bfloat16' or 'float16', got '" + name + "'");
}

// The float32 state slots of a 16-bit step: a list over the same tensors (offsets) whose state
// slots are float addresses.
inline Tensors<float> float_state_of(const Tensors<uint16_t>& t) {
  Tensors<float> st;
  st.offsets = t.offsets;
  return st;
}

}  // namespace cpu_args
}  // namespace glue
}  // namespace fastdl
