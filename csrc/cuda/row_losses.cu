// Keras's categorical losses (categorical_hinge, categorical_focal_crossentropy), value and gradient
// in one kernel, with the row formulas of csrc/kernels/losses.h. A row per group of G threads (a
// warp for rows up to kWarpRowCols, else the block), as softmax_ce.cu:
//   hinge: read 1: pos = sum t p, (neg, j*) = the max of (1 - t) p and its first index (ties: the
//          smaller index wins every merge); write: the gradient row from t.
//   focal: read 1: the online (max, exp-sum) of the logits, or the sum of the probabilities;
//          read 2: each element's term and dl/dq, summed with q dl/dq; read 3 + write: the gradient
//          (dl/dq recomputed rather than stored: a float16 gradient could not hold it).
// Row r's loss and gradient are multiplied by f_r = scale * weights[r] (weights null: scale); the
// sum of f_r loss_r is made per group in row order, per block in group order, then by one block
// in block order (finish_sum): deterministic. row_losses[r] = loss_r when not null.
// grad must not overlap pred or target (fastdl.ops copies an input that does).
#include "launch.h"
#include "rows.cuh"

#include "../common/loss_terms.h"
#include "../kernels/losses.h"

namespace fastdl {
namespace cuda {

namespace {

constexpr int64_t kMaxRowLossBlocks = kMaxPartials;

// ---- the hinge's first read: pos, and the max of (1 - t) p with its first index ------------------
template <class C>
struct HingeStats {
  C pos, neg;
  int64_t j;  // INT64_MAX: none yet
};

template <class C>
__device__ __forceinline__ HingeStats<C> hinge_merge(const HingeStats<C>& a, const HingeStats<C>& b) {
  const bool take_b = b.neg > a.neg || (b.neg == a.neg && b.j < a.j);
  return {a.pos + b.pos, take_b ? b.neg : a.neg, take_b ? b.j : a.j};
}

__device__ __forceinline__ int64_t shfl_down_i64(int64_t v, int o) {
  return (int64_t)__shfl_down_sync(0xffffffffu, (long long)v, o);
}
__device__ __forceinline__ int64_t shfl_broadcast_i64(int64_t v) { return (int64_t)__shfl_sync(0xffffffffu, (long long)v, 0); }

using cuda::shfl_broadcast;  // (the overloads below would hide the float/double ones)
using cuda::shfl_down;
template <class C>
__device__ __forceinline__ HingeStats<C> shfl_down(const HingeStats<C>& v, int o) {
  return {shfl_down(v.pos, o), shfl_down(v.neg, o), shfl_down_i64(v.j, o)};
}
template <class C>
__device__ __forceinline__ HingeStats<C> shfl_broadcast(const HingeStats<C>& v) {
  return {shfl_broadcast(v.pos), shfl_broadcast(v.neg), shfl_broadcast_i64(v.j)};
}

// ---- the focal loss's second read: the sum of the terms and of q dl/dq ---------------------------
template <class C>
struct Pair {
  C a, b;
};
template <class C>
__device__ __forceinline__ Pair<C> pair_merge(const Pair<C>& x, const Pair<C>& y) { return {x.a + y.a, x.b + y.b}; }
template <class C>
__device__ __forceinline__ Pair<C> shfl_down(const Pair<C>& v, int o) { return {shfl_down(v.a, o), shfl_down(v.b, o)}; }
template <class C>
__device__ __forceinline__ Pair<C> shfl_broadcast(const Pair<C>& v) { return {shfl_broadcast(v.a), shfl_broadcast(v.b)}; }

// The first read of a focal row: (m, s) of the logits, or (0, sum x) of probabilities.
template <class C>
__device__ __forceinline__ MaxSum<C> focal_merge(const MaxSum<C>& a, const MaxSum<C>& b, bool logits) {
  return logits ? max_sum_merge(a, b) : MaxSum<C>{C(0), a.s + b.s};
}

union RowSmem {  // one group reduction at a time (each ends with a barrier of the group)
  HingeStats<double> hinge64;
  HingeStats<float> hinge32;
  Pair<double> pair64;
  Pair<float> pair32;
  MaxSum<double> ms64;
  MaxSum<float> ms32;
};

template <class C>
__device__ __forceinline__ C* smem_as(RowSmem* s) { return reinterpret_cast<C*>(s); }

// kOp: 0 categorical_hinge, 1 categorical_focal (kRowLossNames).
template <class T, int kOp, int G>
__global__ void __launch_bounds__(kRowBlock)
    row_loss_kernel(const T* pred, const T* target, T* grad, int64_t rows, int64_t cols, RowLossOptions o,
                    const double* weights, double* row_losses, bool vec, ReduceOut out) {
  using C = compute_t<T>;
  constexpr int kGroups = RowLoop<G>::kRowsPerBlock;
  __shared__ RowSmem smem[kRowBlock / 32];
  __shared__ double group_loss[kGroups];
  const RowLoop<G> loop;
  const kernels::FocalRowTerm<C> term = kernels::focal_row_term<C>(o.alpha, o.gamma, o.label_smoothing, cols);
  const bool logits = o.from_logits;
  double acc = 0.0;  // this group's f_r loss_r, in row order
  for (int64_t r = loop.first(); r < rows; r += loop.step()) {
    const T* pr = pred + r * cols;
    const T* tr = target + r * cols;
    T* gr = grad + r * cols;
    const double f = weights ? o.scale * weights[r] : o.scale;
    double loss_r;
    if constexpr (kOp == 0) {
      HingeStats<C> st{C(0), -::cuda::std::numeric_limits<C>::infinity(), INT64_MAX};
      for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
        constexpr int K = decltype(width)::value;
        C p[K], t[K];
        load_widen<K>(pr + c, p, vec);
        load_widen<K>(tr + c, t, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) {
          st.pos += t[j] * p[j];
          const C v = kernels::hinge_masked(p[j], t[j]);
          if (v > st.neg || (v == st.neg && c + j < st.j)) st.neg = v, st.j = c + j;
        }
      });
      st = group_all_reduce<G>(st, [](const HingeStats<C>& a, const HingeStats<C>& b) { return hinge_merge(a, b); },
                               smem_as<HingeStats<C>>(smem));
      const double margin = kernels::hinge_margin<double>((double)st.pos, (double)st.neg);
      loss_r = kernels::categorical_hinge_loss(margin);
      const C fc = margin > 0.0 ? C(f) : C(0);  // NaN margin: no gradient, as NumPy's where
      const int64_t jstar = st.j;
      for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
        constexpr int K = decltype(width)::value;
        C t[K];
        load_widen<K>(tr + c, t, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) t[j] = kernels::categorical_hinge_grad(t[j], c + j == jstar, fc);
        narrow_store<K>(gr + c, t, vec);
      });
    } else {
      MaxSum<C> ms = logits ? max_sum_init<C>() : MaxSum<C>{C(0), C(0)};
      for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
        constexpr int K = decltype(width)::value;
        C x[K];
        load_widen<K>(pr + c, x, vec);
        if (logits) {
          max_sum_add<K>(ms, x);
        } else {
#pragma unroll
          for (int j = 0; j < K; ++j) ms.s += x[j];
        }
      });
      ms = group_all_reduce<G>(ms, [logits](const MaxSum<C>& a, const MaxSum<C>& b) { return focal_merge(a, b, logits); },
                               smem_as<MaxSum<C>>(smem));
      const C m = ms.m, inv = C(1.0 / (double)ms.s);
      auto probs = [&](auto width, int64_t c, C (&q)[decltype(width)::value]) {
        constexpr int K = decltype(width)::value;
        load_widen<K>(pr + c, q, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) q[j] = (logits ? kernels::exp(q[j] - m) : q[j]) * inv;
      };
      Pair<C> sums{C(0), C(0)};  // the terms, q dl/dq
      for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
        constexpr int K = decltype(width)::value;
        C q[K], t[K];
        probs(width, c, q);
        load_widen<K>(tr + c, t, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) {
          C dq;
          sums.a += term(q[j], term.target(t[j]), dq);
          sums.b += dq * q[j];
        }
      });
      sums = group_all_reduce<G>(sums, [](const Pair<C>& a, const Pair<C>& b) { return pair_merge(a, b); },
                                 smem_as<Pair<C>>(smem));
      loss_r = (double)sums.a;
      const C inner = sums.b, fc = C(f), f_total = C(f / (double)ms.s);
      for_each_piece<T>(0, cols, loop.lane(), G, [&](auto width, int64_t c) {
        constexpr int K = decltype(width)::value;
        C q[K], t[K];
        probs(width, c, q);
        load_widen<K>(tr + c, t, vec);
#pragma unroll
        for (int j = 0; j < K; ++j) {
          C dq;
          term(q[j], term.target(t[j]), dq);
          t[j] = logits ? kernels::focal_grad_logits(q[j], dq, inner, fc) : kernels::focal_grad_probs(dq, inner, f_total);
        }
        narrow_store<K>(gr + c, t, vec);
      });
    }
    acc += f * loss_r;
    if (row_losses && loop.lane() == 0) row_losses[r] = loss_r;
  }
  if (loop.lane() == 0) group_loss[loop.group()] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = group_loss[0];
    for (int k = 1; k < kGroups; ++k) total += group_loss[k];
    out.write(total);
  }
}

