// Bindings for the layer kernels (issue #13): the functions of fastdl.backends.numpy_layers, same
// names, arguments and results. Argument checks only (shapes, dtypes, contiguity, overlaps, each
// error naming the argument); the GIL is released while a kernel runs.
#include <string>
#include <vector>

#include "../cpu/dispatch.h"
#include "array_args.h"

namespace fastdl {
namespace glue {

namespace {

template <class T>
const cpu::LayerKernels<T>& layers();
template <>
const cpu::LayerKernels<float>& layers<float>() { return cpu::kernels().layers->f32; }
template <>
const cpu::LayerKernels<double>& layers<double>() { return cpu::kernels().layers->f64; }

template <class F>
auto with_type(DType dt, F f) {
  return dt == DType::f32 ? f(float{}) : f(double{});
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "(";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> shape_of(const py::array& a) {
  std::vector<int64_t> s;
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s.push_back(a.shape(d));
  return s;
}

void require_shape(const py::array& a, const std::vector<int64_t>& shape, const char* name, const std::string& why) {
  if (shape_of(a) != shape)
    throw py::value_error(std::string(name) + " must have shape " + shape_text(shape) + " (" + why + "), got " +
                          shape_text(shape_of(a)));
}

void require_ndim(const py::array& a, int ndim, const char* name, const char* layout) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must be " + std::to_string(ndim) + "-D " + layout + ", got shape " +
                          shape_text(shape_of(a)));
}

// An optional array argument (None: absent), or a required one.
struct Opt {
  py::array a;
  bool has = false;
};

Opt float_arg(const py::object& o, DType dt, const char* name, const char* like) {
  Opt r;
  if (o.is_none()) return r;
  r.a = as_array(o, name);
  r.has = true;
  require_dtype(r.a, dt, name, like);
  return r;
}

bool overlap(const py::array& a, const py::array& b) {
  auto lo_a = reinterpret_cast<uintptr_t>(a.data()), lo_b = reinterpret_cast<uintptr_t>(b.data());
  return a.nbytes() > 0 && b.nbytes() > 0 && lo_a < lo_b + b.nbytes() && lo_b < lo_a + a.nbytes();
}

bool same_memory(const py::array& a, const py::array& b) { return a.data() == b.data() && a.nbytes() == b.nbytes(); }

struct Named {
  const py::array* a;  // null: not given
  const char* name;
  bool out;
  const char* may_be = nullptr;  // the one input this output may be exactly (in place)
};
Named arg(const py::array& a, const char* name, bool out = false, const char* may_be = nullptr) {
  return {&a, name, out, may_be};
}
Named arg(const Opt& o, const char* name, bool out = false, const char* may_be = nullptr) {
  return {o.has ? &o.a : nullptr, name, out, may_be};
}

// No output shares memory with another argument, except an output that is exactly its may_be input.
void check_overlaps(const std::vector<Named>& args) {
  for (size_t i = 0; i < args.size(); ++i)
    for (size_t j = 0; j < args.size(); ++j) {
      if (i == j || !args[i].out || !args[i].a || !args[j].a || (args[j].out && j < i)) continue;
      if (!overlap(*args[i].a, *args[j].a)) continue;
      const bool in_place = args[i].may_be && std::string(args[i].may_be) == args[j].name &&
                            same_memory(*args[i].a, *args[j].a);
      if (!in_place)
        throw py::value_error(std::string(args[i].name) + " must not share memory with " + args[j].name);
    }
}

template <class T>
const T* in_ptr(const Opt& o, const char* name) { return o.has ? input<T>(o.a, name) : nullptr; }
template <class T>
T* out_ptr(Opt& o, const char* name) { return o.has ? output<T>(o.a, name) : nullptr; }

// Scratch for the deterministic reductions, owned here (the kernels never allocate) and kept per
// calling thread between calls: a fresh allocation of this size is mmap'ed, and zeroing its new pages
// cost the kernels up to a third of their time. Taken while the GIL is held.
struct NormWork {
  double* data;
};
NormWork norm_work(int64_t rows, int64_t cols) {
  thread_local std::vector<double> buffer;
  const int64_t n = cpu::norm_work_doubles(rows, cols);
  if ((int64_t)buffer.size() < n) buffer.resize((size_t)n);
  return {buffer.data()};
}

// ---- Normalization's arguments ------------------------------------------------------------------------

// The arguments both normalizations check alike: x (rows, C), gamma / beta / dgamma / dbeta (C,) or
// None, y / dy / dx shaped as x; the statistics have one value per row (LayerNorm) or per column
// (BatchNorm). Only the kernel call differs.
struct NormArgs {
  DType dt;
  int64_t rows, cols;
  Opt gamma, beta;
};

NormArgs norm_args(const py::array& x, const py::object& gamma_o, const py::object& beta_o) {
  NormArgs a{float_dtype(x, "x"), 0, 0, {}, {}};
  require_ndim(x, 2, "x", "(rows, C)");
  a.rows = x.shape(0), a.cols = x.shape(1);
  a.gamma = float_arg(gamma_o, a.dt, "gamma", "x");
  a.beta = float_arg(beta_o, a.dt, "beta", "x");
  if (a.gamma.has) require_shape(a.gamma.a, {a.cols}, "gamma", "x's C");
  if (a.beta.has) require_shape(a.beta.a, {a.cols}, "beta", "x's C");
  return a;
}

void require_stats(const NormArgs& a, const py::array& s, const char* name, bool per_row) {
  require_dtype(s, a.dt, name, "x");
  require_shape(s, {per_row ? a.rows : a.cols}, name, per_row ? "x's rows" : "x's C");
}

void require_like_x(const NormArgs& a, const py::array& s, const char* name) {
  require_dtype(s, a.dt, name, "x");
  require_shape(s, {a.rows, a.cols}, name, "x's shape");
}

struct NormGrads {
  NormArgs a;
  Opt dx, dgamma, dbeta;
};

// dy, x, gamma, mean, rstd in; dx (may be dy), dgamma, dbeta out, each optional.
NormGrads norm_backward_args(const py::array& dy, const py::array& x, const py::object& gamma_o,
                             const py::array& mean, const py::array& rstd, const py::object& dx_o,
                             const py::object& dgamma_o, const py::object& dbeta_o, bool per_row) {
  NormGrads g{norm_args(x, gamma_o, py::none()), {}, {}, {}};
  const NormArgs& a = g.a;
  require_like_x(a, dy, "dy");
  require_stats(a, mean, "mean", per_row);
  require_stats(a, rstd, "rstd", per_row);
  g.dx = float_arg(dx_o, a.dt, "dx", "x"), g.dgamma = float_arg(dgamma_o, a.dt, "dgamma", "x");
  g.dbeta = float_arg(dbeta_o, a.dt, "dbeta", "x");
  if (g.dx.has) require_like_x(a, g.dx.a, "dx");
  if (g.dgamma.has) require_shape(g.dgamma.a, {a.cols}, "dgamma", "x's C");
  if (g.dbeta.has) require_shape(g.dbeta.a, {a.cols}, "dbeta", "x's C");
  check_overlaps({arg(dy, "dy"), arg(x, "x"), arg(a.gamma, "gamma"), arg(mean, "mean"), arg(rstd, "rstd"),
                  arg(g.dx, "dx", true, "dy"), arg(g.dgamma, "dgamma", true), arg(g.dbeta, "dbeta", true)});
  return g;
}

// ---- LayerNorm ------------------------------------------------------------------------------------------

void layer_norm(const py::array& x, const py::object& gamma_o, const py::object& beta_o, py::array& y,
                py::array& mean, py::array& rstd, double eps) {
  NormArgs a = norm_args(x, gamma_o, beta_o);
  require_like_x(a, y, "y");
  require_stats(a, mean, "mean", true);
  require_stats(a, rstd, "rstd", true);
  check_overlaps({arg(x, "x"), arg(a.gamma, "gamma"), arg(a.beta, "beta"), arg(y, "y", true, "x"),
                  arg(mean, "mean", true), arg(rstd, "rstd", true)});
  with_type(a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = input<T>(x, "x"), *gp = in_ptr<T>(a.gamma, "gamma"), *bp = in_ptr<T>(a.beta, "beta");
    T *yp = output<T>(y, "y"), *mp = output<T>(mean, "mean"), *rp = output<T>(rstd, "rstd");
    py::gil_scoped_release nogil;
    layers<T>().layer_norm(xp, gp, bp, yp, mp, rp, a.rows, a.cols, eps);
    return 0;
  });
}

// The backward kernels of both normalizations take the same arguments.
template <class Call>
void norm_backward(NormGrads& g, const py::array& dy, const py::array& x, const py::array& mean,
                   const py::array& rstd, NormWork work, Call call) {
  with_type(g.a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T *dyp = input<T>(dy, "dy"), *xp = input<T>(x, "x"), *gp = in_ptr<T>(g.a.gamma, "gamma");
    const T *mp = input<T>(mean, "mean"), *rp = input<T>(rstd, "rstd");
    T *dxp = out_ptr<T>(g.dx, "dx"), *dgp = out_ptr<T>(g.dgamma, "dgamma"), *dbp = out_ptr<T>(g.dbeta, "dbeta");
    py::gil_scoped_release nogil;
    call(layers<T>(), dyp, xp, gp, mp, rp, dxp, dgp, dbp, g.a.rows, g.a.cols, work.data);
    return 0;
  });
}

