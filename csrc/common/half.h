// 16-bit float storage on the CPU: bfloat16 and IEEE float16 as raw bits, converted to and from
// float with round-to-nearest-even (as torch's c10::BFloat16 / c10::Half do), NaN kept a NaN and
// overflow going to infinity. The kernels compute in float: a value is rounded once, when stored.
// (CUDA uses its own __nv_bfloat16 / __half, csrc/kernels/compute_type.h.)
#pragma once

#include <stdint.h>
#include <string.h>

#include "../kernels/common.h"

namespace fastdl {

FASTDL_FN float float_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
FASTDL_FN uint32_t bits_of_float(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// (Free FASTDL_FN functions, not members of a shared struct: the CPU module compiles this once per
// instruction set, and only static functions stay apart per copy; see kernels/common.h.)

// bfloat16: the top 16 bits of a float.
FASTDL_FN float bf16_to_float(uint16_t h) { return float_from_bits(uint32_t(h) << 16); }
FASTDL_FN uint16_t bf16_from_float(float f) {
  const uint32_t u = bits_of_float(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;  // nearest, ties to even
  const uint32_t quiet_nan = (u >> 16) | 0x40u;                      // NaN stays a (quiet) NaN
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);  // a select, not a branch
}

// float16: IEEE binary16, 1 sign, 5 exponent and 10 mantissa bits.
FASTDL_FN float f16_to_float(uint16_t h) {
  uint32_t o = uint32_t(h & 0x7fffu) << 13;  // exponent and mantissa into float's place
  const uint32_t exp = o & (0x7c00u << 13);
  o += uint32_t(127 - 15) << 23;  // rebias the exponent
  if (exp == (0x7c00u << 13)) {
    o += uint32_t(128 - 16) << 23;  // inf / NaN: exponent all ones
  } else if (exp == 0) {            // zero / subnormal: renormalise through float arithmetic (exact)
    o += 1u << 23;
    o = bits_of_float(float_from_bits(o) - float_from_bits(113u << 23));
  }
  return float_from_bits(o | (uint32_t(h & 0x8000u) << 16));
}

FASTDL_FN uint16_t f16_from_float(float f) {
  uint32_t u = bits_of_float(f);
  const uint32_t sign = u & 0x80000000u;
  u ^= sign;
  uint16_t o;
  if (u >= (255u << 23)) {  // inf, or NaN (made quiet)
    o = u > (255u << 23) ? 0x7e00 : 0x7c00;
  } else if (u >= 0x477ff000u) {  // >= 65520 rounds past the largest half, 65504: inf
    o = 0x7c00;
  } else if (u < (113u << 23)) {  // subnormal half or zero: float addition rounds to nearest even
    const float magic = float_from_bits(uint32_t((127 - 15) + (23 - 10) + 1) << 23);
    o = uint16_t(bits_of_float(float_from_bits(u) + magic) - bits_of_float(magic));
  } else {  // normal: rebias, then round the 13 dropped bits to nearest even
    const uint32_t odd = (u >> 13) & 1u;
    u += (uint32_t(15 - 127) << 23) + 0xfffu + odd;
    o = uint16_t(u >> 13);
  }
  return uint16_t(o | (sign >> 16));
}

}  // namespace fastdl
