#include "moddit/tensor.hpp"

#include <algorithm>
#include <cstring>

#include "moddit/error.hpp"

namespace moddit {

const char* to_string(DType d) {
  switch (d) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::F16: return "f16";
  }
  return "?";
}
const char* to_string(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }
const char* to_string(Layout l) { return l == Layout::NHD ? "NHD" : "HND"; }

DType dtype_from_string(const std::string& s) {
  if (s == "f32" || s == "float32" || s == "F32") return DType::F32;
  if (s == "bf16" || s == "bfloat16" || s == "BF16") return DType::BF16;
  if (s == "f16" || s == "float16" || s == "F16") return DType::F16;
  throw Error("unknown dtype '" + s + "' (expected f32, bf16 or f16)");
}
Layout layout_from_string(const std::string& s) {
  if (s == "NHD" || s == "nhd") return Layout::NHD;
  if (s == "HND" || s == "hnd") return Layout::HND;
  throw Error("unknown layout '" + s + "' (expected NHD or HND)");
}
int64_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

TensorView make_view(void* data, DType dtype, Layout layout, int64_t B, int64_t N, int64_t H,
                     int64_t D, Device device, int device_index) {
  TensorView t;
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.device_index = device_index;
  t.shape[kB] = B;
  t.shape[kN] = N;
  t.shape[kH] = H;
  t.shape[kD] = D;
  t.stride[kD] = 1;
  if (layout == Layout::NHD) {
    t.stride[kH] = D;
    t.stride[kN] = H * D;
    t.stride[kB] = N * H * D;
  } else {
    t.stride[kN] = D;
    t.stride[kH] = N * D;
    t.stride[kB] = H * N * D;
  }
  return t;
}

void validate_view(const TensorView& t, const char* what) {
  MODDIT_CHECK(t.data != nullptr, what, ": null data pointer");
  for (int a = 0; a < 4; ++a)
    MODDIT_CHECK(t.shape[a] > 0, what, ": shape [", t.shape[0], ", ", t.shape[1], ", ", t.shape[2],
                 ", ", t.shape[3], "] has a non-positive dimension (expected [B, N, H, D])");
  MODDIT_CHECK(t.stride[kD] == 1, what, ": head-dim stride is ", t.stride[kD],
               " (the innermost dimension D must be contiguous, stride 1)");
  for (int a = 0; a < 3; ++a)
    MODDIT_CHECK(t.stride[a] >= 0, what, ": negative stride ", t.stride[a], " on axis ",
                 "BNH"[a]);
  // Rows (b, n, h) must not overlap: sort the three outer axes by stride and
  // require each to step past the extent of the ones inside it.
  int order[3] = {0, 1, 2};
  std::sort(order, order + 3, [&](int a, int b) { return t.stride[a] < t.stride[b]; });
  int64_t extent = t.shape[kD];
  for (int i = 0; i < 3; ++i) {
    const int a = order[i];
    if (t.shape[a] == 1) continue;
    MODDIT_CHECK(t.stride[a] >= extent, what, ": strides [", t.stride[0], ", ", t.stride[1], ", ",
                 t.stride[2], ", ", t.stride[3], "] make rows overlap for shape [", t.shape[0],
                 ", ", t.shape[1], ", ", t.shape[2], ", ", t.shape[3], "]");
    extent = t.stride[a] * t.shape[a];
  }
}

float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      man &= 0x3ffu;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return sign | 0x7e00u;  // NaN
  if (absu >= 0x477ff000u) return sign | 0x7c00u;  // overflow -> inf (rounds past 65504)
  if (absu < 0x38800000u) {                        // subnormal or zero in f16
    if (absu < 0x33000000u) return sign;
    // value = man * 2^(exp - 150); the f16 subnormal unit is 2^-24.
    const uint32_t exp = absu >> 23;
    const uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    const int shift = 126 - int(exp);  // 14..24
    const uint32_t rem = man & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t result = man >> shift;
    if (rem > half || (rem == half && (result & 1u))) ++result;
    return sign | uint16_t(result);
  }
  uint32_t v = absu + 0xc8000fffu + ((absu >> 13) & 1u);  // rebias (-112 << 23) and round
  return sign | uint16_t(v >> 13);
}

void load_row_f32(const TensorView& t, int64_t b, int64_t n, int64_t h, float* dst) {
  const int64_t D = t.shape[kD];
  const int64_t off = t.offset(b, n, h);
  switch (t.dtype) {
    case DType::F32: {
      const float* p = static_cast<const float*>(t.data) + off;
      std::copy(p, p + D, dst);
      break;
    }
    case DType::BF16: {
      const uint16_t* p = static_cast<const uint16_t*>(t.data) + off;
      for (int64_t d = 0; d < D; ++d) dst[d] = bf16_to_f32(p[d]);
      break;
    }
    case DType::F16: {
      const uint16_t* p = static_cast<const uint16_t*>(t.data) + off;
      for (int64_t d = 0; d < D; ++d) dst[d] = f16_to_f32(p[d]);
      break;
    }
  }
}

void store_row_f32(const TensorView& t, int64_t b, int64_t n, int64_t h, const float* src) {
  const int64_t D = t.shape[kD];
  const int64_t off = t.offset(b, n, h);
  switch (t.dtype) {
    case DType::F32: {
      float* p = static_cast<float*>(t.data) + off;
      std::copy(src, src + D, p);
      break;
    }
    case DType::BF16: {
      uint16_t* p = static_cast<uint16_t*>(t.data) + off;
      for (int64_t d = 0; d < D; ++d) p[d] = f32_to_bf16(src[d]);
      break;
    }
    case DType::F16: {
      uint16_t* p = static_cast<uint16_t*>(t.data) + off;
      for (int64_t d = 0; d < D; ++d) p[d] = f32_to_f16(src[d]);
      break;
    }
  }
}

}  // namespace moddit
