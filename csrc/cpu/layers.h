// The layer kernels' CPU loops (issue #13; contract: python/fastdl/backends/numpy_layers.py,
// formulas: csrc/kernels/layers.h). Included inside the per-ISA namespace (isa_layers.cpp).
//
// Deterministic reductions: the rows are cut into blocks whose size depends only on the row count
// (norm_block_rows), each block's column sums go to its own slot of the caller's workspace, and the
// slots are added in block order. Sums run in float lanes of at most 64 rows moved into doubles.
#pragma once

// ---- helpers ----------------------------------------------------------------------------------------

// Per-element lambdas capture by value and are always inlined: the vector stores (may_alias types)
// would otherwise make the compiler reload every captured reference after each store.
#define FASTDL_LI __attribute__((always_inline))

// Elements [i, i + w) of p, w <= lanes (the missing lanes 0).
template <class T>
FASTDL_VI Vec<T> load_n(const T* p, int64_t i, int64_t w) {
  return w == Vec<T>::lanes ? Vec<T>::load(p + i) : Vec<T>::load_partial(p + i, w, T(0));
}
template <class T>
FASTDL_VI void store_n(Vec<T> v, T* p, int64_t i, int64_t w) {
  if (w == Vec<T>::lanes) v.store(p + i);
  else v.store_partial(p + i, w);
}

// out[i, i + w) = f(i, w) over [0, n) in vectors (w = lanes but for a head and a tail); with
// `stream`, whole vectors go out with streaming stores from the first 64-byte aligned element, for
// rows of at least kStreamRowBytes (a short row's few streamed lines between the plain stores of
// its head and tail made BatchNorm's y, 256-byte rows, 35% slower than plain stores here).
// out null: f is called for its side effects only.
constexpr int64_t kStreamRowBytes = 2048;

template <class T, class F>
FASTDL_VI void for_row(T* out, int64_t n, bool stream, F f) {
  constexpr int64_t W = Vec<T>::lanes;
  int64_t i = 0;
  stream = stream && n * (int64_t)sizeof(T) >= kStreamRowBytes;
  if (!out) {
    for (; i + W <= n; i += W) f(i, W);
    if (i < n) f(i, n - i);
    return;
  }
  if (stream) {
    const int64_t misaligned = (int64_t)(((uintptr_t)out & 63) / sizeof(T));
    if (misaligned) {
      const int64_t head = W - misaligned < n ? W - misaligned : n;
      f(i, head).store_partial(out, head);
      i = head;
    }
    for (; i + W <= n; i += W) f(i, W).stream(out + i);
  } else {
    for (; i + W <= n; i += W) f(i, W).store(out + i);
  }
  if (i < n) f(i, n - i).store_partial(out + i, n - i);
}

// Column sums over rows in float lanes (`lanes`, n values), moved into doubles (`totals`) every
// 64 rows and by flush().
template <class T>
struct ColumnSum {
  T* lanes;
  double* totals;
  int64_t n;
  int pending = 0;
  FASTDL_VI void zero() {
    for (int64_t c = 0; c < n; ++c) lanes[c] = T(0), totals[c] = 0.0;
    pending = 0;
  }
  FASTDL_VI void add(int64_t i, int64_t w, Vec<T> v) const { store_n(load_n(lanes, i, w) + v, lanes, i, w); }
  FASTDL_VI void row_done() {
    if (++pending == 64) flush();
  }
  FASTDL_VI void flush() {
    for (int64_t c = 0; c < n; ++c) totals[c] += (double)lanes[c], lanes[c] = T(0);
    pending = 0;
  }
};

// A block's slot of the workspace: sums in double and float lanes, each array a few cache lines
// past a multiple of 4 KB from the others (so that lanes stored and loaded in the same sweep never
// share their low 12 address bits, which CPUs use to match loads to earlier stores).
FASTDL_VI int64_t slot_doubles(int64_t cols) { return 6 * cols + 64; }

// The blocks of a deterministic reduction over rows: block i is rows [i br, min((i + 1) br, rows)).
struct RowBlocks {
  int64_t rows, br, count;
  explicit RowBlocks(int64_t rows_) : rows(rows_), br(norm_block_rows(rows_)), count(rows_ ? (rows_ + br - 1) / br : 0) {}
  int64_t begin(int64_t i) const { return i * br; }
  int64_t end(int64_t i) const { return (i + 1) * br < rows ? (i + 1) * br : rows; }
};

// body(block) for every block, blocks split across the threads (each block in one thread).
template <class F>
FASTDL_VI void for_blocks(const RowBlocks& blocks, int64_t work, F body) {
  int nt = threads_for(work, kGrainCheap);
  if (nt > blocks.count) nt = blocks.count > 0 ? (int)blocks.count : 1;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
  for (int64_t i = 0; i < blocks.count; ++i) body(i);
}

// out[c] = sum over the blocks, in block order, of part(block)[c], for c < n (parallel over c).
template <class T, class F>
FASTDL_VI void sum_blocks(T* out, int64_t n, int64_t blocks, F part) {
  if (!out) return;
  parallel_ranges(n, kGrainCheap / (blocks > 0 ? blocks : 1) + 1, 16, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      double s = 0.0;
      for (int64_t i = 0; i < blocks; ++i) s += part(i)[c];
      out[c] = T(s);
    }
  });
}