template <class T, int kOp>
void launch_row_loss(const T* pred, const T* target, T* grad, int64_t rows, int64_t cols, const RowLossOptions& o,
                     const double* weights, double* row_losses, bool vec, double* loss, cudaStream_t stream,
                     const char* what) {
  const bool per_warp = cols <= kWarpRowCols;
  const int64_t blocks = row_blocks(rows, per_warp, kMaxRowLossBlocks);
  StreamBuffer<double> partials(blocks > 1 ? blocks : 0, stream, what);
  const ReduceOut out{partials.get(), loss, false, rows};
  if (per_warp)
    row_loss_kernel<T, kOp, 32><<<blocks, kRowBlock, 0, stream>>>(pred, target, grad, rows, cols, o, weights,
                                                                  row_losses, vec, out);
  else
    row_loss_kernel<T, kOp, kRowBlock><<<blocks, kRowBlock, 0, stream>>>(pred, target, grad, rows, cols, o, weights,
                                                                         row_losses, vec, out);
  check_launch(what);
  if (blocks > 1) finish_sum(partials.get(), blocks, false, rows, out.out, stream, what);
}

}  // namespace

void row_loss(DType dt, int op, uintptr_t pred, uintptr_t target, uintptr_t grad, int64_t rows, int64_t cols,
              const RowLossOptions& options, uintptr_t weights, uintptr_t row_losses, uintptr_t loss, Place at) {
  const char* what = "row_loss";
  require(op >= 0 && op < kRowLossCount, "row_loss: unknown loss id");
  require(rows >= 0 && cols >= 0, "row_loss: rows and cols must be >= 0");
  require(rows == 0 || cols > 0, "row_loss: pred has no classes");
  require(loss != 0, "row_loss: the loss address is null");
  require(weights % 8 == 0 && row_losses % 8 == 0, "row_loss: weights / row_losses are not aligned to a double");
  DeviceGuard guard(at.device, what);
  cudaStream_t stream = stream_of(at);
  double* lp = reinterpret_cast<double*>(loss);
  if (rows == 0) return finish_sum(nullptr, 0, false, 0, lp, stream, what);  // 0
  with_dtype(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool vec = aligned16(pred, target, grad) && cols % Pack<T>::W == 0;
    auto pp = reinterpret_cast<const T*>(pred);
    auto tp = reinterpret_cast<const T*>(target);
    auto gp = reinterpret_cast<T*>(grad);
    auto wp = reinterpret_cast<const double*>(weights);
    auto rp = reinterpret_cast<double*>(row_losses);
    if (op == 0) launch_row_loss<T, 0>(pp, tp, gp, rows, cols, options, wp, rp, vec, lp, stream, what);
    else launch_row_loss<T, 1>(pp, tp, gp, rows, cols, options, wp, rp, vec, lp, stream, what);
  });
}

}  // namespace cuda
}  // namespace fastdl