void layer_norm_backward(const py::array& dy, const py::array& x, const py::object& gamma_o, const py::array& mean,
                         const py::array& rstd, const py::object& dx_o, const py::object& dgamma_o,
                         const py::object& dbeta_o) {
  NormGrads g = norm_backward_args(dy, x, gamma_o, mean, rstd, dx_o, dgamma_o, dbeta_o, true);
  NormWork work = g.dgamma.has || g.dbeta.has ? norm_work(g.a.rows, g.a.cols) : NormWork{nullptr};
  norm_backward(g, dy, x, mean, rstd, work, [](const auto& k, auto... args) { k.layer_norm_backward(args...); });
}

// ---- BatchNorm ------------------------------------------------------------------------------------------

void batch_norm(const py::array& x, const py::object& gamma_o, const py::object& beta_o, py::array& y,
                py::array& mean, py::array& var, py::array& rstd, double eps) {
  NormArgs a = norm_args(x, gamma_o, beta_o);
  require_like_x(a, y, "y");
  require_stats(a, mean, "mean", false);
  require_stats(a, var, "var", false);
  require_stats(a, rstd, "rstd", false);
  check_overlaps({arg(x, "x"), arg(a.gamma, "gamma"), arg(a.beta, "beta"), arg(y, "y", true, "x"),
                  arg(mean, "mean", true), arg(var, "var", true), arg(rstd, "rstd", true)});
  NormWork work = norm_work(a.rows, a.cols);
  with_type(a.dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = input<T>(x, "x"), *gp = in_ptr<T>(a.gamma, "gamma"), *bp = in_ptr<T>(a.beta, "beta");
    T *yp = output<T>(y, "y"), *mp = output<T>(mean, "mean"), *vp = output<T>(var, "var"),
      *rp = output<T>(rstd, "rstd");
    py::gil_scoped_release nogil;
    layers<T>().batch_norm(xp, gp, bp, yp, mp, vp, rp, a.rows, a.cols, eps, work.data);
    return 0;
  });
}

