#pragma once
// fp32 -> e4m3 conversion on the GPU (round to nearest even, saturating to
// +-448: the rule fp8::round_e4m3 emulates on the host), four values per register
// in increasing byte order (the byte order of wgmma's 8-bit operands).
#include <cstdint>

namespace moddit::cuda {

__device__ __forceinline__ uint32_t pack_e4m3x4(float a, float b, float c, float d) {
  uint32_t r;
  // cvt.e4m3x2 d, x, y puts x in the upper byte and y in the lower one.
  asm("{\n.reg .b16 lo, hi;\n"
      "cvt.rn.satfinite.e4m3x2.f32 lo, %2, %1;\n"
      "cvt.rn.satfinite.e4m3x2.f32 hi, %4, %3;\n"
      "mov.b32 %0, {lo, hi};\n}\n"
      : "=r"(r)
      : "f"(a), "f"(b), "f"(c), "f"(d));
  return r;
}

}  // namespace moddit::cuda