// out[i] = f(i, c, w) over the flat (rows, cols) array, c = i mod cols the column of element i, in
// vectors that may run across rows: the per-column factors f loads at c come from arrays extended
// to cols + lanes entries (entry j holds column j mod cols; extend_columns). Streams whole vectors
// from the first aligned one when `stream`: BatchNorm's short rows are then one stream.
template <class T>
FASTDL_VI void extend_columns(T* a, int64_t cols) {
  for (int64_t j = cols; j < cols + Vec<T>::lanes; ++j) a[j] = a[j % cols];
}
template <class T, class F>
FASTDL_VI void for_flat_columns(T* out, int64_t rows, int64_t cols, bool stream, F f) {
  constexpr int64_t W = Vec<T>::lanes;
  parallel_ranges(rows * cols, kGrainCheap, 16, [&](int64_t b, int64_t e) {
    int64_t i = b, c = b % cols;
    auto step = [&](int64_t w) {
      i += w;
      c += w;
      if (c >= cols) c %= cols;
    };
    if (stream) {
      const int64_t misaligned = (int64_t)(((uintptr_t)(out + i) & 63) / sizeof(T));
      if (misaligned) {
        const int64_t head = W - misaligned < e - i ? W - misaligned : e - i;
        f(i, c, head).store_partial(out + i, head);
        step(head);
      }
      for (; i + W <= e; step(W)) f(i, c, W).stream(out + i);
      stream_fence();
    } else {
      for (; i + W <= e; step(W)) f(i, c, W).store(out + i);
    }
    if (i < e) f(i, c, e - i).store_partial(out + i, e - i);
  });
}

// ---- LayerNorm: each row over its C values -------------------------------------------------------------
// Forward, per row (threads over rows): the mean, then sum (x - mean)^2, then y, in three sweeps of
// the row, which stays in L1/L2 between them: memory sees one read of x and one write of y.
template <class T>
void layer_norm(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int64_t rows, int64_t cols,
                double eps) {
  const bool stream = should_stream<T>(rows * cols, x == y);
  const int64_t grain = kGrainCheap / (cols > 0 ? cols : 1);
  parallel_ranges(rows, grain > 0 ? grain : 1, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * cols;
      // the sum, while the lines of the row after next are prefetched (the sweeps of this row hit
      // the cache, so the hardware sees no stream)
      LaneSum<T> sum;
      const T* next = r + 2 < e ? xr + 2 * cols : nullptr;
      for (int64_t i = 0; i < cols; i += Vec<T>::lanes) {
        if (next) __builtin_prefetch(next + i, 0, 3);
        sum.add(load_n(xr, i, cols - i < Vec<T>::lanes ? cols - i : Vec<T>::lanes));
      }
      const double m = sum.sum() / (double)cols;
      const kernels::SplitMean<T> sm = kernels::split_mean<T>(m);
      const Vec<T> hi(sm.hi), lo(sm.lo);
      LaneSum<T> ss;
      for (int64_t i = 0; i < cols; i += Vec<T>::lanes) {
        const int64_t w = cols - i < Vec<T>::lanes ? cols - i : Vec<T>::lanes;
        const Vec<T> d = (load_n(xr, i, w) - hi) - lo;
        ss.add(w == Vec<T>::lanes ? d * d : where(first_lanes<T>(w), d * d, Vec<T>(T(0))));
      }
      const double rs = kernels::norm_rstd(ss.sum() / (double)cols, eps);
      mean[r] = T(m);
      rstd[r] = T(rs);
      const Vec<T> vr{T(rs)};
      for_row(y + r * cols, cols, stream, [=](int64_t i, int64_t w) FASTDL_LI {
        const Vec<T> xh = kernels::norm_xhat(load_n(xr, i, w), hi, lo, vr);
        return kernels::norm_affine(xh, gamma ? load_n(gamma, i, w) : Vec<T>(T(1)), beta ? load_n(beta, i, w) : Vec<T>(T(0)));
      });
    }
    if (stream) stream_fence();
  });
}

