// The adaptive optimizers' CPU kernels for one instruction set (csrc/cpu/adaptive_optimizers.h over
// the rules of csrc/kernels/adaptive_optimizers.h). Compiled once per ISA beside isa_kernels.cpp,
// into the same namespace fastdl::cpu::<ISA> (see the comment at the top of isa_kernels.cpp), and
// reached through its table's `adaptive` pointer.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "../kernels/activations.h"
#include "../kernels/adaptive_optimizers.h"
#include "../kernels/optimizers.h"
#include "../common/half.h"
#include "kernel_table.h"

#ifndef FASTDL_ISA
#error "FASTDL_ISA must name the instruction set this file is compiled for"
#endif

namespace fastdl {
namespace cpu {
namespace FASTDL_ISA {

#include "vec.h"
#include "vec_math.h"
#include "parallel.h"
#include "elementwise.h"
#include "optimizers.h"
#include "adaptive_optimizers.h"

extern const AdaptiveKernels adaptive_table;
const AdaptiveKernels adaptive_table = {
    step_kernels_for<kernels::RmspropRule>(), step_kernels_for<kernels::AdagradRule>(),
    step_kernels_for<kernels::AdadeltaRule>(), step_kernels_for<kernels::AdamaxRule>(),
    step_kernels_for<kernels::NadamRule>(),   step_kernels_for<kernels::LionRule>(),
};

}  // namespace FASTDL_ISA
}  // namespace cpu
}  // namespace fastdl
