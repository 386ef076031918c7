// Multi-tensor apply: one kernel launch updates many tensors. The launch's kernel argument (by
// value, so no copy to the device and no synchronisation) carries a table of the tensors it
// touches (their addresses, sizes and per-tensor scalars) and, per thread block, which table slot
// and which chunk of that tensor the block updates. chunk_schedule.h decides the cut.
#pragma once

#include <memory>
#include <vector>

#include "check.cuh"
#include "chunk_schedule.h"
#include "pieces.cuh"

#include "../common/tensor_list.h"

namespace fastdl {
namespace cuda {

constexpr int kMultiTensorThreads = 512;
// CUDA 13 (driver >= R580) accepts this many bytes of kernel parameters on every architecture
// the module is built for.
constexpr size_t kMaxKernelParamBytes = 32764;

static_assert(kDefaultChunk % 8 == 0, "chunks start on 16-byte boundaries for every dtype");
static_assert(kMaxTensorsPerLaunch <= 65536, "block_slot is 16 bits");

// kPtrs addresses per tensor (params, grads, state slots), its size, and Extra: its own scalars.
template <int kPtrs, class Extra>
struct TensorTable {
  void* ptr[kPtrs][kMaxTensorsPerLaunch];
  int64_t size[kMaxTensorsPerLaunch];
  Extra extra[kMaxTensorsPerLaunch];
  uint16_t block_slot[kMaxBlocksPerLaunch];   // block b updates tensor slot block_slot[b] ...
  uint32_t block_chunk[kMaxBlocksPerLaunch];  // ... elements from block_chunk[b] * chunk
};

// The element range [begin, end) block `blockIdx.x` owns, and its table slot.
struct BlockRange {
  int slot;
  int64_t begin, end;
};
template <class Table>
__device__ __forceinline__ BlockRange block_range(const Table& t, int64_t chunk) {
  const int slot = t.block_slot[blockIdx.x];
  const int64_t begin = (int64_t)t.block_chunk[blockIdx.x] * chunk, size = t.size[slot];
  return {slot, begin, size - begin < chunk ? size : begin + chunk};
}

// Cuts the list by chunk_schedule and, per launch, fills args.table (fill(args, slot, tensor) sets
// a slot's addresses and scalars) and calls launch(args, blocks, blocks_before): blocks_before
// counts the blocks of the earlier launches (for per-block outputs). Args is allocated once on
// the heap (it is ~32 KB) and reused.
template <class Args, class Fill, class Launch>
void for_each_launch(const TensorList<void>& list, std::unique_ptr<Args>& args, Fill fill, Launch launch) {
  static_assert(sizeof(Args) <= kMaxKernelParamBytes, "kernel arguments over CUDA's parameter limit");
  std::vector<int64_t> sizes(static_cast<size_t>(list.count));
  for (int64_t k = 0; k < list.count; ++k) sizes[k] = list.size(k);
  const std::vector<LaunchChunks> plan =
      chunk_schedule(sizes.data(), list.count, kMaxTensorsPerLaunch, kMaxBlocksPerLaunch, kDefaultChunk);
  int64_t blocks_before = 0;
  for (const LaunchChunks& chunks : plan) {
    int64_t slot = -1, last = -1;
    for (size_t b = 0; b < chunks.size(); ++b) {
      const ChunkRange& c = chunks[b];
      if (c.tensor != last) {
        last = c.tensor;
        ++slot;
        args->table.size[slot] = sizes[c.tensor];
        fill(*args, slot, c.tensor);
      }
      const int64_t index = c.begin / kDefaultChunk;
      require(index <= static_cast<int64_t>(UINT32_MAX), "multi-tensor step: a tensor is too large");
      args->table.block_slot[b] = static_cast<uint16_t>(slot);
      args->table.block_chunk[b] = static_cast<uint32_t>(index);
    }
    launch(*args, static_cast<int64_t>(chunks.size()), blocks_before);
    blocks_before += static_cast<int64_t>(chunks.size());
  }
}

// Total blocks of the schedule (one per chunk).
inline int64_t total_chunks(const TensorList<void>& list) {
  int64_t total = 0;
  for (int64_t k = 0; k < list.count; ++k) total += ceil_div(list.size(k), kDefaultChunk);
  return total;
}

}  // namespace cuda
}  // namespace fastdl
