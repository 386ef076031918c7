// Elementwise maps out[i] = f(a[i]) or f(a[i], b[i]) over n elements: a grid-stride loop over
// packs of 16 bytes (vector accesses when every address is 16-byte aligned), then the tail.
#pragma once

#include "check.cuh"
#include "pieces.cuh"

namespace fastdl {
namespace cuda {

constexpr int kMapThreads = 256;
constexpr int64_t kMaxMapBlocks = 16384;  // then each thread loops

template <int kInputs, class T, class F>
__global__ void __launch_bounds__(kMapThreads)
    map_kernel(F f, T* out, const T* a, const T* b, int64_t n, bool vec) {
  using C = compute_t<T>;
  for_each_piece<T>(0, n, global_thread(), global_threads(), [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C x[K], y[K];
    load_widen<K>(a + i, x, vec);
    if constexpr (kInputs == 2) {
      C s[K];
      load_widen<K>(b + i, s, vec);
#pragma unroll
      for (int j = 0; j < K; ++j) y[j] = f(x[j], s[j]);
    } else {
#pragma unroll
      for (int j = 0; j < K; ++j) y[j] = f(x[j]);
    }
    narrow_store<K>(out + i, y, vec);
  });
}

// Grid for n elements handled in pieces of `width` (a function of the problem size only).
inline int64_t map_blocks(int64_t n, int width) {
  int64_t b = ceil_div(ceil_div(n, width), kMapThreads);
  return b < 1 ? 1 : b > kMaxMapBlocks ? kMaxMapBlocks : b;
}

// Queues the map on `stream` (b is null for one input). n > 0.
template <int kInputs, class T, class F>
void launch_map(F f, T* out, const T* a, const T* b, int64_t n, cudaStream_t stream, const char* what) {
  const bool vec = aligned16(reinterpret_cast<uintptr_t>(out), reinterpret_cast<uintptr_t>(a),
                             reinterpret_cast<uintptr_t>(b));
  map_kernel<kInputs><<<map_blocks(n, Pack<T>::W), kMapThreads, 0, stream>>>(f, out, a, b, n, vec);
  check_launch(what);
}

}  // namespace cuda
}  // namespace fastdl
