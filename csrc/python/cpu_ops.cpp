// Bindings for the activation, softmax and loss kernels.
#include <string>

#include "../common/loss_terms.h"
#include "../cpu/dispatch.h"
#include "array_args.h"

namespace fastdl {
namespace glue {

using fastdl::Activation;

namespace {

template <class T>
const cpu::Kernels<T>& table();
template <>
const cpu::Kernels<float>& table<float>() { return cpu::kernels().f32; }
template <>
const cpu::Kernels<double>& table<double>() { return cpu::kernels().f64; }

// Calls f.template operator()<T>() with T the C++ type of `dt`.
template <class F>
auto with_type(DType dt, F f) {
  return dt == DType::f32 ? f(float{}) : f(double{});
}

Activation activation_op(int op) {
  if (op < 0 || op >= static_cast<int>(Activation::count)) throw py::value_error("unknown activation id " + std::to_string(op));
  return static_cast<Activation>(op);
}

// rows x cols view of an array over its last axis.
void rows_cols(const py::array& a, int64_t& rows, int64_t& cols) {
  if (a.ndim() == 0) throw py::value_error("x must have at least one dimension");
  cols = a.shape(a.ndim() - 1);
  rows = cols == 0 ? 0 : static_cast<int64_t>(a.size()) / cols;
}

void activation(int op, const py::array& x, py::array& out, double alpha) {
  Activation a = activation_op(op);
  DType dt = float_dtype(x, "x");
  require_dtype(out, dt, "out", "x");
  int64_t n = x.size();
  require_size(out, n, "out", "x");
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = input<T>(x, "x");
    T* yp = output<T>(out, "out");
    py::gil_scoped_release nogil;
    table<T>().activation(a, xp, yp, n, alpha);
    return 0;
  });
}

void activation_backward(int op, const py::array& grad, const py::array& saved, py::array& out, double alpha) {
  Activation a = activation_op(op);
  DType dt = float_dtype(grad, "grad");
  require_dtype(saved, dt, "saved", "grad");
  require_dtype(out, dt, "out", "grad");
  int64_t n = grad.size();
  require_size(saved, n, "saved", "grad");
  require_size(out, n, "out", "grad");
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *gp = input<T>(grad, "grad"), *sp = input<T>(saved, "saved");
    T* op_ = output<T>(out, "out");
    py::gil_scoped_release nogil;
    table<T>().activation_backward(a, gp, sp, op_, n, alpha);
    return 0;
  });
}

// (rows, cols) of a 2-D array, or a ValueError naming it.
void matrix_shape(const py::array& a, const char* name, int64_t& rows, int64_t& cols) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D (batch, features)");
  rows = a.shape(0);
  cols = a.shape(1);
}

void bias_activation(int op, const py::array& z, const py::object& bias, const py::object& pre, py::array& y,
                     double alpha) {
  Activation a = activation_op(op);
  DType dt = float_dtype(z, "z");
  int64_t rows, cols;
  matrix_shape(z, "z", rows, cols);
  require_dtype(y, dt, "y", "z");
  require_size(y, rows * cols, "y", "z");
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* bp = nullptr;
    T* pp = nullptr;
    py::array b, p;
    if (!bias.is_none()) {
      b = as_array(bias, "bias");
      require_dtype(b, dt, "bias", "z");
      require_size(b, cols, "bias", "z's last axis");
      bp = input<T>(b, "bias");
    }
    if (!pre.is_none()) {
      p = as_array(pre, "pre");
      require_dtype(p, dt, "pre", "z");
      require_size(p, rows * cols, "pre", "z");
      pp = output<T>(p, "pre");
    }
    const T* zp = input<T>(z, "z");
    T* yp = output<T>(y, "y");
    py::gil_scoped_release nogil;
    table<T>().bias_activation(a, zp, bp, pp, yp, rows, cols, alpha);
    return 0;
  });
}

void bias_activation_backward(int op, const py::array& grad, const py::array& saved, py::array& dz,
                              const py::object& dbias, double alpha) {
  Activation a = activation_op(op);
  DType dt = float_dtype(grad, "grad");
  int64_t rows, cols;
  matrix_shape(grad, "grad", rows, cols);
  require_dtype(saved, dt, "saved", "grad");
  require_size(saved, rows * cols, "saved", "grad");
  require_dtype(dz, dt, "dz", "grad");
  require_size(dz, rows * cols, "dz", "grad");
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    T* dbp = nullptr;
    py::array db;
    if (!dbias.is_none()) {
      db = as_array(dbias, "dbias");
      require_dtype(db, dt, "dbias", "grad");
      require_size(db, cols, "dbias", "grad's last axis");
      dbp = output<T>(db, "dbias");
    }
    const T *gp = input<T>(grad, "grad"), *sp = input<T>(saved, "saved");
    T* dzp = output<T>(dz, "dz");
    py::gil_scoped_release nogil;
    table<T>().bias_activation_backward(a, gp, sp, dzp, dbp, rows, cols, alpha);
    return 0;
  });
}

