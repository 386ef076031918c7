// Bindings for the CUDA activation, softmax and loss launchers: check the integers, release the
// GIL, queue the kernels (asynchronous: nothing here waits for the GPU).
#include <string>

#include "../common/loss_terms.h"
#include "cuda_args.h"

namespace fastdl {
namespace glue {

namespace {

void activation(int op, const std::string& dtype, uintptr_t x, uintptr_t y, int64_t n, double alpha, int device,
                uintptr_t stream) {
  Activation a = cuda_activation(op);
  cuda::DType dt = cuda_dtype(dtype);
  check_count(n, "n");
  check_address(x, n, dt, "x");
  check_address(y, n, dt, "y");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::activation(a, dt, x, y, n, alpha, at);
}

void activation_backward(int op, const std::string& dtype, uintptr_t grad, uintptr_t saved, uintptr_t out, int64_t n,
                         double alpha, int device, uintptr_t stream) {
  Activation a = cuda_activation(op);
  cuda::DType dt = cuda_dtype(dtype);
  check_count(n, "n");
  check_address(grad, n, dt, "grad");
  check_address(saved, n, dt, "saved");
  check_address(out, n, dt, "out");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::activation_backward(a, dt, grad, saved, out, n, alpha, at);
}

void bias_activation(int op, const std::string& dtype, uintptr_t z, uintptr_t bias, uintptr_t pre, uintptr_t y,
                     int64_t rows, int64_t cols, double alpha, int device, uintptr_t stream) {
  Activation a = cuda_activation(op);
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  check_address(z, n, dt, "z");
  check_address(bias, cols, dt, "bias", true);
  check_address(pre, n, dt, "pre", true);
  check_address(y, n, dt, "y");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::bias_activation(a, dt, z, bias, pre, y, rows, cols, alpha, at);
}

void bias_activation_backward(int op, const std::string& dtype, uintptr_t grad, uintptr_t saved, uintptr_t dz,
                              uintptr_t dbias, int64_t rows, int64_t cols, double alpha, int device,
                              uintptr_t stream) {
  Activation a = cuda_activation(op);
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  check_address(grad, n, dt, "grad");
  check_address(saved, n, dt, "saved");
  check_address(dz, n, dt, "dz");
  check_address(dbias, cols, dt, "dbias", true);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::bias_activation_backward(a, dt, grad, saved, dz, dbias, rows, cols, alpha, at);
}

void softmax(const std::string& dtype, uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, bool log, int device,
             uintptr_t stream) {
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  check_address(x, n, dt, "x");
  check_address(y, n, dt, "y");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::softmax(dt, x, y, rows, cols, log, at);
}

void softmax_backward(const std::string& dtype, uintptr_t grad, uintptr_t y, uintptr_t out, int64_t rows,
                      int64_t cols, bool log, int device, uintptr_t stream) {
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  check_address(grad, n, dt, "grad");
  check_address(y, n, dt, "y");
  check_address(out, n, dt, "out");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::softmax_backward(dt, grad, y, out, rows, cols, log, at);
}

void mse(const std::string& dtype, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, uintptr_t loss,
         int device, uintptr_t stream) {
  cuda::DType dt = cuda_dtype(dtype);
  check_count(n, "n");
  check_address(pred, n, dt, "pred");
  check_address(target, n, dt, "target");
  check_address(grad, n, dt, "grad");
  check_loss(loss);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::mse(dt, pred, target, grad, n, loss, at);
}

void loss_term(const std::string& dtype, int op, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n,
               double a, double b, uintptr_t loss, int device, uintptr_t stream) {
  cuda::DType dt = cuda_dtype(dtype);
  if (op < 0 || op >= kLossTermCount) throw py::value_error("op is not a loss term id");
  check_count(n, "n");
  check_address(pred, n, dt, "pred");
  check_address(target, n, dt, "target");
  check_address(grad, n, dt, "grad");
  check_loss(loss);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::loss_term(dt, op, a, b, pred, target, grad, n, loss, at);
}

void bce(const std::string& dtype, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, bool from_logits,
         uintptr_t loss, int device, uintptr_t stream) {
  cuda::DType dt = cuda_dtype(dtype);
  check_count(n, "n");
  check_address(pred, n, dt, "pred");
  check_address(target, n, dt, "target");
  check_address(grad, n, dt, "grad");
  check_loss(loss);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::bce(dt, pred, target, grad, n, from_logits, loss, at);
}

void softmax_ce(const std::string& dtype, uintptr_t logits, uintptr_t target, const std::string& target_kind,
                uintptr_t grad, int64_t rows, int64_t cols, double smoothing, uintptr_t loss, int device,
                uintptr_t stream, bool has_ignore, int64_t ignore_index, const std::string& reduction,
                uintptr_t row_losses) {
  cuda::Reduction red;
  if (reduction == "mean") red = cuda::Reduction::mean;
  else if (reduction == "sum") red = cuda::Reduction::sum;
  else if (reduction == "none") red = cuda::Reduction::none;
  else throw py::value_error("reduction must be 'mean', 'sum' or 'none', got '" + reduction + "'");
  if (red == cuda::Reduction::none && row_losses == 0 && rows > 0)
    throw py::value_error("reduction='none' needs row_losses");
  if (row_losses % 8 != 0) throw py::value_error("row_losses must be the address of device doubles");
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  if (rows > 0 && cols == 0) throw py::value_error("logits has no classes");
  cuda::TargetKind kind;
  if (target_kind == "int32") {
    kind = cuda::TargetKind::int32;
    if (target == 0 ? rows > 0 : target % 4 != 0) throw py::value_error("target is not a valid int32 address");
  } else if (target_kind == "int64") {
    kind = cuda::TargetKind::int64;
    if (target == 0 ? rows > 0 : target % 8 != 0) throw py::value_error("target is not a valid int64 address");
  } else if (target_kind == "probs") {
    kind = cuda::TargetKind::probs;
    check_address(target, n, dt, "target");
  } else {
    throw py::value_error("target_kind must be 'int32', 'int64' or 'probs', got '" + target_kind + "'");
  }
  check_address(logits, n, dt, "logits");
  check_address(grad, n, dt, "grad");
  check_loss(loss);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::softmax_ce(dt, logits, target, kind, grad, rows, cols, smoothing, has_ignore, ignore_index, red,
                   red == cuda::Reduction::none ? row_losses : 0, loss, at);
}


void row_loss(const std::string& dtype, int op, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t rows,
              int64_t cols, double alpha, double gamma, bool from_logits, double label_smoothing, double scale,
              uintptr_t weights, uintptr_t row_losses, uintptr_t loss, int device, uintptr_t stream) {
  if (op < 0 || op >= kRowLossCount) throw py::value_error("op is not a row loss id");
  cuda::DType dt = cuda_dtype(dtype);
  int64_t n = cuda_elements(rows, cols);
  if (rows > 0 && cols == 0) throw py::value_error("pred has no classes");
  check_address(pred, n, dt, "pred");
  check_address(target, n, dt, "target");
  check_address(grad, n, dt, "grad");
  check_address(weights, rows, cuda::DType::f64, "weights", true);
  check_address(row_losses, rows, cuda::DType::f64, "row_losses", true);
  check_loss(loss);
  RowLossOptions o;
  o.alpha = alpha;
  o.gamma = gamma;
  o.label_smoothing = label_smoothing;
  o.scale = scale;
  o.from_logits = from_logits;
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::row_loss(dt, op, pred, target, grad, rows, cols, o, weights, row_losses, loss, at);
}

}  // namespace

void bind_cuda_ops(py::module_& m) {
  m.def("activation", &activation, py::arg("op"), py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("n"),
        py::arg("alpha"), py::arg("device"), py::arg("stream"),
        "y = f(x) over n elements for the activation with id `op` (see ACTIVATIONS); y may be x.");
  m.def("activation_backward", &activation_backward, py::arg("op"), py::arg("dtype"), py::arg("grad"),
        py::arg("saved"), py::arg("out"), py::arg("n"), py::arg("alpha"), py::arg("device"), py::arg("stream"),
        "out = dL/dx from grad = dL/dy and saved (y for sigmoid/tanh, x otherwise).");
  m.def("bias_activation", &bias_activation, py::arg("op"), py::arg("dtype"), py::arg("z"), py::arg("bias"),
        py::arg("pre"), py::arg("y"), py::arg("rows"), py::arg("cols"), py::arg("alpha"), py::arg("device"),
        py::arg("stream"),
        "y = act(z + bias) over (rows, cols); pre = z + bias when pre != 0; bias 0 = none; y may be z.");
  m.def("bias_activation_backward", &bias_activation_backward, py::arg("op"), py::arg("dtype"), py::arg("grad"),
        py::arg("saved"), py::arg("dz"), py::arg("dbias"), py::arg("rows"), py::arg("cols"), py::arg("alpha"),
        py::arg("device"), py::arg("stream"),
        "dz = act'(saved) * grad; dbias = dz summed over rows when dbias != 0 (deterministic).");
  m.def("softmax", &softmax, py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("rows"), py::arg("cols"),
        py::arg("log"), py::arg("device"), py::arg("stream"), "Softmax (or log-softmax) over rows; y may be x.");
  m.def("softmax_backward", &softmax_backward, py::arg("dtype"), py::arg("grad"), py::arg("y"), py::arg("out"),
        py::arg("rows"), py::arg("cols"), py::arg("log"), py::arg("device"), py::arg("stream"),
        "Gradient of softmax (or log-softmax) over rows, from its output y.");
  m.def("mse", &mse, py::arg("dtype"), py::arg("pred"), py::arg("target"), py::arg("grad"), py::arg("n"),
        py::arg("loss"), py::arg("device"), py::arg("stream"),
        "Mean squared error: grad = dL/dpred; the mean goes to the device double at `loss` (NaN for n = 0).");
  m.def("bce", &bce, py::arg("dtype"), py::arg("pred"), py::arg("target"), py::arg("grad"), py::arg("n"),
        py::arg("from_logits"), py::arg("loss"), py::arg("device"), py::arg("stream"),
        "Binary cross-entropy: grad = dL/dpred; the mean goes to the device double at `loss` (NaN for n = 0).");
  m.def("loss_term", &loss_term, py::arg("dtype"), py::arg("op"), py::arg("pred"), py::arg("target"), py::arg("grad"),
        py::arg("n"), py::arg("a"), py::arg("b"), py::arg("loss"), py::arg("device"), py::arg("stream"),
        "Keras's elementwise loss `op` (csrc/common/loss_terms.h): grad = dL/dpred, the mean to `loss`.");
  m.def("softmax_ce", &softmax_ce, py::arg("dtype"), py::arg("logits"), py::arg("target"), py::arg("target_kind"),
        py::arg("grad"), py::arg("rows"), py::arg("cols"), py::arg("smoothing"), py::arg("loss"), py::arg("device"),
        py::arg("stream"), py::arg("has_ignore") = false, py::arg("ignore_index") = 0, py::arg("reduction") = "mean",
        py::arg("row_losses") = 0,
        "Softmax cross-entropy of (rows, cols) logits against class ids (target_kind 'int32'/'int64') or "
        "probabilities ('probs'); grad may be logits. A class id equal to ignore_index (when has_ignore) gives "
        "loss 0 and gradient row 0; any other id outside [0, cols) makes its row's loss and gradient NaN. "
        "reduction 'mean' (over the rows not ignored, counted on the device), 'sum', or 'none' (the sum, and "
        "each row's loss into the `rows` device doubles at row_losses) goes to the device double at `loss` "
        "(no rows: NaN for 'mean', 0 otherwise); the gradient is that of the reduced loss.");
  m.def("row_loss", &row_loss, py::arg("dtype"), py::arg("op"), py::arg("pred"), py::arg("target"), py::arg("grad"),
        py::arg("rows"), py::arg("cols"), py::arg("alpha"), py::arg("gamma"), py::arg("from_logits"),
        py::arg("label_smoothing"), py::arg("scale"), py::arg("weights"), py::arg("row_losses"), py::arg("loss"),
        py::arg("device"), py::arg("stream"),
        "Keras's row loss `op` (kRowLossNames) over (rows, cols) arrays: grad = f_r dloss_r/dpred, f_r = scale * "
        "weights[r] (weights 0: scale); the device double at `loss` = sum_r f_r loss_r; row_losses (or 0) gets "
        "each loss_r.");
}

}  // namespace glue
}  // namespace fastdl
