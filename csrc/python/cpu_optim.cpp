// Bindings for the multi-tensor optimizer steps: the tensors are checked and turned into one
// table of pointers, then one call updates every tensor.
//
// Two ways in: lists of NumPy arrays (fastdl.optim; every array checked), and, for
// fastdl.torch, lists of raw addresses and sizes taken from live torch tensors (the _raw
// functions). Reading an address from a torch tensor costs 0.2 us where making a NumPy view of
// it costs 4 us, which decides the step time of a model with a hundred small tensors. The _raw
// functions trust their caller for the addresses; fastdl.torch checks the tensors first.
#include <string>
#include <vector>

#include "cpu_tensors.h"
#include "options_args.h"

namespace fastdl {
namespace glue {

namespace {

using namespace cpu_args;

// ---- SGD ---------------------------------------------------------------------------------------
template <class T, class K>
void run_sgd(Tensors<T>& t, const SgdOptions& o, const K& k) {
  TensorList<T> list = t.list();
  py::gil_scoped_release nogil;
  k.sgd(list, o);
}

void sgd_step(const py::sequence& params, const py::sequence& grads, const py::object& momentum_buffers,
              const py::array& steps, const py::object& options) {
  SgdOptions o = sgd_options(options);
  with_dtype(params_dtype(params), [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t;
    t.from_arrays(params, grads);
    t.set_steps(steps);
    if (o.momentum != 0.0) t.add_state(t.momentum_buffer, momentum_buffers, "momentum_buffers");
    run_sgd(t, o, table<T>());
    return 0;
  });
}

void sgd_step_raw(const std::string& dtype, const py::sequence& params, const py::sequence& grads,
                  const py::object& momentum_buffers, const py::sequence& sizes, const py::array& steps,
                  const py::object& options, const py::object& state_dtype) {
  SgdOptions o = sgd_options(options);
  const bool f32_state = float32_state(dtype, state_dtype);
  with_named_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::T;
    Tensors<T> t;
    t.from_addresses(params, grads, sizes);
    t.set_steps(steps);
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (f32_state) {
        Tensors<float> st = float_state_of(t);
        if (o.momentum != 0.0) st.add_state_addresses(st.momentum_buffer, momentum_buffers, "momentum_buffers");
        TensorList<T> list = t.list();
        TensorList<float> state = st.list();
        py::gil_scoped_release nogil;
        tag.k().sgd_f32_state(list, state, o);
        return 0;
      }
    }
    if (o.momentum != 0.0) t.add_state_addresses(t.momentum_buffer, momentum_buffers, "momentum_buffers");
    run_sgd(t, o, tag.k());
    return 0;
  });
}

// ---- Adam / AdamW ----------------------------------------------------------------------------
template <class T, class K>
void run_adam(Tensors<T>& t, const AdamOptions& o, const K& k) {
  TensorList<T> list = t.list();
  py::gil_scoped_release nogil;
  k.adam(list, o);
}

void adam_step(const py::sequence& params, const py::sequence& grads, const py::object& exp_avgs,
               const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs, const py::array& steps,
               const py::object& options) {
  AdamOptions o = adam_options(options);
  with_dtype(params_dtype(params), [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t;
    t.from_arrays(params, grads);
    t.set_steps(steps);
    t.add_state(t.exp_avg, exp_avgs, "exp_avgs");
    t.add_state(t.exp_avg_sq, exp_avg_sqs, "exp_avg_sqs");
    if (o.amsgrad) t.add_state(t.max_exp_avg_sq, max_exp_avg_sqs, "max_exp_avg_sqs");
    run_adam(t, o, table<T>());
    return 0;
  });
}