void batch_norm_backward(const py::array& dy, const py::array& x, const py::object& gamma_o, const py::array& mean,
                         const py::array& rstd, const py::object& dx_o, const py::object& dgamma_o,
                         const py::object& dbeta_o) {
  NormGrads g = norm_backward_args(dy, x, gamma_o, mean, rstd, dx_o, dgamma_o, dbeta_o, false);
  norm_backward(g, dy, x, mean, rstd, norm_work(g.a.rows, g.a.cols),
                [](const auto& k, auto... args) { k.batch_norm_backward(args...); });
}

void channel_affine(const py::array& x, const py::array& scale, const py::array& shift, py::array& y) {
  DType dt = float_dtype(x, "x");
  if (x.ndim() < 1) throw py::value_error("x must have a channel axis: shape (..., C)");
  const int64_t cols = x.shape(x.ndim() - 1), rows = cols ? (int64_t)x.size() / cols : 0;
  require_dtype(scale, dt, "scale", "x");
  require_shape(scale, {cols}, "scale", "x's C");
  require_dtype(shift, dt, "shift", "x");
  require_shape(shift, {cols}, "shift", "x's C");
  require_dtype(y, dt, "y", "x");
  require_shape(y, shape_of(x), "y", "x's shape");
  check_overlaps({arg(x, "x"), arg(scale, "scale"), arg(shift, "shift"), arg(y, "y", true, "x")});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T *xp = input<T>(x, "x"), *sp = input<T>(scale, "scale"), *hp = input<T>(shift, "shift");
    T* yp = output<T>(y, "y");
    py::gil_scoped_release nogil;
    layers<T>().channel_affine(xp, sp, hp, yp, rows, cols);
    return 0;
  });
}

