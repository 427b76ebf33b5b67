// DLPack tensors -> moddit::TensorView, without copies.
#include <string>

#include "moddit/error.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

std::string dtype_name(nb::dlpack::dtype d) {
  const char* code = "?";
  switch (static_cast<nb::dlpack::dtype_code>(d.code)) {
    case nb::dlpack::dtype_code::Int: code = "int"; break;
    case nb::dlpack::dtype_code::UInt: code = "uint"; break;
    case nb::dlpack::dtype_code::Float: code = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: code = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: code = "complex"; break;
    case nb::dlpack::dtype_code::Bool: code = "bool"; break;
  }
  return std::string(code) + std::to_string(d.bits);
}

DType to_dtype(nb::dlpack::dtype d, const char* what) {
  using C = nb::dlpack::dtype_code;
  if (d.lanes == 1) {
    if (d.code == uint8_t(C::Float) && d.bits == 32) return DType::F32;
    if (d.code == uint8_t(C::Bfloat) && d.bits == 16) return DType::BF16;
    if (d.code == uint8_t(C::Float) && d.bits == 16) return DType::F16;
  }
  throw Error(detail::concat(what, ": dtype ", dtype_name(d),
                             " is not supported (moddit takes float32, bfloat16 or float16)"));
}

DeviceRef to_device(int32_t type, int32_t id, const char* what) {
  if (type == nb::device::cpu::value || type == nb::device::cuda_host::value)
    return {Device::CPU, 0};
  if (type == nb::device::cuda::value || type == nb::device::cuda_managed::value)
    return {Device::CUDA, id};
  throw Error(detail::concat(what, ": DLPack device type ", type,
                             " is not supported (moddit takes CPU or CUDA tensors)"));
}

template <typename Array>
TensorView make(const Array& t, Layout layout, const char* what) {
  MODDIT_CHECK(t.ndim() == 4, what, ": expected a 4-D tensor ",
               layout == Layout::NHD ? "[B, N, H, D]" : "[B, H, N, D]", ", got ", t.ndim(),
               "-D");
  TensorView v;
  v.data = const_cast<void*>(static_cast<const void*>(t.data()));
  v.dtype = to_dtype(t.dtype(), what);
  const DeviceRef dev = to_device(t.device_type(), t.device_id(), what);
  v.device = dev.device;
  v.device_index = dev.index;
  // Array axis of each logical axis B, N, H, D.
  const int axis[4] = {0, layout == Layout::NHD ? 1 : 2, layout == Layout::NHD ? 2 : 1, 3};
  for (int a = 0; a < 4; ++a) {
    v.shape[a] = static_cast<int64_t>(t.shape(axis[a]));
    v.stride[a] = static_cast<int64_t>(t.stride(axis[a]));
  }
  // A size-1 head dim may carry any stride; the kernels only need unit steps.
  if (v.shape[kD] == 1) v.stride[kD] = 1;
  validate_view(v, what);
  return v;
}

template <typename T>
T* buffer(const AnyMutTensor& t, const std::vector<int64_t>& shape, DeviceRef dev,
          nb::dlpack::dtype want, const char* what, const char* dtype_label) {
  MODDIT_CHECK(t.ndim() == shape.size(), what, ": expected ", shape.size(), "-D, got ", t.ndim(),
               "-D");
  int64_t expect_stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    MODDIT_CHECK(int64_t(t.shape(i)) == shape[i], what, ": dimension ", i, " is ", t.shape(i),
                 ", expected ", shape[i]);
    MODDIT_CHECK(shape[i] == 1 || t.stride(i) == expect_stride, what,
                 ": must be C-contiguous");
    expect_stride *= shape[i];
  }
  MODDIT_CHECK(t.dtype() == want, what, ": dtype ", dtype_name(t.dtype()), ", expected ",
               dtype_label);
  const DeviceRef d = to_device(t.device_type(), t.device_id(), what);
  MODDIT_CHECK(d.device == dev.device && d.index == dev.index, what,
               ": must be on the same device as q");
  return static_cast<T*>(t.data());
}

}  // namespace

TensorView tensor_view(const AnyTensor& t, Layout layout, const char* what) {
  return make(t, layout, what);
}
TensorView tensor_view(const AnyMutTensor& t, Layout layout, const char* what) {
  return make(t, layout, what);
}

DeviceRef tensor_device(const AnyMutTensor& t, const char* what) {
  return to_device(t.device_type(), t.device_id(), what);
}

float* lse_buffer(const AnyMutTensor& t, const std::vector<int64_t>& shape, DeviceRef dev) {
  return buffer<float>(t, shape, dev, nb::dtype<float>(), "lse", "float32");
}
int32_t* map_buffer(const AnyMutTensor& t, const std::vector<int64_t>& shape, DeviceRef dev) {
  return buffer<int32_t>(t, shape, dev, nb::dtype<int32_t>(), "map_counts", "int32");
}

}  // namespace moddit::py
