// Sparse-vDiT and SVG inside the evaluation runner: density matched, share of
// heads per mode reported, the search's origin in the notes.
#include <gtest/gtest.h>

#include <cmath>

#include "moddit/error.hpp"
#include "moddit/eval.hpp"

using namespace moddit;

TEST(VditInEval, RunsAtTheTargetDensityAndReportsHeadModesSlow) {
  SyntheticSpec spec;
  spec.frames = 3;
  spec.height = 8;
  spec.width = 16;
  spec.num_steps = 14;
  spec.layers = 1;
  spec.heads = 4;
  auto traj = make_synthetic(spec);
  EvalSettings s;
  s.config.block_size = 64;
  s.target_density = 0.3;
  s.config.target_density = 0.3;
  s.policies = parse_policy_list("dense,svg,sparse_vdit", s.config, 0.3);
  s.threads = 2;
  s.synthetic = spec;  // the default calibration: a held-out item of this generator
  const EvalResult r = run_evaluation(*traj, s);
  ASSERT_EQ(r.policies.size(), 3u);
  for (const PolicyResult& p : r.policies) {
    if (p.kind == "dense") continue;
    double total = 0;
    for (const auto& m : p.head_modes) total += m.second;
    EXPECT_NEAR(total, 1.0, 1e-12) << p.label;
    EXPECT_GT(p.rel_l2, 0.0);
    EXPECT_LT(p.density, 1.0);
  }
  const PolicyResult& v = r.policies[2];
  EXPECT_EQ(v.kind, "sparse_vdit");
  EXPECT_NEAR(v.density, 0.3, 0.15);  // few scored (step, layer, head) decisions: coarse moves
  bool noted = false;
  for (const std::string& n : r.notes) noted = noted || n.find("sparse_vdit: calibrated (searched) on batch item 1 of the same synthetic generator") == 0;
  EXPECT_TRUE(noted);
  EXPECT_NE(eval_report_json(r).find("\"head_modes\""), std::string::npos);
}

namespace {
// The same tensors under another `source` text.
class Renamed : public TrajectorySource {
 public:
  Renamed(TrajectorySource& inner, std::string source) : inner_(inner), info_(inner.info()) {
    info_.source = std::move(source);
  }
  const TrajectoryInfo& info() const override { return info_; }
  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    inner_.load(step, layer, q, k, v);
  }

 private:
  TrajectorySource& inner_;
  TrajectoryInfo info_;
};
}  // namespace

// "Slow": too slow under ASan for the README test command; the Release pass runs it.
TEST(VditInEval, TheSourceTextChangesOnlyTheReportsTextSlow) {
  SyntheticSpec spec;
  spec.frames = 3;
  spec.height = 8;
  spec.width = 16;
  spec.num_steps = 10;
  spec.layers = 1;
  spec.heads = 4;
  spec.seed = 7;
  auto traj = make_synthetic(spec);
  Renamed plain(*traj, "a recording"), labelled(*traj, "a synthetic recording, seed 42");
  for (const std::string& calibration : {std::string(""), std::string("self")}) {
    EvalSettings s;
    s.config.block_size = 64;
    s.config.warmup_steps = 4;
    s.target_density = 0.3;
    s.config.target_density = 0.3;
    s.policies = parse_policy_list("sparse_vdit", s.config, 0.3);
    s.threads = 2;
    s.vdit_calibration = calibration;
    const EvalResult a = run_evaluation(plain, s), b = run_evaluation(labelled, s);
    ASSERT_EQ(a.policies.size(), 1u);
    EXPECT_EQ(a.policies[0].recall, b.policies[0].recall);
    EXPECT_EQ(a.policies[0].rel_l2, b.policies[0].rel_l2);
    EXPECT_EQ(a.policies[0].density, b.policies[0].density);
    // Without held-out data the report says the search was in-sample.
    bool in_sample = false;
    for (const std::string& n : a.notes)
      in_sample = in_sample || n.find("sparse_vdit: calibrated (searched) on the evaluated trajectory itself (in-sample") == 0;
    EXPECT_TRUE(in_sample) << calibration;
  }
  // 'synthetic' names a generator the run must have.
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.policies = parse_policy_list("sparse_vdit", s.config, 0.3);
  s.vdit_calibration = "synthetic";
  try {
    run_evaluation(plain, s);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("calibration 'synthetic'"), std::string::npos) << e.what();
  }
}
