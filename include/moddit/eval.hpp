#pragma once
// The evaluation (DESIGN.md 6): attention policies compared at equal density on
// an attention trajectory, against the dense reference. Per (step, layer, head):
// video density, attention-mass recall, relative L2 error of the output, NAE of
// MOD-DiT's fits and time per call; aggregated as means over the sparse steps and
// as per-step series. The `moddit demo` and `moddit eval` commands are thin
// wrappers around run_evaluation() and write_report().
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "moddit/config.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {

struct VditLossTable;  // moddit/sparse_vdit.hpp

// One policy of a run: its kind ("dense", "moddit", "oracle", "window", "radial",
// "svg", "sparse_vdit")
// and the label that names it in tables and reports (unique within a run, e.g.
// "moddit[ridge_lambda=1]" in a sweep). `config` is the MOD-DiT configuration the
// policy runs with (only "moddit" reads more than warmup_steps from it).
struct EvalPolicySpec {
  std::string kind;
  std::string label;
  ModditConfig config;
};

// The policy kinds run_evaluation() knows, in the order `--help` lists them.
const std::vector<std::string>& eval_policy_kinds();

// Parses "dense,moddit,oracle" (or "moddit:ridge_lambda=1:refresh=dense", any
// ModditConfig key as an override) into specs built on `base`, whose
// target_density is set to `target_density`. Throws moddit::Error on an unknown
// policy or key, or a duplicate label.
std::vector<EvalPolicySpec> parse_policy_list(const std::string& list, const ModditConfig& base,
                                              double target_density);

// Applies "key=value" settings (frames, height, width, text_tokens, text_valid,
// text_position, num_steps, layers, heads, head_dim, batch, seed) to `spec`.
// Throws moddit::Error naming an unknown key or a bad value.
void apply_synthetic_settings(const std::vector<std::string>& key_values, SyntheticSpec& spec);

struct EvalSettings {
  std::vector<EvalPolicySpec> policies;
  double target_density = 0.15;
  // Block size, eta and warm-up of the run. Static baselines and the oracle are
  // dense before config.warmup_steps, like MOD-DiT.
  ModditConfig config;
  int threads = 0;      // CPU threads for attention and metrics (0 = all)
  int first_step = -1;  // first trajectory step run; -1 = warmup_steps - 2 (see notes)
  int max_layers = 0;   // > 0: only the first max_layers recorded layers
  // Pictures: (step, layer, head) snapshots of S, MOD-DiT's fitted map and masks.
  std::vector<int> snapshot_heads = {0, 1, 2, 3};  // heads that exist are kept
  std::vector<int> snapshot_steps;                 // empty: first sparse step and last step
  int snapshot_layer = -1;                         // -1: last layer run
  bool keep_masks = false;  // keep every video mask in the result (tests, debugging)
  std::string source_label; // where the trajectory came from (file path or "synthetic")
  std::string vdit_config;  // sparse_vdit: a `moddit search` config; empty = search here
  // sparse_vdit without vdit_config: what its search calibrates on, chosen here
  // and never from the trajectory's `source` text. "" = held-out data when the
  // run has some (the generator below), else the evaluated trajectory (the
  // report says in-sample); "self" = the evaluated trajectory; "synthetic" = a
  // held-out batch item of `synthetic` (required); anything else = the path of
  // a calibration trajectory file with the evaluated one's geometry.
  std::string vdit_calibration;
  // Set when the evaluated trajectory is make_synthetic(*synthetic) (the demo):
  // then the default calibration is one more batch item of the same generator.
  std::optional<SyntheticSpec> synthetic;
  // Settings of the trajectory's source for the report (e.g. the synthetic
  // generator's: "seed" -> "42"), in order.
  std::vector<std::pair<std::string, std::string>> source_settings;
  // The equal-density view: a policy whose achieved density is more than
  // kDensityTolerance off the target is run again at other requested densities
  // (at most kMaxSweepRuns more runs, all off-target policies together in one
  // pass each) until one lands on the other side of the target; its recall and
  // rel_l2 are then interpolated at the target. No run is made for a mask
  // already at the diagonal blocks when the target is below them. false: no
  // extra runs (at_target is still filled).
  bool equal_density = true;
  // The sparse_vdit search's measurements for this trajectory and run, when
  // already made: run_evaluation sets it for its own extra passes so that they
  // decide at another density without searching again. Leave it empty.
  std::shared_ptr<const VditLossTable> vdit_measured;
};