void softmax(const py::array& x, py::array& out, bool log) {
  DType dt = float_dtype(x, "x");
  require_dtype(out, dt, "out", "x");
  require_size(out, x.size(), "out", "x");
  int64_t rows, cols;
  rows_cols(x, rows, cols);
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = input<T>(x, "x");
    T* yp = output<T>(out, "out");
    py::gil_scoped_release nogil;
    table<T>().softmax(xp, yp, rows, cols, log);
    return 0;
  });
}

void softmax_backward(const py::array& grad, const py::array& y, py::array& out, bool log) {
  DType dt = float_dtype(grad, "grad");
  require_dtype(y, dt, "y", "grad");
  require_dtype(out, dt, "out", "grad");
  require_size(y, grad.size(), "y", "grad");
  require_size(out, grad.size(), "out", "grad");
  int64_t rows, cols;
  rows_cols(grad, rows, cols);
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *gp = input<T>(grad, "grad"), *yp = input<T>(y, "y");
    T* op_ = output<T>(out, "out");
    py::gil_scoped_release nogil;
    table<T>().softmax_backward(gp, yp, op_, rows, cols, log);
    return 0;
  });
}

// pred, target and grad of one shape; returns the mean loss.
template <class Call>
double elementwise_loss(const py::array& pred, const py::array& target, py::array& grad, Call call) {
  DType dt = float_dtype(pred, "pred");
  require_dtype(target, dt, "target", "pred");
  require_dtype(grad, dt, "out", "pred");
  int64_t n = pred.size();
  require_size(target, n, "target", "pred");
  require_size(grad, n, "out", "pred");
  return with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *pp = input<T>(pred, "pred"), *tp = input<T>(target, "target");
    T* gp = output<T>(grad, "out");
    py::gil_scoped_release nogil;
    return call(table<T>(), pp, tp, gp, n);
  });
}

double mse(const py::array& pred, const py::array& target, py::array& grad) {
  return elementwise_loss(pred, target, grad, [](const auto& k, auto p, auto t, auto g, int64_t n) { return k.mse(p, t, g, n); });
}

double loss_term(int op, const py::array& pred, const py::array& target, py::array& grad, double a, double b) {
  if (op < 0 || op >= kLossTermCount) throw py::value_error("op is not a loss term id");
  return elementwise_loss(pred, target, grad, [&](const auto& k, auto p, auto t, auto g, int64_t n) {
    return k.loss_term(op, a, b, p, t, g, n);
  });
}

double bce(const py::array& pred, const py::array& target, py::array& grad, bool from_logits) {
  return elementwise_loss(pred, target, grad, [&](const auto& k, auto p, auto t, auto g, int64_t n) {
    return k.bce(p, t, g, n, from_logits);
  });
}

// The class ids as int64, copied and checked while the GIL is held: the kernel indexes memory
// with them after the GIL is released, when another thread could change the caller's array.
// Ids equal to `ignore` (when has_ignore) become -1, the kernel's mark for a row to skip.
// Returns how many rows are not ignored.
template <class L>
int64_t copy_labels(const py::array& target, int64_t rows, int64_t cols, bool has_ignore, int64_t ignore,
                    std::vector<int64_t>& out) {
  const L* y = input<L>(target, "target");
  out.assign(y, y + rows);
  int64_t kept = rows;
  for (int64_t i = 0; i < rows; ++i) {
    if (has_ignore && out[i] == ignore) {
      out[i] = -1;
      --kept;
    } else if (out[i] < 0 || out[i] >= cols) {
      throw py::value_error("target[" + std::to_string(i) + "] = " + std::to_string(out[i]) +
                            " is not a class id in [0, " + std::to_string(cols) + ")");
    }
  }
  return kept;
}

bool overlap(const py::array& a, const py::array& b) {
  auto lo_a = reinterpret_cast<uintptr_t>(a.data()), lo_b = reinterpret_cast<uintptr_t>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && lo_a < lo_b + b.nbytes() && lo_b < lo_a + a.nbytes();
}

