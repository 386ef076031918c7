// Bindings for the multi-tensor optimizer steps: the lists of arrays are checked and turned into
// one table of pointers, then one call updates every tensor.
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "array_args.h"

namespace fastdl {
namespace glue {

namespace {

std::string item(const char* list, size_t i) { return std::string(list) + "[" + std::to_string(i) + "]"; }

// The pointers of one call's tensors, checked against params (dtype, size, layout, writeable).
// It keeps a reference to every array it points into until the kernel has returned: the
// sequences passed in need not hold their own references (a generator-like sequence, or a
// list another thread changes while the GIL is released).
template <class T>
struct Tensors {
  std::vector<py::array> owners;
  std::vector<int64_t> offsets{0};
  std::vector<T*> params, state0, state1, state2;
  std::vector<const T*> grads;
  std::vector<int64_t> step_copy;
  const int64_t* steps = nullptr;

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

  Tensors(const py::sequence& p, const py::sequence& g, const py::array& step_counts) {
    size_t count = py::len(p);
    std::vector<py::array> ps = arrays(p, "params", count), gs = arrays(g, "grads", count);
    params.reserve(count);
    grads.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      std::string pn = item("params", i), gn = item("grads", i);
      require_dtype(ps[i], std::is_same<T, float>::value ? DType::f32 : DType::f64, pn.c_str(), "params[0]");
      require_dtype(gs[i], std::is_same<T, float>::value ? DType::f32 : DType::f64, gn.c_str(), pn.c_str());
      require_size(gs[i], ps[i].size(), gn.c_str(), pn.c_str());
      params.push_back(output<T>(ps[i], pn.c_str()));
      grads.push_back(input<T>(gs[i], gn.c_str()));
      offsets.push_back(offsets.back() + static_cast<int64_t>(ps[i].size()));
    }
    owners.insert(owners.end(), ps.begin(), ps.end());
    owners.insert(owners.end(), gs.begin(), gs.end());
    if (!py::isinstance<py::array_t<int64_t>>(step_counts)) throw py::type_error("steps must be an int64 array");
    require_size(step_counts, static_cast<int64_t>(count), "steps", "params");
    // a copy: the kernel reads the counts after the GIL is released
    const int64_t* sp = input<int64_t>(step_counts, "steps");
    step_copy.assign(sp, sp + count);
    steps = step_copy.data();
    for (size_t i = 0; i < count; ++i)
      if (steps[i] < 1) throw py::value_error(item("steps", i) + " must be >= 1 (the count including this step)");
  }

  // One state list (exp_avg, ...): same sizes as params, writeable.
  void add_state(std::vector<T*>& dst, const py::sequence& seq, const char* name) {
    size_t count = params.size();
    std::vector<py::array> ss = arrays(seq, name, count);
    dst.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      std::string sn = item(name, i);
      require_dtype(ss[i], std::is_same<T, float>::value ? DType::f32 : DType::f64, sn.c_str(), "params");
      require_size(ss[i], offsets[i + 1] - offsets[i], sn.c_str(), item("params", i).c_str());
      dst.push_back(output<T>(ss[i], sn.c_str()));
    }
    owners.insert(owners.end(), ss.begin(), ss.end());
  }

  cpu::TensorList<T> list() const {
    auto ptr = [](const std::vector<T*>& v) { return v.empty() ? nullptr : v.data(); };
    return {static_cast<int64_t>(params.size()), offsets.data(), params.data(), grads.data(),
            ptr(state0), ptr(state1), ptr(state2), steps};
  }
};

DType params_dtype(const py::sequence& params) {
  if (py::len(params) == 0) return DType::f32;
  py::object first = params[0];
  if (!py::isinstance<py::array>(first)) throw py::type_error("params[0] is not a NumPy array");
  return float_dtype(first.cast<py::array>(), "params[0]");
}

template <class T>
const cpu::Kernels<T>& table() {
  if constexpr (std::is_same<T, float>::value) return cpu::kernels().f32;
  else return cpu::kernels().f64;
}

void sgd_step(const py::sequence& params, const py::sequence& grads, const py::object& momentum_buffers,
              const py::array& steps, double lr, double momentum, double dampening, double weight_decay, bool nesterov,
              bool maximize) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t(params, grads, steps);
    if (momentum != 0.0) {
      if (!py::isinstance<py::sequence>(momentum_buffers))
        throw py::type_error("momentum_buffers must be a list of arrays when momentum != 0");
      t.add_state(t.state0, momentum_buffers.cast<py::sequence>(), "momentum_buffers");
    }
    cpu::TensorList<T> list = t.list();
    cpu::SgdOptions o{lr, momentum, dampening, weight_decay, nesterov, maximize};
    py::gil_scoped_release nogil;
    table<T>().sgd(list, o);
  };
  if (params_dtype(params) == DType::f32) run(float{}); else run(double{});
}

void adam_step(const py::sequence& params, const py::sequence& grads, const py::sequence& exp_avgs,
               const py::sequence& exp_avg_sqs, const py::object& max_exp_avg_sqs, const py::array& steps, double lr,
               double beta1, double beta2, double eps, double weight_decay, bool amsgrad, bool decoupled, bool maximize) {
  auto run = [&](auto zero) {
    using T = decltype(zero);
    Tensors<T> t(params, grads, steps);
    t.add_state(t.state0, exp_avgs, "exp_avgs");
    t.add_state(t.state1, exp_avg_sqs, "exp_avg_sqs");
    if (amsgrad) {
      if (!py::isinstance<py::sequence>(max_exp_avg_sqs))
        throw py::type_error("max_exp_avg_sqs must be a list of arrays when amsgrad=True");
      t.add_state(t.state2, max_exp_avg_sqs.cast<py::sequence>(), "max_exp_avg_sqs");
    }
    cpu::TensorList<T> list = t.list();
    cpu::AdamOptions o{lr, beta1, beta2, eps, weight_decay, amsgrad, decoupled, maximize};
    py::gil_scoped_release nogil;
    table<T>().adam(list, o);
  };
  if (params_dtype(params) == DType::f32) run(float{}); else run(double{});
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("momentum_buffers"), py::arg("steps"),
        py::arg("lr"), py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"), py::arg("nesterov"),
        py::arg("maximize"), "One SGD step over all params (torch.optim.SGD's update), in one multi-tensor call.");
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("exp_avgs"), py::arg("exp_avg_sqs"),
        py::arg("max_exp_avg_sqs"), py::arg("steps"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("amsgrad"), py::arg("decoupled"), py::arg("maximize"),
        "One Adam / AdamW step over all params (torch.optim's update), in one multi-tensor call.");
}

}  // namespace glue
}  // namespace fastdl