// Backward, per row: (1) a = mean(g), b = mean(g xhat), g = dy gamma; (2) dx = rstd (g - a - xhat b),
// with dy xhat and dy added to the block's dgamma / dbeta lanes in the same sweep. Blocks of rows
// over the threads; dgamma, dbeta summed over the blocks in order. dx may be dy.
template <class T>
void layer_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx, T* dgamma,
                         T* dbeta, int64_t rows, int64_t cols, double* work) {
  const bool sums = dgamma || dbeta;
  if (rows == 0) {
    for (int64_t c = 0; c < cols; ++c) {
      if (dgamma) dgamma[c] = T(0);
      if (dbeta) dbeta[c] = T(0);
    }
    return;
  }
  const bool stream = dx && should_stream<T>(rows * cols, dx == dy || dx == x);
  const RowBlocks blocks(rows);
  // block i's slot: dgamma totals, dbeta totals (doubles), then their float lanes
  auto slot = [&](int64_t i) { return work + i * slot_doubles(cols); };
  for_blocks(blocks, rows * cols, [&](int64_t blk) {
    double* s = slot(blk);
    ColumnSum<T> sg{(T*)(s + 2 * cols + 8), s, cols}, sb{(T*)(s + 3 * cols + 24), s + cols, cols};
    if (sums) sg.zero(), sb.zero();
    for (int64_t r = blocks.begin(blk); r < blocks.end(blk); ++r) {
      const T *dyr = dy + r * cols, *xr = x + r * cols;
      const Vec<T> hi(mean[r]), lo(T(0)), vr(rstd[r]);
      LaneSum<T> sa, sx;
      const bool more = r + 2 < blocks.end(blk);
      for (int64_t i = 0; i < cols; i += Vec<T>::lanes) {
        const int64_t w = cols - i < Vec<T>::lanes ? cols - i : Vec<T>::lanes;
        if (more) __builtin_prefetch(dyr + 2 * cols + i, 0, 3), __builtin_prefetch(xr + 2 * cols + i, 0, 3);
        const Vec<T> g = gamma ? load_n(dyr, i, w) * load_n(gamma, i, w) : load_n(dyr, i, w);
        sa.add(g);  // missing lanes: g = 0
        sx.add(g * kernels::norm_xhat(load_n(xr, i, w), hi, lo, vr));
      }
      const Vec<T> a{T(sa.sum() / (double)cols)}, b{T(sx.sum() / (double)cols)};
      // The column sums, then dx (which may overwrite dy): two sweeps of the cached row.
      if (sums)
        for_row((T*)nullptr, cols, false, [=](int64_t i, int64_t w) FASTDL_LI {
          const Vec<T> d = load_n(dyr, i, w);
          sg.add(i, w, d * kernels::norm_xhat(load_n(xr, i, w), hi, lo, vr));
          sb.add(i, w, d);
          return d;
        });
      if (dx)
        for_row(dx + r * cols, cols, stream, [=](int64_t i, int64_t w) FASTDL_LI {
          const Vec<T> d = load_n(dyr, i, w), xh = kernels::norm_xhat(load_n(xr, i, w), hi, lo, vr);
          return kernels::layer_norm_grad(gamma ? d * load_n(gamma, i, w) : d, xh, a, b, vr);
        });
      if (sums) sg.row_done(), sb.row_done();
    }
    if (sums) sg.flush(), sb.flush();
    if (stream) stream_fence();
  });
  if (sums) {
    sum_blocks(dgamma, cols, blocks.count, [&](int64_t i) { return (const double*)slot(i); });
    sum_blocks(dbeta, cols, blocks.count, [&](int64_t i) { return (const double*)slot(i) + cols; });
  }
}

// ---- BatchNorm: each column over the rows ----------------------------------------------------------------
// Forward: the statistics in one read of x. Each block of rows is swept in chunks small enough to
// stay in L1 (at most 64 rows): a chunk's column means, then its sums around them (two sweeps of
// the cached chunk), merged into the block's moments (merge_moments); the blocks' moments are merged
// in block order. Then y in one more read of x (the statistics need every row first).
template <class T>
void batch_norm(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* var, T* rstd, int64_t rows, int64_t cols,
                double eps, double* work) {
  constexpr int64_t W = Vec<T>::lanes;
  if (cols == 0) return;
  const RowBlocks blocks(rows);
  int64_t chunk = 32768 / (cols * (int64_t)sizeof(T));
  chunk = chunk < 1 ? 1 : chunk > 64 ? 64 : chunk;
  auto slot = [&](int64_t i) { return work + i * slot_doubles(cols); };  // mean, m2 (double)
  for_blocks(blocks, rows * cols, [&](int64_t blk) {
    double *const bm = slot(blk), *const b2 = bm + cols;
    const T* const xb = x;
    const int64_t nc = cols;
    double bn = 0.0;
    for (int64_t c = 0; c < nc; ++c) bm[c] = 0.0, b2[c] = 0.0;
    for (int64_t r0 = blocks.begin(blk); r0 < blocks.end(blk); r0 += chunk) {
      const int64_t r1 = r0 + chunk < blocks.end(blk) ? r0 + chunk : blocks.end(blk);
      const double n = (double)(r1 - r0);
      // a vector of columns at a time, its sums in registers down the chunk's rows (in L1)
      for (int64_t i = 0; i < nc; i += W) {
        const int64_t w = nc - i < W ? nc - i : W;
        Vec<T> a(T(0)), s1(T(0)), s2(T(0));
        for (int64_t r = r0; r < r1; ++r) a = a + load_n(xb + r * nc, i, w);
        const Vec<T> shift = a * Vec<T>(T(1.0 / n));  // near the chunk's mean: any value is exact below
        for (int64_t r = r0; r < r1; ++r) {
          const Vec<T> d = load_n(xb + r * nc, i, w) - shift;
          s1 = s1 + d;
          s2 = s2 + d * d;
        }
        alignas(64) T sh_[W], s1_[W], s2_[W];
        shift.store(sh_);
        s1.store(s1_);
        s2.store(s2_);
        for (int64_t l = 0; l < w; ++l) {
          const kernels::Moments<double> m = kernels::merge_moments<double>(
              {bn, bm[i + l], b2[i + l]},
              kernels::moments_from_shifted<double>(n, (double)sh_[l], (double)s1_[l], (double)s2_[l]));
          bm[i + l] = m.mean;
          b2[i + l] = m.m2;
        }
      }
      bn += n;
    }
  });
  // the columns' statistics, and the factors of y = (x - mean) k + beta, k = rstd gamma (each
  // extended by a vector's worth for for_flat_columns)
  const int64_t ext = cols + Vec<T>::lanes;
  T *hi = (T*)(work + blocks.count * slot_doubles(cols)), *lo = hi + ext, *k = lo + ext, *b = k + ext;
  parallel_ranges(cols, kGrainCheap / (blocks.count + 1) + 1, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      kernels::Moments<double> m{0.0, 0.0, 0.0};
      for (int64_t i = 0; i < blocks.count; ++i)
        m = kernels::merge_moments<double>(m, {(double)(blocks.end(i) - blocks.begin(i)), slot(i)[c], slot(i)[cols + c]});
      const double v = rows > 0 ? m.m2 / (double)rows : 0.0, rs = kernels::norm_rstd(v, eps);
      mean[c] = T(m.mean);
      var[c] = T(v);
      rstd[c] = T(rs);
      const kernels::SplitMean<T> sm = kernels::split_mean<T>(m.mean);
      hi[c] = sm.hi;
      lo[c] = sm.lo;
      k[c] = T(gamma ? rs * (double)gamma[c] : rs);
      b[c] = beta ? beta[c] : T(0);
    }
  });
  for (T* a : {hi, lo, k, b}) extend_columns(a, cols);
  const T* xf = x;
  for_flat_columns(y, rows, cols, should_stream<T>(rows * cols, x == y), [=](int64_t i, int64_t c, int64_t w) FASTDL_LI {
    return kernels::batch_norm_value(load_n(xf, i, w), load_n(hi, c, w), load_n(lo, c, w), load_n(k, c, w),
                                     load_n(b, c, w));
  });
}