// reduction "mean" (over the rows not ignored), "sum" or "none" (each row's loss into row_losses,
// a float64 array of one element per row; the gradient is then that of the sum).
double softmax_cross_entropy(const py::array& logits, const py::array& target, py::array& grad, double smoothing,
                             const py::object& ignore_index, const std::string& reduction,
                             const py::object& row_losses) {
  DType dt = float_dtype(logits, "logits");
  if (logits.ndim() != 2) throw py::value_error("logits must be 2-D (batch, classes)");
  int64_t rows = logits.shape(0), cols = logits.shape(1);
  require_dtype(grad, dt, "out", "logits");
  require_size(grad, rows * cols, "out", "logits");
  if (rows > 0 && cols == 0) throw py::value_error("logits has no classes");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    throw py::value_error("reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
  double* rl = nullptr;
  py::array rl_array;
  if (reduction == "none") {
    if (row_losses.is_none()) throw py::value_error("reduction='none' needs row_losses");
    rl_array = as_array(row_losses, "row_losses");
    if (!py::isinstance<py::array_t<double>>(rl_array)) throw py::type_error("row_losses must be a float64 array");
    require_size(rl_array, rows, "row_losses", "logits' batch");
    rl = output<double>(rl_array, "row_losses");
  }
  const bool has_ignore = !ignore_index.is_none();
  const int64_t ignore = has_ignore ? ignore_index.cast<int64_t>() : 0;
  return with_type(dt, [&](auto zero) -> double {
    using T = decltype(zero);
    const cpu::Kernels<T>& k = table<T>();
    const T* xp = input<T>(logits, "logits");
    T* gp = output<T>(grad, "out");
    if (py::isinstance<py::array_t<int64_t>>(target) || py::isinstance<py::array_t<int32_t>>(target)) {
      require_size(target, rows, "target", "logits' batch");
      std::vector<int64_t> labels;
      int64_t kept = py::isinstance<py::array_t<int64_t>>(target)
                         ? copy_labels<int64_t>(target, rows, cols, has_ignore, ignore, labels)
                         : copy_labels<int32_t>(target, rows, cols, has_ignore, ignore, labels);
      const double denom = reduction == "mean" ? (double)kept : 1.0;
      py::gil_scoped_release nogil;
      return k.softmax_ce_labels(xp, labels.data(), gp, rows, cols, smoothing, denom, rl);
    }
    require_dtype(target, dt, "target", "logits");
    require_size(target, rows * cols, "target", "logits");
    if (overlap(target, grad)) throw py::value_error("out must not share memory with target");
    const T* tp = input<T>(target, "target");
    const double denom = reduction == "mean" ? (double)rows : 1.0;
    py::gil_scoped_release nogil;
    return k.softmax_ce_probs(xp, tp, gp, rows, cols, smoothing, denom, rl);
  });
}


// An optional float64 array of `rows` elements (weights: read; row_losses: written), or null.
const double* row_doubles(const py::object& o, py::array& keep, int64_t rows, const char* name, bool write) {
  if (o.is_none()) return nullptr;
  keep = as_array(o, name);
  if (!py::isinstance<py::array_t<double>>(keep)) throw py::type_error(std::string(name) + " must be a float64 array");
  require_size(keep, rows, name, "pred's rows");
  return write ? output<double>(keep, name) : input<double>(keep, name);
}

// Keras's row losses (kRowLossNames) over the last axis: returns sum_r f_r loss_r, f_r = scale *
// weights[r] (or scale); writes f_r dloss_r/dpred into out and, when given, loss_r into row_losses.
double row_loss(int op, const py::array& pred, const py::array& target, py::array& grad, double alpha, double gamma,
                bool from_logits, double label_smoothing, double scale, const py::object& weights,
                const py::object& row_losses) {
  if (op < 0 || op >= kRowLossCount) throw py::value_error("op is not a row loss id");
  DType dt = float_dtype(pred, "pred");
  if (pred.ndim() == 0) throw py::value_error("pred must have a class axis: shape (..., C)");
  const int64_t n = pred.size(), cols = pred.shape(pred.ndim() - 1);
  int64_t rows = 1;
  for (py::ssize_t d = 0; d + 1 < pred.ndim(); ++d) rows *= pred.shape(d);
  if (rows > 0 && cols == 0) throw py::value_error("pred has no classes");
  require_dtype(target, dt, "target", "pred");
  require_size(target, n, "target", "pred");
  require_dtype(grad, dt, "out", "pred");
  require_size(grad, n, "out", "pred");
  if (overlap(grad, pred)) throw py::value_error("out must not share memory with pred");
  if (overlap(grad, target)) throw py::value_error("out must not share memory with target");
  py::array w_array, rl_array;
  const double* w = row_doubles(weights, w_array, rows, "weights", false);
  double* rl = const_cast<double*>(row_doubles(row_losses, rl_array, rows, "row_losses", true));
  if (rl && (overlap(rl_array, grad) || (w && overlap(rl_array, w_array))))
    throw py::value_error("row_losses must not share memory with out or weights");
  RowLossOptions o;
  o.alpha = alpha;
  o.gamma = gamma;
  o.label_smoothing = label_smoothing;
  o.scale = scale;
  o.from_logits = from_logits;
  return with_type(dt, [&](auto zero) -> double {
    using T = decltype(zero);
    const T *pp = input<T>(pred, "pred"), *tp = input<T>(target, "target");
    T* gp = output<T>(grad, "out");
    py::gil_scoped_release nogil;
    return table<T>().row_loss(op, pp, tp, gp, rows, cols, o, w, rl);
  });
}

}  // namespace

