// The CUDA backend: validates a call before any launch, keeps device copies of
// the block grid, head subsets and layouts (cached by content, since a pipeline
// reuses them call after call), schedules the rows (cuda::schedule_rows) and
// launches the forward kernel and, when asked, the map pass.
//
// Everything is queued on the caller's stream (set_stream): launches, memsets,
// uploads, copies back, and allocations and frees too (a stream-ordered pool), so
// that a call never waits for the device unless the host needs a result (the map,
// copy_to_host, synchronize), and a freed or evicted buffer is reused only after
// the kernels queued before its free have finished.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "cuda/attention_launch.hpp"
#include "cuda/fp8_quantize.hpp"
#include "cuda/moddit_device_engine.hpp"
#include "cuda/moddit_step.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"

namespace moddit {

namespace {

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

// Sets the backend's device for the scope of an entry point and restores the
// caller's (a framework keeps its own current device).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
    else previous_ = -1;
  }
  ~DeviceScope() {
    if (previous_ >= 0) cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

// Device memory ordered on the backend's current stream, from a pool of its own.
// Frees of buffers that outlive the backend (allocate() results) wait for the
// device instead, since the stream may be gone by then.
class StreamMemory {
 public:
  explicit StreamMemory(int device) : device_(device) {
    int pools = 0;
    check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device),
          "cudaDeviceGetAttribute");
    if (pools) {
      cudaMemPoolProps props{};
      props.allocType = cudaMemAllocationTypePinned;
      props.location.type = cudaMemLocationTypeDevice;
      props.location.id = device;
      check(cudaMemPoolCreate(&pool_, &props), "cudaMemPoolCreate");
      // Keep up to 256 MiB cached across synchronisations: the map buffer of a
      // record call is allocated and freed once per call.
      uint64_t keep = uint64_t(256) << 20;
      check(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep),
            "cudaMemPoolSetAttribute");
    }
  }
  ~StreamMemory() {
    if (pool_) cudaMemPoolDestroy(pool_);  // deferred by CUDA until every block is freed
  }
  cudaStream_t stream = nullptr;
  bool alive = true;  // false once the backend is gone

  void* allocate(size_t bytes) {
    void* p = nullptr;
    bytes = std::max<size_t>(bytes, 16);
    if (pool_) check(cudaMallocFromPoolAsync(&p, bytes, pool_, stream), "cudaMallocFromPoolAsync");
    else check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  }
  // Never throws (runs in deleters).
  void free(void* p) {
    if (!p) return;
    int previous = -1;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) cudaSetDevice(device_);
    else previous = -1;
    if (!pool_) {
      cudaFree(p);
    } else if (alive) {
      cudaFreeAsync(p, stream);
    } else {
      // The backend (and maybe its last stream) is gone: wait for all work, then
      // return the block to the pool, which lives until its last block is back.
      cudaDeviceSynchronize();
      cudaFreeAsync(p, nullptr);
    }
    if (previous >= 0) cudaSetDevice(previous);
    cudaGetLastError();  // a failed free at process exit must not poison the next call
  }

 private:
  int device_;
  cudaMemPool_t pool_ = nullptr;
};

std::shared_ptr<void> device_alloc(const std::shared_ptr<StreamMemory>& mem, size_t bytes) {
  void* p = mem->allocate(bytes);
  return std::shared_ptr<void>(p, [mem](void* q) { mem->free(q); });
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
  const DeviceInts& get(const int32_t* data, size_t n, const std::shared_ptr<StreamMemory>& mem) {
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (same(it->host, data, n)) {
        entries_.splice(entries_.begin(), entries_, it);
        return entries_.front();
      }
    DeviceInts d;
    d.host.assign(data, data + n);
    d.dev = device_alloc(mem, n * sizeof(int32_t));
    entries_.push_front(std::move(d));
    // From the entry's own host copy, which lives as long as the device copy.
    const DeviceInts& e = entries_.front();
    const cudaError_t err = n ? cudaMemcpyAsync(e.dev.get(), e.host.data(), n * sizeof(int32_t),
                                                cudaMemcpyHostToDevice, mem->stream)
                              : cudaSuccess;
    if (err != cudaSuccess) entries_.pop_front();  // never leave an entry without its data
    check(err, "upload");
    if (entries_.size() > capacity_) entries_.pop_back();  // freed in stream order
    return entries_.front();
  }
  void clear() { entries_.clear(); }

 private:
  size_t capacity_;
  std::list<DeviceInts> entries_;
};

