// Bindings for the CUDA layer kernels (issue #13): device addresses (0 = absent) and sizes, checked
// as integers here (counts >= 0, addresses non-null and aligned); shapes, dtypes and overlaps are
// checked by fastdl.backends.cuda_layers, which hands CuPy arrays over. Nothing waits for the GPU.
#include <pybind11/stl.h>

#include <string>
#include <vector>

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

// LayerNorm's and BatchNorm's forward arguments: x and y (rows, cols), gamma and beta (cols,) or absent.
void check_norm(cuda::DType dt, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, int64_t rows, int64_t cols) {
  const int64_t n = cuda_elements(rows, cols);
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(beta, cols, dt, "beta", true);
  check_address(y, n, dt, "y");
}

// Their backward arguments, the same for both but for the statistics: `stats` of them, one per row
// (LayerNorm) or per column (BatchNorm).
void check_norm_backward(cuda::DType dt, uintptr_t dy, uintptr_t x, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                         uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, int64_t rows, int64_t cols, int64_t stats) {
  const int64_t n = cuda_elements(rows, cols);
  check_address(dy, n, dt, "dy");
  check_address(x, n, dt, "x");
  check_address(gamma, cols, dt, "gamma", true);
  check_address(mean, stats, dt, "mean");
  check_address(rstd, stats, dt, "rstd");
  check_address(dx, n, dt, "dx", true);
  check_address(dgamma, cols, dt, "dgamma", true);
  check_address(dbeta, cols, dt, "dbeta", true);
}

void layer_norm(const std::string& dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                uintptr_t rstd, int64_t rows, int64_t cols, double eps, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  check_norm(dt, x, gamma, beta, y, rows, cols);
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
  check_norm_backward(dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, rows);
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::layer_norm_backward(dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, at);
}

void batch_norm(const std::string& dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                uintptr_t var, uintptr_t rstd, int64_t rows, int64_t cols, double eps, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  check_norm(dt, x, gamma, beta, y, rows, cols);
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
  check_norm_backward(dt, dy, x, gamma, mean, rstd, dx, dgamma, dbeta, rows, cols, cols);
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

// The geometry (n, h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left), checked.
Window cuda_window(const std::vector<int64_t>& v) {
  if (v.size() != 14)
    throw py::value_error("geometry must be (n, h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left)");
  Window g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]};
  for (int k = 0; k < 6; ++k) check_count(v[k], "an image or output size");
  if (g.kh < 1 || g.kw < 1 || g.sh < 1 || g.sw < 1 || g.dh < 1 || g.dw < 1)
    throw py::value_error("window sizes, strides and dilations must be >= 1");
  if (g.pad_top < 0 || g.pad_left < 0) throw py::value_error("pad_top and pad_left must be >= 0");
  return g;
}

int64_t image_elements(const Window& g) { return cuda_elements(cuda_elements(g.n, g.h), cuda_elements(g.w, g.c)); }
int64_t out_elements(const Window& g, int64_t per_position) {
  return cuda_elements(cuda_elements(g.n, g.oh), cuda_elements(g.ow, per_position));
}

void im2col(const std::string& dtype, uintptr_t x, uintptr_t cols, const std::vector<int64_t>& geometry, int device,
            uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(x, image_elements(g), dt, "x");
  check_address(cols, out_elements(g, g.kh * g.kw * g.c), dt, "cols");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::im2col(dt, x, cols, g, at);
}

void col2im(const std::string& dtype, uintptr_t cols, uintptr_t dx, const std::vector<int64_t>& geometry, int device,
            uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(cols, out_elements(g, g.kh * g.kw * g.c), dt, "cols");
  check_address(dx, image_elements(g), dt, "dx");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::col2im(dt, cols, dx, g, at);
}

void max_pool(const std::string& dtype, uintptr_t x, uintptr_t y, uintptr_t argmax, const std::vector<int64_t>& geometry,
              int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(x, image_elements(g), dt, "x");
  check_address(y, out_elements(g, g.c), dt, "y");
  check_address(argmax, out_elements(g, g.c), cuda::DType::f64, "argmax");  // 8-byte elements
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::max_pool(dt, x, y, argmax, g, at);
}

void max_pool_backward(const std::string& dtype, uintptr_t dy, uintptr_t argmax, uintptr_t dx,
                       const std::vector<int64_t>& geometry, int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(dy, out_elements(g, g.c), dt, "dy");
  check_address(argmax, out_elements(g, g.c), cuda::DType::f64, "argmax");
  check_address(dx, image_elements(g), dt, "dx");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::max_pool_backward(dt, dy, argmax, dx, g, at);
}

void avg_pool(const std::string& dtype, uintptr_t x, uintptr_t y, const std::vector<int64_t>& geometry, int device,
              uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(x, image_elements(g), dt, "x");
  check_address(y, out_elements(g, g.c), dt, "y");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::avg_pool(dt, x, y, g, at);
}

