// The CPU backend: host memory, validation through prepare_params(), and the
// fp32 reference kernel on a pool of threads kept for the backend's lifetime.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "cpu/cpu_attention.hpp"
#include "cpu/thread_pool.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

namespace {

void require_host(const TensorView& t, const char* what) {
  MODDIT_CHECK(t.device == Device::CPU, what, ": tensor is on ", to_string(t.device), ":",
               t.device_index, ", the cpu backend needs host memory");
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : pool_(threads) {}

  std::string name() const override { return "cpu"; }
  Device device() const override { return Device::CPU; }

  bool supports(Precision) const override { return true; }  // FP8 is emulated

  void attention(const AttentionCall& call) override {
    MODDIT_CHECK(call.tokens != nullptr, "attention: no token layout given");
    require_host(call.q, "q");
    require_host(call.k, "k");
    require_host(call.v, "v");
    require_host(call.out, "out");
    MODDIT_CHECK(call.device_layout == nullptr,
                 "attention: the CPU backend takes host layouts, not a device layout");
    const BlockGrid grid = make_block_grid(*call.tokens, call.block_size);
    const AttentionParams params = prepare_params(call, grid);
    cpu_attention(params, pool_);
    launches_.fetch_add(1);
  }

  int64_t launches() const override { return launches_.load(); }

  std::shared_ptr<void> allocate(size_t bytes) override {
    // 64-byte aligned (a cache line, an AVX-512 vector), never null for 0 bytes.
    const size_t size = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    void* ptr = std::aligned_alloc(64, size);
    MODDIT_CHECK(ptr != nullptr, "cpu backend: cannot allocate ", bytes, " bytes");
    return std::shared_ptr<void>(ptr, [](void* q) { std::free(q); });
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void fill_i32(int32_t* dst, int32_t value, size_t count) override {
    std::fill(dst, dst + count, value);
  }

  void zero_heads(const TensorView& out, const std::vector<int32_t>& heads) override {
    require_host(out, "out");
    validate_view(out, "out");
    for (const int32_t h : heads)
      MODDIT_CHECK(h >= 0 && h < out.heads(), "zero_heads: head index ", h, " out of range [0, ",
                   out.heads(), ")");
    // All-zero bits are +0 in f32, bf16 and f16 alike.
    const size_t row_bytes = static_cast<size_t>(out.head_dim() * dtype_size(out.dtype));
    char* base = static_cast<char*>(out.data);
    for (int64_t b = 0; b < out.batch(); ++b)
      for (int64_t n = 0; n < out.seq_len(); ++n)
        for (const int32_t h : heads)
          std::memset(base + out.offset(b, n, h) * dtype_size(out.dtype), 0, row_bytes);
  }

 private:
  ThreadPool pool_;
  std::atomic<int64_t> launches_{0};
};

}  // namespace

std::shared_ptr<Backend> make_cpu_backend(int threads) {
  check_thread_count(threads, "cpu backend");
  return std::make_shared<CpuBackend>(threads);
}

}  // namespace moddit
