// The optimizer options as both modules receive them from Python: the records
// fastdl.backends.options.SgdOptions, AdamOptions, RmspropOptions, ... (NamedTuples), read here once
// for every entry point, CPU and CUDA, array or raw. Read by position, which is what makes a step's
// options cost ~0.1 us: the field order below is the records' (the modules export it as
// <NAME>_OPTION_FIELDS, and a test holds the Python records to it).
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

constexpr const char* kRmspropOptionFields[] = {"lr",       "alpha",    "eps",
                                                "weight_decay", "momentum", "centered",
                                                "maximize", "eps_inside_sqrt", "lr_in_momentum",
                                                "clip_coef"};
constexpr const char* kAdagradOptionFields[] = {"lr",       "lr_decay",        "weight_decay", "eps",
                                                "maximize", "eps_inside_sqrt", "clip_coef"};
constexpr const char* kAdadeltaOptionFields[] = {"lr", "rho", "eps", "weight_decay", "maximize", "clip_coef"};
constexpr const char* kAdamaxOptionFields[] = {"lr",           "beta1",    "beta2",           "eps",
                                               "weight_decay", "maximize", "eps_outside_max", "clip_coef"};
constexpr const char* kNadamOptionFields[] = {"lr",           "beta1",          "beta2",     "eps",
                                              "weight_decay", "momentum_decay", "decoupled", "maximize",
                                              "clip_coef"};
constexpr const char* kLionOptionFields[] = {"lr", "beta1", "beta2", "weight_decay", "maximize", "clip_coef"};

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

inline RmspropOptions rmsprop_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 10, "RmspropOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(), t[4].cast<double>(),
          t[5].cast<bool>(),   t[6].cast<bool>(),   t[7].cast<bool>(),   t[8].cast<bool>(),   clip_field(t, 9, device_clip)};
}

inline AdagradOptions adagrad_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 7, "AdagradOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(),
          t[4].cast<bool>(),   t[5].cast<bool>(),   clip_field(t, 6, device_clip)};
}

inline AdadeltaOptions adadelta_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 6, "AdadeltaOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(),
          t[4].cast<bool>(),   clip_field(t, 5, device_clip)};
}

inline AdamaxOptions adamax_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 8, "AdamaxOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(), t[4].cast<double>(),
          t[5].cast<bool>(),   t[6].cast<bool>(),   clip_field(t, 7, device_clip)};
}

inline NadamOptions nadam_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 9, "NadamOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(), t[4].cast<double>(),
          t[5].cast<double>(), t[6].cast<bool>(),   t[7].cast<bool>(),   clip_field(t, 8, device_clip)};
}

inline LionOptions lion_options(const py::handle& o, bool device_clip = false) {
  py::tuple t = option_fields(o, 6, "LionOptions");
  return {t[0].cast<double>(), t[1].cast<double>(), t[2].cast<double>(), t[3].cast<double>(),
          t[4].cast<bool>(),   clip_field(t, 5, device_clip)};
}

// options_of<O>: the reader of options type O (for the glue that is generic over the optimizer).
template <class O>
O options_of(const py::handle& o, bool device_clip);
template <>
inline RmspropOptions options_of<RmspropOptions>(const py::handle& o, bool c) { return rmsprop_options(o, c); }
template <>
inline AdagradOptions options_of<AdagradOptions>(const py::handle& o, bool c) { return adagrad_options(o, c); }
template <>
inline AdadeltaOptions options_of<AdadeltaOptions>(const py::handle& o, bool c) { return adadelta_options(o, c); }
template <>
inline AdamaxOptions options_of<AdamaxOptions>(const py::handle& o, bool c) { return adamax_options(o, c); }
template <>
inline NadamOptions options_of<NadamOptions>(const py::handle& o, bool c) { return nadam_options(o, c); }
template <>
inline LionOptions options_of<LionOptions>(const py::handle& o, bool c) { return lion_options(o, c); }

template <size_t N>
py::tuple field_tuple(const char* const (&names)[N]) {
  py::tuple t(N);
  for (size_t i = 0; i < N; ++i) t[i] = names[i];
  return t;
}

// The field names, in order, as the module attributes SGD_OPTION_FIELDS, ADAM_OPTION_FIELDS, ...
inline void bind_option_fields(py::module_& m) {
  m.attr("SGD_OPTION_FIELDS") = field_tuple(kSgdOptionFields);
  m.attr("ADAM_OPTION_FIELDS") = field_tuple(kAdamOptionFields);
  m.attr("RMSPROP_OPTION_FIELDS") = field_tuple(kRmspropOptionFields);
  m.attr("ADAGRAD_OPTION_FIELDS") = field_tuple(kAdagradOptionFields);
  m.attr("ADADELTA_OPTION_FIELDS") = field_tuple(kAdadeltaOptionFields);
  m.attr("ADAMAX_OPTION_FIELDS") = field_tuple(kAdamaxOptionFields);
  m.attr("NADAM_OPTION_FIELDS") = field_tuple(kNadamOptionFields);
  m.attr("LION_OPTION_FIELDS") = field_tuple(kLionOptionFields);
}

}  // namespace glue
}  // namespace fastdl
