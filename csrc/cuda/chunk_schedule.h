// How a multi-tensor step is cut into kernel launches (plain C++: the launchers and the glue's
// _chunk_schedule, which the tests call without a GPU, use this one function).
//
// Each tensor is cut into chunks of `chunk` elements (the last one shorter); one thread block
// updates one chunk. A launch carries, as kernel arguments, a table of the tensors it touches and
// a block -> (table slot, chunk) map, so it holds at most max_tensors distinct tensors and
// max_blocks chunks. Tensors are taken in order and a long tensor continues in the next launch
// (it then has a slot in both). Empty tensors get no chunk.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fastdl {
namespace cuda {

// The defaults every launcher uses. 256 tensors and 2560 blocks keep Adam's argument table
// (five addresses, a size and two scalars per tensor, six bytes per block) under CUDA's
// 32,764-byte kernel-parameter limit (static_asserts in multi_tensor.cuh).
constexpr int64_t kDefaultChunk = 65536;
constexpr int64_t kMaxTensorsPerLaunch = 256;
constexpr int64_t kMaxBlocksPerLaunch = 2560;

struct ChunkRange {
  int64_t tensor, begin, end;  // elements [begin, end) of tensor `tensor`
};
using LaunchChunks = std::vector<ChunkRange>;

inline std::vector<LaunchChunks> chunk_schedule(const int64_t* sizes, int64_t count, int64_t max_tensors,
                                                int64_t max_blocks, int64_t chunk) {
  if (max_tensors < 1 || max_blocks < 1 || chunk < 1)
    throw std::invalid_argument("chunk_schedule: max_tensors, max_blocks and chunk must be >= 1");
  std::vector<LaunchChunks> launches;
  LaunchChunks cur;
  int64_t tensors_in_cur = 0;
  for (int64_t k = 0; k < count; ++k) {
    const int64_t n = sizes[k];
    if (n < 0) throw std::invalid_argument("chunk_schedule: sizes[" + std::to_string(k) + "] is negative");
    bool in_cur = false;  // whether tensor k already has a slot in the current launch
    for (int64_t b = 0; b < n; b += chunk) {
      if (static_cast<int64_t>(cur.size()) == max_blocks || (!in_cur && tensors_in_cur == max_tensors)) {
        launches.push_back(std::move(cur));
        cur.clear();
        tensors_in_cur = 0;
        in_cur = false;
      }
      if (!in_cur) {
        ++tensors_in_cur;
        in_cur = true;
      }
      cur.push_back({k, b, n - b > chunk ? b + chunk : n});
    }
  }
  if (!cur.empty()) launches.push_back(std::move(cur));
  return launches;
}

}  // namespace cuda
}  // namespace fastdl
