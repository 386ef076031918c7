// Checking NumPy arrays handed to the kernels. The Python layer validates arguments first and
// gives the friendlier errors; these checks make the extension safe on its own (no call into
// it can read or write out of bounds) and name the argument at fault.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

namespace fastdl {
namespace glue {

namespace py = pybind11;

enum class DType { f32, f64 };

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline DType float_dtype(const py::array& a, const char* name) {
  if (py::isinstance<py::array_t<float>>(a)) return DType::f32;
  if (py::isinstance<py::array_t<double>>(a)) return DType::f64;
  throw py::type_error(std::string(name) + " must be a float32 or float64 array, got dtype " + dtype_name(a));
}

inline void require_dtype(const py::array& a, DType dt, const char* name, const char* like) {
  if (float_dtype(a, name) != dt)
    throw py::type_error(std::string(name) + " has dtype " + dtype_name(a) + " but " + like + " is " +
                         (dt == DType::f32 ? "float32" : "float64"));
}

inline void require_layout(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  if (a.itemsize() > 0 && reinterpret_cast<uintptr_t>(a.data()) % static_cast<uintptr_t>(a.itemsize()) != 0)
    throw py::value_error(std::string(name) + " must be aligned to its element size");
}

inline void require_size(const py::array& a, int64_t n, const char* name, const char* like) {
  if (static_cast<int64_t>(a.size()) != n)
    throw py::value_error(std::string(name) + " has " + std::to_string(a.size()) + " elements but " + like +
                          " has " + std::to_string(n));
}

// An optional array argument: a NumPy array or a TypeError (never a converted temporary, whose
// contents a kernel would write into and lose).
inline py::array as_array(const py::object& o, const char* name) {
  if (!py::isinstance<py::array>(o))
    throw py::type_error(std::string(name) + " must be a NumPy array or None, got " +
                         py::str(py::type::of(o).attr("__name__")).cast<std::string>());
  return o.cast<py::array>();
}

template <class T>
const T* input(const py::array& a, const char* name) {
  require_layout(a, name);
  return static_cast<const T*>(a.data());
}

template <class T>
T* output(py::array& a, const char* name) {
  require_layout(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " is read-only");
  return static_cast<T*>(a.mutable_data());
}

}  // namespace glue
}  // namespace fastdl