// ---- windows -----------------------------------------------------------------------------------------------

void check_window(int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl) {
  if (kh < 1 || kw < 1) throw py::value_error("kh and kw (the window) must be >= 1");
  if (sh < 1 || sw < 1) throw py::value_error("sh and sw (the strides) must be >= 1");
  if (dh < 1 || dw < 1) throw py::value_error("dh and dw (the dilations) must be >= 1");
  if (pt < 0 || pl < 0) throw py::value_error("pad_top and pad_left must be >= 0");
}

// The geometry from an image array (n, h, w, c) and an output array (n, oh, ow, ...).
Window window_of(const py::array& image, const char* image_name, const py::array& out, const char* out_name,
                 int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl) {
  check_window(kh, kw, sh, sw, dh, dw, pt, pl);
  require_ndim(image, 4, image_name, "(N, H, W, C)");
  require_ndim(out, 4, out_name, "(N, OH, OW, ...)");
  Window g{image.shape(0), image.shape(1), image.shape(2), image.shape(3), out.shape(1), out.shape(2),
           kh, kw, sh, sw, dh, dw, pt, pl};
  if (out.shape(0) != g.n)
    throw py::value_error(std::string(out_name) + " has " + std::to_string(out.shape(0)) + " images but " + image_name +
                          " has " + std::to_string(g.n));
  return g;
}

void im2col(const py::array& x, py::array& cols, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
            int64_t dw, int64_t pt, int64_t pl) {
  DType dt = float_dtype(x, "x");
  require_dtype(cols, dt, "cols", "x");
  Window g = window_of(x, "x", cols, "cols", kh, kw, sh, sw, dh, dw, pt, pl);
  require_shape(cols, {g.n, g.oh, g.ow, kh * kw * g.c}, "cols", "(N, OH, OW, kh kw C)");
  check_overlaps({arg(x, "x"), arg(cols, "cols", true)});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = input<T>(x, "x");
    T* cp = output<T>(cols, "cols");
    py::gil_scoped_release nogil;
    layers<T>().im2col(xp, cp, g);
    return 0;
  });
}

