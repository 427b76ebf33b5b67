#include "io/png_heatmap.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "io/bitmap_font.hpp"

#include "moddit/error.hpp"

namespace moddit {
namespace {

// Anchor colours of the perceptual map, evenly spaced in t, interpolated
// linearly. Chosen so luminance rises monotonically (readable in greyscale).
constexpr uint8_t kViridisAnchors[9][3] = {
    {68, 1, 84},   {71, 45, 123},  {59, 82, 139},  {44, 114, 142}, {33, 145, 140},
    {40, 174, 128}, {94, 201, 98}, {173, 220, 48}, {253, 231, 37},
};

constexpr Rgb kNanColor{128, 128, 128};

// Okabe-Ito-style palette: distinguishable with common colour-vision deficiencies.
constexpr Rgb kSeriesColors[] = {
    {0, 114, 178},  {230, 159, 0},   {0, 158, 115},  {204, 51, 17},   {120, 94, 180},
    {86, 180, 233}, {204, 121, 167}, {100, 100, 100}, {170, 150, 0},  {0, 0, 0},
};
constexpr const char* kSeriesColorNames[] = {"blue",    "orange", "green", "red",   "purple",
                                             "sky-blue", "pink",  "grey",  "olive", "black"};
constexpr int kNumSeriesColors = 10;

}  // namespace

Rgb colormap_viridis(float t) {
  if (!(t > 0.f)) t = 0.f;  // also maps NaN to 0
  if (t > 1.f) t = 1.f;
  const float pos = t * 8.f;
  const int i = std::min(7, static_cast<int>(pos));
  const float f = pos - static_cast<float>(i);
  auto lerp = [&](int c) {
    const float v = kViridisAnchors[i][c] + f * (kViridisAnchors[i + 1][c] - kViridisAnchors[i][c]);
    return static_cast<uint8_t>(std::lround(v));
  };
  return {lerp(0), lerp(1), lerp(2)};
}

RgbImage render_heatmap(const float* values, int rows, int cols, const HeatmapStyle& style) {
  MODDIT_CHECK(rows > 0 && cols > 0, "heatmap: empty matrix ", rows, "x", cols);
  MODDIT_CHECK(values != nullptr, "heatmap: null values");
  MODDIT_CHECK(style.min_pixels >= 0, "heatmap: min_pixels must be >= 0");
  float lo = style.vmin, hi = style.vmax;
  if (style.auto_range) {
    lo = std::numeric_limits<float>::infinity();
    hi = -lo;
    for (int64_t i = 0; i < int64_t(rows) * cols; ++i)
      if (std::isfinite(values[i])) {
        lo = std::min(lo, values[i]);
        hi = std::max(hi, values[i]);
      }
    if (!(lo <= hi)) lo = 0.f, hi = 1.f;  // no finite value at all
  } else {
    MODDIT_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "heatmap: invalid range [",
                 lo, ", ", hi, "]");
  }
  const int longer = std::max(rows, cols);
  const int scale = std::max(1, (style.min_pixels + longer - 1) / longer);
  RgbImage img(cols * scale, rows * scale);
  const float range = hi - lo;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const float v = values[int64_t(r) * cols + c];
      Rgb color;
      if (std::isnan(v)) {
        color = kNanColor;
      } else if (style.binary_mask) {
        color = v > style.mask_threshold ? style.mask_on : style.mask_off;
      } else {
        // A constant map shows as the colormap's middle.
        const float t = range > 0.f ? (v - lo) / range : 0.5f;
        color = colormap_viridis(t);
      }
      img.fill_rect(c * scale, r * scale, scale, scale, color);
    }
  return img;
}

void write_heatmap_png(const std::string& path, const float* values, int rows, int cols,
                       const HeatmapStyle& style) {
  write_png(path, render_heatmap(values, rows, cols, style));
}

RgbImage tile_horizontal(const std::vector<RgbImage>& panels, int separator_px, Rgb separator) {
  MODDIT_CHECK(!panels.empty(), "tile_horizontal: no panels");
  MODDIT_CHECK(separator_px >= 0, "tile_horizontal: negative separator width");
  int width = separator_px * (static_cast<int>(panels.size()) - 1), height = 0;
  for (const auto& p : panels) {
    MODDIT_CHECK(p.width > 0 && p.height > 0, "tile_horizontal: empty panel");
    width += p.width;
    height = std::max(height, p.height);
  }
  RgbImage out(width, height, separator);
  int x0 = 0;
  for (const auto& p : panels) {
    for (int y = 0; y < p.height; ++y)
      std::copy_n(&p.pixels[static_cast<size_t>(y) * p.width * 3], static_cast<size_t>(p.width) * 3,
                  &out.pixels[(static_cast<size_t>(y) * width + x0) * 3]);
    x0 += p.width + separator_px;
  }
  return out;
}

