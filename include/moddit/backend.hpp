#pragma once
// The backend interface: dense and block-sparse attention, with the row LSE and
// the exact sparsity-map counts as optional outputs. The CPU reference and the
// CUDA backend implement it; every test compares a backend against the CPU one.
#include <memory>
#include <string>
#include <vector>

#include "moddit/attention_params.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit {

struct ModditConfig;
namespace core {
class ModditEngine;  // src/core/moddit_engine.hpp
}

// A block layout that already lives on the backend's device, built there by a
// device policy (the MOD-DiT step on the GPU): the kernel reads it as is, with no
// upload, no validation and no host copy. Same CSR as BlockLayout, plus the
// schedule (rows longest first) the builder computed on the device. It is valid
// for the call it was planned for: the builder reuses its buffers, in stream
// order, for its next plan (download_layout it to keep it).
struct DeviceLayout {
  int batch = 0, heads = 0, num_q_blocks = 0, num_k_blocks = 0;
  const int32_t* row_ptr = nullptr;  // rows() + 1 entries
  const int32_t* col_idx = nullptr;
  const int32_t* order = nullptr;    // a permutation of the rows; null = in order
  // The layout's video density (block_layout.hpp), written by the builder to
  // pinned host memory in stream order: valid once the backend has synchronised.
  std::shared_ptr<const float> density_when_synced;
  std::shared_ptr<const void> storage;  // owns the buffers above

  int64_t rows() const { return int64_t(batch) * heads * num_q_blocks; }
};

// What one attention call computes, in framework-free host terms. Pointers in
// `lse` and `map_counts` must be on the backend's device.
struct AttentionCall {
  TensorView q, k, v, out;
  const TokenLayout* tokens = nullptr;  // required
  int block_size = 128;
  float softmax_scale = 0.f;  // 0 = 1/sqrt(D)
  const std::vector<int32_t>* heads = nullptr;  // head subset (null = all)
  const BlockLayout* layout = nullptr;          // null = dense (over the subset)
  const DeviceLayout* device_layout = nullptr;  // instead of `layout` (device backends)
  float* lse = nullptr;                         // optional [B, H, N] ([B, H, q.seq_len] on a chunk)
  int32_t* map_counts = nullptr;                // optional [B, H, n, n]
  float eta = 1e-4f;                            // used with map_counts; must be > 0
  MapStatistic map_statistic = MapStatistic::Eq2;  // what map_counts gets (attention_params.hpp)
  // A chunk of the sequence (ring attention): q and out hold the query tokens
  // [q_begin, q_begin + q.seq_len) of the sequence `tokens` describes, k and v
  // the key tokens [k_begin, k_begin + k.seq_len) when `chunk` is set. Any token offsets and
  // lengths, block-aligned or not. `layout` then has one row per query block
  // that meets the query range (num_q_blocks = their count, first row = the
  // first such block) and lists key blocks by their sequence index, only blocks
  // that meet the key range (slice_layout builds it from a whole-sequence
  // layout). No map counts or device layout on a chunk.
  bool chunk = false;  // false: the whole sequence (q_begin, k_begin unused)
  int64_t q_begin = 0, k_begin = 0;
  Precision precision = Precision::Exact;       // attention_params.hpp
};

// Backends are made by make_*_backend as shared objects; a device policy keeps
// its backend alive while it holds state in the backend's memory.
class Backend : public std::enable_shared_from_this<Backend> {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual Device device() const = 0;
  // Runs one call. Throws moddit::Error on bad input, before any work.
  virtual void attention(const AttentionCall& call) = 0;
  // Number of kernel launches (or CPU attention invocations) so far: head fusion
  // and skipped heads are checked through this.
  virtual int64_t launches() const = 0;

