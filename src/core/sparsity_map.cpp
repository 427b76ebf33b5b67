#include "core/sparsity_map.hpp"

#include "moddit/error.hpp"

namespace moddit {
namespace core {

void fuse_counts(const int32_t* counts, const uint8_t* live, const std::vector<int64_t>& len,
                 bool has_previous, uint16_t* stored, float* fused) {
  const int n = static_cast<int>(len.size());
  std::vector<double> inv(len.size());
  for (int j = 0; j < n; ++j) inv[j] = 1.0 / double(len[j]);
  bool overflow = false;
  for (int i = 0; i < n; ++i) {
    const size_t row = static_cast<size_t>(i) * n;
    const int64_t li = len[i];
    for (int j = 0; j < n; ++j) {
      const size_t k = row + j;
      const int32_t c = counts[k];
      if (c >= 0 && (!live || live[k])) {
        overflow |= c > li * len[j];
        stored[k] = static_cast<uint16_t>(c);
      } else if (!has_previous) {
        stored[k] = 0;
      }
      fused[k] = static_cast<float>(double(stored[k]) * inv[i] * inv[j]);
    }
  }
  if (overflow)
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const int32_t c = counts[static_cast<size_t>(i) * n + j];
        MODDIT_CHECK(c <= len[i] * len[j], "sparsity map: count ", c, " at block (", i, ", ",
                     j, ") exceeds its ", len[i] * len[j], " query-key pairs");
      }
}

void counts_to_map(const uint16_t* stored, const std::vector<int64_t>& len, float* map) {
  const int n = static_cast<int>(len.size());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const size_t k = static_cast<size_t>(i) * n + j;
      map[k] = static_cast<float>(double(stored[k]) / double(len[i] * len[j]));
    }
}

}  // namespace core
}  // namespace moddit
