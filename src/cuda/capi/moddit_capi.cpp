// A C ABI over the CUDA backend, for scripts/bench_gpu.py (ctypes): it calls
// moddit's kernels on PyTorch's device tensors in the same process as SDPA and
// FlexAttention. Contiguous tensors only ([B,N,H,D] or [B,H,N,D]); layouts are
// host CSR arrays over all heads. Errors: return 1, message in moddit_capi_error().
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"

namespace {
std::string g_error;
std::shared_ptr<moddit::Backend>& backend() {
  static std::shared_ptr<moddit::Backend> b;
  if (!b) b = moddit::make_cuda_backend(0);
  return b;
}
}  // namespace

extern "C" {

const char* moddit_capi_error() { return g_error.c_str(); }

// dtype: 1 = bf16, 2 = f16. text_pos: 0 none, 1 before, 2 after. row_ptr/col_idx:
// host CSR over (b, h, qb), or null for dense.
int moddit_capi_attention(const void* q, const void* k, const void* v, void* out, int dtype,
                          int hnd, int B, int N, int H, int D, int64_t frames, int64_t height,
                          int64_t width, int64_t text_tokens, int64_t text_valid, int text_pos,
                          int block_size, const int32_t* row_ptr, const int32_t* col_idx,
                          float* lse, int32_t* map_counts, float eta) {
  try {
    using namespace moddit;
    TokenLayout tk;
    tk.frames = frames;
    tk.height = height;
    tk.width = width;
    tk.text_tokens = text_tokens;
    tk.text_valid = text_valid;
    tk.text_position = static_cast<TextPosition>(text_pos);
    const BlockGrid grid = make_block_grid(tk, block_size);
    const DType dt = dtype == 1 ? DType::BF16 : dtype == 2 ? DType::F16 : DType::F32;
    const Layout lay = hnd ? Layout::HND : Layout::NHD;
    AttentionCall c;
    c.q = make_view(const_cast<void*>(q), dt, lay, B, N, H, D, Device::CUDA);
    c.k = make_view(const_cast<void*>(k), dt, lay, B, N, H, D, Device::CUDA);
    c.v = make_view(const_cast<void*>(v), dt, lay, B, N, H, D, Device::CUDA);
    c.out = make_view(out, dt, lay, B, N, H, D, Device::CUDA);
    c.tokens = &tk;
    c.block_size = block_size;
    c.lse = lse;
    c.map_counts = map_counts;
    c.eta = eta;
    static BlockLayout l;  // kept between calls: the backend caches its device copy by content
    if (row_ptr) {
      const int nb = grid.num_blocks();
      const int64_t rows = int64_t(B) * H * nb;
      l.batch = B;
      l.heads = H;
      l.num_q_blocks = l.num_k_blocks = nb;
      l.row_ptr.assign(row_ptr, row_ptr + rows + 1);
      l.col_idx.assign(col_idx, col_idx + row_ptr[rows]);
      c.layout = &l;
    }
    backend()->attention(c);
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return 1;
  }
}

int moddit_capi_synchronize() {
  try {
    backend()->synchronize();
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return 1;
  }
}

int moddit_capi_num_blocks(int64_t frames, int64_t height, int64_t width, int64_t text_tokens,
                           int64_t text_valid, int text_pos, int block_size) {
  try {
    moddit::TokenLayout tk;
    tk.frames = frames;
    tk.height = height;
    tk.width = width;
    tk.text_tokens = text_tokens;
    tk.text_valid = text_valid;
    tk.text_position = static_cast<moddit::TextPosition>(text_pos);
    return moddit::make_block_grid(tk, block_size).num_blocks();
  } catch (const std::exception& e) {
    g_error = e.what();
    return -1;
  }
}

}  // extern "C"
