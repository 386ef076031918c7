// Softmax cross-entropy, value and gradient in one kernel, with the row algebra of
// csrc/kernels/losses.h. Per row (a warp for short rows, the block for long ones):
//   read 1: the online (max m, exp-sum s) and the sums the target needs (sum x for smoothing;
//           sum t and sum t x for a probability target); a class id's logit x_y
//   row:    loss and the gradient's factors, in double
//   read 2: grad_c = exp(x_c - m) a - q_c, written over the row (it may be the logits row: every
//           read of the row happens before the group's barrier, every write after it)
// Row losses are summed per group in row order, per block in group order, then by one block in
// block order (finish_sum): deterministic. No buffer beyond the gradient but one double per block
// (and one for the count of rows kept, for a mean with ignore_index)
// (none when one block does all the rows).
//
// A class id outside [0, cols) makes its row's loss and gradient NaN: refusing it would need the
// host to wait for the device. A class id equal to ignore_index (when has_ignore) makes its row's
// loss 0 and its gradient row 0, and the row is not counted by a mean: that count is made on the
// device (count_kept, exact integers) and read there by the row kernel and the final division.
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

__device__ __forceinline__ int64_t class_id(const void* target, bool ids64, int64_t r) {
  return ids64 ? static_cast<const int64_t*>(target)[r] : (int64_t) static_cast<const int32_t*>(target)[r];
}

// *kept = the number of class ids != ignore, one block: integers (below 2^53) are exact in a double,
// so the sum is the same in any order.
constexpr int kCountThreads = 1024;
__global__ void __launch_bounds__(kCountThreads)
    count_kept_kernel(const void* target, bool ids64, int64_t rows, int64_t ignore, double* kept) {
  int64_t n = 0;
  for (int64_t r = threadIdx.x; r < rows; r += kCountThreads) n += class_id(target, ids64, r) != ignore ? 1 : 0;
  const double total = block_sum<kCountThreads>((double)n);
  if (threadIdx.x == 0) *kept = total;
}

// target: a (rows, cols) T probability array (kProbs), or rows class ids, int64 when ids64 else
// int32 (a runtime choice: one kernel fewer per dtype, for one branch per row). The gradient is
// divided by *denom_dev when it is not null, else by denom; row_loss[r] = row r's loss when not null.
template <class T, bool kProbs, int G>
__global__ void __launch_bounds__(kRowBlock)
    softmax_ce_kernel(const T* logits, const void* target, bool ids64, T* grad, int64_t rows, int64_t cols,
                      double eps, bool vec, const double* denom_dev, double denom, bool has_ignore, int64_t ignore,
                      double* row_loss, ReduceOut out) {
  using C = compute_t<T>;
  constexpr int kGroups = RowLoop<G>::kRowsPerBlock;
  __shared__ CeStats<C> smem[kRowBlock / 32];
  __shared__ double group_loss[kGroups];
  const RowLoop<G> loop;
  const double nan = __longlong_as_double(0x7ff8000000000000LL);
  const double Cd = (double)cols, Rd = denom_dev ? *denom_dev : denom;
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
      label = class_id(target, ids64, r);
      if (has_ignore && label == ignore) {  // the whole group takes this branch: no reduction is skipped by part of it
        for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
          constexpr int K = decltype(width)::value;
          C zero[K];
#pragma unroll
          for (int j = 0; j < K; ++j) zero[j] = C(0);
          narrow_store<K>(gr + c, zero, vec);
        });
        if (row_loss && loop.lane() == 0) row_loss[r] = 0.0;
        continue;
      }
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
    const double loss_r = kernels::softmax_ce_row_loss<double>((double)st.ms.m, s, q);
    acc += loss_r;
    if (row_loss && loop.lane() == 0) row_loss[r] = loss_r;
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

