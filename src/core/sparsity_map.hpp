#pragma once
// Sparsity maps from the backend's counts (paper Eq. 2) and their temporal fusion
// (paper 5.1). The fused map is stored as the exact counts in uint16 (a block has
// at most 128 x 128 = 16384 query-key pairs): as compact as fp16 and lossless;
// S[i][j] = count / (len_i len_j).
#include <cstdint>
#include <vector>

namespace moddit {
namespace core {

// Fuses one head's new counts (n x n, -1 = not computed) into the stored counts:
// blocks with count >= 0 and live[k] != 0 (live may be null = all) take the new
// count; the others keep `stored` (0 when has_previous is false). Writes the fused
// map S as floats to `fused` (what the fit sees). Throws moddit::Error if a count
// exceeds its block's pair count (a backend bug).
void fuse_counts(const int32_t* counts, const uint8_t* live, const std::vector<int64_t>& len,
                 bool has_previous, uint16_t* stored, float* fused);

// S from stored counts (n x n).
void counts_to_map(const uint16_t* stored, const std::vector<int64_t>& len, float* map);

}  // namespace core
}  // namespace moddit