void adam_step_raw(const std::string& dtype, const py::sequence& params, const py::sequence& grads,
                   const py::object& exp_avgs, const py::object& exp_avg_sqs, const py::object& max_exp_avg_sqs,
                   const py::sequence& sizes, const py::array& steps, const py::object& options,
                   const py::object& state_dtype) {
  AdamOptions o = adam_options(options);
  const bool f32_state = float32_state(dtype, state_dtype);
  with_named_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::T;
    Tensors<T> t;
    t.from_addresses(params, grads, sizes);
    t.set_steps(steps);
    if constexpr (std::is_same<T, uint16_t>::value) {
      if (f32_state) {
        Tensors<float> st = float_state_of(t);
        st.add_state_addresses(st.exp_avg, exp_avgs, "exp_avgs");
        st.add_state_addresses(st.exp_avg_sq, exp_avg_sqs, "exp_avg_sqs");
        if (o.amsgrad) st.add_state_addresses(st.max_exp_avg_sq, max_exp_avg_sqs, "max_exp_avg_sqs");
        TensorList<T> list = t.list();
        TensorList<float> state = st.list();
        py::gil_scoped_release nogil;
        tag.k().adam_f32_state(list, state, o);
        return 0;
      }
    }
    t.add_state_addresses(t.exp_avg, exp_avgs, "exp_avgs");
    t.add_state_addresses(t.exp_avg_sq, exp_avg_sqs, "exp_avg_sqs");
    if (o.amsgrad) t.add_state_addresses(t.max_exp_avg_sq, max_exp_avg_sqs, "max_exp_avg_sqs");
    run_adam(t, o, tag.k());
    return 0;
  });
}

// ---- global gradient norm ----------------------------------------------------------------------
template <class T, class K>
double run_sum_squares(Tensors<T>& t, const K& k) {
  TensorList<T> list = t.list();
  py::gil_scoped_release nogil;
  return k.grad_sum_squares(list);
}

double grad_sum_squares(const py::sequence& grads) {
  return with_dtype(params_dtype(grads), [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t;
    std::vector<py::array> gs = Tensors<T>::arrays(grads, "grads", py::len(grads));
    for (size_t i = 0; i < gs.size(); ++i) {
      std::string gn = item("grads", i);
      require_dtype(gs[i], dtype_of<T>(), gn.c_str(), "grads[0]");
      t.grads.push_back(input<T>(gs[i], gn.c_str()));
      t.offsets.push_back(t.offsets.back() + static_cast<int64_t>(gs[i].size()));
    }
    t.owners = gs;
    return run_sum_squares(t, table<T>());
  });
}

double grad_sum_squares_raw(const std::string& dtype, const py::sequence& grads, const py::sequence& sizes) {
  return with_named_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::T;
    Tensors<T> t;
    t.from_addresses(grads, grads, sizes);
    return run_sum_squares(t, tag.k());
  });
}

}  // namespace

void bind_optim(py::module_& m) {
  bind_option_fields(m);
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("steps"),
        py::arg("options"),
        "One SGD step over all params (torch.optim.SGD's update), in one multi-tensor call. options: "
        "fastdl.backends.options.SgdOptions.");
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("options"),
        "One Adam / AdamW step over all params (torch.optim's update), in one call. options: "
        "fastdl.backends.options.AdamOptions.");
  m.def("grad_sum_squares", &grad_sum_squares, py::arg("grads"),
        "Sum of the squares of every element of the arrays (the squared global norm).");
  m.def("_sgd_step_raw", &sgd_step_raw, py::arg("dtype"), py::arg("params"), py::arg("grads"),
        py::arg("momentum_buffers"), py::arg("sizes"), py::arg("steps"), py::arg("options"),
        py::arg("state_dtype") = py::none(),
        "sgd_step on raw addresses of contiguous tensors (for fastdl.torch, which checks them): unchecked. "
        "state_dtype='float32' with bfloat16 / float16 params: float32 momentum buffers.");
  m.def("_adam_step_raw", &adam_step_raw, py::arg("dtype"), py::arg("params"), py::arg("grads"), py::arg("exp_avgs"),
        py::arg("exp_avg_sqs"), py::arg("max_exp_avg_sqs"), py::arg("sizes"), py::arg("steps"), py::arg("options"),
        py::arg("state_dtype") = py::none(),
        "adam_step on raw addresses of contiguous tensors (for fastdl.torch, which checks them): unchecked. "
        "state_dtype='float32' with bfloat16 / float16 params: float32 moments.");
  m.def("_grad_sum_squares_raw", &grad_sum_squares_raw, py::arg("dtype"), py::arg("grads"), py::arg("sizes"),
        "grad_sum_squares on raw addresses (for fastdl.torch): unchecked.");
}

}  // namespace glue
}  // namespace fastdl