// Backward: sb = sum_r dy, sd = sum_r dy (x - mean) per column in one read of dy and x (blocks of
// rows, added in block order); dgamma = rstd sd, dbeta = sb; then dx = k (dy - sb / M - xhat
// dgamma / M), k = gamma rstd, in one more read. dx may be dy.
template <class T>
void batch_norm_backward(const T* dy, const T* x, const T* gamma, const T* mean, const T* rstd, T* dx, T* dgamma,
                         T* dbeta, int64_t rows, int64_t cols, double* work) {
  if (cols == 0) return;
  const RowBlocks blocks(rows);
  constexpr int64_t W = Vec<T>::lanes;
  int64_t chunk = 32768 / (cols * 2 * (int64_t)sizeof(T));  // rows of dy and x that stay in L1 together
  chunk = chunk < 1 ? 1 : chunk > 64 ? 64 : chunk;
  auto slot = [&](int64_t i) { return work + i * slot_doubles(cols); };  // sb, sd (double)
  for_blocks(blocks, rows * cols, [&](int64_t blk) {
    double *const tb = slot(blk), *const td = tb + cols;
    const T *const dyb = dy, *const xb = x, *const mb = mean;
    const int64_t nc = cols;
    for (int64_t c = 0; c < nc; ++c) tb[c] = 0.0, td[c] = 0.0;
    for (int64_t r0 = blocks.begin(blk); r0 < blocks.end(blk); r0 += chunk) {
      const int64_t r1 = r0 + chunk < blocks.end(blk) ? r0 + chunk : blocks.end(blk);
      // a vector of columns at a time, its float sums in registers down the chunk's rows (at most
      // 64, then moved into the doubles)
      for (int64_t i = 0; i < nc; i += W) {
        const int64_t w = nc - i < W ? nc - i : W;
        const Vec<T> m = load_n(mb, i, w);
        Vec<T> ab(T(0)), ad(T(0));
        for (int64_t r = r0; r < r1; ++r) {
          const Vec<T> d = load_n(dyb + r * nc, i, w);
          ab = ab + d;
          ad = ad + d * (load_n(xb + r * nc, i, w) - m);
        }
        alignas(64) T ab_[W], ad_[W];
        ab.store(ab_);
        ad.store(ad_);
        for (int64_t l = 0; l < w; ++l) tb[i + l] += (double)ab_[l], td[i + l] += (double)ad_[l];
      }
    }
  });
  const int64_t ext = cols + Vec<T>::lanes;  // the factors of dx, extended for for_flat_columns
  T *k = (T*)(work + blocks.count * slot_doubles(cols)), *mdb = k + ext, *mdg = mdb + ext, *me = mdg + ext,
    *re = me + ext;
  parallel_ranges(cols, kGrainCheap / (blocks.count + 1) + 1, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sbc = 0.0, sdc = 0.0;
      for (int64_t i = 0; i < blocks.count; ++i) sbc += slot(i)[c], sdc += slot(i)[cols + c];
      const double rs = (double)rstd[c], dg = rs * sdc;
      if (dgamma) dgamma[c] = T(dg);
      if (dbeta) dbeta[c] = T(sbc);
      k[c] = T(gamma ? rs * (double)gamma[c] : rs);
      mdb[c] = T(rows > 0 ? sbc / (double)rows : 0.0);
      mdg[c] = T(rows > 0 ? dg / (double)rows : 0.0);
      me[c] = mean[c];
      re[c] = rstd[c];
    }
  });
  if (!dx || rows == 0) return;
  for (T* a : {k, mdb, mdg, me, re}) extend_columns(a, cols);
  const T *dyf = dy, *xf = x;
  for_flat_columns(dx, rows, cols, should_stream<T>(rows * cols, dx == dy || dx == x),
                   [=](int64_t i, int64_t c, int64_t w) FASTDL_LI {
    const Vec<T> xh = kernels::norm_xhat(load_n(xf, i, w), load_n(me, c, w), Vec<T>(T(0)), load_n(re, c, w));
    return kernels::batch_norm_grad(load_n(dyf, i, w), xh, load_n(k, c, w), load_n(mdb, c, w), load_n(mdg, c, w));
  });
}

