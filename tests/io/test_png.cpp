#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "io/bitmap_font.hpp"
#include "io/png_heatmap.hpp"
#include "io_test_util.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace {

using test::ScratchDir;

// Reads a PNG back with libpng (independently of our writer) as 8-bit RGB.
RgbImage read_png_rgb(const std::string& path) {
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path.c_str()))
    throw std::runtime_error("libpng cannot read " + path + ": " + img.message);
  img.format = PNG_FORMAT_RGB;
  RgbImage out(static_cast<int>(img.width), static_cast<int>(img.height));
  if (!png_image_finish_read(&img, nullptr, out.pixels.data(), 0, nullptr))
    throw std::runtime_error("libpng cannot decode " + path + ": " + img.message);
  return out;
}

double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

TEST(Png, ColormapIsPerceptuallyOrdered) {
  double prev = -1;
  for (int i = 0; i <= 100; ++i) {
    const double l = luminance(colormap_viridis(static_cast<float>(i) / 100.f));
    EXPECT_GT(l, prev) << "luminance not increasing at t = " << i / 100.0;
    prev = l;
  }
  EXPECT_EQ(colormap_viridis(-3.f), colormap_viridis(0.f));
  EXPECT_EQ(colormap_viridis(7.f), colormap_viridis(1.f));
}

TEST(Png, HeatmapAutoRangeRoundTrip) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed());
  const int rows = 5, cols = 7;
  const auto v = test::random_floats(rows * cols, rng, 10.f);
  const std::string path = dir.file("heat.png");
  write_heatmap_png(path, v.data(), rows, cols);
  const RgbImage img = read_png_rgb(path);
  const int scale = (256 + cols - 1) / cols;  // longer side reaches 256 px
  ASSERT_EQ(img.width, cols * scale);
  ASSERT_EQ(img.height, rows * scale);
  const auto mn = std::min_element(v.begin(), v.end()) - v.begin();
  const auto mx = std::max_element(v.begin(), v.end()) - v.begin();
  // Check every pixel of the min and max cells (nearest-neighbour blocks).
  for (int dy = 0; dy < scale; ++dy)
    for (int dx = 0; dx < scale; ++dx) {
      ASSERT_EQ(img.at(static_cast<int>(mn % cols) * scale + dx, static_cast<int>(mn / cols) * scale + dy),
                colormap_viridis(0.f));
      ASSERT_EQ(img.at(static_cast<int>(mx % cols) * scale + dx, static_cast<int>(mx / cols) * scale + dy),
                colormap_viridis(1.f));
    }
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"heat.png"});
}

TEST(Png, HeatmapFixedRangeClampsAndNanIsGrey) {
  const float v[4] = {-5.f, 0.5f, 9.f, NAN};
  HeatmapStyle st;
  st.auto_range = false;
  st.vmin = 0.f;
  st.vmax = 1.f;
  st.min_pixels = 0;  // no upscaling
  const RgbImage img = render_heatmap(v, 2, 2, st);
  ASSERT_EQ(img.width, 2);
  EXPECT_EQ(img.at(0, 0), colormap_viridis(0.f));
  EXPECT_EQ(img.at(1, 0), colormap_viridis(0.5f));
  EXPECT_EQ(img.at(0, 1), colormap_viridis(1.f));
  EXPECT_EQ(img.at(1, 1), (Rgb{128, 128, 128}));
  st.vmin = 2.f;
  EXPECT_THROW(render_heatmap(v, 2, 2, st), Error);  // vmin > vmax
  EXPECT_THROW(render_heatmap(v, 0, 2, HeatmapStyle{}), Error);
}

TEST(Png, MaskModeUsesTwoColours) {
  std::mt19937 rng(test::test_seed() + 1);
  std::vector<float> m(24 * 24);
  for (auto& x : m) x = static_cast<float>(rng() % 2);
  HeatmapStyle st;
  st.binary_mask = true;
  const RgbImage img = render_heatmap(m.data(), 24, 24, st);
  std::set<std::tuple<int, int, int>> colours;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const Rgb c = img.at(x, y);
      colours.insert({c.r, c.g, c.b});
    }
  EXPECT_EQ(colours.size(), 2u);
  const int scale = img.width / 24;
  for (int i = 0; i < 24 * 24; ++i)
    EXPECT_EQ(img.at((i % 24) * scale, (i / 24) * scale), m[static_cast<size_t>(i)] > 0.5f ? st.mask_on : st.mask_off);
}

