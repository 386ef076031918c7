// Bindings for the adaptive optimizers' multi-tensor steps (RMSprop, Adagrad, Adadelta, Adamax,
// NAdam, Lion), one generic path over their rules (csrc/kernels/adaptive_optimizers.h), checked as
// adam_step is (cpu_optim.cpp): lists of NumPy arrays (<name>_step, every array checked), or raw
// addresses and sizes of live torch tensors (_<name>_step_raw, trusted, for fastdl.torch).
#include <array>
#include <string>
#include <vector>

#include "../kernels/adaptive_optimizers.h"
#include "cpu_tensors.h"
#include "options_args.h"

namespace fastdl {
namespace glue {

namespace {

using namespace cpu_args;

template <class Rule>
using StateLists = std::array<py::object, Rule::kStates>;

// The state slots the configuration uses, as the rule's named slots of the list.
template <class Rule, class T>
TensorList<T> list_of(const Tensors<T>& t, const typename Rule::Options& o) {
  TensorList<T> list = t.list();
  for (int j = 0; j < Rule::kStates; ++j)
    list.*(Rule::template slot<T>(j)) = Rule::uses(o, j) ? t.states[j].data() : nullptr;
  return list;
}

template <class Rule, class T>
void set_mu_products(Tensors<T>& t, const py::object& mu_products) {
  if constexpr (std::is_same<Rule, kernels::NadamRule>::value)
    t.mu_products = per_tensor_doubles(mu_products, t.count(), "mu_products");
}

// NumPy arrays (float32 / float64): <name>_step(params, grads, <state lists>, [mu_products,] steps, options).
template <class Rule>
void step_arrays(const py::sequence& params, const py::sequence& grads, const StateLists<Rule>& states,
                 const py::object& mu_products, const py::array& steps, const py::object& options) {
  using O = typename Rule::Options;
  const O o = options_of<O>(options, false);
  with_dtype(params_dtype(params), [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t;
    t.from_arrays(params, grads);
    t.set_steps(steps);
    for (int j = 0; j < Rule::kStates; ++j)
      if (Rule::uses(o, j)) t.add_state(t.states[j], states[j], Rule::state_names[j]);
    set_mu_products<Rule>(t, mu_products);
    const TensorList<T> list = list_of<Rule>(t, o);
    const auto kernel = std::conditional_t<std::is_same<T, float>::value, F32, F64>::adaptive(o);
    py::gil_scoped_release nogil;
    kernel(list, o);
    return 0;
  });
}

// Raw addresses: _<name>_step_raw(dtype, params, grads, <state lists>, [mu_products,] sizes, steps, options,
// state_dtype=None); state_dtype 'float32' with bfloat16 / float16 params: float32 state.
template <class Rule>
void step_raw(const std::string& dtype, const py::sequence& params, const py::sequence& grads,
              const StateLists<Rule>& states, const py::object& mu_products, const py::sequence& sizes,
              const py::array& steps, const py::object& options, const py::object& state_dtype) {
  using O = typename Rule::Options;
  const O o = options_of<O>(options, false);
  const bool f32_state = float32_state(dtype, state_dtype);
  with_named_dtype(dtype, [&](auto tag) {
    using Tag = decltype(tag);
    using T = typename Tag::T;
    Tensors<T> t;
    t.from_addresses(params, grads, sizes);
    t.set_steps(steps);
    set_mu_products<Rule>(t, mu_products);
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (f32_state) {
        Tensors<float> st = float_state_of(t);
        for (int j = 0; j < Rule::kStates; ++j)
          if (Rule::uses(o, j)) st.add_state_addresses(st.states[j], states[j], Rule::state_names[j]);
        const TensorList<T> list = list_of<Rule>(t, o);
        const TensorList<float> state = list_of<Rule>(st, o);
        const auto kernel = Tag::adaptive_f32_state(o);
        py::gil_scoped_release nogil;
        kernel(list, state, o);
        return 0;
      }
    }
    for (int j = 0; j < Rule::kStates; ++j)
      if (Rule::uses(o, j)) t.add_state_addresses(t.states[j], states[j], Rule::state_names[j]);
    const TensorList<T> list = list_of<Rule>(t, o);
    const auto kernel = Tag::adaptive(o);
    py::gil_scoped_release nogil;
    kernel(list, o);
    return 0;
  });
}

const char* const kRawDoc =
    " on raw addresses of contiguous tensors (for fastdl.torch, which checks them): unchecked. "
    "state_dtype='float32' with bfloat16 / float16 params: float32 state.";

}  // namespace

void bind_adaptive_optim(py::module_& m) {
  using namespace kernels;
  // RMSprop
  m.def(
      "rmsprop_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& square_avgs,
             const py::object& momentum_buffers, const py::object& grad_avgs, const py::array& steps,
             const py::object& options) {
        step_arrays<RmspropRule>(params, grads, {square_avgs, momentum_buffers, grad_avgs}, py::none(), steps, options);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"), py::arg("grad_avgs"),
      py::arg("steps"), py::arg("options"),
      "One RMSprop step over all params (torch.optim.RMSprop's update; Keras 3's by options' flags), in one call. "
      "momentum_buffers: used when options.momentum != 0, grad_avgs when centered (else may be None). options: "
      "fastdl.backends.options.RmspropOptions.");
  m.def(
      "_rmsprop_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
             const py::object& square_avgs, const py::object& momentum_buffers, const py::object& grad_avgs,
             const py::sequence& sizes, const py::array& steps, const py::object& options,
             const py::object& state_dtype) {
        step_raw<RmspropRule>(dtype, params, grads, {square_avgs, momentum_buffers, grad_avgs}, py::none(), sizes, steps,
                              options, state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"),
      py::arg("grad_avgs"), py::arg("sizes"), py::arg("steps"), py::arg("options"),
      py::arg("state_dtype") = py::none(), (std::string("rmsprop_step") + kRawDoc).c_str());
  // Adagrad
  m.def(
      "adagrad_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& sums, const py::array& steps,
             const py::object& options) { step_arrays<AdagradRule>(params, grads, {sums}, py::none(), steps, options); },
      py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("steps"), py::arg("options"),
      "One Adagrad step over all params (torch.optim.Adagrad's update; Keras 3's with eps_inside_sqrt), in one "
      "call; each tensor's lr decay from its step count. options: fastdl.backends.options.AdagradOptions.");
  m.def(
      "_adagrad_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& sums,
             const py::sequence& sizes, const py::array& steps, const py::object& options,
             const py::object& state_dtype) {
        step_raw<AdagradRule>(dtype, params, grads, {sums}, py::none(), sizes, steps, options, state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("sums"), py::arg("sizes"), py::arg("steps"),
      py::arg("options"), py::arg("state_dtype") = py::none(), (std::string("adagrad_step") + kRawDoc).c_str());
  // Adadelta
  m.def(
      "adadelta_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& square_avgs,
             const py::object& acc_deltas, const py::array& steps, const py::object& options) {
        step_arrays<AdadeltaRule>(params, grads, {square_avgs, acc_deltas}, py::none(), steps, options);
      },
      py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("acc_deltas"), py::arg("steps"),
      py::arg("options"),
      "One Adadelta step over all params (torch.optim.Adadelta's update), in one call. options: "
      "fastdl.backends.options.AdadeltaOptions.");
  m.def(
      "_adadelta_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
             const py::object& square_avgs, const py::object& acc_deltas, const py::sequence& sizes,
             const py::array& steps, const py::object& options, const py::object& state_dtype) {
        step_raw<AdadeltaRule>(dtype, params, grads, {square_avgs, acc_deltas}, py::none(), sizes, steps, options,
                               state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("acc_deltas"),
      py::arg("sizes"), py::arg("steps"), py::arg("options"), py::arg("state_dtype") = py::none(),
      (std::string("adadelta_step") + kRawDoc).c_str());
  // Adamax
  m.def(
      "adamax_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
             const py::object& exp_infs, const py::array& steps, const py::object& options) {
        step_arrays<AdamaxRule>(params, grads, {exp_avgs, exp_infs}, py::none(), steps, options);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_infs"), py::arg("steps"),
      py::arg("options"),
      "One Adamax step over all params (torch.optim.Adamax's update; Keras 3's with eps_outside_max), in one call. "
      "options: fastdl.backends.options.AdamaxOptions.");
  m.def(
      "_adamax_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
             const py::object& exp_avgs, const py::object& exp_infs, const py::sequence& sizes,
             const py::array& steps, const py::object& options, const py::object& state_dtype) {
        step_raw<AdamaxRule>(dtype, params, grads, {exp_avgs, exp_infs}, py::none(), sizes, steps, options, state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_infs"),
      py::arg("sizes"), py::arg("steps"), py::arg("options"), py::arg("state_dtype") = py::none(),
      (std::string("adamax_step") + kRawDoc).c_str());
  // NAdam
  m.def(
      "nadam_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
         const py::object& exp_avg_sqs, const py::object& mu_products, const py::array& steps,
         const py::object& options) {
        step_arrays<NadamRule>(params, grads, {exp_avgs, exp_avg_sqs}, mu_products, steps, options);
      },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"), py::arg("mu_products"),
      py::arg("steps"), py::arg("options"),
      "One NAdam / NAdamW step over all params (torch.optim.NAdam's update), in one call. mu_products: float64 "
      "array, per tensor mu_1 ... mu_t including this step's. options: fastdl.backends.options.NadamOptions.");
  m.def(
      "_nadam_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
         const py::object& exp_avg_sqs, const py::object& mu_products, const py::sequence& sizes,
         const py::array& steps, const py::object& options, const py::object& state_dtype) {
        step_raw<NadamRule>(dtype, params, grads, {exp_avgs, exp_avg_sqs}, mu_products, sizes, steps, options,
                            state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("mu_products"), py::arg("sizes"), py::arg("steps"), py::arg("options"),
      py::arg("state_dtype") = py::none(), (std::string("nadam_step") + kRawDoc).c_str());
  // Lion
  m.def(
      "lion_step",
      [](const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs, const py::array& steps,
             const py::object& options) { step_arrays<LionRule>(params, grads, {exp_avgs}, py::none(), steps, options); },
      py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("steps"), py::arg("options"),
      "One Lion step over all params (the paper's update, as Keras 3), in one call. options: "
      "fastdl.backends.options.LionOptions.");
  m.def(
      "_lion_step_raw",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
             const py::object& exp_avgs, const py::sequence& sizes, const py::array& steps,
             const py::object& options, const py::object& state_dtype) {
        step_raw<LionRule>(dtype, params, grads, {exp_avgs}, py::none(), sizes, steps, options, state_dtype);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("sizes"), py::arg("steps"),
      py::arg("options"), py::arg("state_dtype") = py::none(), (std::string("lion_step") + kRawDoc).c_str());
}

}  // namespace glue
}  // namespace fastdl