// y = x scale + shift per column; y may be x.
template <class T>
void channel_affine(const T* x, const T* scale, const T* shift, T* y, int64_t rows, int64_t cols) {
  if (cols == 0) return;
  const bool stream = should_stream<T>(rows * cols, x == y);
  parallel_ranges(rows, kGrainCheap / cols + 1, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * cols;
      for_row(y + r * cols, cols, stream, [=](int64_t i, int64_t w) FASTDL_LI {
        return kernels::channel_affine(load_n(xr, i, w), load_n(scale, i, w), load_n(shift, i, w));
      });
    }
    if (stream) stream_fence();
  });
}

// ---- im2col / col2im ---------------------------------------------------------------------------------------
// im2col: threads over output rows (n, p). For each window row i the kw taps read consecutive
// image columns when dw = 1: one copy of the part inside the image, zeros around it.
template <class T>
void im2col(const T* x, T* cols, const Window& g) {
  const int64_t kc = g.kh * g.kw * g.c, out_rows = g.n * g.oh;
  if (kc == 0 || g.ow == 0) return;
  const int64_t grain = kGrainCheap / (g.ow * kc) + 1;
  // (Plain stores: staging each window and streaming it out was 50% slower here, a short row's
  // misaligned head and tail between the streamed lines again.)
  parallel_ranges(out_rows, grain, 1, [&](int64_t b, int64_t e) {
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / g.oh, p = np % g.oh;
      T* out = cols + np * g.ow * kc;
      for (int64_t q = 0; q < g.ow; ++q, out += kc)
        for (int64_t i = 0; i < g.kh; ++i) {
          T* dst = out + i * g.kw * g.c;
          const int64_t y = kernels::window_row(g, p, i);
          if (y < 0 || y >= g.h) {
            memset(dst, 0, (size_t)(g.kw * g.c) * sizeof(T));
            continue;
          }
          const T* src = x + ((n * g.h + y) * g.w) * g.c;
          int64_t j0, j1;
          kernels::taps_inside(kernels::window_col(g, q, 0), g.dw, g.kw, g.w, j0, j1);
          if (j0 > 0) memset(dst, 0, (size_t)(j0 * g.c) * sizeof(T));
          if (g.dw == 1) {
            if (j1 > j0) memcpy(dst + j0 * g.c, src + kernels::window_col(g, q, j0) * g.c, (size_t)((j1 - j0) * g.c) * sizeof(T));
          } else {
            for (int64_t j = j0; j < j1; ++j)
              memcpy(dst + j * g.c, src + kernels::window_col(g, q, j) * g.c, (size_t)g.c * sizeof(T));
          }
          if (j1 < g.kw) memset(dst + j1 * g.c, 0, (size_t)((g.kw - j1) * g.c) * sizeof(T));
        }
    }
  });
}

// Adds src[0, n) into acc in double (the compiler vectorizes the widening).
template <class T>
FASTDL_VI void add_wide(double* acc, const T* src, int64_t n, double scale = 1.0) {
  for (int64_t c = 0; c < n; ++c) acc[c] += (double)src[c] * scale;
}
template <class T>
FASTDL_VI void store_narrow(T* dst, const double* acc, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c] = T(acc[c]);
}
constexpr int64_t kChanChunk = 256;  // channels accumulated at once (a double buffer on the stack)

// col2im as a gather: each image position sums, in window order (i, j), the cols entries that read
// it (output (p, q) = ((y + pad - i dh) / sh, ...) when that divides), in double; threads over image
// rows (n, y), each position written once: deterministic, no atomics.
template <class T>
void col2im(const T* cols, T* dx, const Window& g) {
  const int64_t kc = g.kh * g.kw * g.c, rows = g.n * g.h;
  if (g.c == 0 || g.w == 0) return;
  const int64_t grain = kGrainCheap / (g.w * g.c * (g.kh * g.kw > 0 ? g.kh * g.kw : 1)) + 1;
  parallel_ranges(rows, grain, 1, [&](int64_t b, int64_t e) {
    double acc[kChanChunk];
    for (int64_t ny = b; ny < e; ++ny) {
      const int64_t n = ny / g.h, y = ny % g.h;
      for (int64_t xc = 0; xc < g.w; ++xc) {
        T* out = dx + (ny * g.w + xc) * g.c;
        // The cols entries of position xc + 2, to the cache ahead of use: the kh kw taps are as many
        // strided streams, more than the hardware prefetcher follows (2.6x faster with this).
        if (xc + 2 < g.w)
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t p = kernels::output_of_tap(y, i, g.sh, g.dh, g.pad_top, g.oh);
            if (p < 0) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t q = kernels::output_of_tap(xc + 2, j, g.sw, g.dw, g.pad_left, g.ow);
              if (q < 0) continue;
              const char* from = (const char*)(cols + ((n * g.oh + p) * g.ow + q) * kc + (i * g.kw + j) * g.c);
              for (int64_t o = 0; o < g.c * (int64_t)sizeof(T); o += 64) __builtin_prefetch(from + o, 0, 3);
            }
          }
        for (int64_t c0 = 0; c0 < g.c; c0 += kChanChunk) {
          const int64_t cn = g.c - c0 < kChanChunk ? g.c - c0 : kChanChunk;
          for (int64_t c = 0; c < cn; ++c) acc[c] = 0.0;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t p = kernels::output_of_tap(y, i, g.sh, g.dh, g.pad_top, g.oh);
            if (p < 0) continue;
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t q = kernels::output_of_tap(xc, j, g.sw, g.dw, g.pad_left, g.ow);
              if (q < 0) continue;
              add_wide(acc, cols + ((n * g.oh + p) * g.ow + q) * kc + (i * g.kw + j) * g.c + c0, cn);
            }
          }
          store_narrow(out + c0, acc, cn);
        }
      }
    }
  });
}