// Passes of extra runs the equal-density view may make.
constexpr int kMaxSweepRuns = 2;

// Metrics of one (step, layer, head), pooled over the batch.
struct HeadMetrics {
  double density = 0.0;  // live video x video token pairs / all of them
  double recall = 0.0;   // dense probability mass inside the mask, mean over video query rows
  double rel_l2 = 0.0;   // ||O - O_dense|| / ||O_dense|| over video query rows
};

struct CallMetrics {
  int step = 0, layer = 0;
  std::string kind;  // "dense", "record", "sparse", "refresh"
  double seconds = 0.0;           // backend time of the call
  double overhead_seconds = 0.0;  // policy time (plan + observe)
  std::vector<HeadMetrics> heads;
  // moddit only: recall of the oracle given the same per-head density as this
  // policy's mask (the fair upper bound; empty for other policies).
  std::vector<double> oracle_recall_same_density;
  std::vector<uint8_t> video_masks;  // [B, H, n, n], only with keep_masks
};

// Per-step series: one entry per step run (means over layers and heads).
struct StepSeries {
  std::vector<int> steps;
  std::vector<double> density, recall, rel_l2, ms_per_call;
  std::vector<double> nae;  // NaN where no fit happened at that step
};

// One more run of a policy at another requested density, made to bracket the
// run's target (the equal-density view): its means over the sparse steps and
// per-step series.
struct SweepPoint {
  double requested = 0.0, density = 0.0, recall = 0.0, rel_l2 = 0.0;
  std::vector<double> per_step_recall, per_step_rel_l2;
};

// A policy at the run's target density: its own means where it is within
// kDensityTolerance of the target ("measured"), else the linear interpolation
// between the nearest runs on either side of the target ("interpolated"), else,
// where no run lands on the other side, the run nearest the target ("own
// density": not interpolated, never extrapolated; `why` says so).
struct EqualDensityPoint {
  std::string basis;     // "measured", "interpolated", "own density"; dense: "reference"
  double density = 0.0;  // what the values stand for: the target, or the own density
  double recall = 0.0, rel_l2 = 0.0;
  double lo_density = 0.0, hi_density = 0.0;  // interpolated: the two runs' densities
  std::vector<double> per_step_recall, per_step_rel_l2;  // per step, same weights
  std::string why;  // "own density": why not at the target
};

struct PolicyResult {
  std::string kind, label;
  std::vector<CallMetrics> calls;  // step-major, then layer
  std::vector<FitRecord> fits;     // moddit only
  StepSeries per_step;
  // Means over the sparse steps per (layer, head): [layer index * heads + head].
  std::vector<HeadMetrics> per_layer_head;
  // Means over the sparse steps (step >= warmup_steps) of every call and head.
  double density = 0.0, recall = 0.0, rel_l2 = 0.0, ms_per_call = 0.0;
  double nae = -1.0;                         // moddit: mean NAE over every fit; -1 otherwise
  double oracle_recall_same_density = -1.0;  // moddit: see CallMetrics; -1 otherwise
  int sparse_calls = 0;
  // Share of heads per head-group label over the sparse steps ("skip": heads in
  // no group), e.g. Sparse-vDiT's modes or SVG's spatial/temporal.
  std::map<std::string, double> head_modes;
  // The equal-density view (run_evaluation fills it for every policy but dense).
  std::vector<SweepPoint> sweep;  // extra runs, only for policies off the target
  EqualDensityPoint at_target;
};