void col2im(const py::array& cols, py::array& dx, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t dh,
            int64_t dw, int64_t pt, int64_t pl) {
  DType dt = float_dtype(cols, "cols");
  require_dtype(dx, dt, "dx", "cols");
  Window g = window_of(dx, "dx", cols, "cols", kh, kw, sh, sw, dh, dw, pt, pl);
  require_shape(cols, {g.n, g.oh, g.ow, kh * kw * g.c}, "cols", "(N, OH, OW, kh kw C)");
  check_overlaps({arg(cols, "cols"), arg(dx, "dx", true)});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* cp = input<T>(cols, "cols");
    T* dp = output<T>(dx, "dx");
    py::gil_scoped_release nogil;
    layers<T>().col2im(cp, dp, g);
    return 0;
  });
}

void require_int64(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<int64_t>>(a))
    throw py::type_error(std::string(name) + " must be an int64 array, got dtype " + dtype_name(a));
}

void max_pool(const py::array& x, py::array& y, py::array& argmax, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
              int64_t pt, int64_t pl) {
  DType dt = float_dtype(x, "x");
  require_dtype(y, dt, "y", "x");
  Window g = window_of(x, "x", y, "y", kh, kw, sh, sw, 1, 1, pt, pl);
  require_shape(y, {g.n, g.oh, g.ow, g.c}, "y", "(N, OH, OW, C)");
  require_int64(argmax, "argmax");
  require_shape(argmax, {g.n, g.oh, g.ow, g.c}, "argmax", "y's shape");
  check_overlaps({arg(x, "x"), arg(y, "y", true), arg(argmax, "argmax", true)});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = input<T>(x, "x");
    T* yp = output<T>(y, "y");
    int64_t* ap = output<int64_t>(argmax, "argmax");
    py::gil_scoped_release nogil;
    layers<T>().max_pool(xp, yp, ap, g);
    return 0;
  });
}

void max_pool_backward(const py::array& dy, const py::array& argmax, py::array& dx) {
  DType dt = float_dtype(dy, "dy");
  require_dtype(dx, dt, "dx", "dy");
  Window g = window_of(dx, "dx", dy, "dy", 1, 1, 1, 1, 1, 1, 0, 0);
  require_shape(dy, {g.n, g.oh, g.ow, g.c}, "dy", "(N, OH, OW, C) with dx's N and C");
  require_int64(argmax, "argmax");
  require_shape(argmax, {g.n, g.oh, g.ow, g.c}, "argmax", "dy's shape");
  check_overlaps({arg(dy, "dy"), arg(argmax, "argmax"), arg(dx, "dx", true)});
  const int64_t bad = with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* dyp = input<T>(dy, "dy");
    const int64_t* ap = input<int64_t>(argmax, "argmax");
    T* dxp = output<T>(dx, "dx");
    py::gil_scoped_release nogil;
    return layers<T>().max_pool_backward(dyp, ap, dxp, g);
  });
  if (bad)
    throw py::value_error("argmax has " + std::to_string(bad) + " entries outside [-1, H W) = [-1, " +
                          std::to_string(g.h * g.w) + "): not max_pool's indices for dx's image size");
}

void avg_pool(const py::array& x, py::array& y, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt,
              int64_t pl) {
  DType dt = float_dtype(x, "x");
  require_dtype(y, dt, "y", "x");
  Window g = window_of(x, "x", y, "y", kh, kw, sh, sw, 1, 1, pt, pl);
  require_shape(y, {g.n, g.oh, g.ow, g.c}, "y", "(N, OH, OW, C)");
  check_overlaps({arg(x, "x"), arg(y, "y", true)});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* xp = input<T>(x, "x");
    T* yp = output<T>(y, "y");
    py::gil_scoped_release nogil;
    layers<T>().avg_pool(xp, yp, g);
    return 0;
  });
}

