// Storage types on the device: dispatch from DType, widening to the compute type and rounding
// back (csrc/kernels/compute_type.h), and 16-byte packs for vector loads and stores.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "../kernels/compute_type.h"
#include "launch.h"

namespace fastdl {
namespace cuda {

using kernels::compute_t;

template <class T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with T the storage type of dt.
template <class F>
void with_dtype(DType dt, F f) {
  switch (dt) {
    case DType::f32: return f(Tag<float>{});
    case DType::f64: return f(Tag<double>{});
    case DType::f16: return f(Tag<__half>{});
    case DType::bf16: return f(Tag<__nv_bfloat16>{});
  }
  throw std::invalid_argument("unknown dtype");
}

// Storage -> compute type, and back with one rounding (to nearest even).
__device__ __forceinline__ float widen(float x) { return x; }
__device__ __forceinline__ double widen(double x) { return x; }
__device__ __forceinline__ float widen(__half x) { return __half2float(x); }
__device__ __forceinline__ float widen(__nv_bfloat16 x) { return __bfloat162float(x); }

template <class T>
__device__ __forceinline__ T narrow(compute_t<T> x) { return x; }
template <>
__device__ __forceinline__ __half narrow<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16 bytes of T: one vector load or store when the address is 16-byte aligned.
template <class T>
struct alignas(16) Pack {
  static constexpr int W = 16 / sizeof(T);
  T v[W];
};

template <class T>
constexpr int pack_width() { return Pack<T>::W; }

template <class T>
__device__ __forceinline__ Pack<T> load_pack(const T* p) { return *reinterpret_cast<const Pack<T>*>(p); }
template <class T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T>& x) { *reinterpret_cast<Pack<T>*>(p) = x; }

// Whether every address (0 = absent, ignored) is 16-byte aligned.
template <class... A>
inline bool aligned16(A... addresses) {
  return ((static_cast<uintptr_t>(addresses) % 16 == 0) && ...);
}

}  // namespace cuda
}  // namespace fastdl