// A picture's data: maps on the n x n video block grid of one (step, layer, head).
struct EvalSnapshot {
  int step = 0, layer = 0, head = 0, n = 0;
  std::vector<float> sparsity;       // exact dense sparsity map S (fraction of P < eta)
  std::vector<float> fitted;         // MOD-DiT's latest fitted map M X (empty without moddit)
  std::vector<uint8_t> moddit_mask;  // MOD-DiT's mask at this step (empty without moddit)
  std::vector<uint8_t> oracle_mask;  // the oracle's mask (empty without oracle)
};

// How far a policy's achieved video density (the mean over its sparse steps)
// may be from the run's target before the report says why.
constexpr double kDensityTolerance = 0.005;

struct EvalResult {
  TrajectoryInfo info;
  EvalSettings settings;
  std::vector<int> steps, layers;  // what was run
  int num_video_blocks = 0;
  int sparse_from_step = 0;        // aggregates cover steps >= this
  std::vector<PolicyResult> policies;
  std::vector<EvalSnapshot> snapshots;
  std::vector<std::string> notes;
  // One line per policy whose achieved density is more than kDensityTolerance
  // from the target, saying why (also in notes and under the terminal table).
  std::vector<std::string> off_target;
  double wall_seconds = 0.0;
  double reference_seconds = 0.0;  // dense reference attention, all calls
  double stats_seconds = 0.0;      // dense block mass / map pass, all calls
  double load_seconds = 0.0;       // trajectory loading (or generation)
  int threads = 0;                 // threads used
  unsigned hardware_threads = 0;
  std::string backend;
};

// progress(done, total) after every (step, layer).
using EvalProgress = std::function<void(int done, int total)>;

// Runs every policy of `settings` over the trajectory on the CPU backend. Each
// policy has its own Session, so MOD-DiT's schedule and state work as in a model.
// Q/K/V come from the fixed (dense) trajectory: errors do not compound.
EvalResult run_evaluation(TrajectorySource& source, const EvalSettings& settings,
                          const EvalProgress& progress = {});

// report.json content: "settings" (trajectory, config, target_density, policies,
// block_size, eta, ridge_lambda, threads, wall_seconds, ...), "policies" (per
// policy: density, recall, rel_l2, ms_per_call as means over the sparse steps;
// for moddit also nae and oracle_recall_same_density; "per_step" lists,
// "per_call" per-head detail, moddit "fits"), "summary" (the means keyed by
// policy label), "timing", "pictures", "notes".
std::string eval_report_json(const EvalResult& result);

// Writes report.json and the PNG pictures into `dir` (created if missing),
// replacing its contents as one unit: the files are written into a staging
// directory that then takes its place, so a failure or a kill leaves the old
// report as it was. An existing `dir` may hold only report.json and *.png
// files (anything else is refused, named, and left alone); a symlink to a
// directory is written through. Returns the paths written, report.json first.
std::vector<std::string> write_eval_report(const EvalResult& result, const std::string& dir);
// The checks of write_eval_report() without writing anything: run before an
// evaluation so that a bad report directory fails before the work, not after.
void check_report_dir(const std::string& dir);

// What the pictures show (the PNGs carry no text): panel order of the block maps
// and the colour of each policy in the plots, for the terminal.
std::string eval_pictures_legend(const EvalResult& result);

// The terminal table: policy, density, recall, rel_l2, nae, ms/call.
std::string format_eval_table(const EvalResult& result);

// A human-readable summary of a trajectory file (metadata, steps, layers, tensor
// shapes and dtypes, token layout) or of a report.json (settings and the policy
// table). Throws moddit::Error naming the file when it is neither.
// Only a regular file is opened (a FIFO or device is refused at once).
std::string inspect_file(const std::string& path);
// The report part of inspect_file() on a report's text (a plain function of the
// text, fuzzed in CI); `name` stands for the path in errors.
std::string inspect_report_text(const std::string& text, const std::string& name);

}  // namespace moddit
