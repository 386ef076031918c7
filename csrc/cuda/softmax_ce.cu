// Softmax cross-entropy, value and gradient in one kernel, with the row algebra of
// csrc/kernels/losses.h. Per row (a warp for short rows, the block for long ones):
//   read 1: the online (max m, exp-sum s) and the sums the target needs (sum x for smoothing;
//           sum t and sum t x for a probability target); a class id's logit x_y
//   row:    loss and the gradient's factors, in double
//   read 2: grad_c = exp(x_c - m) a - q_c, written over the row (it may be the logits row: every
//           read of the row happens before the group's barrier, every write after it)
// Row losses are summed per group in row order, per block in group order, then by one block in
// block order (finish_sum): deterministic. No buffer beyond the gradient but one double per block
// (none when one block does all the rows).
//
// A class id outside [0, cols) makes its row's loss and gradient NaN: refusing it would need the
// host to wait for the device.
#include "rows.cuh"

#include "../kernels/losses.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int64_t kMaxCeBlocks = kMaxPartials;

// The row's first read, reduced over the group: (m, s) and the target's sums.
template <class C>
struct CeStats {
  MaxSum<C> ms;
  C sum_x, sum_t, dot_tx;
};

template <class C>
__device__ __forceinline__ CeStats<C> ce_merge(const CeStats<C>& a, const CeStats<C>& b) {
  return {max_sum_merge(a.ms, b.ms), a.sum_x + b.sum_x, a.sum_t + b.sum_t, a.dot_tx + b.dot_tx};
}
using cuda::shfl_broadcast;  // (the overloads below would hide the float/double ones)
using cuda::shfl_down;
template <class C>
__device__ __forceinline__ CeStats<C> shfl_down(const CeStats<C>& v, int o) {
  return {shfl_down(v.ms, o), shfl_down(v.sum_x, o), shfl_down(v.sum_t, o), shfl_down(v.dot_tx, o)};
}
template <class C>
__device__ __forceinline__ CeStats<C> shfl_broadcast(const CeStats<C>& v) {
  return {shfl_broadcast(v.ms), shfl_broadcast(v.sum_x), shfl_broadcast(v.sum_t), shfl_broadcast(v.dot_tx)};
}

// target: a (rows, cols) T probability array (kProbs), or rows class ids, int64 when ids64 else
// int32 (a runtime choice: one kernel fewer per dtype, for one branch per row).
template <class T, bool kProbs, int G>
__global__ void __launch_bounds__(kRowBlock)
    softmax_ce_kernel(const T* logits, const void* target, bool ids64, T* grad, int64_t rows, int64_t cols,
                      double eps, bool vec, ReduceOut out) {
  using C = compute_t<T>;
  constexpr int kGroups = RowLoop<G>::kRowsPerBlock;
  __shared__ CeStats<C> smem[kRowBlock / 32];
  __shared__ double group_loss[kGroups];
  const RowLoop<G> loop;
  const double nan = __longlong_as_double(0x7ff8000000000000LL);
  const double Cd = (double)cols, Rd = (double)rows;
  double acc = 0.0;  // this group's row losses, in row order
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T* xr = logits + r * cols;
    T* gr = grad + r * cols;
    const T* tr = nullptr;
    int64_t label = -1;
    bool bad = false;
    double x_label = 0.0;
    if constexpr (kProbs) {
      tr = static_cast<const T*>(target) + r * cols;
    } else {
      label = ids64 ? static_cast<const int64_t*>(target)[r] : (int64_t) static_cast<const int32_t*>(target)[r];
      bad = label < 0 || label >= cols;
      x_label = bad ? nan : (double)widen(xr[label]);  // read before the barrier: gr may be xr
    }
    CeStats<C> st{max_sum_init<C>(), C(0), C(0), C(0)};
    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C x[K];
      load_widen<K>(xr + c, x, vec);
      max_sum_add<K>(st.ms, x);
#pragma unroll
      for (int j = 0; j < K; ++j) st.sum_x += x[j];
      if constexpr (kProbs) {
        C t[K];
        load_widen<K>(tr + c, t, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) {
          st.sum_t += t[j];
          st.dot_tx += t[j] * x[j];
        }
      }
    });
    st = group_all_reduce<G>(st, [](const CeStats<C>& a, const CeStats<C>& b) { return ce_merge(a, b); }, smem);

    // The row, in double. sum x enters only with smoothing (eps * inf would be NaN).
    const double sum_x = eps != 0.0 ? (double)st.sum_x : 0.0;
    kernels::CeRowTarget<double> q;
    if constexpr (kProbs) q = kernels::ce_prob_target<double>(st.sum_t, st.dot_tx, sum_x, eps, Cd);
    else q = kernels::ce_label_target<double>(x_label, sum_x, eps, Cd);
    const double s = (double)st.ms.s;
    const kernels::CeGradFactors<double> f = kernels::ce_grad_factors<double>(s, q, eps, Cd, Rd);
    acc += kernels::softmax_ce_row_loss<double>((double)st.ms.m, s, q);
    const C m = st.ms.m, a = bad ? C(nan) : C(f.a), one_minus_eps = C(f.one_minus_eps), uniform = C(f.uniform);

    for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
      constexpr int K = decltype(width)::value;
      C x[K], t[K];
      load_widen<K>(xr + c, x, vec);
      if constexpr (kProbs) {
        load_widen<K>(tr + c, t, vec);
      } else {
#pragma unroll
        for (int j = 0; j < K; ++j) t[j] = c + j == label ? C(1) : C(0);  // one-hot
      }
