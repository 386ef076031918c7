// Softmax and log-softmax over one row, forward and backward: the one place their formulas live.
// The loops supply the row reductions: m = max_i x_i, s = sum_i exp(x_i - m), and for the
// backward passes sum_i g_i y_i or sum_i g_i. Subtracting m first keeps exp in range for any
// finite input.
#pragma once

#include "common.h"
#include "scalar_math.h"

namespace fastdl {
namespace kernels {

// softmax:  y_i = exp(x_i - m) / s          (e_i = exp(x_i - m) already computed by the sum pass)
template <class V>
FASTDL_HD V softmax_from_exp(V e, V inv_s) { return e * inv_s; }

// log_softmax:  y_i = (x_i - m) - log s
template <class V>
FASTDL_HD V log_softmax_value(V x, V m, V log_s) { return (x - m) - log_s; }

// softmax backward:  dx_i = y_i (g_i - sum_j g_j y_j)
template <class V>
FASTDL_HD V softmax_grad(V g, V y, V dot_gy) { return y * (g - dot_gy); }

// log_softmax backward (y = log_softmax(x)):  dx_i = g_i - exp(y_i) sum_j g_j
template <class V>
FASTDL_HD V log_softmax_grad(V g, V y, V sum_g) { return g - exp(y) * sum_g; }

}  // namespace kernels
}  // namespace fastdl
