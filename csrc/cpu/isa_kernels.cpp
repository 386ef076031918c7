// The CPU kernels for one instruction set. CMake compiles this file once per ISA with
// FASTDL_ISA set to baseline, avx2 or avx512 (and that ISA's -m flags).
//
// Everything compiled here lives in the namespace fastdl::cpu::<ISA>, and every template from
// csrc/kernels/ is instantiated on that namespace's Vec types, so no symbol of this file can
// be merged by the linker with its copy from another ISA build. Only system headers, whose
// functions are extern (libm) or always inlined (intrinsics), are shared.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "../kernels/activations.h"
#include "../kernels/losses.h"
#include "../kernels/optimizers.h"
#include "../kernels/softmax.h"
#include "../common/half.h"
#include "kernel_table.h"

#ifndef FASTDL_ISA
#error "FASTDL_ISA must name the instruction set this file is compiled for"
#endif

#define FASTDL_CAT2(a, b) a##b
#define FASTDL_CAT(a, b) FASTDL_CAT2(a, b)
#define FASTDL_STR2(a) #a
#define FASTDL_STR(a) FASTDL_STR2(a)

namespace fastdl {
namespace cpu {
namespace FASTDL_ISA {

#include "vec.h"
#include "vec_math.h"
#include "parallel.h"
#include "elementwise.h"
#include "softmax.h"
#include "dense.h"
#include "losses.h"
#include "optimizers.h"

template <class T>
constexpr Kernels<T> kernels_for() {
  return Kernels<T>{
      activation<T>, activation_backward<T>, bias_activation<T>, bias_activation_backward<T>, softmax<T>, softmax_backward<T>, mse<T>, bce<T>, loss_term<T>,
      softmax_ce<T, int64_t>, softmax_ce<T, T>, row_loss<T>, grad_sum_squares<T>, sgd<T>, adam<T>,
  };
}

template <class H>
constexpr HalfKernels half_kernels_for() {
  return HalfKernels{grad_sum_squares_with<HalfLanes<H>>, sgd_same<HalfLanes<H>>, adam_same<HalfLanes<H>>,
                     sgd_with<HalfLanes<H>, Lanes<float>>, adam_with<HalfLanes<H>, Lanes<float>>};
}

// The adaptive optimizers' entries, compiled apart (isa_adaptive_optimizers.cpp) so the two files
// build in parallel.
extern const AdaptiveKernels adaptive_table;
// The layer kernels' entries (isa_layers.cpp), also compiled apart.
extern const LayerTable layer_table;

const KernelTable table = {FASTDL_STR(FASTDL_ISA), kernels_for<float>(), kernels_for<double>(),
                           half_kernels_for<Bf16Bits>(), half_kernels_for<F16Bits>(), &adaptive_table,
                           &layer_table};

}  // namespace FASTDL_ISA

const KernelTable* FASTDL_CAT(FASTDL_ISA, _table)() { return &FASTDL_ISA::table; }

}  // namespace cpu
}  // namespace fastdl
