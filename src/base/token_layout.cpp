#include "moddit/token_layout.hpp"

#include <sstream>

#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

const char* to_string(TextPosition p) {
  switch (p) {
    case TextPosition::None: return "none";
    case TextPosition::Before: return "before";
    case TextPosition::After: return "after";
  }
  return "?";
}

TextPosition text_position_from_string(const std::string& s) {
  if (s == "none") return TextPosition::None;
  if (s == "before") return TextPosition::Before;
  if (s == "after") return TextPosition::After;
  throw Error("unknown text_position '" + s + "' (expected none, before or after)");
}

void TokenLayout::validate() const {
  MODDIT_CHECK(frames > 0, "token layout: frames must be > 0, got ", frames);
  MODDIT_CHECK(height > 0 && width > 0, "token layout: height and width must be > 0, got ",
               height, "x", width);
  MODDIT_CHECK(text_tokens >= 0, "token layout: text_tokens must be >= 0, got ", text_tokens);
  MODDIT_CHECK(text_valid >= 0 && text_valid <= text_tokens,
               "token layout: text_valid must be in [0, text_tokens=", text_tokens, "], got ",
               text_valid);
  MODDIT_CHECK(text_position != TextPosition::None || text_tokens == 0,
               "token layout: text_position is none but text_tokens = ", text_tokens);
  // The products are checked before any accessor computes them: a wrapped
  // frames x height x width would pass every later check with a small N.
  const int64_t video = checked_product({frames, height, width}, kMaxTokens,
                                        "token layout: frames x height x width");
  MODDIT_CHECK(text_tokens <= kMaxTokens - video, "token layout: ", text_tokens, " text + ", video,
               " video tokens is more than the limit of ", kMaxTokens);
}

std::string TokenLayout::describe() const {
  std::ostringstream os;
  os << frames << " frames x " << height << "x" << width << " tokens";
  if (text_position != TextPosition::None)
    os << ", " << text_tokens << " text tokens (" << text_valid << " valid) "
       << to_string(text_position) << " the video";
  os << ", N = " << total_tokens();
  return os.str();
}

int64_t BlockGrid::video_block_begin(int v) const {
  return starts[first_video_block + v] - starts[first_video_block];
}
int64_t BlockGrid::video_block_end(int v) const {
  return starts[first_video_block + v + 1] - starts[first_video_block];
}

namespace {
void tile(std::vector<int32_t>& starts, int64_t begin, int64_t len, int bs) {
  for (int64_t t = 0; t < len; t += bs) starts.push_back(static_cast<int32_t>(begin + t));
}
}  // namespace

BlockGrid make_block_grid(const TokenLayout& layout, int block_size) {
  layout.validate();
  MODDIT_CHECK(block_size == 64 || block_size == 128, "block_size must be 64 or 128, got ",
               block_size);
  BlockGrid g;
  g.block_size = block_size;
  const int64_t T = layout.text_tokens, V = layout.video_tokens();
  if (layout.text_position == TextPosition::Before) {
    tile(g.starts, 0, T, block_size);
    g.first_video_block = static_cast<int>(g.starts.size());
    tile(g.starts, T, V, block_size);
    g.num_video_blocks = static_cast<int>(g.starts.size()) - g.first_video_block;
  } else {
    g.first_video_block = 0;
    tile(g.starts, 0, V, block_size);
    g.num_video_blocks = static_cast<int>(g.starts.size());
    tile(g.starts, V, T, block_size);
  }
  g.starts.push_back(static_cast<int32_t>(T + V));
  return g;
}

}  // namespace moddit
