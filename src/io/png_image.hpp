#pragma once
// A minimal RGB raster and its PNG encoding (libpng), written atomically.
// The heatmap and line-plot writers (png_heatmap.hpp) draw into it.
#include <cstdint>
#include <string>
#include <vector>

namespace moddit {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, 3 bytes per pixel

  RgbImage() = default;
  RgbImage(int width, int height, Rgb fill = {255, 255, 255});
  Rgb at(int x, int y) const {
    const uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
    return {p[0], p[1], p[2]};
  }
  void set(int x, int y, Rgb c) {
    uint8_t* p = &pixels[(static_cast<size_t>(y) * width + x) * 3];
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
  }
  // Sets the pixel only when inside the image (for clipped drawing).
  void set_clipped(int x, int y, Rgb c) {
    if (x >= 0 && y >= 0 && x < width && y < height) set(x, y, c);
  }
  void fill_rect(int x0, int y0, int w, int h, Rgb c);
};

// Encodes an 8-bit RGB PNG in memory (throws moddit::Error on failure).
std::vector<uint8_t> encode_png(const RgbImage& image);
// Encodes and writes atomically; errors name the path.
void write_png(const std::string& path, const RgbImage& image);

}  // namespace moddit