// ---- pooling ----------------------------------------------------------------------------------------------------
// Prefetches output column q's window in output row np (the next row a pooling loop will read).
template <class T>
FASTDL_VI void prefetch_window(const T* x, const Window& g, int64_t np, int64_t q, int64_t j0, int64_t j1) {
  const int64_t n = np / g.oh, p = np % g.oh;
  for (int64_t i = 0; i < g.kh; ++i) {
    const int64_t yy = kernels::window_row(g, p, i);
    if (yy < 0 || yy >= g.h || j1 <= j0) continue;
    const char* from = (const char*)(x + ((n * g.h + yy) * g.w + kernels::window_col(g, q, j0)) * g.c);
    const char* to = (const char*)(x + ((n * g.h + yy) * g.w + kernels::window_col(g, q, j1 - 1) + 1) * g.c);
    for (; from < to; from += 64) __builtin_prefetch(from, 0, 3);
  }
}

// Threads over output rows (n, p); for each output the window is clipped to the image first, so
// padding is never read. While an output row is computed, the next one's windows are prefetched
// (one thread reads two or more image rows at once: 2x faster than the hardware prefetcher alone).
template <class T>
void max_pool(const T* x, T* y, int64_t* argmax, const Window& g) {
  const int64_t out_rows = g.n * g.oh;
  if (g.c == 0 || g.ow == 0) return;
  const int64_t grain = kGrainCheap / (g.ow * g.c * (g.kh * g.kw > 0 ? g.kh * g.kw : 1)) + 1;
  parallel_ranges(out_rows, grain, 1, [&](int64_t b, int64_t e) {
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / g.oh, p = np % g.oh;
      int64_t i0, i1;
      kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
      for (int64_t q = 0; q < g.ow; ++q) {
        T* best = y + (np * g.ow + q) * g.c;
        int64_t* at = argmax + (np * g.ow + q) * g.c;
        int64_t j0, j1;
        kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
        if (i0 >= i1 || j0 >= j1) {  // no position inside the image
          for (int64_t c = 0; c < g.c; ++c) best[c] = T(-__builtin_inf()), at[c] = -1;
          continue;
        }
        if (np + 1 < e) prefetch_window(x, g, np + 1, q, j0, j1);
        // SIMD over the channels: the best value and where it is, held as T: the flat image index
        // when T holds every index exactly (h w <= 2^24 for float), else the tap k = i kw + j.
        const bool flat_exact = g.h * g.w <= (sizeof(T) == 4 ? (int64_t(1) << 24) : (int64_t(1) << 53));
        auto tag = [&](int64_t i, int64_t j) {
          return flat_exact ? T(kernels::window_row(g, p, i) * g.w + kernels::window_col(g, q, j)) : T(i * g.kw + j);
        };
        for (int64_t c = 0; c < g.c; c += Vec<T>::lanes) {
          const int64_t w = g.c - c < Vec<T>::lanes ? g.c - c : Vec<T>::lanes;
          auto at_tap = [&](int64_t i, int64_t j) {
            return load_n(x + ((n * g.h + kernels::window_row(g, p, i)) * g.w + kernels::window_col(g, q, j)) * g.c, c, w);
          };
          Vec<T> bv = at_tap(i0, j0), bk(tag(i0, j0));
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = i == i0 ? j0 + 1 : j0; j < j1; ++j) {
              const Vec<T> v = at_tap(i, j);
              const Mask<T> take = kernels::max_pool_takes(v, bv);
              bv = where(take, v, bv);
              bk = where(take, Vec<T>(tag(i, j)), bk);
            }
          store_n(bv, best, c, w);
          alignas(64) T where_[Vec<T>::lanes];
          bk.store(where_);
          if (flat_exact) {
            for (int64_t l = 0; l < w; ++l) at[c + l] = (int64_t)where_[l];
          } else {
            for (int64_t l = 0; l < w; ++l) {
              const int64_t k = (int64_t)where_[l];
              at[c + l] = kernels::window_row(g, p, k / g.kw) * g.w + kernels::window_col(g, q, k % g.kw);
            }
          }
        }
      }
    }
  });
}

