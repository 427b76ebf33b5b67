#include "core/pattern_basis.hpp"

#include <algorithm>
#include <tuple>

#include "moddit/error.hpp"

namespace moddit {
namespace core {

bool PatternBasis::operator<(const PatternBasis& o) const {
  return std::tie(n, frame_lo, frame_hi) < std::tie(o.n, o.frame_lo, o.frame_hi);
}

PatternBasis make_pattern_basis(const std::vector<int64_t>& starts, int64_t P, int64_t F) {
  MODDIT_CHECK(starts.size() >= 2, "pattern basis: no video blocks");
  MODDIT_CHECK(P > 0 && F > 0, "pattern basis: frames (", F, ") and tokens per frame (", P,
               ") must be > 0");
  const int n = static_cast<int>(starts.size()) - 1;
  MODDIT_CHECK(starts.back() == P * F, "pattern basis: video blocks cover ", starts.back(),
               " tokens, frames cover ", P * F);
  PatternBasis b;
  b.n = n;
  b.frame_lo.resize(static_cast<size_t>(F));
  b.frame_hi.resize(static_cast<size_t>(F));
  // Blocks are ordered; frame f = [f*P, (f+1)*P). Block v intersects it iff
  // starts[v] < (f+1)*P and starts[v+1] > f*P.
  int v = 0;
  for (int64_t f = 0; f < F; ++f) {
    const int64_t lo_tok = f * P, hi_tok = (f + 1) * P;
    while (starts[v + 1] <= lo_tok) ++v;
    int w = v;
    while (w + 1 < n && starts[w + 1] < hi_tok) ++w;
    b.frame_lo[f] = v;
    b.frame_hi[f] = w;
  }
  return b;
}

PatternBasis make_pattern_basis(const BlockGrid& grid, const TokenLayout& tokens) {
  const int n = grid.num_video_blocks;
  std::vector<int64_t> starts(static_cast<size_t>(n) + 1);
  for (int v = 0; v < n; ++v) starts[v] = grid.video_block_begin(v);
  starts[n] = grid.video_block_end(n - 1);
  return make_pattern_basis(starts, tokens.tokens_per_frame(), tokens.frames);
}

std::vector<double> basis_gram(const PatternBasis& b) {
  const int n = b.n, F = b.num_frames(), p = b.num_params();
  std::vector<double> G(static_cast<size_t>(p) * p, 0.0);
  auto at = [&](int r, int c) -> double& { return G[static_cast<size_t>(r) * p + c]; };
  auto sym = [&](int r, int c, double v) { at(r, c) = v; at(c, r) = v; };
  for (int d = -(n - 1); d <= n - 1; ++d) {
    const int cd = b.diag_index(d);
    at(cd, cd) = n - std::abs(d);
    // C_d meets D_j once iff row i = j - d is on the grid.
    for (int j = std::max(0, d); j < n + std::min(0, d); ++j) sym(cd, b.column_index(j), 1.0);
  }
  for (int j = 0; j < n; ++j) at(b.column_index(j), b.column_index(j)) = n;
  for (int f = 0; f < F; ++f) {
    const int ef = b.frame_index(f), lo = b.frame_lo[f], hi = b.frame_hi[f], L = hi - lo + 1;
    for (int d = -(L - 1); d <= L - 1; ++d) sym(ef, b.diag_index(d), L - std::abs(d));
    for (int j = lo; j <= hi; ++j) sym(ef, b.column_index(j), L);
    for (int g = 0; g < F; ++g) {
      const int olo = std::max(lo, b.frame_lo[g]), ohi = std::min(hi, b.frame_hi[g]);
      const double o = ohi >= olo ? ohi - olo + 1 : 0;
      at(ef, b.frame_index(g)) = o * o;
    }
  }
  return G;
}

void basis_project(const PatternBasis& b, const float* S, double* out) {
  const int n = b.n, p = b.num_params();
  std::fill(out, out + p, 0.0);
  double* diag = out;                    // index (j - i) + n - 1
  double* col = out + b.column_index(0);
  // Row prefix sums let each frame square be summed in O(L): rowpre[j] = sum S[i][0..j).
  std::vector<double> rowpre(static_cast<size_t>(n) + 1);
  const int F = b.num_frames();
  // Accumulate frame sums row by row: frames containing row i form a contiguous range.
  int f_first = 0;
  for (int i = 0; i < n; ++i) {
    const float* row = S + static_cast<size_t>(i) * n;
    double* drow = diag + (n - 1 - i);  // drow[j] accumulates delta = j - i
    for (int j = 0; j < n; ++j) {
      const double s = row[j];
      drow[j] += s;
      col[j] += s;
    }
    double acc = 0.0;
    rowpre[0] = 0.0;
    for (int j = 0; j < n; ++j) rowpre[j + 1] = acc += row[j];
    while (f_first < F && b.frame_hi[f_first] < i) ++f_first;
    for (int f = f_first; f < F && b.frame_lo[f] <= i; ++f)
      if (b.frame_hi[f] >= i)
        out[b.frame_index(f)] += rowpre[b.frame_hi[f] + 1] - rowpre[b.frame_lo[f]];
  }
}

void basis_reconstruct(const PatternBasis& b, const double* x, double* out) {
  const int n = b.n, F = b.num_frames();
  const double* diag = x;
  const double* col = x + b.column_index(0);
  for (int i = 0; i < n; ++i) {
    double* row = out + static_cast<size_t>(i) * n;
    for (int j = 0; j < n; ++j) row[j] = diag[j - i + n - 1] + col[j];
  }
  for (int f = 0; f < F; ++f) {
    const double e = x[b.frame_index(f)];
    for (int i = b.frame_lo[f]; i <= b.frame_hi[f]; ++i)
      for (int j = b.frame_lo[f]; j <= b.frame_hi[f]; ++j) out[static_cast<size_t>(i) * n + j] += e;
  }
}

std::vector<double> basis_matrix(const PatternBasis& b) {
  const int n = b.n, p = b.num_params();
  std::vector<double> M(static_cast<size_t>(n) * n * p, 0.0);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double* r = &M[(static_cast<size_t>(i) * n + j) * p];
      r[b.diag_index(j - i)] = 1.0;
      r[b.column_index(j)] = 1.0;
      for (int f = 0; f < b.num_frames(); ++f)
        if (i >= b.frame_lo[f] && i <= b.frame_hi[f] && j >= b.frame_lo[f] && j <= b.frame_hi[f])
          r[b.frame_index(f)] = 1.0;
    }
  return M;
}

}  // namespace core
}  // namespace moddit
