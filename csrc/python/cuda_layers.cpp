// Bindings for the CUDA layer kernels (issue #13): device addresses (0 = absent) and sizes, checked
// as integers here (counts >= 0, addresses non-null and aligned); shapes, dtypes and overlaps are
// checked by fastdl.backends.cuda_layers, which hands CuPy arrays over. Nothing waits for the GPU.
#include <string>

#include "cuda_args.h"

#include "../cuda/layers_launch.h"

namespace fastdl {
namespace glue {

namespace {

cuda::DType layer_dtype(const std::string& dtype) {
  cuda::DType dt = cuda_dtype(dtype);
  if (dt != cuda::DType::f32 && dt != cuda::DType::f64)
    throw py::type_error("the layer kernels take float32 or float64 arrays, got " + dtype);
  return dt;
}

void layer_norm(const std::string& dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                uintptr_t rstd, int64_t rows, int64_t cols, double eps, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  const int64_t n = cuda_elements(rows, cols);
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(beta, cols, dt, "beta", true);
  check_address(y, n, dt, "y");
  check_address(mean, rows, dt, "mean");
  check_address(rstd, rows, dt, "rstd");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::layer_norm(dt, x, gamma, beta, y, mean, rstd, rows, cols, eps, at);
}

void layer_norm_backward(const std::string& dtype, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean,
                         uintptr_t rstd, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols,
                         int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  const int64_t n = cuda_elements(rows, cols);
  check_address(dy, n, dt, "dy");
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(mean, rows, dt, "mean");
  check_address(rstd, rows, dt, "rstd");
  check_address(dx, n, dt, "dx", true);
  check_address(dgamma, cols, dt, "dgamma", true);
  check_address(dbeta, cols, dt, "dbeta", true);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::layer_norm_backward(dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, at);
}

void batch_norm(const std::string& dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                uintptr_t var, uintptr_t rstd, int64_t rows, int64_t cols, double eps, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  const int64_t n = cuda_elements(rows, cols);
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(beta, cols, dt, "beta", true);
  check_address(y, n, dt, "y");
  check_address(mean, cols, dt, "mean");
  check_address(var, cols, dt, "var");
  check_address(rstd, cols, dt, "rstd");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::batch_norm(dt, x, gamma, beta, y, mean, var, rstd, rows, cols, eps, at);
}

void batch_norm_backward(const std::string& dtype, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean,
                         uintptr_t rstd, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols,
                         int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  const int64_t n = cuda_elements(rows, cols);
  check_address(dy, n, dt, "dy");
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(mean, cols, dt, "mean");
  check_address(rstd, cols, dt, "rstd");
  check_address(dx, n, dt, "dx", true);
  check_address(dgamma, cols, dt, "dgamma", true);
  check_address(dbeta, cols, dt, "dbeta", true);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::batch_norm_backward(dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, at);
}

void channel_affine(const std::string& dtype, uintptr_t x, uintptr_t scale, uintptr_t shift, uintptr_t y, int64_t rows,
                    int64_t cols, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  const int64_t n = cuda_elements(rows, cols);
  check_address(x, n, dt, "x");
  check_address(scale, cols, dt, "scale");
  check_address(shift, cols, dt, "shift");
  check_address(y, n, dt, "y");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::channel_affine(dt, x, scale, shift, y, rows, cols, at);
}

}  // namespace

void bind_cuda_layers(py::module_& m) {
  m.def("layer_norm", &layer_norm, py::arg("dtype"), py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("y"),
        py::arg("mean"), py::arg("rstd"), py::arg("rows"), py::arg("cols"), py::arg("eps"), py::arg("device"),
        py::arg("stream"),
        "LayerNorm of each row of x (rows, cols): y = (x - mean) rstd gamma + beta (gamma, beta 0: 1, 0); writes y "
        "(may be x), mean and rstd (rows).");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("dtype"), py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("rstd"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::arg("rows"),
        py::arg("cols"), py::arg("device"), py::arg("stream"),
        "dx = rstd (g - mean(g) - xhat mean(g xhat)), g = dy gamma (dx may be dy); dgamma = sum_r dy xhat, dbeta = "
        "sum_r dy (deterministic); each output 0: not computed.");
  m.def("batch_norm", &batch_norm, py::arg("dtype"), py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("y"),
        py::arg("mean"), py::arg("var"), py::arg("rstd"), py::arg("rows"), py::arg("cols"), py::arg("eps"),
        py::arg("device"), py::arg("stream"),
        "BatchNorm (training) of each column of x (rows, cols): writes y (may be x), mean, var (biased), rstd (cols).");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dtype"), py::arg("dy"), py::arg("x"), py::arg("gamma"),
        py::arg("mean"), py::arg("rstd"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"), py::arg("rows"),
        py::arg("cols"), py::arg("device"), py::arg("stream"),
        "dbeta = sum_r dy, dgamma = sum_r dy xhat, dx = gamma rstd (dy - dbeta / M - xhat dgamma / M) (dx may be dy; "
        "each output 0: not written).");
  m.def("channel_affine", &channel_affine, py::arg("dtype"), py::arg("x"), py::arg("scale"), py::arg("shift"),
        py::arg("y"), py::arg("rows"), py::arg("cols"), py::arg("device"), py::arg("stream"),
        "y = x scale + shift per column (y may be x).");
}

}  // namespace glue
}  // namespace fastdl
