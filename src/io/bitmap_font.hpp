#pragma once
// A tiny built-in 5x7 pixel font, so that the PNG plots and heatmaps carry their
// numbers and labels without a font library. Lower-case letters, digits and the
// punctuation plots need; upper case is drawn as lower case, anything else as '?'.
#include <string>

#include "io/png_image.hpp"

namespace moddit {

constexpr int kGlyphWidth = 5, kGlyphHeight = 7, kGlyphAdvance = 6;

// Width in pixels of `text` at `scale` (each font pixel is scale x scale).
int text_width(const std::string& text, int scale = 1);
// Draws `text` with its top-left corner at (x, y), clipped to the image.
void draw_text(RgbImage& image, int x, int y, const std::string& text, Rgb color, int scale = 1);

}  // namespace moddit
