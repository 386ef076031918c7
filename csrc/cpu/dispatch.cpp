#include "dispatch.h"

#include <omp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace fastdl {
namespace cpu {

#if !FASTDL_X86_ISAS
const KernelTable* avx2_table() { return nullptr; }
const KernelTable* avx512_table() { return nullptr; }
#endif

namespace {

// The last-level cache this CPU's cores share, from Linux's sysfs (the highest cache level of cpu0,
// "32768K"): sysconf reads CPUID, which in some virtual machines reports the host's whole L3 (384 MB
// on a 2-core EPYC guest whose cores share 32 MB), and then no output was ever streamed.
long sysfs_last_level_cache() {
  long best = 0;
  int best_level = 0;
  for (int index = 0; index < 8; ++index) {
    char path[96];
    snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
    FILE* f = fopen(path, "r");
    if (!f) break;
    int level = 0;
    const bool ok = fscanf(f, "%d", &level) == 1;
    fclose(f);
    snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
    f = fopen(path, "r");
    if (!f || !ok) {
      if (f) fclose(f);
      continue;
    }
    long size = 0;
    char unit = 0;
    const int got = fscanf(f, "%ld%c", &size, &unit);
    fclose(f);
    if (got < 1 || size <= 0) continue;
    if (got == 2 && (unit == 'K' || unit == 'k')) size <<= 10;
    else if (got == 2 && (unit == 'M' || unit == 'm')) size <<= 20;
    if (level >= best_level) best_level = level, best = size;
  }
  return best;
}

int64_t half_last_level_cache() {
  long bytes = sysfs_last_level_cache();
  if (bytes > 0) return bytes / 2;
#if defined(_SC_LEVEL3_CACHE_SIZE)
  bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (bytes <= 0) bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return bytes > 0 ? bytes / 2 : int64_t(8) << 20;
}

}  // namespace

// At most 64 blocks of at least 16 rows: the partial sums of a block cover many rows, and the
// blocks are enough to keep every core busy.
int64_t norm_block_rows(int64_t rows) {
  int64_t br = (rows + 63) / 64;
  return br < 16 ? 16 : br;
}

// Each block: six columns' worth of doubles (sums in double, their float lanes, a shift), and six
// more for the per-column factors of a final sweep.
int64_t norm_work_doubles(int64_t rows, int64_t cols) {
  const int64_t blocks = rows > 0 ? (rows + norm_block_rows(rows) - 1) / norm_block_rows(rows) : 0;
  return (blocks + 1) * (6 * cols + 64);  // csrc/cpu/layers.h: slot_doubles
}

int64_t stream_threshold_bytes = half_last_level_cache();
int thread_limit = omp_get_max_threads();  // OMP_NUM_THREADS, or one per core

namespace {

bool cpu_has(const std::string& isa) {
#if FASTDL_X86_ISAS && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
  return isa == "baseline";
}

const KernelTable* table_for(const std::string& isa) {
  if (!cpu_has(isa)) return nullptr;
  if (isa == "avx512") return avx512_table();
  if (isa == "avx2") return avx2_table();
  if (isa == "baseline") return baseline_table();
  return nullptr;
}

const KernelTable* initial_table() {
  const char* forced = std::getenv("FASTDL_SIMD");
  if (forced && *forced)
    if (const KernelTable* t = table_for(forced)) return t;
  std::vector<std::string> isas = supported_isas();
  return table_for(isas.back());
}

std::atomic<const KernelTable*> current{nullptr};

}  // namespace

std::vector<std::string> supported_isas() {
  std::vector<std::string> out;
  for (const char* isa : {"baseline", "avx2", "avx512"})
    if (table_for(isa)) out.push_back(isa);
  return out;
}

const KernelTable& kernels() {
  const KernelTable* t = current.load(std::memory_order_acquire);
  if (!t) {  // first use happens at import (module.cpp), with the GIL held
    t = initial_table();
    current.store(t, std::memory_order_release);
  }
  return *t;
}

bool select_isa(const std::string& isa) {
  const KernelTable* t = table_for(isa);
  if (t) current.store(t, std::memory_order_release);
  return t != nullptr;
}

}  // namespace cpu
}  // namespace fastdl
