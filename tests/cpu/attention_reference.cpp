#include "cpu/attention_reference.hpp"

#include <cmath>
#include <limits>

namespace moddit_test {

using namespace moddit;

std::vector<int64_t> reference_tiling(const TokenLayout& t, int block_size, int* first_video_block,
                                      int* num_video_blocks) {
  std::vector<int64_t> starts;
  auto tile = [&](int64_t begin, int64_t len) {
    for (int64_t s = begin; s < begin + len; s += block_size) starts.push_back(s);
  };
  const int64_t T = t.text_tokens, V = t.frames * t.height * t.width;
  if (t.text_position == TextPosition::Before) {
    tile(0, T);
    *first_video_block = static_cast<int>(starts.size());
    tile(T, V);
  } else {
    *first_video_block = 0;
    tile(0, V);
  }
  *num_video_blocks = static_cast<int>(starts.size()) - *first_video_block;
  if (t.text_position == TextPosition::After) tile(V, T);
  starts.push_back(T + V);
  return starts;
}

Reference naive_attention(const AttentionCall& c) {
  const TokenLayout& tl = *c.tokens;
  Reference r;
  r.B = c.q.shape[kB];
  r.N = c.q.shape[kN];
  r.H = c.q.shape[kH];
  r.D = c.q.shape[kD];
  const int64_t B = r.B, N = r.N, H = r.H, D = r.D;

  int fv = 0, nv = 0;
  const std::vector<int64_t> starts = reference_tiling(tl, c.block_size, &fv, &nv);
  const int nb = static_cast<int>(starts.size()) - 1;
  r.n = nv;
  std::vector<int> block_of(static_cast<size_t>(N));
  for (int blk = 0; blk < nb; ++blk)
    for (int64_t t = starts[blk]; t < starts[blk + 1]; ++t) block_of[static_cast<size_t>(t)] = blk;
  auto is_video = [&](int blk) { return blk >= fv && blk < fv + nv; };

  // Padding: the allocated text tokens past the valid ones.
  const int64_t V = tl.frames * tl.height * tl.width;
  int64_t pad0 = 0, pad1 = 0;
  if (tl.text_position == TextPosition::Before) {
    pad0 = tl.text_valid;
    pad1 = tl.text_tokens;
  } else if (tl.text_position == TextPosition::After) {
    pad0 = V + tl.text_valid;
    pad1 = V + tl.text_tokens;
  }

  std::vector<int32_t> sel;
  if (c.heads) {
    sel = *c.heads;
  } else {
    for (int32_t h = 0; h < H; ++h) sel.push_back(h);
  }
  const int S = static_cast<int>(sel.size());
  r.head_selected.assign(static_cast<size_t>(H), 0);
  for (int32_t h : sel) r.head_selected[static_cast<size_t>(h)] = 1;

  r.out.assign(static_cast<size_t>(B * N * H * D), 0.0);
  r.lse.assign(static_cast<size_t>(B * H * N), 0.0);
  r.counts.assign(static_cast<size_t>(B * H * nv * nv), -1);
  r.band.assign(r.counts.size(), 0);
  r.mass.assign(r.counts.size(), -1.0);
  r.mass_error.assign(r.counts.size(), 0.0);
  r.rows.assign(r.counts.size(), 0);
  r.keys.assign(r.counts.size(), 0);

  const double scale = c.softmax_scale > 0 ? double(c.softmax_scale) : 1.0 / std::sqrt(double(D));
  const double log_eta = std::log(double(c.eta));
  std::vector<float> row(static_cast<size_t>(D));
  std::vector<double> K(static_cast<size_t>(N * D)), Vv(static_cast<size_t>(N * D)),
      q(static_cast<size_t>(D));
  std::vector<double> s(static_cast<size_t>(N)), abs_s(static_cast<size_t>(N));
  std::vector<uint8_t> live(static_cast<size_t>(nb));

  for (int64_t b = 0; b < B; ++b)
    for (int si = 0; si < S; ++si) {
      const int64_t h = sel[static_cast<size_t>(si)];
      for (int64_t t = 0; t < N; ++t) {
        load_row_f32(c.k, b, t, h, row.data());
        for (int64_t d = 0; d < D; ++d) K[static_cast<size_t>(t * D + d)] = row[static_cast<size_t>(d)];
        load_row_f32(c.v, b, t, h, row.data());
        for (int64_t d = 0; d < D; ++d) Vv[static_cast<size_t>(t * D + d)] = row[static_cast<size_t>(d)];
      }
      for (int qb = 0; qb < nb; ++qb) {
        // Expand this layout row to the set of live key blocks.
        std::fill(live.begin(), live.end(), c.layout ? 0 : 1);
        if (c.layout) {
          const int64_t lr = (b * S + si) * nb + qb;
          for (int32_t i = c.layout->row_ptr[static_cast<size_t>(lr)];
               i < c.layout->row_ptr[static_cast<size_t>(lr + 1)]; ++i)
            live[static_cast<size_t>(c.layout->col_idx[static_cast<size_t>(i)])] = 1;
        }
        if (is_video(qb))
          for (int kb = fv; kb < fv + nv; ++kb)
            if (live[static_cast<size_t>(kb)]) {
              const size_t ci = static_cast<size_t>(((b * H + h) * nv + (qb - fv)) * nv + (kb - fv));
              r.counts[ci] = 0;
              r.mass[ci] = 0.0;
              r.rows[ci] = starts[qb + 1] - starts[qb];
              for (int64_t j = starts[kb]; j < starts[kb + 1]; ++j) r.keys[ci] += (j < pad0 || j >= pad1);
            }

        for (int64_t t = starts[qb]; t < starts[qb + 1]; ++t) {
          load_row_f32(c.q, b, t, h, row.data());
          for (int64_t d = 0; d < D; ++d) q[static_cast<size_t>(d)] = row[static_cast<size_t>(d)];
          double mx = -std::numeric_limits<double>::infinity();
          double max_abs = 0;
          bool any = false;
          for (int64_t j = 0; j < N; ++j) {
            const bool real = j < pad0 || j >= pad1;
            if (!live[static_cast<size_t>(block_of[static_cast<size_t>(j)])] || !real) continue;
            double acc = 0, acc_abs = 0;
            for (int64_t d = 0; d < D; ++d) {
              const double x = q[static_cast<size_t>(d)] * K[static_cast<size_t>(j * D + d)];
              acc += x;
              acc_abs += std::fabs(x);
            }
            s[static_cast<size_t>(j)] = scale * acc;
            abs_s[static_cast<size_t>(j)] = scale * acc_abs;
            mx = std::max(mx, scale * acc);
            max_abs = std::max(max_abs, scale * acc_abs);
            any = true;
          }
          double* o = &r.out[static_cast<size_t>(((b * N + t) * H + h) * D)];
          double& lse = r.lse[static_cast<size_t>((b * H + h) * N + t)];
          if (!any) {
            lse = -std::numeric_limits<double>::infinity();
            continue;  // out stays zero
          }
          double sum = 0;
          for (int64_t j = 0; j < N; ++j) {
            const bool real = j < pad0 || j >= pad1;
            if (live[static_cast<size_t>(block_of[static_cast<size_t>(j)])] && real)
              sum += std::exp(s[static_cast<size_t>(j)] - mx);
          }
          lse = mx + std::log(sum);
          const double threshold = lse + log_eta;
          for (int64_t j = 0; j < N; ++j) {
            const int kb = block_of[static_cast<size_t>(j)];
            const bool real = j < pad0 || j >= pad1;
            if (!live[static_cast<size_t>(kb)] || !real) continue;
            const double p = std::exp(s[static_cast<size_t>(j)] - lse);
            for (int64_t d = 0; d < D; ++d) o[d] += p * Vv[static_cast<size_t>(j * D + d)];
            if (is_video(qb) && is_video(kb)) {
              const size_t ci = static_cast<size_t>(((b * H + h) * nv + (qb - fv)) * nv + (kb - fv));
              if (s[static_cast<size_t>(j)] < threshold) ++r.counts[ci];
              // An fp32 score of depth D is off by at most ~D ulps of sum|q_d k_d|
              // (4e-6 relative for D = 64); the row LSE by as much as its largest
              // score, plus rounding of lse + ln(eta). Pairs that close to the
              // threshold may go either way.
              const double tol = 2.0 * D * 6e-8 * (abs_s[static_cast<size_t>(j)] + max_abs) +
                                 1e-6 * (std::fabs(lse) + std::fabs(log_eta) + 1.0);
              if (std::fabs(s[static_cast<size_t>(j)] - threshold) <= tol) ++r.band[ci];
              r.mass[ci] += p;
              r.mass_error[ci] += p * tol;  // P's relative error is the score's absolute one
            }
          }
        }
      }
    }
  return r;
}

}  // namespace moddit_test