void bind_ops(py::module_& m) {
  py::dict ids;
  for (int i = 0; i < static_cast<int>(Activation::count); ++i) ids[kActivationNames[i]] = i;
  m.attr("ACTIVATIONS") = ids;
  m.def("activation", &activation, py::arg("op"), py::arg("x"), py::arg("out"), py::arg("alpha") = 0.0,
        "out = f(x) for the activation with id `op` (see ACTIVATIONS).");
  m.def("activation_backward", &activation_backward, py::arg("op"), py::arg("grad"), py::arg("saved"), py::arg("out"),
        py::arg("alpha") = 0.0, "out = dL/dx from grad = dL/dy and saved (y for sigmoid/tanh, x otherwise).");
  m.def("bias_activation", &bias_activation, py::arg("op"), py::arg("z"), py::arg("bias"), py::arg("pre"), py::arg("y"),
        py::arg("alpha") = 0.0, "y = act(z + bias) for a (batch, features) z; pre = z + bias when pre is given.");
  m.def("bias_activation_backward", &bias_activation_backward, py::arg("op"), py::arg("grad"), py::arg("saved"),
        py::arg("dz"), py::arg("dbias"), py::arg("alpha") = 0.0,
        "dz = act'(saved) * grad and dbias = dz summed over the batch (when dbias is given).");
  m.def("softmax", &softmax, py::arg("x"), py::arg("out"), py::arg("log") = false, "Softmax over the last axis.");
  m.def("softmax_backward", &softmax_backward, py::arg("grad"), py::arg("y"), py::arg("out"), py::arg("log") = false,
        "Gradient of softmax (or log_softmax) over the last axis, from its output y.");
  m.def("mse", &mse, py::arg("pred"), py::arg("target"), py::arg("out"), "Mean squared error; writes dL/dpred to out.");
  m.def("loss_term", &loss_term, py::arg("op"), py::arg("pred"), py::arg("target"), py::arg("out"), py::arg("a") = 0.0,
        py::arg("b") = 0.0,
        "Mean of Keras's elementwise loss `op` (fastdl.backends.numpy_kernels.LOSS_TERMS); writes dL/dpred to out.");
  m.def("binary_crossentropy", &bce, py::arg("pred"), py::arg("target"), py::arg("out"), py::arg("from_logits") = false,
        "Mean binary cross-entropy; writes dL/dpred to out.");
  m.def("softmax_cross_entropy", &softmax_cross_entropy, py::arg("logits"), py::arg("target"), py::arg("out"),
        py::arg("label_smoothing") = 0.0, py::arg("ignore_index") = py::none(), py::arg("reduction") = "mean",
        py::arg("row_losses") = py::none(),
        "Softmax cross-entropy of (batch, classes) logits; writes its gradient to out and returns the mean "
        "(over rows whose class id is not ignore_index), the sum, or (reduction='none') each row's loss into "
        "row_losses.");
  py::dict row_ids;
  for (int i = 0; i < kRowLossCount; ++i) row_ids[kRowLossNames[i]] = i;
  m.attr("ROW_LOSSES") = row_ids;
  m.def("row_loss", &row_loss, py::arg("op"), py::arg("pred"), py::arg("target"), py::arg("out"),
        py::arg("alpha") = 0.25, py::arg("gamma") = 2.0, py::arg("from_logits") = false,
        py::arg("label_smoothing") = 0.0, py::arg("scale") = 1.0, py::arg("weights") = py::none(),
        py::arg("row_losses") = py::none(),
        "Keras's row loss `op` (ROW_LOSSES) over the last axis: returns sum_r f_r loss_r, f_r = scale * "
        "weights[r] (weights None: scale); writes f_r dloss_r/dpred to out and each loss_r to row_losses "
        "(float64, one per row) when given.");
}

}  // namespace glue
}  // namespace fastdl
