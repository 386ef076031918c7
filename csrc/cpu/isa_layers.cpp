// The layer kernels' CPU loops for one instruction set (csrc/cpu/layers.h over the formulas of
// csrc/kernels/layers.h). Compiled once per ISA beside isa_kernels.cpp, into the same namespace
// fastdl::cpu::<ISA> (see the comment at the top of isa_kernels.cpp), and reached through its
// table's `layers` pointer.
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include <initializer_list>
#include <type_traits>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "../kernels/activations.h"
#include "../kernels/layers.h"
#include "../kernels/softmax.h"
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
#include "softmax.h"
#include "layers.h"

template <class T>
constexpr LayerKernels<T> layer_kernels_for() {
  return LayerKernels<T>{
      layer_norm<T>, layer_norm_backward<T>, batch_norm<T>, batch_norm_backward<T>, channel_affine<T>,
      im2col<T>, col2im<T>, max_pool<T>, max_pool_backward<T>, avg_pool<T>, avg_pool_backward<T>,
      embedding_backward<T>, embedding_bag<T>,
  };
}

extern const LayerTable layer_table;
const LayerTable layer_table = {layer_kernels_for<float>(), layer_kernels_for<double>()};

}  // namespace FASTDL_ISA
}  // namespace cpu
}  // namespace fastdl