void avg_pool_backward(const std::string& dtype, uintptr_t dy, uintptr_t dx, const std::vector<int64_t>& geometry,
                       int device, uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  Window g = cuda_window(geometry);
  check_address(dy, out_elements(g, g.c), dt, "dy");
  check_address(dx, image_elements(g), dt, "dx");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::avg_pool_backward(dt, dy, dx, g, at);
}

void embedding_backward(const std::string& dtype, uintptr_t order, uintptr_t start, uintptr_t dy, uintptr_t scale,
                        uintptr_t dw, int64_t tokens, int64_t steps, int64_t vocab, int64_t dim, int device,
                        uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  check_count(tokens, "tokens");
  if (steps < 1 || tokens % steps)
    throw py::value_error("steps must be >= 1 and divide tokens (a whole number of bags), got steps=" +
                          std::to_string(steps) + ", tokens=" + std::to_string(tokens));
  check_address(order, tokens, cuda::DType::f64, "order");
  check_address(start, vocab + 1, cuda::DType::f64, "start");
  check_address(dy, cuda_elements(tokens / steps, dim), dt, "dy");
  check_address(scale, tokens / steps, dt, "scale", true);
  check_address(dw, cuda_elements(vocab, dim), dt, "dw");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::embedding_backward(dt, order, start, dy, scale, dw, vocab, dim, steps, at);
}

void embedding_bag(const std::string& dtype, uintptr_t ids, uintptr_t table, uintptr_t scale, uintptr_t out,
                   int64_t bags, int64_t steps, int64_t vocab, int64_t dim, int64_t ignore, int device,
                   uintptr_t stream) {
  cuda::DType dt = layer_dtype(dtype);
  check_count(bags, "bags");
  check_count(steps, "steps");
  check_address(ids, cuda_elements(bags, steps), cuda::DType::f64, "ids");
  check_address(table, cuda_elements(vocab, dim), dt, "table");
  check_address(scale, bags, dt, "scale");
  check_address(out, cuda_elements(bags, dim), dt, "out");
  cuda::Place at = cuda_place(device, stream);
  py::gil_scoped_release nogil;
  cuda::embedding_bag(dt, ids, table, scale, out, bags, steps, dim, ignore, at);
}

}  // namespace

#define FASTDL_GEOMETRY " geometry: (n, h, w, c, oh, ow, kh, kw, sh, sw, dh, dw, pad_top, pad_left)."

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
  m.def("im2col", &im2col, py::arg("dtype"), py::arg("x"), py::arg("cols"), py::arg("geometry"), py::arg("device"),
        py::arg("stream"), "x (n, h, w, c) -> cols (n, oh, ow, kh kw c), 0 outside the image." FASTDL_GEOMETRY);
  m.def("col2im", &col2im, py::arg("dtype"), py::arg("cols"), py::arg("dx"), py::arg("geometry"), py::arg("device"),
        py::arg("stream"), "im2col's adjoint into dx (written; a gather: deterministic)." FASTDL_GEOMETRY);
  m.def("max_pool", &max_pool, py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("argmax"), py::arg("geometry"),
        py::arg("device"), py::arg("stream"),
        "y and argmax (int64, row w + column of the first maximum; NaN wins; -1 for none)." FASTDL_GEOMETRY);
  m.def("max_pool_backward", &max_pool_backward, py::arg("dtype"), py::arg("dy"), py::arg("argmax"), py::arg("dx"),
        py::arg("geometry"), py::arg("device"), py::arg("stream"),
        "dx = dy summed at argmax in output order (written); entries outside [-1, h w) skipped." FASTDL_GEOMETRY);
  m.def("avg_pool", &avg_pool, py::arg("dtype"), py::arg("x"), py::arg("y"), py::arg("geometry"), py::arg("device"),
        py::arg("stream"), "y = the mean over the window's positions inside the image." FASTDL_GEOMETRY);
  m.def("avg_pool_backward", &avg_pool_backward, py::arg("dtype"), py::arg("dy"), py::arg("dx"), py::arg("geometry"),
        py::arg("device"), py::arg("stream"), "avg_pool's adjoint into dx (written)." FASTDL_GEOMETRY);
  m.def("embedding_backward", &embedding_backward, py::arg("dtype"), py::arg("order"), py::arg("start"), py::arg("dy"),
        py::arg("scale"), py::arg("dw"), py::arg("tokens"), py::arg("steps"), py::arg("vocab"), py::arg("dim"),
        py::arg("device"), py::arg("stream"),
        "dw[v] = the sum over k in [start[v], start[v + 1]) of scale[b] dy[b], b = order[k] / steps, in that order "
        "(int64 order: the tokens stably grouped by id; scale 0: 1), in double.");
  m.def("embedding_bag", &embedding_bag, py::arg("dtype"), py::arg("ids"), py::arg("table"), py::arg("scale"),
        py::arg("out"), py::arg("bags"), py::arg("steps"), py::arg("vocab"), py::arg("dim"), py::arg("ignore"),
        py::arg("device"), py::arg("stream"),
        "out[b] = scale[b] * the sum of table[ids[b steps + s]] over the steps whose int64 id is not `ignore`, in "
        "double.");
}

}  // namespace glue
}  // namespace fastdl