void avg_pool_backward(const py::array& dy, py::array& dx, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t pt,
                       int64_t pl) {
  DType dt = float_dtype(dy, "dy");
  require_dtype(dx, dt, "dx", "dy");
  Window g = window_of(dx, "dx", dy, "dy", kh, kw, sh, sw, 1, 1, pt, pl);
  require_shape(dy, {g.n, g.oh, g.ow, g.c}, "dy", "(N, OH, OW, C) with dx's N and C");
  check_overlaps({arg(dy, "dy"), arg(dx, "dx", true)});
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* dyp = input<T>(dy, "dy");
    T* dxp = output<T>(dx, "dx");
    py::gil_scoped_release nogil;
    layers<T>().avg_pool_backward(dyp, dxp, g);
    return 0;
  });
}

// ---- Embedding ----------------------------------------------------------------------------------------------

// The ids as int64, copied and checked while the GIL is held (the kernel indexes memory with them
// after it is released, when another thread could change the caller's array).
template <class I>
void copy_ids(const py::array& ids, std::vector<int64_t>& out, int64_t vocab) {
  const I* p = input<I>(ids, "ids");
  out.assign(p, p + ids.size());
  if (out.empty()) return;
  int64_t lo = out[0], hi = out[0];
  for (int64_t v : out) lo = v < lo ? v : lo, hi = v > hi ? v : hi;
  if (lo < 0 || hi >= vocab)
    throw py::index_error("embedding ids must be in [0, " + std::to_string(vocab) + "), got " + std::to_string(lo) +
                          ".." + std::to_string(hi));
}

// The ids (any shape) as int64, checked in [0, vocab): int32 or int64 arrays.
std::vector<int64_t> ids_of(const py::array& ids, int64_t vocab) {
  std::vector<int64_t> id64;
  if (py::isinstance<py::array_t<int64_t>>(ids)) copy_ids<int64_t>(ids, id64, vocab);
  else if (py::isinstance<py::array_t<int32_t>>(ids)) copy_ids<int32_t>(ids, id64, vocab);
  else throw py::type_error("ids must be an int32 or int64 array, got dtype " + dtype_name(ids));
  return id64;
}

// The gradient of a plain Embedding (scale null, steps 1: dy has a row per token) or of a bag
// (dy and scale have a row per bag of `steps` tokens).
void embedding_gradient(const std::vector<int64_t>& id64, const py::array& dy, const py::array* scale, py::array& dw,
                        int64_t steps, int64_t ignore) {
  DType dt = float_dtype(dy, "dy");
  const int64_t tokens = (int64_t)id64.size(), vocab = dw.shape(0), dim = dw.shape(1);
  std::vector<int64_t> order((size_t)tokens + 1), start((size_t)vocab + 1);
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* dyp = input<T>(dy, "dy");
    const T* sp = scale ? input<T>(*scale, "scale") : nullptr;
    T* dwp = output<T>(dw, "dw");
    py::gil_scoped_release nogil;
    layers<T>().embedding_backward(id64.data(), dyp, sp, dwp, tokens, steps, vocab, dim, ignore, order.data(),
                                   start.data());
    return 0;
  });
}

void embedding_backward(const py::array& ids, const py::array& dy, py::array& dw) {
  DType dt = float_dtype(dy, "dy");
  require_dtype(dw, dt, "dw", "dy");
  require_ndim(ids, 1, "ids", "(T,)");
  require_ndim(dy, 2, "dy", "(T, D)");
  require_ndim(dw, 2, "dw", "(V, D)");
  require_shape(dy, {(int64_t)ids.shape(0), (int64_t)dw.shape(1)}, "dy", "(len(ids), dw's D)");
  check_overlaps({arg(ids, "ids"), arg(dy, "dy"), arg(dw, "dw", true)});
  embedding_gradient(ids_of(ids, dw.shape(0)), dy, nullptr, dw, 1, -1);
}

