#pragma once
// Shared helpers of the nanobind module `_moddit`: DLPack tensors -> moddit
// views, NumPy results that own their memory, and the bind_* entry points of
// each source file.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <vector>

#include "moddit/tensor.hpp"

namespace moddit::py {

namespace nb = nanobind;

// Any DLPack-capable tensor (PyTorch, NumPy, CuPy, JAX, ...), any dtype, shape,
// strides and device; checked by the converters below, never copied.
using AnyTensor = nb::ndarray<nb::ro>;
using AnyMutTensor = nb::ndarray<>;

// A 4-D [B, N, H, D] (layout NHD) or [B, H, N, D] (layout HND) tensor as a view.
// Refuses, with a message naming `what`, any other rank, a dtype other than
// float32/bfloat16/float16, or memory that is neither CPU nor CUDA.
TensorView tensor_view(const AnyTensor& t, Layout layout, const char* what);
TensorView tensor_view(const AnyMutTensor& t, Layout layout, const char* what);

// Where a DLPack tensor lives (CPU or CUDA + index); refuses other devices.
struct DeviceRef {
  Device device = Device::CPU;
  int index = 0;
};
DeviceRef tensor_device(const AnyMutTensor& t, const char* what);

// Checks a contiguous optional output buffer (LSE float32, map int32) and returns
// its pointer: exact shape, dtype, C-contiguous, same device as `dev`.
float* lse_buffer(const AnyMutTensor& t, const std::vector<int64_t>& shape, DeviceRef dev);
int32_t* map_buffer(const AnyMutTensor& t, const std::vector<int64_t>& shape, DeviceRef dev);

// A NumPy array that owns `values` (moved into a capsule).
template <typename T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T> values, std::vector<size_t> shape) {
  auto* heap = new std::vector<T>(std::move(values));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape.size(), shape.data(), owner);
}

void bind_layout(nb::module_& m);
void bind_backend(nb::module_& m);
void bind_policy(nb::module_& m);
void bind_session(nb::module_& m);
void bind_vdit(nb::module_& m);
void bind_trajectory(nb::module_& m);
void bind_eval(nb::module_& m);
void bind_quality(nb::module_& m);

}  // namespace moddit::py
