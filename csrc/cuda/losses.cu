// Elementwise losses (mean squared error, binary cross-entropy): one pass writes each element's
// gradient dl/dp / n and sums the values; terms from csrc/kernels/losses.h. The mean lands in one
// device double: each block's sum goes to a stream-ordered temporary, then one block adds them in
// a fixed order (grid size a function of n only, so the same inputs give the same bits). A grid
// of one block (n up to 1024 packs) writes the mean itself: no temporary, one launch.
#include "check.cuh"
#include "pieces.cuh"
#include "reduce.cuh"

#include "../kernels/losses.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int kLossThreads = 256;

// Values are summed per piece in the compute type, pieces in double.
template <class T, class Term>
__global__ void __launch_bounds__(kLossThreads)
    elementwise_loss_kernel(Term term, const T* pred, const T* target, T* grad, int64_t n, compute_t<T> scale,
                            bool vec, ReduceOut out) {
  using C = compute_t<T>;
  double acc = 0.0;
  for_each_piece<T>(0, n, global_thread(), global_threads(), [&](auto width, int64_t i) {
    constexpr int K = decltype(width)::value;
    C p[K], t[K], g[K];
    load_widen<K>(pred + i, p, vec);
    load_widen<K>(target + i, t, vec);
    C piece = C(0);
#pragma unroll
    for (int j = 0; j < K; ++j) {
      C dl;
      piece += term(p[j], t[j], dl);
      g[j] = dl * scale;
    }
    narrow_store<K>(grad + i, g, vec);
    acc += (double)piece;
  });
  const double total = block_sum<kLossThreads>(acc);
  if (threadIdx.x == 0) out.write(total);
}

template <class Term>
void elementwise_loss(Term term, DType dt, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n,
                      uintptr_t loss, Place at, const char* what) {
  require(n >= 0, "loss: n must be >= 0");
  require(loss != 0, "loss: the loss address is null");
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    int64_t blocks = 0;
    if (n > 0) {
      const bool vec = aligned16(pred, target, grad);
      // about four packs per thread, at most kMaxPartials blocks: a function of n only
      blocks = ceil_div(ceil_div(n, Pack<T>::W), kLossThreads * int64_t(4));
      if (blocks > kMaxPartials) blocks = kMaxPartials;
      StreamBuffer<double> partials(blocks > 1 ? blocks : 0, stream, what);
      const ReduceOut out{partials.get(), reinterpret_cast<double*>(loss), true, n};
      elementwise_loss_kernel<<<blocks, kLossThreads, 0, stream>>>(
          term, reinterpret_cast<const T*>(pred), reinterpret_cast<const T*>(target), reinterpret_cast<T*>(grad), n,
          C(1.0 / (double)n), vec, out);
      check_launch(what);
      if (blocks > 1) finish_sum(partials.get(), blocks, true, n, out.out, stream, what);
    } else {
      finish_sum(nullptr, 0, true, 0, reinterpret_cast<double*>(loss), stream, what);  // NaN
    }
  });
}

}  // namespace

void mse(DType dt, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, uintptr_t loss, Place at) {
  elementwise_loss(kernels::MseTerm{}, dt, pred, target, grad, n, loss, at, "mse");
}

void bce(DType dt, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n, bool from_logits, uintptr_t loss,
         Place at) {
  if (from_logits) elementwise_loss(kernels::BceLogitTerm{}, dt, pred, target, grad, n, loss, at, "bce");
  else elementwise_loss(kernels::BceProbTerm{}, dt, pred, target, grad, n, loss, at, "bce");
}

void loss_term(DType dt, int op, double a, double b, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t n,
               uintptr_t loss, Place at) {
  require(op >= 0 && op < kLossTermCount, "loss_term: unknown loss id");
  // the parameters stay double in the term; each kernel converts them to its compute type
  kernels::visit_loss_term<double>(op, a, b, [&](auto term) {
    elementwise_loss(term, dt, pred, target, grad, n, loss, at, "loss_term");
    return 0.0;
  });
}

}  // namespace cuda
}  // namespace fastdl
