// The CUDA backend: validates a call before any launch, keeps device copies of
// the block grid, head subsets and layouts (cached by content, since a pipeline
// reuses them call after call), builds the longest-first schedule and launches
// the forward kernel and, when asked, the map pass.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "cuda/attention_launch.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"

namespace moddit {

namespace {

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

std::shared_ptr<void> device_alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<size_t>(bytes, 16)), "cudaMalloc");
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

// A device copy of a host int vector, kept while its content is unchanged.
struct DeviceInts {
  std::vector<int32_t> host;
  std::shared_ptr<void> dev;
  const int32_t* ptr() const { return static_cast<const int32_t*>(dev.get()); }
};

bool same(const std::vector<int32_t>& a, const int32_t* b, size_t n) {
  return a.size() == n && (n == 0 || std::memcmp(a.data(), b, n * sizeof(int32_t)) == 0);
}

// A small LRU of device copies keyed by content.
class IntCache {
 public:
  explicit IntCache(size_t capacity) : capacity_(capacity) {}
  const DeviceInts& get(const int32_t* data, size_t n) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (same(it->host, data, n)) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front();
      }
    DeviceInts d;
    d.host.assign(data, data + n);
    d.dev = device_alloc(n * sizeof(int32_t));
    if (n) check(cudaMemcpy(d.dev.get(), data, n * sizeof(int32_t), cudaMemcpyHostToDevice),
                 "upload");
    entries_.push_front(std::move(d));
    if (entries_.size() > capacity_) entries_.pop_back();
    return entries_.front();
  }

 private:
  size_t capacity_;
  std::list<DeviceInts> entries_;
};

// The schedule: work items (layout rows) longest first (cost = 64-key tiles), so
// that the last wave of the persistent CTAs is made of the shortest rows.
// `grouped` (MODDIT_CUDA_ORDER=grouped) keeps each (batch, head)'s rows together
// instead (heads by total cost, rows by cost within), for L2 locality of K/V; on
// H100 the two measured the same (docs/BENCHMARKS.md), so plain LPT is the default.
std::vector<int32_t> longest_first(const BlockLayout& l, const BlockGrid& grid, bool grouped) {
  const int64_t rows = l.rows();
  const int nb = l.num_q_blocks;
  std::vector<int32_t> tiles_of(grid.num_blocks());
  for (int b = 0; b < grid.num_blocks(); ++b) tiles_of[b] = (grid.block_len(b) + 63) / 64;
  std::vector<int32_t> cost(rows);
  const int64_t groups = grouped ? rows / nb : 1;
  std::vector<int64_t> group_cost(groups, 0);
  for (int64_t r = 0; r < rows; ++r) {
    int32_t c = 0;
    for (int32_t i = l.row_ptr[r]; i < l.row_ptr[r + 1]; ++i) c += tiles_of[l.col_idx[i]];
    cost[r] = c;
    group_cost[grouped ? r / nb : 0] += c;
  }
  std::vector<int32_t> group_order(groups);
  for (int64_t g = 0; g < groups; ++g) group_order[g] = static_cast<int32_t>(g);
  std::stable_sort(group_order.begin(), group_order.end(),
                   [&](int32_t a, int32_t b) { return group_cost[a] > group_cost[b]; });
  std::vector<int32_t> order;
  order.reserve(rows);
  for (int32_t g : group_order) {
    const size_t first = order.size();
    const int64_t len = grouped ? nb : rows;
    for (int64_t q = 0; q < len; ++q) order.push_back(static_cast<int32_t>(int64_t(g) * len + q));
    std::stable_sort(order.begin() + first, order.end(),
                     [&](int32_t a, int32_t b) { return cost[a] > cost[b]; });
  }
  return order;
}