// ids (B, S), scale (B,) of the dtype dt (that of the argument named dt_from), and a (B, D) array
// named `rows`: the bag kernels' common checks.
void check_bag(const py::array& ids, const py::array& scale, const py::array& rows, const char* rows_name,
               int64_t dim, DType dt, const char* dt_from) {
  require_ndim(ids, 2, "ids", "(B, S)");
  require_dtype(scale, dt, "scale", dt_from);
  require_shape(scale, {(int64_t)ids.shape(0)}, "scale", "(B,) with ids' B");
  require_shape(rows, {(int64_t)ids.shape(0), dim}, rows_name, "(B, D) with ids' B and the table's D");
}

void embedding_bag(const py::array& ids, const py::array& table, const py::array& scale, py::array& out,
                   int64_t ignore) {
  DType dt = float_dtype(table, "table");
  require_dtype(out, dt, "out", "table");
  require_ndim(table, 2, "table", "(V, D)");
  check_bag(ids, scale, out, "out", table.shape(1), dt, "table");
  check_overlaps({arg(ids, "ids"), arg(table, "table"), arg(scale, "scale"), arg(out, "out", true)});
  const std::vector<int64_t> id64 = ids_of(ids, table.shape(0));
  const int64_t bags = ids.shape(0), steps = ids.shape(1), dim = table.shape(1);
  with_type(dt, [&](auto zero) {
    using T = decltype(zero);
    const T* tp = input<T>(table, "table");
    const T* sp = input<T>(scale, "scale");
    T* op = output<T>(out, "out");
    py::gil_scoped_release nogil;
    layers<T>().embedding_bag(id64.data(), tp, sp, op, bags, steps, dim, ignore);
    return 0;
  });
}

void embedding_bag_backward(const py::array& ids, const py::array& dy, const py::array& scale, py::array& dw,
                            int64_t ignore) {
  DType dt = float_dtype(dy, "dy");
  require_dtype(dw, dt, "dw", "dy");
  require_ndim(dw, 2, "dw", "(V, D)");
  check_bag(ids, scale, dy, "dy", dw.shape(1), dt, "dy");
  check_overlaps({arg(ids, "ids"), arg(dy, "dy"), arg(scale, "scale"), arg(dw, "dw", true)});
  embedding_gradient(ids_of(ids, dw.shape(0)), dy, &scale, dw, ids.shape(1), ignore);
}

}  // namespace

