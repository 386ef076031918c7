// Arguments of the multi-tensor entry points shared by the CPU and CUDA glue: element names for
// messages, the tensors' sizes as offsets, the step counts and the state's dtype. Copied while the GIL is held:
// the kernels read them after it is released.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fastdl {
namespace glue {

namespace py = pybind11;

inline std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// offsets += running totals of `sizes` (each >= 0); offsets starts as {0}.
inline void append_sizes(const py::sequence& sizes, std::vector<int64_t>& offsets) {
  const size_t n = py::len(sizes);
  for (size_t i = 0; i < n; ++i) {
    int64_t s = sizes[i].cast<int64_t>();
    if (s < 0) throw py::value_error(item("sizes", i) + " is negative");
    offsets.push_back(offsets.back() + s);
  }
}

// Each tensor's step count including this step: an int64 array of `count`, every count >= 1.
inline std::vector<int64_t> step_counts(const py::handle& steps, size_t count) {
  if (!py::isinstance<py::array_t<int64_t>>(steps)) throw py::type_error("steps must be an int64 array");
  auto a = py::array_t<int64_t, py::array::c_style>::ensure(steps);
  if (!a || static_cast<size_t>(a.size()) != count)
    throw py::value_error("steps has " + std::to_string(a ? a.size() : 0) + " elements but params has " +
                          std::to_string(count));
  std::vector<int64_t> out(a.data(), a.data() + count);
  for (size_t i = 0; i < count; ++i)
    if (out[i] < 1) throw py::value_error(item("steps", i) + " must be >= 1 (the count including this step)");
  return out;
}

// One float64 per tensor (NAdam's mu_products): a float64 array of `count` elements.
inline std::vector<double> per_tensor_doubles(const py::handle& values, size_t count, const char* name) {
  if (!py::isinstance<py::array_t<double>>(values))
    throw py::type_error(std::string(name) + " must be a float64 array (one value per tensor)");
  auto a = py::array_t<double, py::array::c_style>::ensure(values);
  if (!a || static_cast<size_t>(a.size()) != count)
    throw py::value_error(std::string(name) + " has " + std::to_string(a ? a.size() : 0) +
                          " elements but params has " + std::to_string(count));
  return std::vector<double>(a.data(), a.data() + count);
}

// Whether the state (momentum buffers, moments) is float32 beside 16-bit parameters
// (state_dtype 'float32'); None or the parameters' dtype: stored as the parameters are.
inline bool float32_state(const std::string& dtype, const py::object& state_dtype) {
  if (state_dtype.is_none()) return false;
  if (!py::isinstance<py::str>(state_dtype)) throw py::type_error("state_dtype must be a dtype name or None");
  const std::string s = state_dtype.cast<std::string>();
  if (s == dtype) return false;
  if (s == "float32" && (dtype == "bfloat16" || dtype == "float16")) return true;
  throw py::type_error("state_dtype must be the parameters' dtype or, for bfloat16 and float16 parameters, "
                       "'float32'; got '" + s + "' for " + dtype + " parameters");
}

}  // namespace glue
}  // namespace fastdl
