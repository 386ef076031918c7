// The adaptive optimizers' multi-tensor step on the device: one kernel and one launcher for every
// rule of csrc/kernels/adaptive_optimizers.h (RMSprop, Adagrad, Adadelta, Adamax, NAdam, Lion), on
// the multi-tensor apply of multi_tensor.cuh, as adam.cu does for Adam. Each rule's .cu file
// instantiates it (one file per optimizer, so they compile in parallel).
//
// The per-tensor scalars (Adagrad's and Adamax's learning rates, NAdam's bias correction and
// coefficients) are computed on the host in double from each tensor's step count (and NAdam's
// mu_product) and travel in the launch's table, converted to the compute type, as Adam's do.
#pragma once

#include "multi_tensor.cuh"

#include "../kernels/adaptive_optimizers.h"

namespace fastdl {
namespace cuda {

template <class Rule, class T>
struct AdaptiveArgs {
  typename Rule::template Scalars<compute_t<T>> scalars;  // without the per-tensor ones
  const double* clip;                                       // null, or the clipping factor computed on the device
  const float* found_inf;                                   // null, or GradScaler's flag: not 0, the step is skipped
  // params, grads, then the rule's state slots (null where the configuration does not use one)
  TensorTable<2 + Rule::kStates, typename Rule::template Tensor<compute_t<T>>> table;
};

template <class Rule, class T, class S>  // S: the state's storage type, T or float
__global__ void __launch_bounds__(kMultiTensorThreads) adaptive_kernel(const AdaptiveArgs<Rule, T> a) {
  using C = compute_t<T>;
  constexpr int N = Rule::kStates;
  if (a.found_inf && *a.found_inf != 0.0f) return;
  const BlockRange br = block_range(a.table, kDefaultChunk);
  typename Rule::template Scalars<C> s = a.scalars;
  Rule::template set_tensor<C, C>(s, a.table.extra[br.slot]);
  if (a.clip) {
    s.grad.clip_coef = C(*a.clip);
    s.grad.has_clip = true;
  }
  T* p = static_cast<T*>(a.table.ptr[0][br.slot]);
  const T* g = static_cast<const T*>(a.table.ptr[1][br.slot]);
  S* st[N];
  uintptr_t bits = reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g);
#pragma unroll
  for (int j = 0; j < N; ++j) {
    st[j] = static_cast<S*>(a.table.ptr[2 + j][br.slot]);
    bits |= reinterpret_cast<uintptr_t>(st[j]);
  }
  const bool vec = bits % 16 == 0;
  for_each_piece<T>(br.begin, br.end, threadIdx.x, kMultiTensorThreads, [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C pv[K], gv[K], sv[N][K];
    load_widen<K>(p + i, pv, vec);
    load_widen<K>(g + i, gv, vec);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if (st[j]) load_widen<K>(st[j] + i, sv[j], vec);
      else {
#pragma unroll
        for (int e = 0; e < K; ++e) sv[j][e] = C(0);
      }
    }
#pragma unroll
    for (int e = 0; e < K; ++e) {
      C x[N];
#pragma unroll
      for (int j = 0; j < N; ++j) x[j] = sv[j][e];
      Rule::update(pv[e], gv[e], x, s);
#pragma unroll
      for (int j = 0; j < N; ++j) sv[j][e] = x[j];
    }
    narrow_store<K>(p + i, pv, vec);
#pragma unroll
    for (int j = 0; j < N; ++j)
      if (st[j]) narrow_store<K>(st[j] + i, sv[j], vec);
  });
}

template <class Rule>
void adaptive_step(const char* what, DType dt, const TensorList<void>& L, const typename Rule::Options& o,
                   uintptr_t clip_ptr, uintptr_t found_inf, bool float32_state, Place at) {
  constexpr int N = Rule::kStates;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  void* const* slots[N];
  for (int j = 0; j < N; ++j) slots[j] = Rule::uses(o, j) ? L.*(Rule::template slot<void>(j)) : nullptr;
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    auto args = std::make_unique<AdaptiveArgs<Rule, T>>();
    args->scalars = Rule::template scalars<C, C>(o);
    args->clip = reinterpret_cast<const double*>(clip_ptr);
    args->found_inf = reinterpret_cast<const float*>(found_inf);
    for_each_launch(
        L, args,
        [&](AdaptiveArgs<Rule, T>& a, int64_t slot, int64_t k) {
          a.table.ptr[0][slot] = L.params[k];
          a.table.ptr[1][slot] = const_cast<void*>(L.grads[k]);
          for (int j = 0; j < N; ++j) a.table.ptr[2 + j][slot] = slots[j] ? slots[j][k] : nullptr;
          // the per-tensor scalars exactly as the CPU computes them
          a.table.extra[slot] = Rule::template tensor<C>(o, L.steps[k], L.mu_products ? L.mu_products[k] : 0.0);
        },
        [&](AdaptiveArgs<Rule, T>& a, int64_t blocks, int64_t) {
          if constexpr (sizeof(T) == 2) {
            if (float32_state) adaptive_kernel<Rule, T, float><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
            else adaptive_kernel<Rule, T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          } else {
            require(!float32_state, "float32 state is for 16-bit parameters");
            adaptive_kernel<Rule, T, T><<<blocks, kMultiTensorThreads, 0, stream>>>(a);
          }
          check_launch(what);
        });
  });
}

}  // namespace cuda
}  // namespace fastdl
