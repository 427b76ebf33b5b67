#pragma once
// Pictures for the eval: float matrices as heatmaps (sparsity map | fitted map |
// mask triptychs) and simple line plots (e.g. rel_l2 over steps). No text is
// drawn; callers say in their text output what each panel / colour is.
#include <string>
#include <vector>

#include "io/png_image.hpp"

namespace moddit {

// Perceptual colormap (dark purple -> blue -> green -> yellow, luminance
// increasing; our own viridis-like table). t is clamped to [0, 1].
Rgb colormap_viridis(float t);

struct HeatmapStyle {
  // Value range mapped to the colormap ends: the finite min/max of the data
  // (auto_range) or [vmin, vmax]. Values outside are clamped; NaN is grey.
  bool auto_range = true;
  float vmin = 0.f, vmax = 1.f;
  // Nearest-neighbour upscaling by an integer factor until the longer side is
  // at least this many pixels (never downscales).
  int min_pixels = 256;
  // Binary mask mode: value > mask_threshold -> mask_on, otherwise mask_off.
  bool binary_mask = false;
  float mask_threshold = 0.5f;
  Rgb mask_on{253, 231, 37};
  Rgb mask_off{68, 1, 84};
};

// values: rows x cols, row-major (row = query block, col = key block).
RgbImage render_heatmap(const float* values, int rows, int cols, const HeatmapStyle& style = {});
void write_heatmap_png(const std::string& path, const float* values, int rows, int cols,
                       const HeatmapStyle& style = {});

// Panels side by side, top-aligned, separated by `separator_px` columns of
// `separator` (shorter panels are padded with it).
RgbImage tile_horizontal(const std::vector<RgbImage>& panels, int separator_px = 4,
                         Rgb separator = {255, 255, 255});

struct HeatmapPanel {
  const float* values = nullptr;
  int rows = 0, cols = 0;
  HeatmapStyle style;
  std::string title;  // drawn above the panel (built-in font) when not empty
};
// E.g. {map, fitted, mask} with the same fixed range on the first two and
// binary_mask on the third.
void write_heatmap_row_png(const std::string& path, const std::vector<HeatmapPanel>& panels,
                           int separator_px = 4);

// ---- line plots -------------------------------------------------------------

struct PlotSeries {
  std::vector<float> y;  // one value per x; NaN/inf leave a gap
  std::string label;     // drawn in the legend beside the series' colour
};

struct LinePlotStyle {
  int width = 640, height = 400;
  bool log_y = false;     // non-positive values leave a gap
  bool auto_range = true; // else [ymin, ymax]
  float ymin = 0.f, ymax = 1.f;
  bool markers = true;    // small squares at the data points (when few)
  std::string title;      // above the axes
  std::string x_label;    // below the x tick values
};

// Colour of series i (a colour-blind-friendly palette, cycling), and its name
// for text legends ("blue", "orange", ...).
Rgb series_color(int i);
const char* series_color_name(int i);

// Series over a shared x, each in series_color(i), inside an axes box with light
// grid lines at the quarters and their values (x below, y on the left); a legend
// of colour swatches with the series labels (top to bottom in series order) sits
// at the top right inside the box; the title above.
RgbImage render_line_plot(const std::vector<float>& x, const std::vector<PlotSeries>& series,
                          const LinePlotStyle& style = {});
void write_line_plot_png(const std::string& path, const std::vector<float>& x,
                         const std::vector<PlotSeries>& series, const LinePlotStyle& style = {});

}  // namespace moddit
