#pragma once
// Where text and video tokens sit in the sequence, and how blocks tile it.
//
// Sequence: N = text_tokens + frames * height * width. Text sits before the video
// (CogVideoX), after it (HunyuanVideo) or is absent (Wan). Video tokens are
// frame-major. Of the text, only the first `text_valid` tokens are real; the rest
// is padding, which is excluded as a key from every row's softmax (padded query
// rows are computed like text rows; their output is not meaningful).
//
// Block tiling (our choice, see docs/DESIGN_NOTES.md): each segment is tiled from
// its own first token, so the video grid is aligned to the first video token and
// no block ever mixes text and video. Each segment's last block may be partial.
// With text before the video and T % Bs != 0 this costs at most one extra
// (partial) block; in exchange, video blocks are the same for every text length
// and the n x n video grid needs no special cases.
#include <cstdint>
#include <string>
#include <vector>

namespace moddit {

enum class TextPosition : int32_t { None = 0, Before = 1, After = 2 };
const char* to_string(TextPosition);
TextPosition text_position_from_string(const std::string&);  // "none"|"before"|"after"

struct TokenLayout {
  int64_t frames = 1;
  int64_t height = 1;  // latent token grid per frame: tokens_per_frame = height * width
  int64_t width = 1;
  int64_t text_tokens = 0;  // allocated text tokens (0 when text_position == None)
  int64_t text_valid = 0;   // real text tokens, <= text_tokens
  TextPosition text_position = TextPosition::None;

  int64_t tokens_per_frame() const { return height * width; }
  int64_t video_tokens() const { return frames * height * width; }
  int64_t total_tokens() const { return text_tokens + video_tokens(); }
  int64_t video_begin() const { return text_position == TextPosition::Before ? text_tokens : 0; }
  int64_t text_begin() const {
    return text_position == TextPosition::Before ? 0 : video_tokens();
  }
  // Padded text keys, excluded from every softmax: [pad_begin, pad_end).
  int64_t pad_begin() const { return text_begin() + text_valid; }
  int64_t pad_end() const { return text_begin() + text_tokens; }

  // Throws moddit::Error naming the inconsistent field, or a token count that
  // overflows or exceeds kMaxTokens (size_limits.hpp). The accessors above
  // compute their products unchecked: validate first.
  void validate() const;
  std::string describe() const;
};

// The block tiling of one sequence (see above).
struct BlockGrid {
  int block_size = 128;
  std::vector<int32_t> starts;  // token start of every block, plus the end: size num_blocks + 1
  int first_video_block = 0;
  int num_video_blocks = 0;  // n: the MOD-DiT grid is n x n

  int num_blocks() const { return static_cast<int>(starts.size()) - 1; }
  int block_len(int b) const { return starts[b + 1] - starts[b]; }
  bool is_video(int b) const {
    return b >= first_video_block && b < first_video_block + num_video_blocks;
  }
  // Video block v (0..n-1) -> token range relative to the first video token.
  int64_t video_block_begin(int v) const;
  int64_t video_block_end(int v) const;
};

// block_size must be 64 or 128 (throws otherwise).
BlockGrid make_block_grid(const TokenLayout& layout, int block_size);

}  // namespace moddit