void write_heatmap_row_png(const std::string& path, const std::vector<HeatmapPanel>& panels,
                           int separator_px) {
  bool titled = false;
  for (const auto& p : panels) titled = titled || !p.title.empty();
  std::vector<RgbImage> images;
  for (const auto& p : panels) {
    RgbImage map = render_heatmap(p.values, p.rows, p.cols, p.style);
    if (!titled) {
      images.push_back(std::move(map));
      continue;
    }
    // A title strip above the panel (the text is clipped to the panel's width).
    const int strip = kGlyphHeight + 6;
    RgbImage framed(map.width, map.height + strip, {255, 255, 255});
    draw_text(framed, 2, 3, p.title, {0, 0, 0});
    for (int y = 0; y < map.height; ++y)
      std::copy_n(&map.pixels[static_cast<size_t>(y) * map.width * 3],
                  static_cast<size_t>(map.width) * 3,
                  &framed.pixels[static_cast<size_t>(y + strip) * map.width * 3]);
    images.push_back(std::move(framed));
  }
  write_png(path, tile_horizontal(images, separator_px));
}

// ---- line plots -------------------------------------------------------------

Rgb series_color(int i) { return kSeriesColors[((i % kNumSeriesColors) + kNumSeriesColors) % kNumSeriesColors]; }
const char* series_color_name(int i) {
  return kSeriesColorNames[((i % kNumSeriesColors) + kNumSeriesColors) % kNumSeriesColors];
}

namespace {

// Thick line (2 px) by Bresenham, clipped to [x0, x1] x [y0, y1].
void draw_line(RgbImage& img, int xa, int ya, int xb, int yb, Rgb c, int cx0, int cy0, int cx1,
               int cy1) {
  const int dx = std::abs(xb - xa), sx = xa < xb ? 1 : -1;
  const int dy = -std::abs(yb - ya), sy = ya < yb ? 1 : -1;
  int err = dx + dy;
  for (;;) {
    for (int oy = 0; oy < 2; ++oy)
      for (int ox = 0; ox < 2; ++ox) {
        const int x = xa + ox, y = ya + oy;
        if (x >= cx0 && x <= cx1 && y >= cy0 && y <= cy1) img.set_clipped(x, y, c);
      }
    if (xa == xb && ya == yb) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      xa += sx;
    }
    if (e2 <= dx) {
      err += dx;
      ya += sy;
    }
  }
}

}  // namespace

