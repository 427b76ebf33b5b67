// report.json: the settings of a run, the per-policy means over the sparse steps,
// per-step series, per-call per-head detail, MOD-DiT's fits and the notes.
#include <nlohmann/json.hpp>

#include <cmath>

#include "eval/report_json.hpp"
#include "moddit/eval.hpp"

namespace moddit {
namespace eval {

namespace {
using json = nlohmann::json;

json number(double x) { return std::isfinite(x) ? json(x) : json(nullptr); }

json numbers(const std::vector<double>& v) {
  json a = json::array();
  for (double x : v) a.push_back(number(x));
  return a;
}

json policy_json(const PolicyResult& p) {
  json j;
  j["label"] = p.label;
  j["kind"] = p.kind;
  j["density"] = number(p.density);
  j["recall"] = number(p.recall);
  j["rel_l2"] = number(p.rel_l2);
  j["ms_per_call"] = number(p.ms_per_call);
  j["sparse_calls"] = p.sparse_calls;
  j["head_modes"] = p.head_modes;  // share of heads per group label ("skip": in no group)
  if (p.kind == "moddit") {
    j["nae"] = p.nae >= 0 ? number(p.nae) : json(nullptr);
    j["oracle_recall_same_density"] =
        p.oracle_recall_same_density >= 0 ? number(p.oracle_recall_same_density) : json(nullptr);
  }
  // The equal-density view: the policy at the run's target density.
  const EqualDensityPoint& eq = p.at_target;
  json at;
  at["basis"] = eq.basis;  // "measured", "interpolated" or "own density"
  at["density"] = number(eq.density);
  at["recall"] = number(eq.recall);
  at["rel_l2"] = number(eq.rel_l2);
  if (eq.basis == "interpolated") at["between_densities"] = {number(eq.lo_density), number(eq.hi_density)};
  if (!eq.why.empty()) at["why"] = eq.why;
  at["per_step_recall"] = numbers(eq.per_step_recall);
  at["per_step_rel_l2"] = numbers(eq.per_step_rel_l2);
  j["at_target"] = at;
  json sweep = json::array();
  for (const SweepPoint& sp : p.sweep)
    sweep.push_back({{"requested", number(sp.requested)}, {"density", number(sp.density)},
                     {"recall", number(sp.recall)}, {"rel_l2", number(sp.rel_l2)}});
  j["sweep"] = sweep;  // extra runs made to bracket the target (empty when on target)
  json ps;
  ps["step"] = p.per_step.steps;
  ps["density"] = numbers(p.per_step.density);
  ps["recall"] = numbers(p.per_step.recall);
  ps["rel_l2"] = numbers(p.per_step.rel_l2);
  ps["ms_per_call"] = numbers(p.per_step.ms_per_call);
  if (p.kind == "moddit") ps["nae"] = numbers(p.per_step.nae);
  j["per_step"] = ps;
  json plh;
  std::vector<double> hd, hr, he;
  for (const HeadMetrics& h : p.per_layer_head) {
    hd.push_back(h.density);
    hr.push_back(h.recall);
    he.push_back(h.rel_l2);
  }
  plh["density"] = numbers(hd);
  plh["recall"] = numbers(hr);
  plh["rel_l2"] = numbers(he);
  j["per_layer_head"] = plh;  // [layer index][head], flattened, means over the sparse steps
  json calls = json::array();
  for (const CallMetrics& c : p.calls) {
    json cj;
    cj["step"] = c.step;
    cj["layer"] = c.layer;
    cj["kind"] = c.kind;
    cj["ms"] = 1e3 * c.seconds;
    cj["overhead_ms"] = 1e3 * c.overhead_seconds;
    std::vector<double> d, r, e;
    for (const HeadMetrics& h : c.heads) {
      d.push_back(h.density);
      r.push_back(h.recall);
      e.push_back(h.rel_l2);
    }
    cj["density"] = numbers(d);
    cj["recall"] = numbers(r);
    cj["rel_l2"] = numbers(e);
    if (!c.oracle_recall_same_density.empty())
      cj["oracle_recall_same_density"] = numbers(c.oracle_recall_same_density);
    calls.push_back(cj);
  }
  j["per_call"] = calls;
  if (p.kind == "moddit") {
    json fits = json::array();
    for (const FitRecord& f : p.fits)
      fits.push_back({{"step", f.step}, {"layer", f.layer}, {"slot", f.slot}, {"head", f.head},
                      {"nae", number(f.nae)}});
    j["fits"] = fits;
  }
  return j;
}

json settings_json(const EvalResult& r) {
  const EvalSettings& s = r.settings;
  const TrajectoryInfo& info = r.info;
  json t;
  t["source"] = info.source;
  t["label"] = s.source_label;
  json gen = json::object();
  for (const auto& [k, v] : s.source_settings) gen[k] = v;
  t["settings"] = gen;
  t["tokens"] = {{"frames", info.tokens.frames},
                 {"height", info.tokens.height},
                 {"width", info.tokens.width},
                 {"text_tokens", info.tokens.text_tokens},
                 {"text_valid", info.tokens.text_valid},
                 {"text_position", to_string(info.tokens.text_position)},
                 {"total", info.tokens.total_tokens()}};
  t["num_steps"] = info.num_steps;
  t["batch"] = info.batch;
  t["heads"] = info.heads;
  t["head_dim"] = info.head_dim;
  t["steps_recorded"] = info.steps.size();
  t["layers_recorded"] = info.layers;

  json j;
  j["trajectory"] = t;
  j["target_density"] = s.target_density;
  j["config"] = json::parse(moddit_config_to_json(s.config));
  json pol = json::array();
  for (const EvalPolicySpec& p : s.policies)
    pol.push_back({{"label", p.label}, {"kind", p.kind},
                   {"config", json::parse(moddit_config_to_json(p.config))}});
  j["policies"] = pol;
  j["block_size"] = s.config.block_size;
  j["eta"] = s.config.eta;
  j["ridge_lambda"] = s.config.ridge_lambda;
  j["video_blocks"] = r.num_video_blocks;
  j["steps_run"] = r.steps;
  j["layers_run"] = r.layers;
  j["sparse_from_step"] = r.sparse_from_step;
  j["threads"] = r.threads;
  j["hardware_threads"] = r.hardware_threads;
  j["backend"] = r.backend;
  j["wall_seconds"] = r.wall_seconds;
  return j;
}
}  // namespace

std::string report_json_text(const EvalResult& r, const std::vector<PictureInfo>& pictures) {
  json j;
  j["moddit_report"] = 1;
  j["settings"] = settings_json(r);
  const PolicyResult* oracle = nullptr;
  for (const PolicyResult& p : r.policies)
    if (p.kind == "oracle" && !oracle) oracle = &p;
  json pol = json::array();
  for (const PolicyResult& p : r.policies) {
    json pj = policy_json(p);
    // The headline comparison: recall relative to the oracle's at the target
    // density, and to the oracle's at this policy's own per-head density.
    if (oracle && oracle->recall > 0) pj["recall_over_oracle"] = number(p.recall / oracle->recall);
    if (p.oracle_recall_same_density > 0)
      pj["recall_over_oracle_same_density"] = number(p.recall / p.oracle_recall_same_density);
    // The bound at equal density: the oracle's recall at the target.
    if (oracle && oracle->at_target.recall > 0 && !p.at_target.basis.empty())
      pj["at_target"]["recall_over_oracle"] = number(p.at_target.recall / oracle->at_target.recall);
    pol.push_back(pj);
  }
  j["policies"] = pol;
  // The same means keyed by label, for readers that look a policy up by name.
  json summary = json::object();
  for (const json& pj : pol) {
    json m = json::object();
    for (const char* key : {"density", "recall", "rel_l2", "nae"})
      if (pj.contains(key)) m[key] = pj[key];
    if (pj.contains("at_target")) {  // the equal-density view
      m["at_target_recall"] = pj["at_target"]["recall"];
      m["at_target_rel_l2"] = pj["at_target"]["rel_l2"];
      m["at_target_basis"] = pj["at_target"]["basis"];
    }
    summary[pj["label"].get<std::string>()] = m;
  }
  j["summary"] = summary;
  json timing;
  timing["wall_seconds"] = r.wall_seconds;
  timing["reference_seconds"] = r.reference_seconds;
  timing["dense_stats_seconds"] = r.stats_seconds;
  timing["load_seconds"] = r.load_seconds;
  j["timing"] = timing;
  json pics = json::array();
  for (const PictureInfo& p : pictures) {
    json pj;
    pj["file"] = p.file;
    pj["what"] = p.what;
    if (p.step >= 0) {
      pj["step"] = p.step;
      pj["layer"] = p.layer;
      pj["head"] = p.head;
    }
    pj["panels"] = p.panels;
    pics.push_back(pj);
  }
  j["pictures"] = pics;
  j["notes"] = r.notes;
  return j.dump(1) + "\n";
}

}  // namespace eval

std::string eval_report_json(const EvalResult& result) { return eval::report_json_text(result, {}); }

}  // namespace moddit
