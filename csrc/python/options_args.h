// The optimizer options as both modules receive them from Python: an object with the fields
// of fastdl.backends.options.SgdOptions / AdamOptions (a NamedTuple), read by name here once
// for every entry point, CPU and CUDA, array or raw.
#pragma once

#include <pybind11/pybind11.h>

#include "../common/optim_options.h"

namespace fastdl {
namespace glue {

namespace py = pybind11;

inline double real_field(const py::handle& o, const char* name) { return o.attr(name).cast<double>(); }
inline bool flag_field(const py::handle& o, const char* name) { return o.attr(name).cast<bool>(); }

// clip_coef may be a device array on CUDA (read by the kernel there); here it must be a number.
inline double clip_field(const py::handle& o) {
  py::object c = o.attr("clip_coef");
  if (!py::isinstance<py::float_>(c) && !py::isinstance<py::int_>(c))
    throw py::type_error("options.clip_coef must be a number for host arrays");
  return c.cast<double>();
}

inline SgdOptions sgd_options(const py::handle& o) {
  return {real_field(o, "lr"),         real_field(o, "momentum"),  real_field(o, "dampening"),
          real_field(o, "weight_decay"), flag_field(o, "nesterov"), flag_field(o, "maximize"),
          clip_field(o)};
}

inline AdamOptions adam_options(const py::handle& o) {
  return {real_field(o, "lr"),           real_field(o, "beta1"),     real_field(o, "beta2"),
          real_field(o, "eps"),          real_field(o, "weight_decay"), flag_field(o, "amsgrad"),
          flag_field(o, "decoupled"),    flag_field(o, "maximize"),  clip_field(o)};
}

}  // namespace glue
}  // namespace fastdl
