#pragma once
// A small naive fp32 attention backend for the core tests (the real CPU backend is
// tested in tests/cpu): exact softmax over the computed keys, the exact map counts,
// head subsets and block layouts, launch counting.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/mask_policy.hpp"

namespace moddit_test {

class FakeBackend : public moddit::Backend {
 public:
  std::string name() const override { return "fake"; }
  moddit::Device device() const override { return moddit::Device::CPU; }
  int64_t launches() const override { return launches_; }
  int zero_calls = 0;
  std::vector<moddit::Precision> precisions;  // of every call, in order

  void attention(const moddit::AttentionCall& c) override {
    using namespace moddit;
    const BlockGrid grid = make_block_grid(*c.tokens, c.block_size);
    const AttentionParams p = prepare_params(c, grid);
    ++launches_;
    precisions.push_back(p.precision);
    const int N = p.seq_len, D = p.head_dim, nb = p.num_blocks, n = p.num_video_blocks;
    std::vector<float> qr(D), kr(D), vr(D), o(D), s(N);
    std::vector<uint8_t> live(nb);
    for (int b = 0; b < p.batch; ++b)
      for (int si = 0; si < p.num_sel_heads; ++si) {
        const int h = p.heads ? p.heads[si] : si;
        for (int qb = 0; qb < nb; ++qb) {
          std::fill(live.begin(), live.end(), uint8_t(p.layout_row_ptr ? 0 : 1));
          if (p.layout_row_ptr) {
            const int64_t r = (int64_t(b) * p.num_sel_heads + si) * nb + qb;
            for (int i = p.layout_row_ptr[r]; i < p.layout_row_ptr[r + 1]; ++i)
              live[p.layout_col_idx[i]] = 1;
          }
          for (int qi = p.block_starts[qb]; qi < p.block_starts[qb + 1]; ++qi) {
            load_row_f32(c.q, b, qi, h, qr.data());
            float mx = -INFINITY;
            for (int kb = 0; kb < nb; ++kb)
              for (int ki = p.block_starts[kb]; ki < p.block_starts[kb + 1]; ++ki) {
                s[ki] = -INFINITY;
                if (!live[kb] || !key_is_real(ki, p.key_pad_begin, p.key_pad_end)) continue;
                load_row_f32(c.k, b, ki, h, kr.data());
                float dot = 0;
                for (int d = 0; d < D; ++d) dot += qr[d] * kr[d];
                s[ki] = dot * p.softmax_scale;
                mx = std::max(mx, s[ki]);
              }
            double sum = 0;
            std::fill(o.begin(), o.end(), 0.f);
            for (int ki = 0; ki < N; ++ki) {
              if (s[ki] == -INFINITY) continue;
              const float w = std::exp(s[ki] - mx);
              sum += w;
              load_row_f32(c.v, b, ki, h, vr.data());
              for (int d = 0; d < D; ++d) o[d] += w * vr[d];
            }
            for (int d = 0; d < D; ++d) o[d] = sum > 0 ? float(o[d] / sum) : 0.f;
            store_row_f32(c.out, b, qi, h, o.data());
            if (!p.map_counts || !grid.is_video(qb)) continue;
            const float lse = mx + float(std::log(sum));
            for (int kb = p.first_video_block; kb < p.first_video_block + n; ++kb) {
              if (!live[kb]) continue;
              int32_t& cnt = p.map_counts[((int64_t(b) * p.num_heads + h) * n +
                                           (qb - p.first_video_block)) * n +
                                          (kb - p.first_video_block)];
              if (cnt < 0) cnt = 0;
              for (int ki = p.block_starts[kb]; ki < p.block_starts[kb + 1]; ++ki)
                cnt += below_eta(s[ki], lse, p.log_eta) ? 1 : 0;
            }
          }
        }
      }
  }

  std::shared_ptr<void> allocate(size_t bytes) override {
    return std::shared_ptr<void>(std::malloc(bytes), std::free);
  }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void copy_from_host(void* dst, const void* src, size_t bytes) override {
    std::memcpy(dst, src, bytes);
  }
  void fill_i32(int32_t* dst, int32_t value, size_t count) override {
    std::fill(dst, dst + count, value);
  }
  void zero_heads(const moddit::TensorView& out, const std::vector<int32_t>& heads) override {
    ++zero_calls;
    std::vector<float> z(static_cast<size_t>(out.head_dim()), 0.f);
    for (int64_t b = 0; b < out.batch(); ++b)
      for (int64_t t = 0; t < out.seq_len(); ++t)
        for (int32_t h : heads) moddit::store_row_f32(out, b, t, h, z.data());
  }

 private:
  int64_t launches_ = 0;
};

}  // namespace moddit_test
