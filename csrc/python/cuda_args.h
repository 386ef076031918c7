// Reading the CUDA module's arguments from Python: dtype names, activation ids, device
// addresses (ints, 0 = absent) and places. Only integers, strings and floats reach the launchers
// (csrc/cuda/launch.h); the caller (fastdl.backends.cuda) has checked shapes and dtypes, and
// these checks keep obviously wrong calls (a null or misaligned address, a negative size) from
// reaching the device.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "../cuda/launch.h"

namespace fastdl {
namespace glue {

namespace py = pybind11;

inline cuda::DType cuda_dtype(const std::string& name) {
  cuda::DType dt;
  if (!cuda::parse_dtype(name, dt))
    throw py::type_error("dtype must be 'float32', 'float64', 'float16' or 'bfloat16', got '" + name + "'");
  return dt;
}

inline Activation cuda_activation(int op) {
  if (op < 0 || op >= static_cast<int>(Activation::count))
    throw py::value_error("unknown activation id " + std::to_string(op));
  return static_cast<Activation>(op);
}

inline cuda::Place cuda_place(int device, uintptr_t stream) {
  if (device < 0) throw py::value_error("device must be >= 0, got " + std::to_string(device));
  return {device, stream};
}

inline void check_count(int64_t n, const char* name) {
  if (n < 0) throw py::value_error(std::string(name) + " must be >= 0, got " + std::to_string(n));
}

// rows * cols, refusing negative counts and a product beyond int64.
inline int64_t cuda_elements(int64_t rows, int64_t cols) {
  check_count(rows, "rows");
  check_count(cols, "cols");
  if (cols > 0 && rows > INT64_MAX / cols) throw py::value_error("rows * cols overflows int64");
  return rows * cols;
}

// An address the kernel reads or writes `n` elements at: non-null when n > 0 (unless optional and
// 0) and aligned to the element size.
inline void check_address(uintptr_t p, int64_t n, cuda::DType dt, const char* name, bool optional = false) {
  if (p == 0) {
    if (n > 0 && !optional) throw py::value_error(std::string(name) + " is a null address");
    return;
  }
  if (p % static_cast<uintptr_t>(cuda::itemsize(dt)) != 0)
    throw py::value_error(std::string(name) + " is not aligned to its element size");
}

// The loss output: one device double.
inline void check_loss(uintptr_t loss) {
  if (loss == 0 || loss % 8 != 0) throw py::value_error("loss must be the address of a device double");
}

}  // namespace glue
}  // namespace fastdl
