#include "core/target_fill.hpp"

namespace moddit {
namespace core {

std::vector<double> video_block_pairs(const BlockGrid& grid) {
  const int n = grid.num_video_blocks, fv = grid.first_video_block;
  std::vector<double> pairs(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      pairs[static_cast<size_t>(i) * n + j] = double(grid.block_len(fv + i)) * grid.block_len(fv + j);
  return pairs;
}

double fill_to_target(const std::vector<int32_t>& order, const BlockGrid& grid, double target,
                      uint8_t* mask) {
  const std::vector<double> pairs = video_block_pairs(grid);
  double total = 0.0, live = 0.0;
  for (size_t e = 0; e < pairs.size(); ++e) {
    total += pairs[e];
    if (mask[e]) live += pairs[e];
  }
  const double goal = target * total;
  for (int32_t e : order) {
    if (mask[e]) continue;
    if (!(2.0 * live + pairs[e] < 2.0 * goal)) break;
    mask[e] = 1;
    live += pairs[e];
  }
  return total > 0 ? live / total : 1.0;
}

}  // namespace core
}  // namespace moddit
