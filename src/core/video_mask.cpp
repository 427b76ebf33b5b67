#include "core/video_mask.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "moddit/error.hpp"

namespace moddit {
namespace core {

void predict_linear(const double* x_a, int t_a, const double* x_b, int t_b, int t, int count,
                    double* out) {
  MODDIT_CHECK(t_a != t_b, "prediction: the two reference steps are equal (", t_a, ")");
  const double r = double(t - t_b) / double(t_b - t_a);
  // An explicit fma, so that the result does not depend on the compiler's
  // contraction choices and the GPU step (moddit_step.cu) ranks lines identically.
  for (int i = 0; i < count; ++i) out[i] = std::fma(x_b[i] - x_a[i], r, x_b[i]);
}

VideoMaskBuilder::VideoMaskBuilder(const PatternBasis& basis, std::vector<int64_t> block_len)
    : basis_(basis), len_(std::move(block_len)) {
  MODDIT_CHECK(static_cast<int>(len_.size()) == basis_.n, "mask builder: ", len_.size(),
               " block lengths for n = ", basis_.n);
  const double V = std::accumulate(len_.begin(), len_.end(), 0.0);
  total_ = V * V;
  lenf_.assign(len_.begin(), len_.end());
  row_live_.assign(len_.size(), 0);
  order_.resize(static_cast<size_t>(basis_.num_lines()));
}

void VideoMaskBuilder::add_line(int line, uint8_t* mask) {
  walk_line(line, [&](int i, int j) { add(mask, i, j); });
}

MaskChoice VideoMaskBuilder::build(const double* lines, const uint8_t* keep_frame, int top_k,
                                   double target_density, uint8_t* mask) {
  const int n = basis_.n, L = basis_.num_lines();
  MODDIT_CHECK(top_k >= 0 && top_k <= L, "top_k = ", top_k, " exceeds the ", L,
               " lines (diagonals + columns) of the ", n, "x", n, " video block grid");
  std::memset(mask, 0, static_cast<size_t>(n) * n);
  std::fill(row_live_.begin(), row_live_.end(), 0);
  live_ = 0.0;
  for (int i = 0; i < n; ++i) add(mask, i, i);
  if (top_k > 0)
    for (int f = 0; f < basis_.num_frames(); ++f)
      if (keep_frame[f])
        for (int i = basis_.frame_lo[f]; i <= basis_.frame_hi[f]; ++i)
          for (int j = basis_.frame_lo[f]; j <= basis_.frame_hi[f]; ++j) add(mask, i, j);

  // Ascending intensity = most informative first; NaN ranks last; ties by index
  // so that the mask is deterministic.
  auto key = [&](int32_t l) { return std::isnan(lines[l]) ? HUGE_VAL : lines[l]; };
  std::iota(order_.begin(), order_.end(), 0);
  const int want = top_k > 0 ? top_k : L;
  auto cmp = [&](int32_t a, int32_t b) {
    const double ka = key(a), kb = key(b);
    return ka < kb || (ka == kb && a < b);
  };
  if (want < L) {
    std::nth_element(order_.begin(), order_.begin() + want, order_.end(), cmp);
    std::sort(order_.begin(), order_.begin() + want, cmp);
  } else {
    std::sort(order_.begin(), order_.end(), cmp);
  }

  MaskChoice c;
  if (top_k > 0) {
    // K is known: build row by row. Row i of the union is the selected-diagonal
    // flags sliced at n-1-i, OR the selected columns (contiguous, vectorisable),
    // instead of K scattered line walks.
    sel_.assign(static_cast<size_t>(L), 0);
    for (int r = 0; r < top_k; ++r) sel_[order_[r]] = 1;
    const uint8_t* cols = sel_.data() + (2 * n - 1);
    live_ = 0.0;
    for (int i = 0; i < n; ++i) {
      uint8_t* row = mask + static_cast<size_t>(i) * n;
      const uint8_t* diag = sel_.data() + (n - 1 - i);
      for (int j = 0; j < n; ++j) row[j] |= diag[j] | cols[j];
      int cnt = 0;
      for (int j = 0; j < n; ++j) cnt += row[j];
      // Every block but the grid's last has the same length: weight by count.
      const double w = lenf_[0] * cnt + (lenf_[n - 1] - lenf_[0]) * row[n - 1];
      row_live_[i] = cnt;
      live_ += w * lenf_[i];
    }
    c.k = top_k;
  } else {
    c.k = build_to_target(keep_frame, target_density * total_, mask);
  }
  c.density = total_ > 0 ? live_ / total_ : 1.0;
  return c;
}

// Blocks are taken in one order, each only while it brings the live area closer to
// the goal (2 live + a < 2 goal), and the first block that would not stops the
// walk: kept-frame blocks nearest the diagonal first (distance |j - i|, then
// row-major), then the lines in rank order, whole while they fit, the crossing
// line's fresh blocks by the rank of their other line (a block lies on one
// diagonal and one column). moddit_step.cu's mask kernel takes the same blocks.
int VideoMaskBuilder::build_to_target(const uint8_t* keep_frame, double goal, uint8_t* mask) {
  const int n = basis_.n, L = basis_.num_lines(), nd = 2 * n - 1;
  auto area = [&](int i, int j) { return lenf_[i] * lenf_[j]; };
  auto fits = [&](double a) { return 2.0 * live_ + a < 2.0 * goal; };
  // 1. Kept-frame blocks, by distance from the diagonal.
  frame_.assign(static_cast<size_t>(n) * n, 0);
  dist_area_.assign(static_cast<size_t>(n), 0.0);
  for (int f = 0; f < basis_.num_frames(); ++f)
    if (keep_frame[f])
      for (int i = basis_.frame_lo[f]; i <= basis_.frame_hi[f]; ++i)
        for (int j = basis_.frame_lo[f]; j <= basis_.frame_hi[f]; ++j) {
          uint8_t& fb = frame_[static_cast<size_t>(i) * n + j];
          if (i != j && !fb) dist_area_[std::abs(j - i)] += area(i, j);
          fb = 1;
        }
  for (int d = 1; d < n; ++d) {
    const bool whole = live_ + dist_area_[d] <= goal;
    for (int i = 0; i < n; ++i)
      for (int j : {i - d, i + d}) {
        if (j < 0 || j >= n || !frame_[static_cast<size_t>(i) * n + j]) continue;
        if (!whole && !fits(area(i, j))) return 0;
        add(mask, i, j);
      }
  }
  // 2. Lines in rank order (order_ is sorted), the crossing one block by block.
  rank_.resize(static_cast<size_t>(L));
  for (int r = 0; r < L; ++r) rank_[order_[r]] = r;
  for (int r = 0; r < L; ++r) {
    const int line = order_[r];
    double fresh = 0.0;
    walk_line(line, [&](int i, int j) {
      if (!mask[static_cast<size_t>(i) * n + j]) fresh += area(i, j);
    });
    if (live_ + fresh <= goal) {
      add_line(line, mask);
      continue;
    }
    // Blocks of `line` by their other line's rank: those ranked before r are live.
    for (int r2 = r + 1; r2 < L; ++r2) {
      const int other = order_[r2];
      int i, j;
      if (line < nd && other >= nd) {  // diagonal line, column other
        j = other - nd;
        i = j - (line - (n - 1));
      } else if (line >= nd && other < nd) {  // column line, diagonal other
        j = line - nd;
        i = j - (other - (n - 1));
      } else {
        continue;
      }
      if (i < 0 || i >= n || mask[static_cast<size_t>(i) * n + j]) continue;
      if (!fits(area(i, j))) return r;
      add(mask, i, j);
    }
  }
  return L;
}

int64_t layout_entries(const uint8_t* video_mask, const BlockGrid& grid) {
  const int nb = grid.num_blocks(), n = grid.num_video_blocks;
  int64_t total = int64_t(nb - n) * nb;  // text rows are dense
  for (int i = 0; i < n; ++i) {
    const uint8_t* row = video_mask + static_cast<size_t>(i) * n;
    int live = row[i] ? 0 : 1;  // the diagonal is always live
    for (int j = 0; j < n; ++j) live += row[j] != 0;
    total += (nb - n) + live;
  }
  return total;
}

void write_layout_rows(const uint8_t* video_mask, const BlockGrid& grid, int32_t base,
                       int32_t* row_end, int32_t* col) {
  const int nb = grid.num_blocks(), fv = grid.first_video_block, n = grid.num_video_blocks;
  int32_t* out = col;
  for (int qb = 0; qb < nb; ++qb) {
    if (!grid.is_video(qb)) {
      for (int kb = 0; kb < nb; ++kb) *out++ = kb;
    } else {
      const uint8_t* row = video_mask + static_cast<size_t>(qb - fv) * n;
      for (int kb = 0; kb < fv; ++kb) *out++ = kb;  // text before
      // Live columns 8 at a time: gather the 8 bytes' low bits, then walk the set bits.
      const int diag = qb - fv;
      int v = 0;
      for (; v + 8 <= n; v += 8) {
        uint64_t x;
        std::memcpy(&x, row + v, 8);
        unsigned bits = static_cast<unsigned>(((x & 0x0101010101010101ull) * 0x0102040810204080ull) >> 56);
        if (diag >= v && diag < v + 8) bits |= 1u << (diag - v);
        while (bits) {
          *out++ = fv + v + __builtin_ctz(bits);
          bits &= bits - 1;
        }
      }
      for (; v < n; ++v)
        if (row[v] || v == diag) *out++ = fv + v;
      for (int kb = fv + n; kb < nb; ++kb) *out++ = kb;  // text after
    }
    row_end[qb] = base + static_cast<int32_t>(out - col);
  }
}

int64_t layout_entries_from_rows(const std::vector<int32_t>& row_live, const BlockGrid& grid) {
  const int nb = grid.num_blocks(), n = grid.num_video_blocks;
  int64_t total = int64_t(nb - n) * nb;
  for (int i = 0; i < n; ++i) total += (nb - n) + row_live[i];
  return total;
}

void pack_mask_bits(const uint8_t* mask, size_t count, uint64_t* bits) {
  std::fill(bits, bits + (count + 63) / 64, uint64_t(0));
  size_t k = 0;
  for (; k + 8 <= count; k += 8) {
    uint64_t x;
    std::memcpy(&x, mask + k, 8);
    x = (x & 0x0101010101010101ull) * 0x0102040810204080ull;  // gathers 8 bytes' low bits
    bits[k >> 6] |= (x >> 56) << (k & 63);
  }
  for (; k < count; ++k) bits[k >> 6] |= uint64_t(mask[k] & 1) << (k & 63);
}

void append_layout_rows(const uint8_t* video_mask, const BlockGrid& grid, BlockLayout& l) {
  const int nb = grid.num_blocks();
  if (l.row_ptr.empty()) l.row_ptr.push_back(0);
  const size_t base = l.col_idx.size(), rows = l.row_ptr.size();
  l.col_idx.resize(base + static_cast<size_t>(layout_entries(video_mask, grid)));
  l.row_ptr.resize(rows + nb);
  write_layout_rows(video_mask, grid, static_cast<int32_t>(base), &l.row_ptr[rows],
                    l.col_idx.data() + base);
}

BlockLayout layout_from_video_masks(const std::vector<uint8_t>& masks, const BlockGrid& grid,
                                    int batch, int heads) {
  const size_t nn = static_cast<size_t>(grid.num_video_blocks) * grid.num_video_blocks;
  MODDIT_CHECK(masks.size() == nn * size_t(batch) * size_t(heads), "layout: ", masks.size(),
               " mask bytes for ", batch, " x ", heads, " masks of ", nn);
  BlockLayout l;
  l.batch = batch;
  l.heads = heads;
  l.num_q_blocks = l.num_k_blocks = grid.num_blocks();
  for (size_t r = 0; r < size_t(batch) * size_t(heads); ++r)
    append_layout_rows(masks.data() + r * nn, grid, l);
  return l;
}

std::vector<int64_t> video_block_lengths(const BlockGrid& grid) {
  std::vector<int64_t> len(static_cast<size_t>(grid.num_video_blocks));
  for (int v = 0; v < grid.num_video_blocks; ++v)
    len[v] = grid.video_block_end(v) - grid.video_block_begin(v);
  return len;
}

}  // namespace core
}  // namespace moddit
