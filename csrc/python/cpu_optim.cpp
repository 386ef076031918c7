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

#include "../cpu/dispatch.h"
#include "array_args.h"
#include "list_args.h"
#include "options_args.h"

namespace fastdl {
namespace glue {

namespace {

template <class T>
constexpr DType dtype_of() { return std::is_same<T, float>::value ? DType::f32 : DType::f64; }

// One call's tensors. When built from arrays it keeps a reference to each of them until the
// kernel has returned: the sequences passed in need not hold their own references (a
// generator-like sequence, or a list another thread changes while the GIL is released).
template <class T>
struct Tensors {
  std::vector<py::array> owners;
  std::vector<int64_t> offsets{0};
  std::vector<T*> params, momentum_buffer, exp_avg, exp_avg_sq, max_exp_avg_sq;
  std::vector<const T*> grads;
  std::vector<int64_t> steps;

  size_t count() const { return offsets.size() - 1; }

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

  // From NumPy arrays: params (written), grads (read).
  void from_arrays(const py::sequence& p, const py::sequence& g) {
    size_t n = py::len(p);
    std::vector<py::array> ps = arrays(p, "params", n), gs = arrays(g, "grads", n);
    for (size_t i = 0; i < n; ++i) {
      std::string pn = item("params", i), gn = item("grads", i);
      require_dtype(ps[i], dtype_of<T>(), pn.c_str(), "params[0]");
      require_dtype(gs[i], dtype_of<T>(), gn.c_str(), pn.c_str());
      require_size(gs[i], ps[i].size(), gn.c_str(), pn.c_str());
      params.push_back(output<T>(ps[i], pn.c_str()));
      grads.push_back(input<T>(gs[i], gn.c_str()));
      offsets.push_back(offsets.back() + static_cast<int64_t>(ps[i].size()));
    }
    owners.insert(owners.end(), ps.begin(), ps.end());
    owners.insert(owners.end(), gs.begin(), gs.end());
  }

  // One state slot (exp_avg, ...) of arrays: the sizes of params, writeable.
  void add_state(std::vector<T*>& dst, const py::object& seq, const char* name) {
    if (!py::isinstance<py::sequence>(seq)) throw py::type_error(std::string(name) + " must be a list of arrays");
    std::vector<py::array> ss = arrays(seq.cast<py::sequence>(), name, count());
    for (size_t i = 0; i < count(); ++i) {
      std::string sn = item(name, i);
      require_dtype(ss[i], dtype_of<T>(), sn.c_str(), "params");
      require_size(ss[i], offsets[i + 1] - offsets[i], sn.c_str(), item("params", i).c_str());
      dst.push_back(output<T>(ss[i], sn.c_str()));
    }
    owners.insert(owners.end(), ss.begin(), ss.end());
  }

  // From raw addresses (fastdl.torch): sizes in elements.
  static std::vector<uintptr_t> addresses(const py::sequence& seq, const char* name, size_t count) {
    if (static_cast<size_t>(py::len(seq)) != count)
      throw py::value_error(std::string(name) + " has " + std::to_string(py::len(seq)) + " entries, expected " +
                            std::to_string(count));
    std::vector<uintptr_t> out(count);
    for (size_t i = 0; i < count; ++i) {
      out[i] = seq[i].cast<uintptr_t>();
      if (out[i] == 0 || out[i] % alignof(T) != 0) throw py::value_error(item(name, i) + " is not a valid address");
    }
    return out;
  }

  void from_addresses(const py::sequence& p, const py::sequence& g, const py::sequence& sizes) {
    append_sizes(sizes, offsets);
    const size_t n = count();
    for (uintptr_t a : addresses(p, "params", n)) params.push_back(reinterpret_cast<T*>(a));
    for (uintptr_t a : addresses(g, "grads", n)) grads.push_back(reinterpret_cast<const T*>(a));
  }

  void add_state_addresses(std::vector<T*>& dst, const py::object& seq, const char* name) {
    if (!py::isinstance<py::sequence>(seq)) throw py::type_error(std::string(name) + " must be a list of addresses");
    for (uintptr_t a : addresses(seq.cast<py::sequence>(), name, count())) dst.push_back(reinterpret_cast<T*>(a));
  }

  void set_steps(const py::array& counts) { steps = step_counts(counts, count()); }

  TensorList<T> list() const {
    auto ptr = [](const std::vector<T*>& v) { return v.empty() ? nullptr : v.data(); };
    return {static_cast<int64_t>(count()), offsets.data(), ptr(params), grads.empty() ? nullptr : grads.data(),
            ptr(momentum_buffer), ptr(exp_avg), ptr(exp_avg_sq), ptr(max_exp_avg_sq),
            steps.empty() ? nullptr : steps.data()};
  }
};

template <class T>
const cpu::Kernels<T>& table() {
  if constexpr (std::is_same<T, float>::value) return cpu::kernels().f32;
  else return cpu::kernels().f64;
}

DType params_dtype(const py::sequence& params) {
  if (py::len(params) == 0) return DType::f32;
  py::object first = params[0];
  if (!py::isinstance<py::array>(first)) throw py::type_error("params[0] is not a NumPy array");
  return float_dtype(first.cast<py::array>(), "params[0]");
}

template <class F>
auto with_dtype(DType dt, F f) {
  return dt == DType::f32 ? f(float{}) : f(double{});
}

// The raw entry points (fastdl.torch) name the dtype: the storage type T and the kernel table.
// 16-bit parameters (bfloat16, float16) are stepped with float math (cpu::HalfKernels).
struct F32 {
  using T = float;
  static const cpu::Kernels<float>& k() { return cpu::kernels().f32; }
};
struct F64 {
  using T = double;
  static const cpu::Kernels<double>& k() { return cpu::kernels().f64; }
};
struct BF16 {
  using T = uint16_t;
  static const cpu::HalfKernels& k() { return cpu::kernels().bf16; }
};
struct FP16 {
  using T = uint16_t;
  static const cpu::HalfKernels& k() { return cpu::kernels().f16; }
};

template <class F>
auto with_named_dtype(const std::string& name, F f) {
  if (name == "float32") return f(F32{});
  if (name == "float64") return f(F64{});
  if (name == "bfloat16") return f(BF16{});
  if (name == "float16") return f(FP16{});
  throw py::type_error("dtype must be 'float32', 'float64', 'bfloat16' or 'float16', got '" + name + "'");
}

// The float32 state slots of a 16-bit step: a list over the same tensors (offsets) whose state
// slots are float addresses.
Tensors<float> float_state_of(const Tensors<uint16_t>& t) {
  Tensors<float> st;
  st.offsets = t.offsets;
  return st;
}

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
