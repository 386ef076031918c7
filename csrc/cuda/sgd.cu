// SGD step over many tensors in one multi-tensor launch (torch.optim.SGD's update, formulas in
// csrc/kernels/optimizers.h), computed in the compute type (float for 16-bit params, whose
// momentum buffers are stored in their dtype, or in float32: S = float).
#include "multi_tensor.cuh"

#include "../kernels/optimizers.h"

namespace fastdl {
namespace cuda {

namespace {

struct SgdTensorScalars {
  bool first_step;  // the tensor's first step: the momentum buffer starts as the gradient
};

template <class T>
struct SgdArgs {
  kernels::SgdScalars<compute_t<T>> scalars;
  const double* clip;       // null, or the clipping factor computed on the device
  const float* found_inf;   // null, or GradScaler's flag: not 0, the step is skipped
  TensorTable<3, SgdTensorScalars> table;  // params, grads, momentum buffers
};

template <class T, class S>  // S: the momentum buffers' storage type, T or float
__global__ void __launch_bounds__(kMultiTensorThreads) sgd_kernel(const SgdArgs<T> a) {
  using C = compute_t<T>;
  if (a.found_inf && *a.found_inf != 0.0f) return;
  const BlockRange br = block_range(a.table, kDefaultChunk);
  kernels::SgdScalars<C> s = a.scalars;
  if (a.clip) {
    s.clip_coef = C(*a.clip);
    s.has_clip = true;
  }
  T* p = static_cast<T*>(a.table.ptr[0][br.slot]);
  const T* g = static_cast<const T*>(a.table.ptr[1][br.slot]);
  S* buf = s.has_momentum ? static_cast<S*>(a.table.ptr[2][br.slot]) : nullptr;
  const bool first = a.table.extra[br.slot].first_step;
  const bool vec = (reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g) |
                    reinterpret_cast<uintptr_t>(buf)) % 16 == 0;
  for_each_piece<T>(br.begin, br.end, threadIdx.x, kMultiTensorThreads, [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C pv[K], gv[K], bv[K];
    load_widen<K>(p + i, pv, vec);
    load_widen<K>(g + i, gv, vec);
    if (buf) load_widen<K>(buf + i, bv, vec);
    else {
#pragma unroll
      for (int j = 0; j < K; ++j) bv[j] = C(0);
    }
#pragma unroll
    for (int j = 0; j < K; ++j) kernels::sgd_update(pv[j], gv[j], bv[j], first, s);
    narrow_store<K>(p + i, pv, vec);
    if (buf) narrow_store<K>(buf + i, bv, vec);
  });
}

}  // namespace

void sgd_step(DType dt, const TensorList<void>& L, const SgdOptions& o, uintptr_t clip_ptr, uintptr_t found_inf,
              bool float32_state, Place at) {
  const char* what = "sgd_step";
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    auto args = std::make_unique<SgdArgs<T>>();
    args->scalars = kernels::sgd_scalars<C, C>(o);
    args->clip = reinterpret_cast<const double*>(clip_ptr);
    args->found_inf = reinterpret_cast<const float*>(found_inf);
    const bool momentum = o.momentum != 0.0;
    for_each_launch(
        L, args,
        [&](SgdArgs<T>& a, int64_t slot, int64_t k) {
          a.table.ptr[0][slot] = L.params[k];
          a.table.ptr[1][slot] = const_cast<void*>(L.grads[k]);
          a.table.ptr[2][slot] = momentum ? L.momentum_buffer[k] : nullptr;
          a.table.extra[slot].first_step = L.steps[k] == 1;
        },
        [&](SgdArgs<T>& a, int64_t blocks, int64_t) {
          if constexpr (sizeof(T) == 2) {
            if (float32_state) sgd_kernel<T, float><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
            else sgd_kernel<T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          } else {
            require(!float32_state, "sgd_step: float32 state is for 16-bit parameters");
            sgd_kernel<T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          }
          check_launch(what);
        });
  });
}

}  // namespace cuda
}  // namespace fastdl