// dx[n, argmax, c] += dy[n, p, q, c] in output order: threads over (image, block of channels),
// each owning its dx elements, so the sums do not depend on the thread count. (Added in T: a
// position gets more than one term only where windows overlap.) Indices outside [-1, h w) are
// skipped and counted (the return value; the caller raises). dx is zeroed an image row at a time
// just ahead of the first index into it (windows move down the image as the outputs go), so each
// row is zeroed and then added to while in cache: one pass over dx instead of two.
template <class T>
int64_t max_pool_backward(const T* dy, const int64_t* argmax, T* dx, const Window& g) {
  const int64_t hw = g.h * g.w, outs = g.oh * g.ow;
  if (g.c == 0 || g.n == 0) return 0;
  const int64_t cblocks = (g.c + kChanChunk - 1) / kChanChunk, units = g.n * cblocks;
  int64_t bad = 0;
  int nt = threads_for(g.n * (hw + outs) * g.c, kGrainCheap);
  if (nt > units) nt = (int)units;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1) reduction(+ : bad)
  for (int64_t u = 0; u < units; ++u) {
    const int64_t n = u / cblocks, c0 = (u % cblocks) * kChanChunk;
    const int64_t cn = g.c - c0 < kChanChunk ? g.c - c0 : kChanChunk;
    T* img = dx + n * hw * g.c + c0;
    int64_t zeroed = 0;  // positions [0, zeroed) of this image are zeroed
    auto zero_to = [&](int64_t end) {
      for (int64_t k = zeroed; k < end; ++k)
        for (int64_t c = 0; c < cn; ++c) img[k * g.c + c] = T(0);
      zeroed = end;
    };
    for (int64_t o = 0; o < outs; ++o) {
      const T* d = dy + (n * outs + o) * g.c + c0;
      const int64_t* a = argmax + (n * outs + o) * g.c + c0;
      for (int64_t c = 0; c < cn; ++c) {
        const int64_t k = a[c];
        if (k >= 0 && k < hw) {
          if (k >= zeroed) zero_to((k / g.w + 1) * g.w);  // through the end of k's image row
          img[k * g.c + c] += d[c];
        } else if (k != -1) {
          ++bad;
        }
      }
    }
    zero_to(hw);
  }
  return bad;
}

template <class T>
void avg_pool(const T* x, T* y, const Window& g) {
  const int64_t out_rows = g.n * g.oh;
  if (g.c == 0 || g.ow == 0) return;
  const int64_t grain = kGrainCheap / (g.ow * g.c * (g.kh * g.kw > 0 ? g.kh * g.kw : 1)) + 1;
  parallel_ranges(out_rows, grain, 1, [&](int64_t b, int64_t e) {
    double acc[kChanChunk];
    for (int64_t np = b; np < e; ++np) {
      const int64_t n = np / g.oh, p = np % g.oh;
      int64_t i0, i1;
      kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
      for (int64_t q = 0; q < g.ow; ++q) {
        int64_t j0, j1;
        kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
        const double inv = 1.0 / (double)kernels::avg_pool_count(i1 - i0, j1 - j0);
        if (np + 1 < e) prefetch_window(x, g, np + 1, q, j0, j1);
        for (int64_t c0 = 0; c0 < g.c; c0 += kChanChunk) {
          const int64_t cn = g.c - c0 < kChanChunk ? g.c - c0 : kChanChunk;
          for (int64_t c = 0; c < cn; ++c) acc[c] = 0.0;
          for (int64_t i = i0; i < i1; ++i)
            for (int64_t j = j0; j < j1; ++j)
              add_wide(acc, x + ((n * g.h + kernels::window_row(g, p, i)) * g.w + kernels::window_col(g, q, j)) * g.c + c0, cn);
          for (int64_t c = 0; c < cn; ++c) acc[c] *= inv;
          store_narrow(y + (np * g.ow + q) * g.c + c0, acc, cn);
        }
      }
    }
  });
}

// Windows that do not overlap (strides >= window): each image position is in one window at most,
// so an image row is written in one sweep: dy / count over the window's positions, 0 elsewhere.
// The one term is the double product narrowed once, as the general gather computes it.
template <class T>
void avg_pool_backward_disjoint(const T* dy, T* dx, const Window& g) {
  const int64_t rows = g.n * g.h;
  const int64_t grain = kGrainCheap / (g.w * g.c) + 1;
  parallel_ranges(rows, grain, 1, [&](int64_t b, int64_t e) {
    for (int64_t ny = b; ny < e; ++ny) {
      const int64_t n = ny / g.h, y = ny % g.h;
      T* row = dx + ny * g.w * g.c;
      const int64_t t = y + g.pad_top, p = t / g.sh;  // the one output row whose window may hold y
      if (t % g.sh >= g.kh || p >= g.oh) {
        memset(row, 0, (size_t)(g.w * g.c) * sizeof(T));
        continue;
      }
      int64_t i0, i1, next = 0;  // positions [0, next) of the row are written
      kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
      for (int64_t q = 0; q < g.ow; ++q) {
        int64_t j0, j1;
        const int64_t x0 = kernels::window_col(g, q, 0);
        kernels::taps_inside(x0, 1, g.kw, g.w, j0, j1);
        if (j1 <= j0) continue;
        const double inv = 1.0 / (double)kernels::avg_pool_count(i1 - i0, j1 - j0);
        const T* d = dy + ((n * g.oh + p) * g.ow + q) * g.c;
        memset(row + next * g.c, 0, (size_t)((x0 + j0 - next) * g.c) * sizeof(T));
        for (int64_t x = x0 + j0; x < x0 + j1; ++x)
          for (int64_t c = 0; c < g.c; ++c) row[x * g.c + c] = T((double)d[c] * inv);
        next = x0 + j1;
      }
      memset(row + next * g.c, 0, (size_t)((g.w - next) * g.c) * sizeof(T));
    }
  });
}

