#include "eval/output_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"

namespace moddit {
namespace eval {
namespace {

// A host copy of a (device) view: the bytes it spans, and the view over them.
struct HostCopy {
  std::vector<uint8_t> bytes;
  TensorView view;
};

HostCopy download(Backend& backend, const TensorView& t) {
  int64_t last = 0;  // the last element the view reaches (strides are non-negative)
  for (int a = 0; a < 3; ++a) last += (t.shape[a] - 1) * t.stride[a];
  HostCopy h;
  h.bytes.resize(size_t(last + t.head_dim()) * size_t(dtype_size(t.dtype)));
  backend.copy_to_host(h.bytes.data(), t.data, h.bytes.size());
  h.view = t;
  h.view.data = h.bytes.data();
  h.view.device = Device::CPU;
  h.view.device_index = 0;
  return h;
}

// Rows [n0, n1) of head h of batch item 0, in fp32, as a [1, n1 - n0, 1, D] tensor.
HostTensor rows_f32(const TensorView& t, int h, int64_t n0, int64_t n1) {
  const int64_t D = t.head_dim();
  HostTensor r(DType::F32, 1, n1 - n0, 1, D);
  for (int64_t n = n0; n < n1; ++n) load_row_f32(t, 0, n, h, r.f32() + (n - n0) * D);
  return r;
}

// The rows of batch item 0 and selected head `si` of `l`, as a one-head layout.
BlockLayout head_layout(const BlockLayout& l, int si) {
  BlockLayout one;
  one.batch = 1;
  one.heads = 1;
  one.num_q_blocks = l.num_q_blocks;
  one.num_k_blocks = l.num_k_blocks;
  const int64_t r0 = int64_t(si) * l.num_q_blocks;
  const int32_t e0 = l.row_ptr[size_t(r0)], e1 = l.row_ptr[size_t(r0 + l.num_q_blocks)];
  for (int64_t r = r0; r <= r0 + l.num_q_blocks; ++r) one.row_ptr.push_back(l.row_ptr[size_t(r)] - e0);
  one.col_idx.assign(l.col_idx.begin() + e0, l.col_idx.begin() + e1);
  return one;
}

}  // namespace

double output_error_bound(DType dtype) {
  switch (dtype) {
    case DType::BF16: return std::ldexp(1.0, -8);
    case DType::F16: return std::ldexp(1.0, -11);
    case DType::F32: return std::ldexp(1.0, -16);  // fp32 sums over ~1e5 keys
  }
  return 0.0;
}

double sampled_output_error(Backend& backend, const AttentionCall& call) {
  MODDIT_CHECK(!call.chunk && !call.device_layout && call.tokens,
               "output check: only whole-sequence calls with a host layout can be checked");
  const BlockGrid grid = make_block_grid(*call.tokens, call.block_size);
  const int nb = grid.num_blocks();
  const int64_t N = call.q.seq_len();
  MODDIT_CHECK(N == grid.starts.back(), "output check: q has ", N, " tokens, the layout ",
               grid.starts.back());
  backend.synchronize();
  const HostCopy q = download(backend, call.q), k = download(backend, call.k),
                 v = download(backend, call.v), out = download(backend, call.out);
  const int sel = call.heads ? int(call.heads->size()) : int(call.q.heads());
  std::vector<int> picked{0};
  if (sel > 1) picked.push_back(sel - 1);
  std::vector<int> blocks{0, nb / 2, nb - 1};
  blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
  auto cpu = make_cpu_backend(0);
  const int64_t D = call.q.head_dim();
  double diff = 0.0, norm = 0.0;
  for (const int si : picked) {
    const int h = call.heads ? (*call.heads)[size_t(si)] : si;
    HostTensor kh = rows_f32(k.view, h, 0, N), vh = rows_f32(v.view, h, 0, N);
    BlockLayout one;
    if (call.layout) one = head_layout(*call.layout, si);
    for (const int qb : blocks) {
      const int64_t n0 = grid.starts[size_t(qb)], n1 = grid.starts[size_t(qb) + 1];
      HostTensor qh = rows_f32(q.view, h, n0, n1), oh(DType::F32, 1, n1 - n0, 1, D);
      AttentionCall c;
      c.q = qh.view();
      c.k = kh.view();
      c.v = vh.view();
      c.out = oh.view();
      c.tokens = call.tokens;
      c.block_size = call.block_size;
      c.softmax_scale = call.softmax_scale;
      c.chunk = true;
      c.q_begin = n0;
      c.k_begin = 0;
      BlockLayout slice;
      if (call.layout) {
        slice = slice_layout(one, grid, n0, n1, 0, N);
        c.layout = &slice;
      }
      cpu->attention(c);
      std::vector<float> got(static_cast<size_t>(D));
      for (int64_t n = n0; n < n1; ++n) {
        load_row_f32(out.view, 0, n, h, got.data());
        const float* want = oh.f32() + (n - n0) * D;
        for (int64_t d = 0; d < D; ++d) {
          const double e = double(got[size_t(d)]) - want[d];
          diff += e * e;
          norm += double(want[d]) * want[d];
        }
      }
    }
  }
  // A NaN anywhere makes the error NaN, which no bound accepts.
  return norm > 0.0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace eval
}  // namespace moddit