#pragma unroll
      for (int j = 0; j < K; ++j)
        x[j] = kernels::softmax_ce_grad(kernels::exp(x[j] - m), a,
                                        kernels::smoothed_target(t[j], one_minus_eps, uniform));
      narrow_store<K>(gr + c, x, vec);
    });
  }
  // One double per block: the groups' sums in group order.
  if (loop.lane() == 0) group_loss[loop.group()] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = group_loss[0];
    for (int k = 1; k < kGroups; ++k) total += group_loss[k];
    out.write(total);
  }
}

template <class T, bool kProbs>
void launch_ce(const T* logits, const void* target, bool ids64, T* grad, int64_t rows, int64_t cols, double eps,
               bool vec, uintptr_t loss, cudaStream_t stream, const char* what) {
  const bool per_warp = cols <= kWarpRowCols;
  const int64_t blocks = row_blocks(rows, per_warp, kMaxCeBlocks);
  // One block (up to 16 short rows, or 1 long one) writes the mean itself.
  StreamBuffer<double> partials(blocks > 1 ? blocks : 0, stream, what);
  const ReduceOut out{partials.get(), reinterpret_cast<double*>(loss), true, rows};
  if (per_warp)
    softmax_ce_kernel<T, kProbs, 32><<<blocks, kRowBlock, 0, stream>>>(logits, target, ids64, grad, rows, cols, eps,
                                                                       vec, out);
  else
    softmax_ce_kernel<T, kProbs, kRowBlock><<<blocks, kRowBlock, 0, stream>>>(logits, target, ids64, grad, rows, cols,
                                                                              eps, vec, out);
  check_launch(what);
  if (blocks > 1) finish_sum(partials.get(), blocks, true, rows, out.out, stream, what);
}

}  // namespace

void softmax_ce(DType dt, uintptr_t logits, uintptr_t target, TargetKind kind, uintptr_t grad, int64_t rows,
                int64_t cols, double smoothing, uintptr_t loss, Place at) {
  const char* what = "softmax_ce";
  require(rows >= 0 && cols >= 0, "softmax_ce: rows and cols must be >= 0");
  require(rows == 0 || cols > 0, "softmax_ce: logits has no classes");
  require(loss != 0, "softmax_ce: the loss address is null");
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  if (rows == 0) return finish_sum(nullptr, 0, true, 0, reinterpret_cast<double*>(loss), stream, what);  // NaN
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool probs = kind == TargetKind::probs;
    const bool vec = aligned16(logits, grad, probs ? target : 0) && cols % Pack<T>::W == 0;
    auto xp = reinterpret_cast<const T*>(logits);
    auto tp = reinterpret_cast<const void*>(target);
    auto gp = reinterpret_cast<T*>(grad);
    if (probs) launch_ce<T, true>(xp, tp, false, gp, rows, cols, smoothing, vec, loss, stream, what);
    else launch_ce<T, false>(xp, tp, kind == TargetKind::int64, gp, rows, cols, smoothing, vec, loss, stream, what);
  });
}

}  // namespace cuda
}  // namespace fastdl