// mean: loss and gradient divided by *kept when kept is not null (the rows not ignored), else by rows;
// otherwise by 1.
template <class T, bool kProbs>
void launch_ce(const T* logits, const void* target, bool ids64, T* grad, int64_t rows, int64_t cols, double eps,
               bool vec, bool has_ignore, int64_t ignore, bool mean, const double* kept, double* row_loss,
               uintptr_t loss, cudaStream_t stream, const char* what) {
  const bool per_warp = cols <= kWarpRowCols;
  const int64_t blocks = row_blocks(rows, per_warp, kMaxCeBlocks);
  const double denom = mean ? (double)rows : 1.0;
  // One block (up to 16 short rows, or 1 long one) writes the result itself.
  StreamBuffer<double> partials(blocks > 1 ? blocks : 0, stream, what);
  const ReduceOut out{partials.get(), reinterpret_cast<double*>(loss), mean, rows, kept};
  if (per_warp)
    softmax_ce_kernel<T, kProbs, 32><<<blocks, kRowBlock, 0, stream>>>(
        logits, target, ids64, grad, rows, cols, eps, vec, kept, denom, has_ignore, ignore, row_loss, out);
  else
    softmax_ce_kernel<T, kProbs, kRowBlock><<<blocks, kRowBlock, 0, stream>>>(
        logits, target, ids64, grad, rows, cols, eps, vec, kept, denom, has_ignore, ignore, row_loss, out);
  check_launch(what);
  if (blocks > 1) finish_sum(partials.get(), blocks, mean, rows, out.out, stream, what, kept);
}

}  // namespace

void softmax_ce(DType dt, uintptr_t logits, uintptr_t target, TargetKind kind, uintptr_t grad, int64_t rows,
                int64_t cols, double smoothing, bool has_ignore, int64_t ignore_index, Reduction reduction,
                uintptr_t row_losses, uintptr_t loss, Place at) {
  const char* what = "softmax_ce";
  require(rows >= 0 && cols >= 0, "softmax_ce: rows and cols must be >= 0");
  require(rows == 0 || cols > 0, "softmax_ce: logits has no classes");
  require(loss != 0, "softmax_ce: the loss address is null");
  require(reduction == Reduction::mean || reduction == Reduction::sum || reduction == Reduction::none,
          "softmax_ce: unknown reduction");
  require(reduction != Reduction::none || rows == 0 || row_losses != 0, "softmax_ce: reduction none needs row_losses");
  require(row_losses % 8 == 0, "softmax_ce: row_losses is not aligned to a double");
  const bool mean = reduction == Reduction::mean;
  double* row_loss = reduction == Reduction::none ? reinterpret_cast<double*>(row_losses) : nullptr;
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  if (rows == 0) return finish_sum(nullptr, 0, mean, 0, reinterpret_cast<double*>(loss), stream, what);  // NaN or 0
  const bool probs = kind == TargetKind::probs, ids64 = kind == TargetKind::int64;
  const bool ignore = !probs && has_ignore;
  // mean with ignored ids: the rows kept, counted on the device (the host never waits for it)
  StreamBuffer<double> kept(ignore && mean ? 1 : 0, stream, what);
  if (kept.get()) {
    count_kept_kernel<<<1, kCountThreads, 0, stream>>>(reinterpret_cast<const void*>(target), ids64, rows,
                                                       ignore_index, kept.get());
    check_launch(what);
  }
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned16(logits, grad, probs ? target : 0) && cols % Pack<T>::W == 0;
    auto xp = reinterpret_cast<const T*>(logits);
    auto tp = reinterpret_cast<const void*>(target);
    auto gp = reinterpret_cast<T*>(grad);
    if (probs)
      launch_ce<T, true>(xp, tp, false, gp, rows, cols, smoothing, vec, false, 0, mean, nullptr, row_loss, loss, stream,
                         what);
    else
      launch_ce<T, false>(xp, tp, ids64, gp, rows, cols, smoothing, vec, ignore, ignore_index, mean, kept.get(),
                          row_loss, loss, stream, what);
  });
}

}  // namespace cuda
}  // namespace fastdl