  // Memory on the backend's device (host memory for the CPU backend), for the
  // optional outputs (LSE, map counts) and layouts.
  virtual std::shared_ptr<void> allocate(size_t bytes) = 0;
  virtual void copy_to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void copy_from_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_i32(int32_t* dst, int32_t value, size_t count) = 0;
  // Writes zeros into the given heads of `out` (skipped heads). Counts no launch
  // on the CPU; one small launch on a GPU.
  virtual void zero_heads(const TensorView& out, const std::vector<int32_t>& heads) = 0;
  // Waits for queued work (no-op on the CPU).
  virtual void synchronize() {}
  // The stream that later work (attention, copies, fills, zero_heads) is queued
  // on: a cudaStream_t passed as void* (null = the legacy default stream). The
  // Python module sets it to the caller's current stream before every call, so
  // moddit orders with the framework's work without synchronising. Ignored on
  // the CPU.
  virtual void set_stream(void* stream) { (void)stream; }
  virtual void* stream() const { return nullptr; }
  // The device ordinal of a GPU backend (0 on the CPU).
  virtual int device_index() const { return 0; }
  // Whether calls of this precision can run here (FP8 on a GPU also needs
  // 128-token blocks, checked per call).
  virtual bool supports(Precision precision) const { return precision == Precision::Exact; }
  // The engine that keeps a ModditPolicy's state in this backend's memory and runs
  // the MOD-DiT step on this backend's device and stream (src/core/moddit_engine.hpp),
  // or null (the default): the policy keeps its state on the host. A policy asks
  // the backend of its first stateful call; the CUDA backend returns its GPU step.
  virtual std::shared_ptr<core::ModditEngine> make_moddit_engine(const ModditConfig& config,
                                                                 int num_heads) {
    (void)config;
    (void)num_heads;
    return nullptr;
  }
};

// Validates a call against the token layout and fills the plain parameter struct
// (host pointers for grid/layout; a device backend replaces them with its own copies).
// `grid` must outlive the params. Throws moddit::Error naming the problem.
AttentionParams prepare_params(const AttentionCall& call, const BlockGrid& grid);

// Throws moddit::Error naming `name` unless t has q's shape, dtype and device.
void check_same_as_q(const TensorView& q, const TensorView& t, const char* name);

// Throws moddit::Error unless `layout` is valid and covers the call described by
// `params` (batch, selected heads, query blocks; on a chunk, key blocks that meet
// the key range only): validate() (the content, linear in the layout) plus
// check_layout_shape(). prepare_params() runs it; a backend that caches layouts
// runs validate() once per distinct layout and check_layout_shape() on every call.
void validate_layout_for(const BlockLayout& layout, const AttentionParams& params);
// The shape part alone, constant time: the layout's batch, heads and blocks are
// this call's, and its arrays have the sizes those imply (on a chunk call also
// that it lists only key blocks meeting the chunk: linear). A backend that caches
// layouts by content runs this on every call (the same layout object may come
// with another batch) and validate() once per distinct content.
void check_layout_shape(const BlockLayout& layout, const AttentionParams& params);


// A host copy of a device layout (inspection, tests, benchmarks). Waits for the
// backend's stream.
BlockLayout download_layout(Backend& backend, const DeviceLayout& layout);

// The fp32 CPU reference backend (threads = 0: all hardware threads).
std::shared_ptr<Backend> make_cpu_backend(int threads = 0);

// The CUDA backend's switches (docs/CONFIG.md). The defaults are what production
// runs; the others exist for tests and kernel comparisons. The backend reads no
// environment: a program that wants the MODDIT_CUDA_* variables to set these asks
// cuda_options_from_environment() (the CLI and the C++ test programs do).
struct CudaOptions {
  // Run the portable sm80 kernel on Hopper too (then no FP8). Default: the
  // warp-specialised wgmma kernel on sm_90, the portable one elsewhere.
  bool portable_kernel = false;
  // The row schedule: each (batch, head)'s rows together, heads by total cost
  // largest first, rows by cost within a head (true); or plain longest-first
  // over all rows (false). Both from cuda::schedule_rows.
  bool group_rows_by_head = true;
  // Count every row of the Hopper map pass by compare, the path otherwise taken
  // only for rows with a tiny threshold (tests: both paths give the same maps).
  bool map_count_by_compare = false;
};

// CudaOptions from MODDIT_CUDA_KERNEL (auto | sm80 = portable_kernel),
// MODDIT_CUDA_ORDER (grouped | lpt = !group_rows_by_head) and MODDIT_CUDA_MAP_COUNT
// (auto | compare = map_count_by_compare); unset or empty = the default. Throws
// moddit::Error naming the variable on any other value.
CudaOptions cuda_options_from_environment();

// The CUDA backend; throws moddit::Error when moddit was built without CUDA or
// no device is present.
std::shared_ptr<Backend> make_cuda_backend(int device_index = 0, const CudaOptions& options = {});
bool cuda_available();

}  // namespace moddit
