#include "moddit/host_tensor.hpp"

#include <cmath>
#include <cstring>

#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

HostTensor::HostTensor(DType dt, int64_t B, int64_t N, int64_t H, int64_t D) : dtype(dt) {
  MODDIT_CHECK(B > 0 && N > 0 && H > 0 && D > 0, "HostTensor: non-positive shape [", B, ", ", N,
               ", ", H, ", ", D, "]");
  shape[0] = B;
  shape[1] = N;
  shape[2] = H;
  shape[3] = D;
  const int64_t n = checked_product({B, N, H, D, dtype_size(dt)}, INT64_MAX,
                                    "HostTensor: bytes of [B, N, H, D]");
  check_fits_in_memory(uint64_t(n), "HostTensor [" + std::to_string(B) + ", " + std::to_string(N) +
                                        ", " + std::to_string(H) + ", " + std::to_string(D) + "]");
  bytes.resize(static_cast<size_t>(n));
}

TensorView HostTensor::view() {
  return make_view(bytes.data(), dtype, Layout::NHD, shape[0], shape[1], shape[2], shape[3]);
}
TensorView HostTensor::view() const {
  return make_view(const_cast<uint8_t*>(bytes.data()), dtype, Layout::NHD, shape[0], shape[1],
                   shape[2], shape[3]);
}

int64_t find_non_finite(const HostTensor& t) {
  const int64_t n = t.numel();
  if (t.dtype == DType::F32) {
    const uint32_t* p = reinterpret_cast<const uint32_t*>(t.bytes.data());
    for (int64_t i = 0; i < n; ++i)
      if ((p[i] & 0x7f800000u) == 0x7f800000u) return i;  // exponent all ones: Inf or NaN
    return -1;
  }
  // bf16: 8 exponent bits as in f32; f16: 5.
  const uint16_t mask = t.dtype == DType::BF16 ? 0x7f80u : 0x7c00u;
  const uint16_t* p = reinterpret_cast<const uint16_t*>(t.bytes.data());
  for (int64_t i = 0; i < n; ++i)
    if ((p[i] & mask) == mask) return i;
  return -1;
}

void check_finite(const HostTensor& t, const std::string& what) {
  const int64_t i = find_non_finite(t);
  if (i < 0) return;
  const int64_t D = t.shape[3], H = t.shape[2], N = t.shape[1];
  float x = 0.f;
  if (t.dtype == DType::F32) x = t.f32()[i];
  else {
    uint16_t h;
    std::memcpy(&h, t.bytes.data() + 2 * i, 2);
    x = t.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  }
  throw Error(detail::concat(what, ": non-finite value (", std::isnan(x) ? "NaN" : "Inf", ") at [",
                             i / (D * H * N), ", ", i / (D * H) % N, ", ", i / D % H, ", ", i % D,
                             "] of [B, N, H, D]; moddit refuses to score non-finite inputs"));
}

HostTensor HostTensor::to(DType dt) const {
  HostTensor out(dt, shape[0], shape[1], shape[2], shape[3]);
  const TensorView src = view();
  const TensorView dst = out.view();
  std::vector<float> row(static_cast<size_t>(shape[3]));
  for (int64_t b = 0; b < shape[0]; ++b)
    for (int64_t n = 0; n < shape[1]; ++n)
      for (int64_t h = 0; h < shape[2]; ++h) {
        load_row_f32(src, b, n, h, row.data());
        store_row_f32(dst, b, n, h, row.data());
      }
  return out;
}

}  // namespace moddit
