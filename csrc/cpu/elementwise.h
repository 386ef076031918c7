// Elementwise loops: y = f(inputs...) over contiguous arrays. Included inside the per-ISA namespace.
#pragma once

// Work per thread below which a loop stays on one thread (elements).
constexpr int64_t kGrainCheap = int64_t(1) << 16;         // a few instructions per element
constexpr int64_t kGrainTranscendental = int64_t(1) << 13;  // exp / tanh / erfc per element

// Whether an output of n elements should be written with streaming stores: outputs too large to
// stay in the last-level cache, not aliasing an input. Streaming skips the read of each output
// line that a plain store makes.
template <class T>
FASTDL_VI bool should_stream(int64_t n, bool aliases_an_input) {
  return !aliases_an_input && n * (int64_t)sizeof(T) >= stream_threshold_bytes;
}

template <class T, class F, class... In>
FASTDL_VI void map_range(F f, T* y, int64_t b, int64_t e, bool stream, const In*... in) {
  constexpr int64_t W = Vec<T>::lanes;
  int64_t i = b;
  if (stream) {
    // Up to the first 64-byte aligned output element, then whole aligned vectors.
    int64_t misaligned = (int64_t)(((uintptr_t)(y + i) & 63) / sizeof(T));
    if (misaligned) {
      int64_t head = W - misaligned < e - i ? W - misaligned : e - i;
      f(Vec<T>::load_partial(in + i, head, T(0))...).store_partial(y + i, head);
      i += head;
    }
    for (; i + W <= e; i += W) f(Vec<T>::load(in + i)...).stream(y + i);
    stream_fence();
  } else {
    for (; i + W <= e; i += W) f(Vec<T>::load(in + i)...).store(y + i);
  }
  if (i < e) f(Vec<T>::load_partial(in + i, e - i, T(0))...).store_partial(y + i, e - i);
}

// y[i] = f(in0[i], in1[i], ...) for i < n, split across threads.
template <class T, class F, class... In>
FASTDL_VI void map(F f, int64_t grain, T* y, int64_t n, const In*... in) {
  bool stream = should_stream<T>(n, ((in == y) || ...));
  parallel_ranges(n, grain, 16, [&](int64_t b, int64_t e) { map_range(f, y, b, e, stream, in...); });
}

// Calls f(forward functor, backward functor, grain) for the activation op.
template <class T, class F>
FASTDL_VI void visit_activation(Activation op, double alpha, F f) {
  kernels::visit_activation<T>(op, alpha, [&](auto fwd, auto bwd, bool cheap) {
    f(fwd, bwd, cheap ? kGrainCheap : kGrainTranscendental);
  });
}

template <class T>
void activation(Activation op, const T* x, T* y, int64_t n, double alpha) {
  visit_activation<T>(op, alpha, [&](auto fwd, auto, int64_t grain) { map(fwd, grain, y, n, x); });
}

template <class T>
void activation_backward(Activation op, const T* g, const T* s, T* out, int64_t n, double alpha) {
  visit_activation<T>(op, alpha, [&](auto, auto bwd, int64_t grain) { map(bwd, grain, out, n, g, s); });
}