void bind_layers(py::module_& m) {
  m.def("layer_norm", &layer_norm, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("y"), py::arg("mean"),
        py::arg("rstd"), py::arg("eps"),
        "LayerNorm of each row of x (rows, C): mean_r, var_r = sum_c (x_rc - mean_r)^2 / C, rstd_r = 1 / sqrt(var_r + "
        "eps), y_rc = (x_rc - mean_r) rstd_r gamma_c + beta_c (gamma, beta None: 1, 0). Writes y, mean, rstd (rows,); "
        "y may be x.");
  m.def("layer_norm_backward", &layer_norm_backward, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"),
        py::arg("rstd"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"),
        "xhat = (x - mean) rstd, g = dy gamma: dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)), dgamma = sum_r dy xhat, "
        "dbeta = sum_r dy (each None: not computed; the sums are the same bits whatever the thread count). dx may be dy.");
  m.def("batch_norm", &batch_norm, py::arg("x"), py::arg("gamma"), py::arg("beta"), py::arg("y"), py::arg("mean"),
        py::arg("var"), py::arg("rstd"), py::arg("eps"),
        "BatchNorm (training) of each column of x (M, C): mean_c, var_c = sum_r (x_rc - mean_c)^2 / M (biased), rstd_c = "
        "1 / sqrt(var_c + eps), y = (x - mean) rstd gamma + beta. Writes y (may be x), mean, var, rstd (C,); M = 0 gives "
        "mean 0, var 0. Statistics in one read of x, merged over a fixed partition of the rows (deterministic).");
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("dy"), py::arg("x"), py::arg("gamma"), py::arg("mean"),
        py::arg("rstd"), py::arg("dx"), py::arg("dgamma"), py::arg("dbeta"),
        "xhat = (x - mean) rstd; dbeta = sum_r dy, dgamma = sum_r dy xhat, dx = gamma rstd (dy - dbeta / M - xhat dgamma "
        "/ M). dx may be dy; each output None: not written. Deterministic sums.");
  m.def("channel_affine", &channel_affine, py::arg("x"), py::arg("scale"), py::arg("shift"), py::arg("y"),
        "y = x scale + shift over the last axis (BatchNorm at inference, folded); y may be x.");
  m.def("im2col", &im2col, py::arg("x"), py::arg("cols"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("dh"), py::arg("dw"), py::arg("pad_top"), py::arg("pad_left"),
        "cols[n, p, q, (i kw + j) C + c] = x[n, p sh + i dh - pad_top, q sw + j dw - pad_left, c] (0 outside the "
        "image); x (N, H, W, C), cols (N, OH, OW, kh kw C), the output size read from cols.");
  m.def("col2im", &col2im, py::arg("cols"), py::arg("dx"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("dh"), py::arg("dw"), py::arg("pad_top"), py::arg("pad_left"),
        "im2col's adjoint: dx[n, y, x, c] = the sum of the cols entries that read x[n, y, x, c], in window order, "
        "written (not added to); deterministic (a gather, no atomics).");
  m.def("max_pool", &max_pool, py::arg("x"), py::arg("y"), py::arg("argmax"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("pad_top"), py::arg("pad_left"),
        "y = the max over the window's positions inside the image; argmax (int64) = row W + column of the first "
        "maximum in window order (NaN wins); a window with no position inside: -inf and -1.");
  m.def("max_pool_backward", &max_pool_backward, py::arg("dy"), py::arg("argmax"), py::arg("dx"),
        "dx[n, argmax, c] = the sum of dy over the outputs whose maximum it was (written); deterministic.");
  m.def("avg_pool", &avg_pool, py::arg("x"), py::arg("y"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"),
        py::arg("pad_top"), py::arg("pad_left"),
        "y = the mean of the window's positions inside the image (padding not counted; none: 0).");
  m.def("avg_pool_backward", &avg_pool_backward, py::arg("dy"), py::arg("dx"), py::arg("kh"), py::arg("kw"),
        py::arg("sh"), py::arg("sw"), py::arg("pad_top"), py::arg("pad_left"),
        "avg_pool's adjoint: each output's dy / its count to each of its window's positions inside the image (written).");
  m.def("embedding_backward", &embedding_backward, py::arg("ids"), py::arg("dy"), py::arg("dw"),
        "dw[v] = the sum of dy[t] over the tokens with ids[t] == v, in token order (written; the same bits every run "
        "and whatever the thread count). ids (T,) int32 / int64 in [0, V) (IndexError otherwise); dy (T, D); dw (V, D).");
  m.def("embedding_bag", &embedding_bag, py::arg("ids"), py::arg("table"), py::arg("scale"), py::arg("out"),
        py::arg("ignore") = -1,
        "out[b] = scale[b] * the sum of table[ids[b, s]] over the steps s with ids[b, s] != ignore (-1: all), in "
        "double: an Embedding and a (masked) mean over the steps in one pass. ids (B, S) int32 / int64 in [0, V); "
        "table (V, D); scale (B,); out (B, D).");
  m.def("embedding_bag_backward", &embedding_bag_backward, py::arg("ids"), py::arg("dy"), py::arg("scale"),
        py::arg("dw"), py::arg("ignore") = -1,
        "dw[v] = the sum of scale[b] dy[b] over the tokens (b, s) with ids[b, s] == v != ignore, in token order "
        "(written; row `ignore` gets 0; deterministic). ids (B, S); dy (B, D); scale (B,); dw (V, D).");
}

}  // namespace glue
}  // namespace fastdl
