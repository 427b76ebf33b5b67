// The modes-per-layer table printed after a search and by the eval.
#include <cstdio>
#include <sstream>

#include "moddit/sparse_vdit.hpp"

namespace moddit {

std::string vdit_summary_table(const VditConfig& config) {
  std::ostringstream os;
  char buf[64];
  os << "layer";
  for (int m = 0; m < kNumVditModes; ++m) {
    std::snprintf(buf, sizeof buf, " %16s", to_string(static_cast<VditMode>(m)));
    os << buf;
  }
  os << "  (% of heads over steps)\n";
  auto row = [&](const char* label, int layer) {
    std::snprintf(buf, sizeof buf, "%5s", label);
    os << buf;
    for (double s : vdit_mode_shares(config, layer)) {
      std::snprintf(buf, sizeof buf, " %15.1f%%", 100.0 * s);
      os << buf;
    }
    os << "\n";
  };
  for (int l = 0; l < config.shape.num_layers; ++l) row(std::to_string(l).c_str(), l);
  row("all", -1);
  std::snprintf(buf, sizeof buf, "mean density %.3f\n", config.mean_density());
  os << buf;
  // Skip is counted at what it computes (nothing): say how much of the density
  // budget that frees, so a low mean density is never read as "all sparse".
  int64_t skip = 0, total = 0;
  for (const auto& step : config.choices)
    for (const auto& layer : step)
      for (const VditHeadChoice& c : layer) {
        skip += c.mode == VditMode::Skip;
        ++total;
      }
  os << "skip heads: " << skip << " of " << total
     << " (step, layer, head) decisions, counted at density 0 (not launched)\n";
  return os.str();
}

}  // namespace moddit
