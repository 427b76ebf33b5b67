#pragma once
// An owning host tensor [B, N, H, D], contiguous in NHD order. Used by the CPU
// path, the trajectory I/O and the tests; kernels only ever see TensorViews.
#include <cstdint>
#include <string>
#include <vector>

#include "moddit/tensor.hpp"

namespace moddit {

struct HostTensor {
  DType dtype = DType::F32;
  int64_t shape[4] = {0, 0, 0, 0};  // B, N, H, D
  std::vector<uint8_t> bytes;

  HostTensor() = default;
  HostTensor(DType dtype, int64_t B, int64_t N, int64_t H, int64_t D);
  int64_t numel() const { return shape[0] * shape[1] * shape[2] * shape[3]; }
  TensorView view();
  TensorView view() const;  // const data, same view type
  float* f32() { return reinterpret_cast<float*>(bytes.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(bytes.data()); }
  // A copy converted to another dtype.
  HostTensor to(DType dtype) const;
};

// Index (row-major [B, N, H, D]) of the first NaN or Inf in `t`, or -1 when every
// value is finite. Inputs are checked with it where they are read: a NaN would
// otherwise make a norm NaN and a comparison on it fall through to "perfect".
int64_t find_non_finite(const HostTensor& t);
// Throws moddit::Error "<what>: non-finite value (NaN) at [b, n, h, d]" unless
// every value of `t` is finite.
void check_finite(const HostTensor& t, const std::string& what);

}  // namespace moddit