// The adjoint as a gather: each image position sums dy / count over the outputs whose window holds
// it, in window order (i, j), in double; threads over image rows.
template <class T>
void avg_pool_backward(const T* dy, T* dx, const Window& g) {
  const int64_t rows = g.n * g.h;
  if (g.c == 0 || g.w == 0) return;
  if (g.sh >= g.kh && g.sw >= g.kw) return avg_pool_backward_disjoint(dy, dx, g);
  const int64_t grain = kGrainCheap / (g.w * g.c * (g.kh * g.kw > 0 ? g.kh * g.kw : 1)) + 1;
  parallel_ranges(rows, grain, 1, [&](int64_t b, int64_t e) {
    double acc[kChanChunk];
    for (int64_t ny = b; ny < e; ++ny) {
      const int64_t n = ny / g.h, y = ny % g.h;
      for (int64_t xc = 0; xc < g.w; ++xc) {
        for (int64_t c0 = 0; c0 < g.c; c0 += kChanChunk) {
          const int64_t cn = g.c - c0 < kChanChunk ? g.c - c0 : kChanChunk;
          for (int64_t c = 0; c < cn; ++c) acc[c] = 0.0;
          for (int64_t i = 0; i < g.kh; ++i) {
            const int64_t p = kernels::output_of_tap(y, i, g.sh, 1, g.pad_top, g.oh);
            if (p < 0) continue;
            int64_t i0, i1;
            kernels::taps_inside(kernels::window_row(g, p, 0), 1, g.kh, g.h, i0, i1);
            for (int64_t j = 0; j < g.kw; ++j) {
              const int64_t q = kernels::output_of_tap(xc, j, g.sw, 1, g.pad_left, g.ow);
              if (q < 0) continue;
              int64_t j0, j1;
              kernels::taps_inside(kernels::window_col(g, q, 0), 1, g.kw, g.w, j0, j1);
              const double inv = 1.0 / (double)kernels::avg_pool_count(i1 - i0, j1 - j0);
              add_wide(acc, dy + ((n * g.oh + p) * g.ow + q) * g.c + c0, cn, inv);
            }
          }
          store_narrow(dx + (ny * g.w + xc) * g.c + c0, acc, cn);
        }
      }
    }
  });
}

// ---- Embedding ---------------------------------------------------------------------------------------------------
// Token t belongs to bag t / steps. The gradient: dw[v] = the sum of scale[bag] dy[bag] over the
// tokens with ids[t] == v, in token order, in double (the plain Embedding: steps 1, scale null (1), dy
// a row per token). Tokens with id `ignore` (-1: none) are left out, so that row is written 0. The
// tokens are grouped by id first (a stable counting sort, into `order` (tokens) and `start` (vocab +
// 1) from the caller), then threads over vocabulary rows gather their tokens: every row written once,
// the same bits whatever the thread count. ids: checked in [0, vocab) by the caller.
template <class T>
void embedding_backward(const int64_t* ids, const T* dy, const T* scale, T* dw, int64_t tokens, int64_t steps,
                        int64_t vocab, int64_t dim, int64_t ignore, int64_t* order, int64_t* start) {
  if (dim == 0) return;
  for (int64_t v = 0; v <= vocab; ++v) start[v] = 0;
  for (int64_t t = 0; t < tokens; ++t)
    if (ids[t] != ignore) ++start[ids[t] + 1];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  for (int64_t t = 0; t < tokens; ++t)
    if (ids[t] != ignore) order[start[ids[t]]++] = t;  // start[v] moves to start[v + 1]
  for (int64_t v = vocab; v > 0; --v) start[v] = start[v - 1];
  start[0] = 0;
  const int64_t grain = kGrainCheap / dim + 1;
  parallel_ranges(vocab, grain, 1, [&](int64_t b, int64_t e) {
    double acc[kChanChunk];
    for (int64_t v = b; v < e; ++v)
      for (int64_t d0 = 0; d0 < dim; d0 += kChanChunk) {
        const int64_t dn = dim - d0 < kChanChunk ? dim - d0 : kChanChunk;
        for (int64_t d = 0; d < dn; ++d) acc[d] = 0.0;
        for (int64_t k = start[v]; k < start[v + 1]; ++k) {
          const int64_t bag = order[k] / steps;
          add_wide(acc, dy + bag * dim + d0, dn, scale ? (double)scale[bag] : 1.0);
        }
        store_narrow(dw + v * dim + d0, acc, dn);
      }
  });
}

// Embedding then a mean over the steps, fused: out[b] = scale[b] * the sum of table[ids[b steps + s]]
// over the steps with an id other than `ignore`, in double; threads over bags.
template <class T>
void embedding_bag(const int64_t* ids, const T* table, const T* scale, T* out, int64_t bags, int64_t steps,
                   int64_t dim, int64_t ignore) {
  if (dim == 0) return;
  const int64_t grain = kGrainCheap / (steps * dim + 1) + 1;
  parallel_ranges(bags, grain, 1, [&](int64_t b, int64_t e) {
    double acc[kChanChunk];
    for (int64_t bag = b; bag < e; ++bag)
      for (int64_t d0 = 0; d0 < dim; d0 += kChanChunk) {
        const int64_t dn = dim - d0 < kChanChunk ? dim - d0 : kChanChunk;
        for (int64_t d = 0; d < dn; ++d) acc[d] = 0.0;
        for (int64_t s = 0; s < steps; ++s) {
          const int64_t id = ids[bag * steps + s];
          if (id != ignore) add_wide(acc, table + id * dim + d0, dn);
        }
        const double k = (double)scale[bag];
        for (int64_t d = 0; d < dn; ++d) acc[d] *= k;
        store_narrow(out + bag * dim + d0, acc, dn);
      }
  });
}
