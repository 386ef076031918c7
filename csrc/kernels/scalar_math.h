// Elementary functions on plain float / double, for host and CUDA device code.
// The kernels call these unqualified (exp(x), tanh(x), ...): on a scalar type ordinary lookup
// finds the overloads below; on a SIMD vector type argument-dependent lookup finds the
// vector versions in csrc/cpu/vec_math.h instead. One formula, every value type.
#pragma once

#include <math.h>

#include "common.h"

namespace fastdl {
namespace kernels {

FASTDL_FN float exp(float x) { return ::expf(x); }
FASTDL_FN double exp(double x) { return ::exp(x); }
FASTDL_FN float log(float x) { return ::logf(x); }
FASTDL_FN double log(double x) { return ::log(x); }
FASTDL_FN float log1p(float x) { return ::log1pf(x); }
FASTDL_FN double log1p(double x) { return ::log1p(x); }
FASTDL_FN float tanh(float x) { return ::tanhf(x); }
FASTDL_FN double tanh(double x) { return ::tanh(x); }
FASTDL_FN float erfc(float x) { return ::erfcf(x); }
FASTDL_FN double erfc(double x) { return ::erfc(x); }
FASTDL_FN float sqrt(float x) { return ::sqrtf(x); }
FASTDL_FN double sqrt(double x) { return ::sqrt(x); }
FASTDL_FN float abs(float x) { return ::fabsf(x); }
FASTDL_FN double abs(double x) { return ::fabs(x); }
// max/min return `a` when either is NaN-free and equal; callers that need NaN to propagate
// write the comparison out with where().
FASTDL_FN float max(float a, float b) { return a < b ? b : a; }
FASTDL_FN double max(double a, double b) { return a < b ? b : a; }
FASTDL_FN float min(float a, float b) { return b < a ? b : a; }
FASTDL_FN double min(double a, double b) { return b < a ? b : a; }

}  // namespace kernels
}  // namespace fastdl
