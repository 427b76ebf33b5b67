// write_eval_report(): the report directory, replaced as one unit
// (io/atomic_dir.hpp): the PNG pictures and report.json (which lists them) are
// written into a staging directory that then takes the old one's place.
#include <cmath>

#include "eval/report_json.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/png_heatmap.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"

namespace moddit {

namespace {

std::vector<float> as_floats(const std::vector<uint8_t>& m) {
  return std::vector<float>(m.begin(), m.end());
}

HeatmapPanel fixed_range_panel(const std::vector<float>& v, int n) {
  HeatmapPanel p;
  p.values = v.data();
  p.rows = n;
  p.cols = n;
  p.style.auto_range = false;
  p.style.vmin = 0.f;
  p.style.vmax = 1.f;
  return p;
}

HeatmapPanel mask_panel(const std::vector<float>& v, int n) {
  HeatmapPanel p = fixed_range_panel(v, n);
  p.style.binary_mask = true;
  return p;
}

// A report directory holds report.json and PNG pictures; anything else in an
// existing one is someone else's, and makes the writer refuse.
bool is_report_entry(const std::string& name) {
  return name == "report.json" ||
         (name.size() > 4 && name.compare(name.size() - 4, 4, ".png") == 0);
}

eval::PictureInfo write_snapshot(const EvalSnapshot& s, AtomicDirectory& dir) {
  eval::PictureInfo info;
  info.file = "maps_s" + std::to_string(s.step) + "_l" + std::to_string(s.layer) + "_h" +
              std::to_string(s.head) + ".png";
  info.what = "block maps of step " + std::to_string(s.step) + ", layer " +
              std::to_string(s.layer) + ", head " + std::to_string(s.head) +
              " (batch item 0; rows = query blocks, columns = key blocks; heatmaps on [0, 1], "
              "dark = 0; masks yellow = live)";
  info.step = s.step;
  info.layer = s.layer;
  info.head = s.head;
  // The panels keep their data alive until the PNG is written.
  std::vector<std::vector<float>> data;
  data.reserve(4);
  std::vector<HeatmapPanel> panels;
  data.push_back(s.sparsity);
  panels.push_back(fixed_range_panel(data.back(), s.n));
  panels.back().title = "s dense";
  info.panels.push_back("sparsity map S of the dense attention (fraction of P < eta)");
  if (!s.fitted.empty()) {
    data.push_back(s.fitted);
    panels.push_back(fixed_range_panel(data.back(), s.n));
    panels.back().title = "fit m x";
    info.panels.push_back("MOD-DiT fitted map M X (latest fit)");
  }
  if (!s.moddit_mask.empty()) {
    data.push_back(as_floats(s.moddit_mask));
    panels.push_back(mask_panel(data.back(), s.n));
    panels.back().title = "moddit mask";
    info.panels.push_back("MOD-DiT mask at this step");
  }
  if (!s.oracle_mask.empty()) {
    data.push_back(as_floats(s.oracle_mask));
    panels.push_back(mask_panel(data.back(), s.n));
    panels.back().title = "oracle mask";
    info.panels.push_back("oracle mask at this step");
  }
  write_heatmap_row_png(dir.file(info.file), panels, 6);
  return info;
}

eval::PictureInfo write_series_plot(const EvalResult& r, AtomicDirectory& dir,
                                    const std::string& metric) {
  eval::PictureInfo info;
  info.file = metric + "_over_steps.png";
  info.what = metric + " per step (mean over layers and heads) at the target density " +
              std::to_string(r.settings.target_density) +
              " (interpolated between two runs where a policy's own density misses it, "
              "report.json at_target), x = trajectory step";
  std::vector<float> x;
  for (int s : r.steps) x.push_back(static_cast<float>(s));
  std::vector<PlotSeries> series;
  for (size_t i = 0; i < r.policies.size(); ++i) {
    const PolicyResult& p = r.policies[i];
    // The equal-density series where there is one for every step, else the own run.
    const std::vector<double>& at =
        metric == "recall" ? p.at_target.per_step_recall : p.at_target.per_step_rel_l2;
    const std::vector<double>& own = metric == "recall" ? p.per_step.recall : p.per_step.rel_l2;
    const std::vector<double>& v = at.size() == own.size() ? at : own;
    PlotSeries ps;
    // The picture's own legend marks the values that are not as measured.
    ps.label = p.label + (p.at_target.basis == "interpolated"  ? " (interp.)"
                          : p.at_target.basis == "own density" ? " (own dens.)"
                                                               : "");
    for (double y : v) ps.y.push_back(static_cast<float>(y));
    series.push_back(std::move(ps));
    const std::string basis = p.kind == "dense" || p.at_target.basis.empty()
                                  ? ""
                                  : " (" + p.at_target.basis + ")";
    info.panels.push_back(p.label + ": " + series_color_name(static_cast<int>(i)) + basis);
  }
  LinePlotStyle style;
  style.markers = x.size() <= 60;
  style.title = metric + " per step at equal density";
  style.x_label = "denoising step";
  write_line_plot_png(dir.file(info.file), x, series, style);
  return info;
}

}  // namespace

std::string eval_pictures_legend(const EvalResult& r) {
  std::string s;
  if (!r.snapshots.empty()) {
    const EvalSnapshot& e = r.snapshots.front();
    s += "maps_s<step>_l<layer>_h<head>.png, left to right: dense sparsity map S";
    if (!e.fitted.empty()) s += " | MOD-DiT fitted map";
    if (!e.moddit_mask.empty()) s += " | MOD-DiT mask";
    if (!e.oracle_mask.empty()) s += " | oracle mask";
    s += " (dark = 0, yellow = 1 / live)\n";
  }
  s += "rel_l2_over_steps.png, recall_over_steps.png (at the target density):";
  for (size_t i = 0; i < r.policies.size(); ++i)
    s += std::string(i ? "," : "") + " " + r.policies[i].label + " " +
         series_color_name(static_cast<int>(i)) +
         (r.policies[i].at_target.basis == "interpolated"  ? " (interpolated)"
          : r.policies[i].at_target.basis == "own density" ? " (own density)"
                                                           : "");
  return s + "\n";
}

void check_report_dir(const std::string& dir) {
  AtomicDirectory::check(dir, is_report_entry, "report directory");
}

std::vector<std::string> write_eval_report(const EvalResult& result, const std::string& dir) {
  AtomicDirectory out(dir, is_report_entry, "report directory");
  std::vector<eval::PictureInfo> pictures;
  for (const EvalSnapshot& s : result.snapshots) pictures.push_back(write_snapshot(s, out));
  if (!result.steps.empty()) {
    pictures.push_back(write_series_plot(result, out, "rel_l2"));
    pictures.push_back(write_series_plot(result, out, "recall"));
  }
  write_file_atomic(out.file("report.json"), eval::report_json_text(result, pictures));
  out.commit();
  const std::string report = dir + "/report.json";
  std::vector<std::string> written = {report};
  for (const auto& p : pictures) written.push_back(dir + "/" + p.file);
  return written;
}

}  // namespace moddit