RgbImage render_line_plot(const std::vector<float>& x, const std::vector<PlotSeries>& series,
                          const LinePlotStyle& style) {
  MODDIT_CHECK(!x.empty(), "line plot: no x values");
  MODDIT_CHECK(style.width >= 64 && style.height >= 48, "line plot: size ", style.width, "x",
               style.height, " is too small (minimum 64x48)");
  for (size_t s = 0; s < series.size(); ++s)
    MODDIT_CHECK(series[s].y.size() == x.size(), "line plot: series ", s, " ('", series[s].label,
                 "') has ", series[s].y.size(), " values for ", x.size(), " x values");
  auto ty = [&](float v) { return style.log_y ? (v > 0.f ? std::log10(v) : NAN) : v; };

  float xlo = std::numeric_limits<float>::infinity(), xhi = -xlo;
  for (float v : x)
    if (std::isfinite(v)) xlo = std::min(xlo, v), xhi = std::max(xhi, v);
  if (!(xlo <= xhi)) xlo = 0.f, xhi = 1.f;
  if (xhi == xlo) xlo -= 0.5f, xhi += 0.5f;

  float ylo, yhi;
  if (style.auto_range) {
    ylo = std::numeric_limits<float>::infinity();
    yhi = -ylo;
    for (const auto& s : series)
      for (float v : s.y) {
        const float t = ty(v);
        if (std::isfinite(t)) ylo = std::min(ylo, t), yhi = std::max(yhi, t);
      }
    if (!(ylo <= yhi)) ylo = 0.f, yhi = 1.f;
    const float pad = yhi > ylo ? 0.05f * (yhi - ylo) : 0.5f;
    ylo -= pad;
    yhi += pad;
  } else {
    ylo = ty(style.ymin);
    yhi = ty(style.ymax);
    MODDIT_CHECK(std::isfinite(ylo) && std::isfinite(yhi) && ylo < yhi,
                 "line plot: invalid y range [", style.ymin, ", ", style.ymax, "]");
  }

  // Tick values at the quarters: %.3g of the value (10^t on a log axis).
  auto label = [](float v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return std::string(buf);
  };
  auto yvalue = [&](float t) { return style.log_y ? std::pow(10.f, t) : t; };
  int ylabel_w = 0;
  for (int q = 0; q <= 4; ++q)
    ylabel_w = std::max(ylabel_w, text_width(label(yvalue(ylo + (yhi - ylo) * q / 4.f))));

  RgbImage img(style.width, style.height, {255, 255, 255});
  const int line = kGlyphHeight + 4;
  const int left = ylabel_w + 8, right = style.width - 10;
  const int top = style.title.empty() ? 10 : 10 + line;
  const int bottom = style.height - 8 - line - (style.x_label.empty() ? 0 : line);
  MODDIT_CHECK(right - left >= 32 && bottom - top >= 24, "line plot: size ", style.width, "x",
               style.height, " leaves no room for the axes");
  const Rgb grid{225, 225, 225}, axis{0, 0, 0}, ink{40, 40, 40};
  for (int q = 1; q < 4; ++q) {
    const int gx = left + (right - left) * q / 4, gy = top + (bottom - top) * q / 4;
    for (int y = top; y <= bottom; ++y) img.set(gx, y, grid);
    for (int xx = left; xx <= right; ++xx) img.set(xx, gy, grid);
  }
  for (int xx = left; xx <= right; ++xx) img.set(xx, top, axis), img.set(xx, bottom, axis);
  for (int y = top; y <= bottom; ++y) img.set(left, y, axis), img.set(right, y, axis);
  for (int q = 0; q <= 4; ++q) {
    const std::string yl = label(yvalue(ylo + (yhi - ylo) * q / 4.f));
    const int gy = bottom - (bottom - top) * q / 4;
    draw_text(img, left - 4 - text_width(yl), gy - kGlyphHeight / 2, yl, ink);
    const std::string xl = label(xlo + (xhi - xlo) * q / 4.f);
    const int gx = left + (right - left) * q / 4;
    const int tx = std::clamp(gx - text_width(xl) / 2, 0, style.width - text_width(xl));
    draw_text(img, tx, bottom + 4, xl, ink);
  }
  if (!style.title.empty())
    draw_text(img, std::max(0, (left + right - text_width(style.title)) / 2), 4, style.title, axis);
  if (!style.x_label.empty())
    draw_text(img, std::max(0, (left + right - text_width(style.x_label)) / 2), bottom + 4 + line,
              style.x_label, ink);

  auto px = [&](float v) {
    return left + 1 + static_cast<int>(std::lround((v - xlo) / (xhi - xlo) * (right - left - 3)));
  };
  auto py = [&](float v) {
    const float t = std::clamp((v - ylo) / (yhi - ylo), -0.01f, 1.01f);
    return bottom - 2 - static_cast<int>(std::lround(t * (bottom - top - 3)));
  };
  const bool markers = style.markers && x.size() <= 80;
  for (size_t s = 0; s < series.size(); ++s) {
    const Rgb c = series_color(static_cast<int>(s));
    bool have_prev = false;
    int prev_x = 0, prev_y = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const float v = ty(series[s].y[i]);
      if (!std::isfinite(v) || !std::isfinite(x[i])) {
        have_prev = false;
        continue;
      }
      const int cx = px(x[i]), cy = py(v);
      if (have_prev) draw_line(img, prev_x, prev_y, cx, cy, c, left + 1, top + 1, right - 1, bottom - 1);
      if (markers)
        for (int oy = -1; oy <= 2; ++oy)
          for (int ox = -1; ox <= 2; ++ox)
            if (cx + ox > left && cx + ox < right && cy + oy > top && cy + oy < bottom)
              img.set(cx + ox, cy + oy, c);
      have_prev = true;
      prev_x = cx;
      prev_y = cy;
    }
  }
  // Legend: a swatch and the label per series, top right, on a white backing.
  if (!series.empty()) {
    const int n = static_cast<int>(series.size());
    const int sw = 14, sh = 8, gap = 4;
    int label_w = 0;
    for (const auto& ser : series) label_w = std::max(label_w, text_width(ser.label));
    const int lw = sw + 8 + (label_w ? label_w + 4 : 0), lh = n * (sh + gap) + gap;
    const int lx = right - lw - 6, ly = top + 6;
    img.fill_rect(lx, ly, lw, lh, {255, 255, 255});
    for (int xx = lx; xx < lx + lw; ++xx) img.set_clipped(xx, ly, axis), img.set_clipped(xx, ly + lh - 1, axis);
    for (int y = ly; y < ly + lh; ++y) img.set_clipped(lx, y, axis), img.set_clipped(lx + lw - 1, y, axis);
    for (int i = 0; i < n; ++i) {
      const int ry = ly + gap + i * (sh + gap);
      img.fill_rect(lx + 4, ry, sw, sh, series_color(i));
      draw_text(img, lx + sw + 8, ry + (sh - kGlyphHeight) / 2, series[i].label, ink);
    }
  }
  return img;
}

void write_line_plot_png(const std::string& path, const std::vector<float>& x,
                         const std::vector<PlotSeries>& series, const LinePlotStyle& style) {
  write_png(path, render_line_plot(x, series, style));
}

}  // namespace moddit
