// The terminal table of a run (format_eval_table).
#include <cmath>
#include <cstdio>
#include <sstream>

#include "moddit/eval.hpp"

namespace moddit {

namespace {
std::string fmt(const char* f, double x) {
  if (!std::isfinite(x)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

// Every policy at the target density: the default view (DESIGN.md 6).
void equal_density_table(const EvalResult& r, size_t w, std::ostringstream& os) {
  char line[512];
  const PolicyResult* oracle = nullptr;
  for (const PolicyResult& p : r.policies)
    if (p.kind == "oracle" && !oracle) oracle = &p;
  os << "at equal density " << fmt("%.4f", r.settings.target_density)
     << " (recall and rel_l2 at the target; the oracle there is the bound):\n";
  std::snprintf(line, sizeof line, "%-*s  %8s  %8s  %8s  %s\n", int(w), "policy", "recall",
                "rel_l2", "/oracle", "from");
  os << line << std::string(w + 2 + 3 * 10 + 40, '-') << "\n";
  for (const PolicyResult& p : r.policies) {
    const EqualDensityPoint& e = p.at_target;
    if (e.basis.empty()) continue;
    std::string from;
    if (p.kind == "dense")
      from = "the reference (density 1)";
    else if (e.basis == "measured")
      from = "measured at " + fmt("%.4f", e.density);
    else if (e.basis == "interpolated")
      from = "INTERPOLATED between runs at " + fmt("%.4f", e.lo_density) + " and " +
             fmt("%.4f", e.hi_density);
    else
      from = "OWN DENSITY " + fmt("%.4f", e.density) + " (not at the target)";
    const bool bound = oracle && oracle->at_target.recall > 0 && p.kind != "dense";
    std::snprintf(line, sizeof line, "%-*s  %8s  %8s  %8s  %s\n", int(w), p.label.c_str(),
                  fmt("%.4f", e.recall).c_str(), fmt("%.4f", e.rel_l2).c_str(),
                  bound ? fmt("%.1f%%", 100.0 * e.recall / oracle->at_target.recall).c_str() : "-",
                  from.c_str());
    os << line;
  }
  for (const PolicyResult& p : r.policies)
    if (!p.at_target.why.empty()) os << p.label << ": " << p.at_target.why << "\n";
  os << "\nas run (each policy at its own achieved density):\n";
}

}  // namespace

std::string format_eval_table(const EvalResult& r) {
  std::ostringstream os;
  size_t w = 6;
  for (const PolicyResult& p : r.policies) w = std::max(w, p.label.size());
  equal_density_table(r, w, os);
  char line[512];
  std::snprintf(line, sizeof line, "%-*s  %8s  %8s  %8s  %8s  %9s\n", int(w), "policy", "density",
                "recall", "rel_l2", "nae", "ms/call");
  os << line << std::string(w + 2 + 4 * 10 + 11, '-') << "\n";
  const PolicyResult* oracle = nullptr;
  for (const PolicyResult& p : r.policies) {
    if (p.kind == "oracle" && !oracle) oracle = &p;
    std::snprintf(line, sizeof line, "%-*s  %8s  %8s  %8s  %8s  %9s\n", int(w), p.label.c_str(),
                  fmt("%.4f", p.density).c_str(), fmt("%.4f", p.recall).c_str(),
                  fmt("%.4f", p.rel_l2).c_str(),
                  p.nae >= 0 ? fmt("%.4f", p.nae).c_str() : "-",
                  fmt("%.2f", p.ms_per_call).c_str());
    os << line;
  }
  os << "(means over steps >= " << r.sparse_from_step << ", " << r.layers.size() << " layer(s), "
     << r.info.heads << " heads; target density " << r.settings.target_density << ")\n";
  // Share of heads per head-group label where a policy has several (modes).
  for (const PolicyResult& p : r.policies) {
    if (p.head_modes.size() < 2) continue;
    os << p.label << " heads:";
    for (const auto& m : p.head_modes) os << " " << m.first << " " << fmt("%.1f", 100.0 * m.second) << "%";
    // A skipped head is in the density at 0: say so next to the share it frees.
    if (p.head_modes.count("skip")) os << " (skip: not launched, counted at density 0)";
    os << "\n";
  }
  for (const PolicyResult& p : r.policies) {
    if (p.kind != "moddit") continue;
    os << p.label << ": recall " << fmt("%.4f", p.recall);
    if (oracle && oracle->recall > 0)
      os << " = " << fmt("%.1f", 100.0 * p.recall / oracle->recall) << "% of the oracle's ("
         << fmt("%.4f", oracle->recall) << " at density " << fmt("%.4f", oracle->density) << ")";
    if (p.oracle_recall_same_density > 0)
      os << "; oracle at MOD-DiT's own per-head density: "
         << fmt("%.4f", p.oracle_recall_same_density) << " ("
         << fmt("%.1f", 100.0 * p.recall / p.oracle_recall_same_density) << "%)";
    os << "\n";
  }
  for (const std::string& why : r.off_target) os << "off target: " << why << "\n";
  return os.str();
}

}  // namespace moddit
