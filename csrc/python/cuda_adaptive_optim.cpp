// Bindings for the adaptive optimizers' CUDA steps (RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion),
// one generic path over their rules (csrc/kernels/adaptive_optimizers.h), checked as adam_step is
// (cuda_optim.cpp): lists of device addresses and sizes, host step counts (and NAdam's host
// mu_products), the clip factor as a number or a device double (clip_ptr), GradScaler's found_inf.
#include <pybind11/numpy.h>

#include <array>
#include <string>
#include <vector>

#include "../kernels/adaptive_optimizers.h"
#include "cuda_tensors.h"
#include "options_args.h"

namespace fastdl {
namespace glue {

namespace {

using namespace cuda_args;

template <class Rule>
using StateLists = std::array<py::object, Rule::kStates>;

template <class Rule>
using Launcher = void (*)(cuda::DType, const TensorList<void>&, const typename Rule::Options&, uintptr_t, uintptr_t,
                          bool, cuda::Place);

// <name>_step(dtype, params, grads, <state lists>, [mu_products,] sizes, steps, options, clip_ptr, device,
// stream, found_inf=0, state_dtype=None)
template <class Rule>
void step(Launcher<Rule> launch, const std::string& dtype, const py::sequence& params, const py::sequence& grads,
          const StateLists<Rule>& states, const py::object& mu_products, const py::sequence& sizes,
          const py::object& steps, const py::object& options, uintptr_t clip_ptr, int device, uintptr_t stream,
          uintptr_t found_inf, const py::object& state_dtype) {
  using O = typename Rule::Options;
  const O o = options_of<O>(options, device_clip(clip_ptr));
  checked_found_inf(found_inf);
  const bool f32_state = float32_state(dtype, state_dtype);
  DeviceTensors t(cuda_dtype(dtype), sizes);
  const cuda::DType st = f32_state ? cuda::DType::f32 : t.dt;
  t.params = t.addresses(params, "params");
  for (void* p : t.addresses(grads, "grads")) t.grads.push_back(p);
  for (int j = 0; j < Rule::kStates; ++j)
    if (Rule::uses(o, j)) t.states[j] = t.addresses(states[j], Rule::state_names[j], st);
  if constexpr (std::is_same<Rule, kernels::NadamRule>::value)
    t.mu_products = per_tensor_doubles(mu_products, t.count(), "mu_products");
  t.set_steps(steps);
  cuda::Place at = cuda_place(device, stream);
  TensorList<void> list = t.list();
  for (int j = 0; j < Rule::kStates; ++j)
    list.*(Rule::template slot<void>(j)) = Rule::uses(o, j) ? t.states[j].data() : nullptr;
  py::gil_scoped_release nogil;
  launch(t.dt, list, o, clip_ptr, found_inf, f32_state, at);
}

#define FASTDL_DEVICE_ARGS                                                                                  \
  const py::sequence &sizes, const py::object &steps, const py::object &options, uintptr_t clip_ptr, int device, \
      uintptr_t stream, uintptr_t found_inf, const py::object &state_dtype
#define FASTDL_DEVICE_PASS sizes, steps, options, clip_ptr, device, stream, found_inf, state_dtype
#define FASTDL_DEVICE_ARG_NAMES                                                                                    \
  py::arg("sizes"), py::arg("steps"), py::arg("options"), py::arg("clip_ptr"), py::arg("device"), py::arg("stream"), \
      py::arg("found_inf") = 0, py::arg("state_dtype") = py::none()

const char* const kDoc =
    " over all tensors, in multi-tensor launches; as sgd_step (steps: host int64 counts including this step; "
    "clip_ptr != 0: the clipping factor read on the device; found_inf != 0: GradScaler's device flag; "
    "state_dtype='float32' with bfloat16 / float16 params: float32 state).";

}  // namespace

void bind_cuda_adaptive_optim(py::module_& m) {
  using namespace kernels;
  m.def(
      "rmsprop_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
         const py::object& square_avgs, const py::object& momentum_buffers, const py::object& grad_avgs,
         FASTDL_DEVICE_ARGS) {
        step<RmspropRule>(cuda::rmsprop_step, dtype, params, grads, {square_avgs, momentum_buffers, grad_avgs},
                          py::none(), FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("momentum_buffers"),
      py::arg("grad_avgs"), FASTDL_DEVICE_ARG_NAMES,
      (std::string("One RMSprop step (options: RmspropOptions; momentum_buffers with momentum, grad_avgs when "
                   "centered, else None)") + kDoc).c_str());
  m.def(
      "adagrad_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& sums,
         FASTDL_DEVICE_ARGS) {
        step<AdagradRule>(cuda::adagrad_step, dtype, params, grads, {sums}, py::none(), FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("sums"), FASTDL_DEVICE_ARG_NAMES,
      (std::string("One Adagrad step (options: AdagradOptions)") + kDoc).c_str());
  m.def(
      "adadelta_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads,
         const py::object& square_avgs, const py::object& acc_deltas, FASTDL_DEVICE_ARGS) {
        step<AdadeltaRule>(cuda::adadelta_step, dtype, params, grads, {square_avgs, acc_deltas}, py::none(),
                           FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("square_avgs"), py::arg("acc_deltas"),
      FASTDL_DEVICE_ARG_NAMES, (std::string("One Adadelta step (options: AdadeltaOptions)") + kDoc).c_str());
  m.def(
      "adamax_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
         const py::object& exp_infs, FASTDL_DEVICE_ARGS) {
        step<AdamaxRule>(cuda::adamax_step, dtype, params, grads, {exp_avgs, exp_infs}, py::none(),
                         FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_infs"),
      FASTDL_DEVICE_ARG_NAMES, (std::string("One Adamax step (options: AdamaxOptions)") + kDoc).c_str());
  m.def(
      "nadam_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
         const py::object& exp_avg_sqs, const py::object& mu_products, FASTDL_DEVICE_ARGS) {
        step<NadamRule>(cuda::nadam_step, dtype, params, grads, {exp_avgs, exp_avg_sqs}, mu_products,
                        FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
      py::arg("mu_products"), FASTDL_DEVICE_ARG_NAMES,
      (std::string("One NAdam / NAdamW step (options: NadamOptions; mu_products: host float64 array, per tensor "
                   "mu_1 ... mu_t including this step's)") + kDoc).c_str());
  m.def(
      "lion_step",
      [](const std::string& dtype, const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
         FASTDL_DEVICE_ARGS) {
        step<LionRule>(cuda::lion_step, dtype, params, grads, {exp_avgs}, py::none(), FASTDL_DEVICE_PASS);
      },
      py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), FASTDL_DEVICE_ARG_NAMES,
      (std::string("One Lion step (options: LionOptions)") + kDoc).c_str());
}

#undef FASTDL_DEVICE_ARGS
#undef FASTDL_DEVICE_PASS
#undef FASTDL_DEVICE_ARG_NAMES

}  // namespace glue
}  // namespace fastdl
