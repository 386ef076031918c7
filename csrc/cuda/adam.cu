// Adam / AdamW step over many tensors in one multi-tensor launch (torch.optim's update, formulas
// in csrc/kernels/optimizers.h). Each tensor's bias corrections come from its own step count, in
// double (kernels::adam_tensor_scalars): computed on the host and carried in the table, or, for
// counts kept on the device (fastdl.torch's CUDA tensors), computed by every block from the count
// whose address the table carries. 16-bit params keep their moments in their dtype (or in float32:
// S = float) and compute in float.
#include "multi_tensor.cuh"

#include "../kernels/optimizers.h"

namespace fastdl {
namespace cuda {

namespace {

// A union: a slot for a pointer per tensor would take the kernel arguments over CUDA's limit.
template <class C>
union AdamTensorScalars {
  struct {
    C neg_step_size, bc2_sqrt;
  } host;             // computed on the host from its count
  const float* step;  // its count on the device (AdamArgs::device_steps)
};

template <class T>
struct AdamArgs {
  kernels::AdamScalars<compute_t<T>> scalars;  // without the per-tensor ones
  const double* clip;                          // null, or the clipping factor computed on the device
  const float* found_inf;                      // null, or GradScaler's flag: not 0, the step is skipped
  bool device_steps;                           // the table holds the counts' addresses
  double lr, beta1, beta2;                     // for the bias corrections of device counts
  TensorTable<5, AdamTensorScalars<compute_t<T>>> table;  // params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq
};

template <class T, class S>  // S: the state's storage type, T or float
__global__ void __launch_bounds__(kMultiTensorThreads) adam_kernel(const AdamArgs<T> a) {
  using C = compute_t<T>;
  if (a.found_inf && *a.found_inf != 0.0f) return;
  const BlockRange br = block_range(a.table, kDefaultChunk);
  kernels::AdamScalars<C> s = a.scalars;
  if (a.device_steps) {
    const int64_t step = static_cast<int64_t>(*a.table.extra[br.slot].step);
    kernels::set_adam_tensor<C, C>(s, kernels::adam_tensor_scalars(a.lr, a.beta1, a.beta2, step));
  } else {
    s.neg_step_size = a.table.extra[br.slot].host.neg_step_size;
    s.bc2_sqrt = a.table.extra[br.slot].host.bc2_sqrt;
  }
  if (a.clip) {
    s.clip_coef = C(*a.clip);
    s.has_clip = true;
  }
  T* p = static_cast<T*>(a.table.ptr[0][br.slot]);
  const T* g = static_cast<const T*>(a.table.ptr[1][br.slot]);
  S* m = static_cast<S*>(a.table.ptr[2][br.slot]);
  S* v = static_cast<S*>(a.table.ptr[3][br.slot]);
  S* vmax = s.amsgrad ? static_cast<S*>(a.table.ptr[4][br.slot]) : nullptr;
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

void adam_step(DType dt, const TensorList<void>& L, const AdamOptions& o, uintptr_t clip_ptr,
               const float* const* step_counts, uintptr_t found_inf, bool float32_state, Place at) {
  const char* what = "adam_step";
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    auto args = std::make_unique<AdamArgs<T>>();
    args->scalars = kernels::adam_scalars<C, C>(o);
    args->clip = reinterpret_cast<const double*>(clip_ptr);
    args->found_inf = reinterpret_cast<const float*>(found_inf);
    args->device_steps = step_counts != nullptr;
    args->lr = o.lr;
    args->beta1 = o.beta1;
    args->beta2 = o.beta2;
    for_each_launch(
        L, args,
        [&](AdamArgs<T>& a, int64_t slot, int64_t k) {
          a.table.ptr[0][slot] = L.params[k];
          a.table.ptr[1][slot] = const_cast<void*>(L.grads[k]);
          a.table.ptr[2][slot] = L.exp_avg[k];
          a.table.ptr[3][slot] = L.exp_avg_sq[k];
          a.table.ptr[4][slot] = o.amsgrad ? L.max_exp_avg_sq[k] : nullptr;
          if (step_counts) {
            a.table.extra[slot].step = step_counts[k];
            return;
          }
          // the per-tensor scalars exactly as the CPU sets them
          kernels::AdamScalars<C> s = a.scalars;
          kernels::set_adam_tensor<C, C>(s, kernels::adam_tensor_scalars(o.lr, o.beta1, o.beta2, L.steps[k]));
          a.table.extra[slot].host = {s.neg_step_size, s.bc2_sqrt};
        },
        [&](AdamArgs<T>& a, int64_t blocks, int64_t) {
          if constexpr (sizeof(T) == 2) {
            if (float32_state) adam_kernel<T, float><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
            else adam_kernel<T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          } else {
            require(!float32_state, "adam_step: float32 state is for 16-bit parameters");
            adam_kernel<T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          }
          check_launch(what);
        });
  });
}

}  // namespace cuda
}  // namespace fastdl