TEST(Png, TriptychTilesWithSeparator) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed() + 2);
  const int n = 12;
  const auto a = test::random_floats(n * n, rng), b = test::random_floats(n * n, rng);
  std::vector<float> mask(n * n);
  for (auto& x : mask) x = static_cast<float>(rng() % 2);
  std::vector<HeatmapPanel> panels(3);
  panels[0] = {a.data(), n, n, {}, ""};
  panels[1] = {b.data(), n, n, {}, ""};
  panels[2] = {mask.data(), n, n, {}, ""};
  panels[2].style.binary_mask = true;
  const std::string path = dir.file("tri.png");
  write_heatmap_row_png(path, panels, 5);
  const RgbImage img = read_png_rgb(path);
  const RgbImage one = render_heatmap(a.data(), n, n);
  EXPECT_EQ(img.width, 3 * one.width + 2 * 5);
  EXPECT_EQ(img.height, one.height);
  for (int y = 0; y < img.height; y += 7) {
    EXPECT_EQ(img.at(one.width + 2, y), (Rgb{255, 255, 255}));          // separator
    EXPECT_EQ(img.at(3, y), one.at(3, y));                               // first panel intact
  }
  const RgbImage tall = tile_horizontal({render_heatmap(a.data(), n, n), render_heatmap(a.data(), 2 * n, n / 2)});
  EXPECT_EQ(tall.height, std::max(one.height, render_heatmap(a.data(), 2 * n, n / 2).height));
}

TEST(Png, LinePlotDrawsSeriesColoursAndLegend) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed() + 3);
  std::vector<float> x;
  for (int i = 0; i < 50; ++i) x.push_back(static_cast<float>(i));
  std::vector<PlotSeries> series(3);
  for (int s = 0; s < 3; ++s) {
    series[static_cast<size_t>(s)].label = "s" + std::to_string(s);
    for (int i = 0; i < 50; ++i)
      series[static_cast<size_t>(s)].y.push_back(std::exp(-0.05f * i) * (s + 1) +
                                                 0.05f * test::random_floats(1, rng)[0]);
  }
  series[1].y[10] = NAN;  // a gap
  const std::string path = dir.file("plot.png");
  LinePlotStyle style;
  style.width = 500;
  style.height = 300;
  style.log_y = true;
  write_line_plot_png(path, x, series, style);
  const RgbImage img = read_png_rgb(path);
  ASSERT_EQ(img.width, 500);
  ASSERT_EQ(img.height, 300);
  std::map<std::tuple<int, int, int>, int> count;
  for (int y = 0; y < img.height; ++y)
    for (int xx = 0; xx < img.width; ++xx) {
      const Rgb c = img.at(xx, y);
      ++count[{c.r, c.g, c.b}];
    }
  for (int s = 0; s < 3; ++s) {
    const Rgb c = series_color(s);
    EXPECT_GT((count[{c.r, c.g, c.b}]), 100) << "series " << s << " (" << series_color_name(s) << ")";
  }
  EXPECT_GT((count[{255, 255, 255}]), 500 * 300 / 2);  // mostly background
  EXPECT_GT((count[{0, 0, 0}]), 1000);  // axes box
  EXPECT_NE(series_color(0), series_color(1));
  EXPECT_THROW(render_line_plot(x, {{std::vector<float>(3, 1.f), "short"}}), Error);
}

}  // namespace
}  // namespace moddit

namespace moddit {
namespace {

// The built-in font draws inside the box text_width x kGlyphHeight, distinct
// characters differ, and unknown characters fall back to '?'.
TEST(BitmapFont, DrawsInsideItsBoxAndDistinguishesGlyphs) {
  const std::string text = "recall 0.95";
  EXPECT_EQ(text_width(text), int(text.size()) * kGlyphAdvance - 1);
  EXPECT_EQ(text_width(text, 2), 2 * text_width(text));
  EXPECT_EQ(text_width(""), 0);
  RgbImage img(80, 20, {255, 255, 255});
  draw_text(img, 3, 4, text, {0, 0, 0});
  int inside = 0, outside = 0;
  for (int y = 0; y < img.height; ++y)
    for (int x = 0; x < img.width; ++x) {
      const bool ink = img.at(x, y) == Rgb{0, 0, 0};
      const bool in_box = x >= 3 && x < 3 + text_width(text) && y >= 4 && y < 4 + kGlyphHeight;
      (in_box ? inside : outside) += ink;
    }
  EXPECT_GT(inside, 40);
  EXPECT_EQ(outside, 0);

  auto render = [](const std::string& s) {
    RgbImage one(8, 9, {255, 255, 255});
    draw_text(one, 1, 1, s, {0, 0, 0});
    return one.pixels;
  };
  const std::string chars = "0123456789abcdefghijklmnopqrstuvwxyz.-_:=%/()[]+,|";
  for (size_t i = 0; i < chars.size(); ++i)
    for (size_t j = i + 1; j < chars.size(); ++j)
      EXPECT_NE(render(std::string(1, chars[i])), render(std::string(1, chars[j])))
          << "'" << chars[i] << "' and '" << chars[j] << "' look the same";
  EXPECT_EQ(render("A"), render("a"));
  EXPECT_EQ(render("~"), render("?"));
  // Clipped at the image border, never out of bounds.
  draw_text(img, 75, 15, "clip", {0, 0, 0}, 3);
}

}  // namespace
}  // namespace moddit
