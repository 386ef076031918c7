// Splitting work across the OpenMP threads. Included inside the per-ISA namespace.
#pragma once

// Threads to use for `work` units when one thread should get at least `grain` of them:
// small inputs run inline, where starting the team would cost more than it saves.
FASTDL_VI int threads_for(int64_t work, int64_t grain) {
  int64_t t = work / (grain > 0 ? grain : 1);
  int max_t = thread_limit;
  if (omp_in_parallel()) return 1;
  return t < 1 ? 1 : (t < max_t ? (int)t : max_t);
}

// body(begin, end) on [0, n) split into one contiguous range per thread, boundaries on
// multiples of `align` elements (a cache line), so threads do not share output lines.
template <class F>
FASTDL_VI void parallel_ranges(int64_t n, int64_t grain, int64_t align, F body) {
  int nt = threads_for(n, grain);
  if (nt <= 1) {
    if (n > 0) body(int64_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    int64_t b = n * t / T / align * align, e = t + 1 == T ? n : n * (t + 1) / T / align * align;
    if (e > b) body(b, e);
  }
}

// Sum of part(begin, end) over [0, n), the same bits whatever the thread count: [0, n) is cut
// into at most kBlocks blocks whose size depends only on n, and the block sums are added in
// order by one thread.
template <class F>
FASTDL_VI double deterministic_sum(int64_t n, int64_t grain, F part) {
  constexpr int64_t kBlocks = 64;
  if (n <= 0) return 0.0;
  int64_t block = (n + kBlocks - 1) / kBlocks;
  if (block < grain) block = grain;
  block = (block + 15) / 16 * 16;
  int64_t nb = (n + block - 1) / block;
  double parts[kBlocks];
  int nt = threads_for(n, grain);
  if (nt > nb) nt = (int)nb;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < nb; ++i) {
    int64_t b = i * block, e = b + block < n ? b + block : n;
    parts[i] = part(b, e);
  }
  double s = 0.0;
  for (int64_t i = 0; i < nb; ++i) s += parts[i];
  return s;
}

// Adds vectors into float lanes and moves the lanes into a double every kFlush additions, so a
// long float sum keeps ~1e-7 relative accuracy instead of degrading with its length.
template <class T>
struct LaneSum {
  static constexpr int kFlush = 64;
  Vec<T> lanes = Vec<T>(T(0));
  double total = 0.0;
  int pending = 0;
  FASTDL_VI void add(Vec<T> v) {
    lanes = lanes + v;
    if (++pending == kFlush) flush();
  }
  FASTDL_VI void flush() {
    total += reduce_add_double(lanes);
    lanes = Vec<T>(T(0));
    pending = 0;
  }
  FASTDL_VI double sum() { flush(); return total; }
};