bool is_device_pointer(const void* ptr, int device) {
  cudaPointerAttributes at{};
  if (cudaPointerGetAttributes(&at, ptr) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error of a host pointer
    return false;
  }
  return (at.type == cudaMemoryTypeDevice || at.type == cudaMemoryTypeManaged) &&
         at.device == device;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device), starts_(8), heads_(8) {
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    MODDIT_CHECK(device >= 0 && device < count, "cuda: device ", device, " not present (",
                 count, " devices)");
    check(cudaSetDevice(device), "cudaSetDevice");
    check(cudaGetDeviceProperties(&props_, device), "cudaGetDeviceProperties");
    MODDIT_CHECK(props_.major >= 8, "cuda: device ", props_.name, " is sm_", props_.major,
                 props_.minor, "; the attention kernels need sm80 or newer");
    counter_ = device_alloc(2 * sizeof(int));
  }

  std::string name() const override { return std::string("cuda:") + props_.name; }
  Device device() const override { return Device::CUDA; }
  int64_t launches() const override { return launches_; }

  void attention(const AttentionCall& call) override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    MODDIT_CHECK(props_.major >= 8, "cuda: the attention kernels need sm80 or newer");
    check_view(call.q, "q");
    check_view(call.k, "k");
    check_view(call.v, "v");
    check_view(call.out, "out");
    MODDIT_CHECK(call.tokens != nullptr, "attention: no token layout given");
    const BlockGrid grid = make_block_grid(*call.tokens, call.block_size);
    // prepare_params validates everything but the layout, which is checked (and
    // uploaded, and scheduled) once per distinct content by the layout cache.
    AttentionCall no_layout = call;
    no_layout.layout = nullptr;
    AttentionParams p = prepare_params(no_layout, grid);
    MODDIT_CHECK(call.lse == nullptr || is_device_pointer(call.lse, device_),
                 "attention: lse is not device memory of cuda:", device_);
    MODDIT_CHECK(call.map_counts == nullptr || is_device_pointer(call.map_counts, device_),
                 "attention: map_counts is not device memory of cuda:", device_);
    MODDIT_CHECK(int64_t(p.batch) * p.num_heads * p.seq_len < (int64_t(1) << 40),
                 "attention: tensors too large");

    p.block_starts = starts_.get(grid.starts.data(), grid.starts.size()).ptr();
    if (call.heads) p.heads = heads_.get(call.heads->data(), call.heads->size()).ptr();
    cuda::Schedule s;
    s.counter = static_cast<int*>(counter_.get());
    s.num_items = p.batch * p.num_sel_heads * p.num_blocks;
    s.wgmma = props_.major == 9 && use_wgmma_;
    if (call.layout) {
      const LayoutEntry& e = layout_entry(*call.layout, grid, p);
      p.layout_row_ptr = static_cast<const int32_t*>(e.row_ptr.get());
      p.layout_col_idx = static_cast<const int32_t*>(e.col_idx.get());
      s.order = static_cast<const int32_t*>(e.order.get());
    }

    float* lse_out = call.lse;
    if (call.map_counts && !lse_out) lse_out = scratch_lse(size_t(p.batch) * p.num_heads * p.seq_len);
    cuda::launch_forward(p, lse_out, s, props_.multiProcessorCount, stream_);
    ++launches_;
    if (call.map_counts && p.num_video_blocks > 0) {
      s.counter += 1;
      cuda::launch_map(p, lse_out, s, props_.multiProcessorCount, stream_);
      ++launches_;
    }
  }

  std::shared_ptr<void> allocate(size_t bytes) override {
    check(cudaSetDevice(device_), "cudaSetDevice");
    return device_alloc(bytes);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost), "copy to host");
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    check(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice), "copy from host");
  }
  void fill_i32(int32_t* dst, int32_t value, size_t count) override {
    MODDIT_CHECK(dst == nullptr || count == 0 || is_device_pointer(dst, device_),
                 "fill_i32: destination is not device memory of cuda:", device_);
    if (value == 0 || value == -1)
      check(cudaMemsetAsync(dst, value == 0 ? 0 : 0xff, count * sizeof(int32_t), stream_), "memset");
    else
      cuda::launch_fill_i32(dst, value, count, stream_);
  }
  void zero_heads(const TensorView& out, const std::vector<int32_t>& heads) override {
    if (heads.empty()) return;
    validate_view(out, "out");
    MODDIT_CHECK(out.device == Device::CUDA && is_device_pointer(out.data, device_),
                 "zero_heads: out is not device memory of cuda:", device_);
    for (size_t i = 0; i < heads.size(); ++i)
      MODDIT_CHECK(heads[i] >= 0 && heads[i] < out.heads(), "zero_heads: head ", heads[i],
                   " out of range [0, ", out.heads(), ")");
    const int64_t stride[3] = {out.stride[kB], out.stride[kN], out.stride[kH]};
    cuda::launch_zero_heads(out.data, stride, int(out.batch()), int(out.seq_len()),
                            int(out.head_dim()), heads_.get(heads.data(), heads.size()).ptr(),
                            int(heads.size()), int(dtype_size(out.dtype)), stream_);
    ++launches_;
  }
  void synchronize() override { check(cudaStreamSynchronize(stream_), "synchronize"); }

 private:
  void check_view(const TensorView& t, const char* what) const {
    validate_view(t, what);
    MODDIT_CHECK(t.device == Device::CUDA && t.device_index == device_, what,
                 ": not on cuda:", device_, " (", to_string(t.device), ")");
    MODDIT_CHECK(t.dtype == DType::BF16 || t.dtype == DType::F16, what, ": dtype ",
                 to_string(t.dtype), " not supported by the CUDA kernels (bf16, f16)");
    MODDIT_CHECK(t.head_dim() == 64 || t.head_dim() == 128, what, ": head dim ", t.head_dim(),
                 " not supported by the CUDA kernels (64, 128)");
    MODDIT_CHECK(reinterpret_cast<uintptr_t>(t.data) % 16 == 0, what,
                 ": data pointer not 16-byte aligned");
    for (int a = 0; a < 3; ++a)
      MODDIT_CHECK(t.stride[a] % 8 == 0 || t.shape[a] == 1, what, ": stride ", t.stride[a],
                   " of axis ", a, " is not a multiple of 8 elements (16 bytes)");
    MODDIT_CHECK(t.seq_len() < (int64_t(1) << 31), what, ": sequence too long");
    MODDIT_CHECK(is_device_pointer(t.data, device_), what, ": data is not device memory of cuda:",
                 device_);
  }
  // Device copies of a layout and its schedule, kept while the content repeats
  // (a pipeline reuses a layout for many calls). A hit costs one memcmp of the
  // host arrays; a miss validates, sorts and uploads.
  struct LayoutEntry {
    std::vector<int32_t> row_ptr_h, col_idx_h, starts_h;
    int batch = 0, heads = 0, blocks = 0;
    std::shared_ptr<void> row_ptr, col_idx, order;
  };
  const LayoutEntry& layout_entry(const BlockLayout& l, const BlockGrid& grid,
                                  const AttentionParams& p) {
    for (auto it = layout_cache_.begin(); it != layout_cache_.end(); ++it)
      if (it->batch == l.batch && it->heads == l.heads && it->blocks == l.num_q_blocks &&
          l.num_k_blocks == l.num_q_blocks && same(it->starts_h, grid.starts.data(), grid.starts.size()) &&
          same(it->row_ptr_h, l.row_ptr.data(), l.row_ptr.size()) &&
          same(it->col_idx_h, l.col_idx.data(), l.col_idx.size())) {
        layout_cache_.splice(layout_cache_.begin(), layout_cache_, it);
        return layout_cache_.front();
      }
    l.validate();
    MODDIT_CHECK(l.batch == p.batch && l.heads == p.num_sel_heads &&
                     l.num_q_blocks == p.num_blocks && l.num_k_blocks == p.num_blocks,
                 "attention: block layout is [batch ", l.batch, ", heads ", l.heads, ", ",
                 l.num_q_blocks, "x", l.num_k_blocks, "], the call needs [batch ", p.batch,
                 ", heads ", p.num_sel_heads, ", ", p.num_blocks, "x", p.num_blocks, "]");
    LayoutEntry e;
    e.row_ptr_h = l.row_ptr;
    e.col_idx_h = l.col_idx;
    e.starts_h = grid.starts;
    e.batch = l.batch;
    e.heads = l.heads;
    e.blocks = l.num_q_blocks;
    auto up = [](const std::vector<int32_t>& v) {
      auto d = device_alloc(v.size() * sizeof(int32_t));
      if (!v.empty())
        check(cudaMemcpy(d.get(), v.data(), v.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
              "upload layout");
      return d;
    };
    e.row_ptr = up(l.row_ptr);
    e.col_idx = up(l.col_idx);
    e.order = up(longest_first(l, grid, grouped_order_));
    layout_cache_.push_front(std::move(e));
    if (layout_cache_.size() > 8) layout_cache_.pop_back();
    return layout_cache_.front();
  }
  float* scratch_lse(size_t n) {
    if (lse_scratch_bytes_ < n * sizeof(float)) {
      lse_scratch_ = device_alloc(n * sizeof(float));
      lse_scratch_bytes_ = n * sizeof(float);
    }
    return static_cast<float*>(lse_scratch_.get());
  }

  int device_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;  // the legacy default stream: ordered with frameworks' default
  IntCache starts_, heads_;
  std::list<LayoutEntry> layout_cache_;
  std::shared_ptr<void> counter_;
  std::shared_ptr<void> lse_scratch_;
  size_t lse_scratch_bytes_ = 0;
  int64_t launches_ = 0;
  bool grouped_order_ = [] {
    const char* e = std::getenv("MODDIT_CUDA_ORDER");
    return e && std::string(e) == "grouped";
  }();
  // MODDIT_CUDA_KERNEL=sm80 runs the portable kernel on Hopper too (tests, comparisons).
  bool use_wgmma_ = [] {
    const char* e = std::getenv("MODDIT_CUDA_KERNEL");
    return !(e && std::string(e) == "sm80");
  }();
};

}  // namespace

std::shared_ptr<Backend> make_cuda_backend(int device_index) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) cudaGetLastError();
  MODDIT_CHECK(e == cudaSuccess && count > 0, "the CUDA backend is not available: no CUDA device (",
               e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")");
  return std::make_shared<CudaBackend>(device_index);
}

bool cuda_available() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

}  // namespace moddit
