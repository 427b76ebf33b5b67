// Backends and the one-call attention function (dense or block-sparse, with the
// row LSE and the exact sparsity-map counts as optional outputs).
#include <nanobind/stl/optional.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"
#include "py_common.hpp"

namespace moddit::py {

namespace {

void attention(Backend& backend, const AnyTensor& q, const AnyTensor& k, const AnyTensor& v,
               const AnyMutTensor& out, const TokenLayout& tokens, int block_size,
               float softmax_scale, const BlockLayout* layout,
               const std::optional<std::vector<int32_t>>& heads,
               const std::optional<AnyMutTensor>& lse, const std::optional<AnyMutTensor>& map_counts,
               float eta, const std::string& qkv_layout, uintptr_t stream,
               std::optional<int64_t> q_begin, std::optional<int64_t> k_begin,
               const std::string& precision, const std::string& map_statistic) {
  const Layout lay = layout_from_string(qkv_layout);
  AttentionCall call;
  call.q = tensor_view(q, lay, "q");
  call.k = tensor_view(k, lay, "k");
  call.v = tensor_view(v, lay, "v");
  call.out = tensor_view(out, lay, "out");
  MODDIT_CHECK(call.q.device == backend.device(), "q: a ", to_string(call.q.device),
               " tensor given to the ", backend.name(), " backend");
  call.tokens = &tokens;
  call.block_size = block_size;
  call.softmax_scale = softmax_scale;
  call.heads = heads ? &*heads : nullptr;
  call.layout = layout;
  call.eta = eta;
  call.chunk = q_begin.has_value() || k_begin.has_value();  // a chunk call (ring attention)
  call.q_begin = q_begin.value_or(0);
  call.k_begin = k_begin.value_or(0);
  call.precision = precision_from_string(precision);
  call.map_statistic = map_statistic_from_string(map_statistic);
  const DeviceRef dev{call.q.device, call.q.device_index};
  const int64_t B = call.q.batch(), H = call.q.heads(), N = call.q.seq_len();
  if (lse) call.lse = lse_buffer(*lse, {B, H, N}, dev);
  if (map_counts) {
    const BlockGrid grid = make_block_grid(tokens, block_size);
    const int64_t n = grid.num_video_blocks;
    call.map_counts = map_buffer(*map_counts, {B, H, n, n}, dev);
  }
  nb::gil_scoped_release release;
  backend.set_stream(reinterpret_cast<void*>(stream));
  backend.attention(call);
}

}  // namespace

void bind_backend(nb::module_& m) {
  nb::class_<Backend>(m, "Backend", "A compute backend (the CPU reference or CUDA).")
      .def_prop_ro("name", &Backend::name)
      .def_prop_ro("device", &Backend::device)
      .def_prop_ro("launches", &Backend::launches,
                   "Kernel launches (CPU: attention invocations) so far.")
      .def("synchronize", &Backend::synchronize, nb::call_guard<nb::gil_scoped_release>())
      .def(
          "set_stream",
          [](Backend& b, uintptr_t stream) { b.set_stream(reinterpret_cast<void*>(stream)); },
          nb::arg("stream"), "cudaStream_t as an integer (0 = legacy default stream).")
      .def_prop_ro("stream",
                   [](const Backend& b) { return reinterpret_cast<uintptr_t>(b.stream()); })
      .def(
          "supports",
          [](const Backend& b, const std::string& precision) {
            return b.supports(precision_from_string(precision));
          },
          nb::arg("precision"),
          "Whether calls of this precision (\"exact\", \"fp8\") run here (the CPU emulates FP8; "
          "a GPU runs it on Hopper, with 128-token blocks).")
      .def("__repr__", [](const Backend& b) { return "<moddit Backend " + b.name() + ">"; });

  m.def("cpu_backend", &make_cpu_backend, nb::arg("threads") = 0,
        "The fp32 CPU reference backend (threads=0: all hardware threads).");
  m.def(
      "cuda_backend",
      [](int device_index, std::optional<bool> portable_kernel, std::optional<bool> group_rows_by_head,
         std::optional<bool> map_count_by_compare) {
        // Unset switches come from the environment, as in the C++ library and CLI.
        CudaOptions o = cuda_options_from_environment();
        if (portable_kernel) o.portable_kernel = *portable_kernel;
        if (group_rows_by_head) o.group_rows_by_head = *group_rows_by_head;
        if (map_count_by_compare) o.map_count_by_compare = *map_count_by_compare;
        return make_cuda_backend(device_index, o);
      },
      nb::arg("device_index") = 0, nb::kw_only(), nb::arg("portable_kernel") = nb::none(),
      nb::arg("group_rows_by_head") = nb::none(), nb::arg("map_count_by_compare") = nb::none(),
      "A new CUDA backend; raises moddit.Error without CUDA. The switches are "
      "CudaOptions' (docs/CONFIG.md); one left unset takes its environment variable "
      "(MODDIT_CUDA_KERNEL, MODDIT_CUDA_ORDER, MODDIT_CUDA_MAP_COUNT) or the default. "
      "get_backend('cuda') leaves all of them unset.");
  m.def("cuda_available", &cuda_available);
  m.def(
      "check_cpu_threads", [](int64_t threads) { check_thread_count(threads, "set_cpu_threads"); },
      nb::arg("threads"), "Raises moddit.Error unless `threads` is a usable CPU thread count.");

  m.def("attention", &attention, nb::arg("backend"), nb::arg("q"), nb::arg("k"), nb::arg("v"),
        nb::arg("out"), nb::arg("tokens"), nb::arg("block_size") = 128,
        nb::arg("softmax_scale") = 0.f, nb::arg("layout").none() = nb::none(),
        nb::arg("heads").none() = nb::none(), nb::arg("lse").none() = nb::none(),
        nb::arg("map_counts").none() = nb::none(), nb::arg("eta") = 1e-4f,
        nb::arg("qkv_layout") = "NHD", nb::arg("stream") = 0,
        nb::arg("q_begin").none() = nb::none(), nb::arg("k_begin").none() = nb::none(),
        nb::arg("precision") = "exact", nb::arg("map_statistic") = "eq2",
        "Low-level: one attention call into preallocated outputs (see moddit.attention).");
}

}  // namespace moddit::py
