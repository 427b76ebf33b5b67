#include "eval/dense_stats.hpp"

#include <Eigen/Dense>
#include <cmath>

#include "eval/parallel.hpp"
#include "moddit/error.hpp"
#include "moddit/mask_policy.hpp"

namespace moddit {
namespace eval {

namespace {
using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The video rows of one (b, h) as a contiguous V x D matrix.
void gather_video_rows(const HostTensor& t, int b, int h, int64_t video_begin, int64_t V,
                       RowMatrix& out) {
  const int64_t N = t.shape[1], H = t.shape[2], D = t.shape[3];
  out.resize(V, D);
  const float* base = t.f32();
  for (int64_t r = 0; r < V; ++r) {
    const float* row = base + ((int64_t(b) * N + video_begin + r) * H + h) * D;
    std::copy(row, row + D, out.row(r).data());
  }
}
}  // namespace

void compute_dense_block_stats(const HostTensor& q, const HostTensor& k, const float* lse,
                               const TokenLayout& tokens, const BlockGrid& grid,
                               float softmax_scale, float eta, int threads,
                               DenseBlockStats& out) {
  MODDIT_CHECK(q.dtype == DType::F32 && k.dtype == DType::F32,
               "dense block stats: q and k must be F32");
  MODDIT_CHECK(eta > 0.f, "dense block stats: eta must be > 0, got ", eta);
  const int B = static_cast<int>(q.shape[0]), N = static_cast<int>(q.shape[1]);
  const int H = static_cast<int>(q.shape[2]), D = static_cast<int>(q.shape[3]);
  MODDIT_CHECK(N == tokens.total_tokens(), "dense block stats: q has ", N,
               " tokens, the token layout ", tokens.total_tokens());
  const int n = grid.num_video_blocks;
  const int64_t vb = tokens.video_begin(), V = tokens.video_tokens();
  const float scale = softmax_scale > 0.f ? softmax_scale : 1.f / std::sqrt(float(D));
  const float log_eta = std::log(eta);

  out.batch = B;
  out.heads = H;
  out.n = n;
  out.mass.assign(static_cast<size_t>(B) * H * n * n, 0.0);
  out.other_mass.assign(static_cast<size_t>(B) * H * n, 0.0);
  out.below_eta.assign(static_cast<size_t>(B) * H * n * n, 0);

  std::vector<int64_t> kb_begin(n), kb_end(n);
  for (int j = 0; j < n; ++j) {
    kb_begin[j] = grid.video_block_begin(j);
    kb_end[j] = grid.video_block_end(j);
  }

  parallel_for(B * H, threads, [&](int bh) {
    const int b = bh / H, h = bh % H;
    RowMatrix qv, kv, scores;
    gather_video_rows(q, b, h, vb, V, qv);
    gather_video_rows(k, b, h, vb, V, kv);
    double* mass = out.mass.data() + static_cast<size_t>(bh) * n * n;
    double* other = out.other_mass.data() + static_cast<size_t>(bh) * n;
    int32_t* below = out.below_eta.data() + static_cast<size_t>(bh) * n * n;
    const float* row_lse = lse + (int64_t(b) * H + h) * N + vb;
    Eigen::ArrayXf p(V);
    for (int i = 0; i < n; ++i) {
      const int64_t r0 = kb_begin[i], len = kb_end[i] - kb_begin[i];
      scores.noalias() = (qv.middleRows(r0, len) * kv.transpose()) * scale;
      double row_block_mass = 0.0;
      for (int64_t r = 0; r < len; ++r) {
        const float l = row_lse[r0 + r];
        const float* s = scores.row(r).data();
        p = (Eigen::Map<const Eigen::ArrayXf>(s, V) - l).exp();
        for (int j = 0; j < n; ++j) {
          double m = 0.0;
          int32_t c = 0;
          for (int64_t t = kb_begin[j]; t < kb_end[j]; ++t) {
            m += p[t];
            c += below_eta(s[t], l, log_eta) ? 1 : 0;
          }
          mass[i * n + j] += m;
          below[i * n + j] += c;
          row_block_mass += m;
        }
      }
      // Every real key's P sums to 1 per row; what the video keys do not hold sits
      // on the (always computed) text keys.
      other[i] = tokens.text_valid > 0 ? std::max(0.0, double(len) - row_block_mass) : 0.0;
    }
  });
}

}  // namespace eval
}  // namespace moddit
