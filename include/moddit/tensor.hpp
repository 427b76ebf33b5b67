#pragma once
// Non-owning views of the 4-D attention tensors. Logical shape is always
// [B, N, H, D]; the layout ("NHD" as in diffusers/flash, or "HND") is only a
// matter of strides. The inner (D) stride must be 1.
#include <cstdint>
#include <string>

namespace moddit {

enum class DType : int32_t { F32 = 0, BF16 = 1, F16 = 2 };
enum class Device : int32_t { CPU = 0, CUDA = 1 };
enum class Layout : int32_t { NHD = 0, HND = 1 };

const char* to_string(DType);
const char* to_string(Device);
const char* to_string(Layout);
DType dtype_from_string(const std::string&);    // "f32"|"float32"|"bf16"|"bfloat16"|"f16"|"float16"
Layout layout_from_string(const std::string&);  // "NHD"|"HND"
int64_t dtype_size(DType);

// Axis order of shape[] and stride[].
enum Axis : int { kB = 0, kN = 1, kH = 2, kD = 3 };

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  int device_index = 0;
  int64_t shape[4] = {0, 0, 0, 0};   // B, N, H, D
  int64_t stride[4] = {0, 0, 0, 0};  // in elements, per axis B, N, H, D

  int64_t batch() const { return shape[kB]; }
  int64_t seq_len() const { return shape[kN]; }
  int64_t heads() const { return shape[kH]; }
  int64_t head_dim() const { return shape[kD]; }
  int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3]; }
  int64_t offset(int64_t b, int64_t n, int64_t h) const {
    return b * stride[kB] + n * stride[kN] + h * stride[kH];
  }
};

// A view over contiguous memory in the given layout (NHD: [B,N,H,D], HND: [B,H,N,D]).
TensorView make_view(void* data, DType dtype, Layout layout, int64_t B, int64_t N, int64_t H,
                     int64_t D, Device device = Device::CPU, int device_index = 0);

// Throws moddit::Error naming `what` ("q", "k", ...) if the view is unusable:
// null data, non-positive dims, inner stride != 1, negative strides, or
// overlapping rows.
void validate_view(const TensorView& t, const char* what);

// bf16/f16 <-> f32 scalar conversions (round to nearest even), shared by the CPU
// backend, the I/O code and the tests.
float bf16_to_f32(uint16_t);
uint16_t f32_to_bf16(float);
float f16_to_f32(uint16_t);
uint16_t f32_to_f16(float);

// Reads row (b, n, h) of a view into `dst` (D floats), whatever its dtype (CPU only).
void load_row_f32(const TensorView& t, int64_t b, int64_t n, int64_t h, float* dst);
// Writes D floats into row (b, n, h), converting to the view's dtype (CPU only).
void store_row_f32(const TensorView& t, int64_t b, int64_t n, int64_t h, const float* src);

}  // namespace moddit
