#include "moddit/host_tensor.hpp"

#include "moddit/error.hpp"

namespace moddit {

HostTensor::HostTensor(DType dt, int64_t B, int64_t N, int64_t H, int64_t D) : dtype(dt) {
  MODDIT_CHECK(B > 0 && N > 0 && H > 0 && D > 0, "HostTensor: non-positive shape [", B, ", ", N,
               ", ", H, ", ", D, "]");
  shape[0] = B;
  shape[1] = N;
  shape[2] = H;
  shape[3] = D;
  bytes.resize(static_cast<size_t>(numel() * dtype_size(dt)));
}

TensorView HostTensor::view() {
  return make_view(bytes.data(), dtype, Layout::NHD, shape[0], shape[1], shape[2], shape[3]);
}
TensorView HostTensor::view() const {
  return make_view(const_cast<uint8_t*>(bytes.data()), dtype, Layout::NHD, shape[0], shape[1],
                   shape[2], shape[3]);
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
