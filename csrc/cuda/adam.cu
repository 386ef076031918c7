// Adam / AdamW step over many tensors in one multi-tensor launch (torch.optim's update, formulas
// in csrc/kernels/optimizers.h). Each tensor's bias corrections come from its own step count,
// computed on the host in double (kernels::adam_tensor_scalars) and carried in the table.
// 16-bit params keep their moments in their dtype and compute in float.
#include "multi_tensor.cuh"

#include "../kernels/optimizers.h"

namespace fastdl {
namespace cuda {

namespace {

template <class C>
struct AdamTensorScalars {
  C neg_step_size, bc2_sqrt;
};

template <class T>
struct AdamArgs {
  kernels::AdamScalars<compute_t<T>> scalars;  // without the per-tensor ones
  const double* clip;                          // null, or the clipping factor computed on the device
  TensorTable<5, AdamTensorScalars<compute_t<T>>> table;  // params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq
};

template <class T>
__global__ void __launch_bounds__(kMultiTensorThreads) adam_kernel(const AdamArgs<T> a) {
  using C = compute_t<T>;
  const BlockRange br = block_range(a.table, kDefaultChunk);
  kernels::AdamScalars<C> s = a.scalars;
  s.neg_step_size = a.table.extra[br.slot].neg_step_size;
  s.bc2_sqrt = a.table.extra[br.slot].bc2_sqrt;
  if (a.clip) {
    s.clip_coef = C(*a.clip);
    s.has_clip = true;
  }
  T* p = static_cast<T*>(a.table.ptr[0][br.slot]);
  const T* g = static_cast<const T*>(a.table.ptr[1][br.slot]);
  T* m = static_cast<T*>(a.table.ptr[2][br.slot]);
  T* v = static_cast<T*>(a.table.ptr[3][br.slot]);
  T* vmax = s.amsgrad ? static_cast<T*>(a.table.ptr[4][br.slot]) : nullptr;
  const bool vec = (reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g) | reinterpret_cast<uintptr_t>(m) |
                    reinterpret_cast<uintptr_t>(v) | reinterpret_cast<uintptr_t>(vmax)) % 16 == 0;
  for_each_piece<T>(br.begin, br.end, threadIdx.x, kMultiTensorThreads, [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C pv[K], gv[K], mv[K], vv[K], xv[K];
    load_widen<K>(p + i, pv, vec);
    load_widen<K>(g + i, gv, vec);
    load_widen<K>(m + i, mv, vec);
    load_widen<K>(v + i, vv, vec);
    if (vmax) load_widen<K>(vmax + i, xv, vec);
    else {
#pragma unroll
      for (int j = 0; j < K; ++j) xv[j] = C(0);
    }
#pragma unroll
    for (int j = 0; j < K; ++j) kernels::adam_update(pv[j], gv[j], mv[j], vv[j], xv[j], s);
    narrow_store<K>(p + i, pv, vec);
    narrow_store<K>(m + i, mv, vec);
    narrow_store<K>(v + i, vv, vec);
    if (vmax) narrow_store<K>(vmax + i, xv, vec);
  });
}

}  // namespace

void adam_step(DType dt, const TensorList<void>& L, const AdamOptions& o, uintptr_t clip_ptr, Place at) {
  const char* what = "adam_step";
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    auto args = std::make_unique<AdamArgs<T>>();
    args->scalars = kernels::adam_scalars<C, C>(o);
    args->clip = reinterpret_cast<const double*>(clip_ptr);
    for_each_launch(
        L, args,
        [&](AdamArgs<T>& a, int64_t slot, int64_t k) {
          a.table.ptr[0][slot] = L.params[k];
          a.table.ptr[1][slot] = const_cast<void*>(L.grads[k]);
          a.table.ptr[2][slot] = L.exp_avg[k];
          a.table.ptr[3][slot] = L.exp_avg_sq[k];
          a.table.ptr[4][slot] = o.amsgrad ? L.max_exp_avg_sq[k] : nullptr;
          // the per-tensor scalars exactly as the CPU sets them (host-only: double pow)
          kernels::AdamScalars<C> s = a.scalars;
          kernels::set_adam_tensor<C, C>(s, kernels::adam_tensor_scalars(o.lr, o.beta1, o.beta2, L.steps[k]));
          a.table.extra[slot] = {s.neg_step_size, s.bc2_sqrt};
        },
        [&](AdamArgs<T>& a, int64_t blocks, int64_t) {
          adam_kernel<T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          check_launch(what);
        });
  });
}

}  // namespace cuda
}  // namespace fastdl
