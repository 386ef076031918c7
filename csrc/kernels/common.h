// Shared by every kernel header: the qualifiers that make a function callable from host code
// and from CUDA device code.
//
// Rule for everything in csrc/kernels/: a function is either a template on its value type or
// declared FASTDL_FN (static, always inlined). Why: the CPU module compiles these headers several
// times with different instruction sets (baseline, AVX2, AVX-512). A plain `inline` function is
// a weak symbol that the linker merges across those copies, so an AVX-512 copy could end up
// running on a machine without AVX-512.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define FASTDL_HD __host__ __device__ __forceinline__
#elif defined(_MSC_VER)
#define FASTDL_HD __forceinline
#else
#define FASTDL_HD inline __attribute__((always_inline))
#endif

#define FASTDL_FN static FASTDL_HD

namespace fastdl {
namespace kernels {

// Scalar `where`, the counterpart of the SIMD select: c ? a : b.
template <class T>
FASTDL_HD T where(bool c, T a, T b) { return c ? a : b; }

}  // namespace kernels
}  // namespace fastdl
