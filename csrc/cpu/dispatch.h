// Choosing the CPU kernel table at run time.
#pragma once

#include <string>
#include <vector>

#include "kernel_table.h"

namespace fastdl {
namespace cpu {

// The table in use. Chosen on first use: the widest ISA this CPU supports, or the one named by
// the environment variable FASTDL_SIMD (baseline, avx2, avx512) if it is supported.
const KernelTable& kernels();

// ISAs this build contains and this CPU can run, narrowest first.
std::vector<std::string> supported_isas();

// Switches the table (for tests and benchmarks); false if `isa` is not supported here.
bool select_isa(const std::string& isa);

}  // namespace cpu
}  // namespace fastdl
