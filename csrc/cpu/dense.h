// The element-wise work around a Dense layer's matmul: bias + activation forward, activation
// backward + bias gradient, each one pass over the (rows, cols) activations. Formulas:
// csrc/kernels/activations.h. Included inside the per-ISA namespace.
#pragma once

// y = act(z + b); pre = z + b when pre is not null. Rows are split across threads.
template <class T>
void bias_activation(Activation op, const T* z, const T* b, T* pre, T* y, int64_t rows, int64_t cols, double alpha) {
  if (!b) {
    if (pre && pre != z) map(kernels::Identity{}, kGrainCheap, pre, rows * cols, z);
    return activation(op, z, y, rows * cols, alpha);
  }
  visit_activation<T>(op, alpha, [&](auto fwd, auto, int64_t grain) {
    int64_t row_grain = grain / (cols > 0 ? cols : 1);
    parallel_ranges(rows, row_grain > 0 ? row_grain : 1, 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* zr = z + r * cols;
        T* yr = y + r * cols;
        if (pre) {
          T* pr = pre + r * cols;
          map_range([](Vec<T> zv, Vec<T> bv) { return zv + bv; }, pr, 0, cols, false, zr, b);
          map_range(fwd, yr, 0, cols, false, (const T*)pr);
        } else {
          map_range([&](Vec<T> zv, Vec<T> bv) { return fwd(zv + bv); }, yr, 0, cols, false, zr, b);
        }
      }
    });
  });
}

// dz = act'(saved) g, and db = sum over rows of dz. Threads own column slices, and each column
// is summed over the rows in row order, so db has the same bits whatever the thread count.
// Column sums run in float lanes moved into a double every 64 rows (see LaneSum).
template <class T>
void bias_activation_backward(Activation op, const T* g, const T* s, T* dz, T* db, int64_t rows, int64_t cols,
                              double alpha) {
  if (!db) return activation_backward(op, g, s, dz, rows * cols, alpha);
  constexpr int64_t W = Vec<T>::lanes;
  constexpr int64_t kChunk = 512;  // columns per pass: their sums stay on the stack
  visit_activation<T>(op, alpha, [&](auto, auto bwd, int64_t) {
    int64_t col_grain = kGrainCheap / (rows > 0 ? rows : 1);
    parallel_ranges(cols, col_grain > W ? col_grain : W, W, [&](int64_t c0, int64_t c1) {
      for (int64_t cb = c0; cb < c1; cb += kChunk) {
        const int64_t ce = cb + kChunk < c1 ? cb + kChunk : c1, width = ce - cb;
        T lanes[kChunk];
        double totals[kChunk];
        for (int64_t j = 0; j < width; ++j) lanes[j] = T(0), totals[j] = 0.0;
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t o = r * cols + cb;
          map_range(bwd, dz + o, 0, width, false, g + o, s + o);
          for (int64_t j = 0; j < width; j += W) {  // lanes += dz row slice
            int64_t n = width - j < W ? width - j : W;
            Vec<T> acc = n == W ? Vec<T>::load(lanes + j) : Vec<T>::load_partial(lanes + j, n, T(0));
            acc = acc + (n == W ? Vec<T>::load(dz + o + j) : Vec<T>::load_partial(dz + o + j, n, T(0)));
            if (n == W) acc.store(lanes + j); else acc.store_partial(lanes + j, n);
          }
          if ((r + 1) % 64 == 0 || r + 1 == rows)
            for (int64_t j = 0; j < width; ++j) totals[j] += (double)lanes[j], lanes[j] = T(0);
        }
        for (int64_t j = 0; j < width; ++j) db[cb + j] = T(totals[j]);
      }
    });
  });
}