// Each row's cost for the schedule: its key blocks' 64-key tiles (the same unit
// as the GPU MOD-DiT step's layout rows, moddit_step.hpp).
std::vector<int32_t> row_costs(const BlockLayout& l, const BlockGrid& grid) {
  std::vector<int32_t> tiles_of(grid.num_blocks());
  for (int b = 0; b < grid.num_blocks(); ++b) tiles_of[b] = (grid.block_len(b) + 63) / 64;
  std::vector<int32_t> cost(size_t(l.rows()));
  for (int64_t r = 0; r < l.rows(); ++r) {
    int32_t c = 0;
    for (int32_t i = l.row_ptr[r]; i < l.row_ptr[r + 1]; ++i) c += tiles_of[l.col_idx[i]];
    cost[r] = c;
  }
  return cost;
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
  CudaBackend(int device, const CudaOptions& options)
      : device_(device), options_(options), starts_(8), heads_(8) {
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    MODDIT_CHECK(device >= 0 && device < count, "cuda: device ", device, " not present (",
                 count, " devices)");
    DeviceScope scope(device);
    check(cudaGetDeviceProperties(&props_, device), "cudaGetDeviceProperties");
    MODDIT_CHECK(props_.major >= 8, "cuda: device ", props_.name, " is sm_", props_.major,
                 props_.minor, "; the attention kernels need sm80 or newer");
    mem_ = std::make_shared<StreamMemory>(device);
    check(cudaEventCreateWithFlags(&last_work_, cudaEventDisableTiming), "cudaEventCreate");
    counter_ = device_alloc(mem_, 2 * sizeof(int));
    mark_work();
  }
  ~CudaBackend() override {
    // Free the caches on the current stream while the backend still knows it;
    // allocate() results that outlive the backend are freed synchronously.
    int previous = -1;
    if (cudaGetDevice(&previous) == cudaSuccess && previous != device_) cudaSetDevice(device_);
    else previous = -1;
    layout_cache_.clear();
    starts_.clear();
    heads_.clear();
    counter_.reset();
    lse_scratch_.reset();
    fp8_scratch_.reset();
    mem_->alive = false;
    cudaEventDestroy(last_work_);
    if (previous >= 0) cudaSetDevice(previous);
    cudaGetLastError();
  }

  // A new stream first waits for the work this backend queued on the old one
  // (the work counter, the LSE scratch and cached buffers are shared between
  // calls; buffers freed later are freed on the new stream only). It waits on the
  // event recorded after that work and never touches the old stream again: the
  // caller may have destroyed it by now (a CuPy `with Stream():` block does).
  void set_stream(void* stream) override {
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (s == stream_) return;
    DeviceScope scope(device_);
    check(cudaStreamWaitEvent(s, last_work_, 0), "cudaStreamWaitEvent (stream switch)");
    stream_ = s;
    mem_->stream = s;
  }
  void* stream() const override { return stream_; }
  int device_index() const override { return device_; }
  bool supports(Precision precision) const override {
    return precision == Precision::Exact || (props_.major == 9 && !options_.portable_kernel);
  }

  // A ModditPolicy whose first stateful call runs here keeps its state on this GPU.
  std::shared_ptr<core::ModditEngine> make_moddit_engine(const ModditConfig& config,
                                                         int num_heads) override {
    return cuda::make_moddit_device_engine(config, num_heads, *this, options_.group_rows_by_head);
  }

  std::string name() const override { return std::string("cuda:") + props_.name; }
  Device device() const override { return Device::CUDA; }
  int64_t launches() const override { return launches_; }

  void attention(const AttentionCall& call) override {
    DeviceScope scope(device_);
    MODDIT_CHECK(props_.major >= 8, "cuda: the attention kernels need sm80 or newer");
    check_view(call.q, "q");
    check_view(call.k, "k");
    check_view(call.v, "v");
    check_view(call.out, "out");
    MODDIT_CHECK(call.tokens != nullptr, "attention: no token layout given");
    const BlockGrid grid = make_block_grid(*call.tokens, call.block_size);
    // prepare_params validates everything but the layout. Its shape is checked
    // against this call on every call; its content is checked (and uploaded, and
    // scheduled) once per distinct content by the layout cache.
    AttentionCall no_layout = call;
    no_layout.layout = nullptr;
    MODDIT_CHECK(!(call.layout && call.device_layout), "attention: both a layout and a device layout given");
    AttentionParams p = prepare_params(no_layout, grid);
    MODDIT_CHECK(call.lse == nullptr || is_device_pointer(call.lse, device_),
                 "attention: lse is not device memory of cuda:", device_);
    MODDIT_CHECK(call.map_counts == nullptr || is_device_pointer(call.map_counts, device_),
                 "attention: map_counts is not device memory of cuda:", device_);
    MODDIT_CHECK(!(call.map_counts && p.map_statistic == MapStatistic::Mass &&
                   p.precision == Precision::FP8),
                 "attention: map_statistic \"mass\" is not available with precision fp8 on the "
                 "CUDA backend (its FP8 map pass counts Eq. 2 only); use precision \"exact\" or "
                 "map_statistic \"eq2\"");
    MODDIT_CHECK(int64_t(p.batch) * p.num_heads * p.seq_len < (int64_t(1) << 40),
                 "attention: tensors too large");

    p.block_starts = starts_.get(grid.starts.data(), grid.starts.size(), mem_).ptr();
    if (call.heads) p.heads = heads_.get(call.heads->data(), call.heads->size(), mem_).ptr();
    cuda::Schedule s;
    s.counter = static_cast<int*>(counter_.get());
    s.num_items = p.batch * p.num_sel_heads * p.num_q_blocks;
    s.wgmma = props_.major == 9 && !options_.portable_kernel;
    s.map_compare = options_.map_count_by_compare;
    if (call.layout) {
      check_layout_shape(*call.layout, p);  // the same layout may come with another batch
      const LayoutEntry& e = layout_entry(*call.layout, grid);
      p.layout_row_ptr = static_cast<const int32_t*>(e.row_ptr.get());
      p.layout_col_idx = static_cast<const int32_t*>(e.col_idx.get());
      s.order = static_cast<const int32_t*>(e.order.get());
    }
    if (call.device_layout) s.order = call.device_layout->order;  // checked by prepare_params

    if (p.precision == Precision::FP8) {
      MODDIT_CHECK(supports(Precision::FP8) && p.max_block_len == 128, "attention: precision fp8 needs ",
                   "a Hopper GPU (sm_90a) and 128-token blocks (", props_.name, ", block_size ",
                   p.max_block_len, props_.major == 9 && options_.portable_kernel ? ", CudaOptions::portable_kernel" : "",
                   ")");
      s.fp8 = &fp8_operands(p);
      cuda::launch_quantize_fp8(p, *s.fp8, props_.multiProcessorCount, stream_);
      ++launches_;
    }
    float* lse_out = call.lse;
    if (call.map_counts && !lse_out) lse_out = scratch_lse(size_t(p.batch) * p.num_heads * p.q_tokens);
    cuda::launch_forward(p, lse_out, s, props_.multiProcessorCount, stream_);
    ++launches_;
    if (call.map_counts && p.num_video_blocks > 0) {
      s.counter += 1;
      cuda::launch_map(p, lse_out, s, props_.multiProcessorCount, stream_);
      ++launches_;
    }
    mark_work();
  }

  // Stream-ordered: usable by work queued on the current stream; freed on the
  // stream current at the time of the free.
  std::shared_ptr<void> allocate(size_t bytes) override {
    DeviceScope scope(device_);
    auto p = device_alloc(mem_, bytes);
    mark_work();
    return p;
  }
  // Queued on the stream, then waits for that stream only: the host reads dst.
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    DeviceScope scope(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
    check(cudaStreamSynchronize(stream_), "copy to host");
  }
  // Queued on the stream. A pageable source is staged before the call returns;
  // a pinned one is read by the DMA later, so then the call waits for the
  // stream, as the caller may reuse src at once.
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    DeviceScope scope(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy from host");
    mark_work();
    cudaPointerAttributes at{};
    if (cudaPointerGetAttributes(&at, src) != cudaSuccess) cudaGetLastError();
    else if (at.type == cudaMemoryTypeHost)
      check(cudaStreamSynchronize(stream_), "copy from host");
  }
  void fill_i32(int32_t* dst, int32_t value, size_t count) override {
    DeviceScope scope(device_);
    MODDIT_CHECK(dst == nullptr || count == 0 || is_device_pointer(dst, device_),
                 "fill_i32: destination is not device memory of cuda:", device_);
    if (value == 0 || value == -1)
      check(cudaMemsetAsync(dst, value == 0 ? 0 : 0xff, count * sizeof(int32_t), stream_), "memset");
    else
      cuda::launch_fill_i32(dst, value, count, stream_);
    mark_work();
  }
  void zero_heads(const TensorView& out, const std::vector<int32_t>& heads) override {
    if (heads.empty()) return;
    DeviceScope scope(device_);
    validate_view(out, "out");
    MODDIT_CHECK(out.device == Device::CUDA && is_device_pointer(out.data, device_),
                 "zero_heads: out is not device memory of cuda:", device_);
    for (size_t i = 0; i < heads.size(); ++i)
      MODDIT_CHECK(heads[i] >= 0 && heads[i] < out.heads(), "zero_heads: head ", heads[i],
                   " out of range [0, ", out.heads(), ")");
    const int64_t stride[3] = {out.stride[kB], out.stride[kN], out.stride[kH]};
    cuda::launch_zero_heads(out.data, stride, int(out.batch()), int(out.seq_len()),
                            int(out.head_dim()), heads_.get(heads.data(), heads.size(), mem_).ptr(),
                            int(heads.size()), int(dtype_size(out.dtype)), stream_);
    ++launches_;
    mark_work();
  }
  void synchronize() override {
    DeviceScope scope(device_);
    check(cudaStreamSynchronize(stream_), "synchronize");
  }

 private:
  // Records that work was queued on stream_, for the next stream switch.
  void mark_work() { check(cudaEventRecord(last_work_, stream_), "cudaEventRecord"); }
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
  // host arrays; a miss validates the content, uploads it and its row costs, and
  // schedules the rows on the device (cuda::schedule_rows, as the GPU MOD-DiT step
  // does for its own layouts: one schedule). The shape
  // against the call (a chunk call's key blocks included) is not the cache's
  // business: attention() checks it on every call, hit or miss.
  struct LayoutEntry {
    std::vector<int32_t> row_ptr_h, col_idx_h, starts_h, cost_h;
    int batch = 0, heads = 0, q_blocks = 0, k_blocks = 0;
    std::shared_ptr<void> row_ptr, col_idx, order;
  };
  const LayoutEntry& layout_entry(const BlockLayout& l, const BlockGrid& grid) {
    for (auto it = layout_cache_.begin(); it != layout_cache_.end(); ++it)
      if (it->batch == l.batch && it->heads == l.heads && it->q_blocks == l.num_q_blocks &&
          it->k_blocks == l.num_k_blocks && same(it->starts_h, grid.starts.data(), grid.starts.size()) &&
          same(it->row_ptr_h, l.row_ptr.data(), l.row_ptr.size()) &&
          same(it->col_idx_h, l.col_idx.data(), l.col_idx.size())) {
        layout_cache_.splice(layout_cache_.begin(), layout_cache_, it);
        return layout_cache_.front();
      }
    l.validate();
    LayoutEntry e;
    e.row_ptr_h = l.row_ptr;
    e.col_idx_h = l.col_idx;
    e.starts_h = grid.starts;
    e.batch = l.batch;
    e.heads = l.heads;
    e.q_blocks = l.num_q_blocks;
    e.k_blocks = l.num_k_blocks;
    e.cost_h = row_costs(l, grid);
    layout_cache_.push_front(std::move(e));
    // Uploaded from the entry's own host arrays (alive as long as the entry), in
    // stream order: an evicted entry's buffers are freed after the kernels that
    // read them, and the new copies land before the kernel that reads them.
    LayoutEntry& f = layout_cache_.front();
    auto up = [this](const std::vector<int32_t>& v) {
      auto d = device_alloc(mem_, v.size() * sizeof(int32_t));
      if (!v.empty())
        check(cudaMemcpyAsync(d.get(), v.data(), v.size() * sizeof(int32_t),
                              cudaMemcpyHostToDevice, stream_),
              "upload layout");
      return d;
    };
    try {
      f.row_ptr = up(f.row_ptr_h);
      f.col_idx = up(f.col_idx_h);
      f.order = schedule(f.cost_h, l.num_q_blocks);
    } catch (...) {
      layout_cache_.pop_front();  // never leave an entry without its device copies
      throw;
    }
    if (layout_cache_.size() > 8) layout_cache_.pop_back();
    return layout_cache_.front();
  }
  // The order the kernel takes the rows in (CudaOptions::group_rows_by_head):
  // grouped by head, a head's K/V stays in L2 while its rows run, and longest
  // first, the last wave is the cheapest work. Uploads the row costs and sorts
  // them on the stream; the scratch is freed in stream order.
  std::shared_ptr<void> schedule(const std::vector<int32_t>& cost, int nb) {
    const int64_t rows = int64_t(cost.size());
    MODDIT_CHECK(rows < (int64_t(1) << 31), "attention: too many layout rows (", rows, ")");
    auto order = device_alloc(mem_, cost.size() * sizeof(int32_t));
    if (rows == 0) return order;
    const int group = options_.group_rows_by_head ? nb : int(rows);  // lpt: one group
    auto cost_d = device_alloc(mem_, cost.size() * sizeof(int32_t));
    check(cudaMemcpyAsync(cost_d.get(), cost.data(), cost.size() * sizeof(int32_t),
                          cudaMemcpyHostToDevice, stream_),
          "upload row costs");
    const size_t bytes = cuda::schedule_scratch_bytes(rows, group);
    auto scratch = device_alloc(mem_, bytes);
    cuda::schedule_rows(static_cast<const int32_t*>(cost_d.get()), rows, group,
                        static_cast<int32_t*>(order.get()), scratch.get(), bytes, stream_);
    return order;
  }
  // The FP8 operands of a call (fp8_operands.hpp), carved from one buffer that
  // only grows (freed in stream order when it does).
  const cuda::Fp8Operands& fp8_operands(const AttentionParams& p) {
    const size_t tiles = size_t(p.batch) * p.num_heads * p.num_blocks, D = size_t(p.head_dim);
    const size_t rows = size_t(p.batch) * p.num_heads * p.seq_len, heads = size_t(p.batch) * p.num_heads;
    auto al = [](size_t b) { return (b + 255) / 256 * 256; };
    const size_t sizes[11] = {tiles * 128 * D, tiles * 128 * D, tiles * 128 * D, rows * 4, rows * 4,
                              tiles * 4, heads * D * 4, tiles * D * 4, heads * D * 4, heads * D * 4,
                              (1 + 2 * heads) * 4};
    size_t total = 0;
    for (size_t b : sizes) total += al(b);
    if (fp8_bytes_ < total) {
      fp8_scratch_ = device_alloc(mem_, total);
      fp8_bytes_ = total;
    }
    char* at = static_cast<char*>(fp8_scratch_.get());
    auto take = [&](int i) {
      char* r = at;
      at += al(sizes[i]);
      return r;
    };
    cuda::Fp8Operands& f = fp8_;
    f.q = reinterpret_cast<uint8_t*>(take(0));
    f.k = reinterpret_cast<uint8_t*>(take(1));
    f.vt = reinterpret_cast<uint8_t*>(take(2));
    f.q_scale = reinterpret_cast<float*>(take(3));
    f.lse_shift = reinterpret_cast<float*>(take(4));
    f.k_scale = reinterpret_cast<float*>(take(5));
    f.v_scale = reinterpret_cast<float*>(take(6));
    f.k_sum = reinterpret_cast<float*>(take(7));
    f.k_mean = reinterpret_cast<float*>(take(8));
    f.v_max = reinterpret_cast<uint32_t*>(take(9));
    f.sync = reinterpret_cast<int*>(take(10));
    return f;
  }
  float* scratch_lse(size_t n) {
    if (lse_scratch_bytes_ < n * sizeof(float)) {
      lse_scratch_ = device_alloc(mem_, n * sizeof(float));  // the old one freed in stream order
      lse_scratch_bytes_ = n * sizeof(float);
    }
    return static_cast<float*>(lse_scratch_.get());
  }

  int device_;
  CudaOptions options_;
  cudaDeviceProp props_{};
  cudaStream_t stream_ = nullptr;  // the legacy default stream until set_stream
  std::shared_ptr<StreamMemory> mem_;  // first: the caches below free into it
  cudaEvent_t last_work_ = nullptr;
  IntCache starts_, heads_;
  std::list<LayoutEntry> layout_cache_;
  std::shared_ptr<void> counter_;
  std::shared_ptr<void> lse_scratch_;
  size_t lse_scratch_bytes_ = 0;
  std::shared_ptr<void> fp8_scratch_;
  size_t fp8_bytes_ = 0;
  cuda::Fp8Operands fp8_;
  int64_t launches_ = 0;
};

}  // namespace

std::shared_ptr<Backend> make_cuda_backend(int device_index, const CudaOptions& options) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) cudaGetLastError();
  MODDIT_CHECK(e == cudaSuccess && count > 0, "the CUDA backend is not available: no CUDA device (",
               e == cudaSuccess ? "0 devices" : cudaGetErrorString(e), ")");
  return std::make_shared<CudaBackend>(device_index, options);
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
