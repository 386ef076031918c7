// The optimizer options as both modules receive them from Python: the records
// fastdl.backends.options.SgdOptions / AdamOptions (NamedTuples), read here once for every entry
// point, CPU and CUDA, array or raw. Read by position, which is what makes a step's options cost
// ~0.1 us: the field order below is the records' (the modules export it as SGD_OPTION_FIELDS /
// ADAM_OPTION_FIELDS, and a test holds the Python records to it).
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "../common/optim_options.h"

namespace fastdl {
namespace glue {

namespace py = pybind11;

constexpr const char* kSgdOptionFields[] = {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                                            "clip_coef"};
constexpr const char* kAdamOptionFields[] = {"lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "decoupled",
                                             "maximize", "clip_coef"};

inline py::tuple option_fields(const py::handle& o, size_t n, const char* record) {
  if (!py::isinstance<py::tuple>(o) || py::len(o) != n)
    throw py::type_error(std::string("options must be a fastdl.backends.options.") + record);
  return py::reinterpret_borrow<py::tuple>(o);
}

// clip_coef must be a number for host arrays; on CUDA a device factor replaces it (device_clip):
// then the field (a device array) is not read.
inline double clip_field(const py::tuple& t, size_t i, bool device_clip) {
  if (device_clip) return 1.0;
  py::handle c = t[i];
  if (!py::isinstance<py::float_>(c) && !py::isinstance<py::int_>(c))
    throw py::type_error("options.clip_coef must be a number here (a device factor is passed as clip_ptr)");
  return c.cast<double>();
}

inline SgdOptions sgd_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 7, "SgdOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(),
          t[4].cast<bool>(),   t[5].cast<bool>(),   clip_field(t, 6, device_clip)};
}

inline AdamOptions adam_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 9, "AdamOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(), t[4].cast<double>(),
          t[5].cast<bool>(),   t[6].cast<bool>(),   t[7].cast<bool>(),   clip_field(t, 8, device_clip)};
}

// The field names, in order, for the module attributes SGD_OPTION_FIELDS / ADAM_OPTION_FIELDS.
inline void bind_option_fields(py::module_& m) {
  py::tuple sgd(7), adam(9);
  for (size_t i = 0; i < 7; ++i) sgd[i] = kSgdOptionFields[i];
  for (size_t i = 0; i < 9; ++i) adam[i] = kAdamOptionFields[i];
  m.attr("SGD_OPTION_FIELDS") = sgd;
  m.attr("ADAM_OPTION_FIELDS") = adam;
}

}  // namespace glue
}  // namespace fastdl
