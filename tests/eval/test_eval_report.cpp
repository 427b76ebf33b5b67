// report.json keys and consistency, the pictures, policy-list and synthetic
// settings parsing, and inspect_file.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "eval_test_util.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"

namespace moddit {
namespace {

std::string temp_dir(const std::string& name) {
  std::random_device rd;
  const auto p = std::filesystem::temp_directory_path() /
                 ("moddit_test_" + name + "_" + std::to_string(rd()));
  std::filesystem::create_directories(p);
  return p.string();
}

EvalResult small_run() {
  TokenLayout t;
  t.frames = 3;
  t.height = 8;
  t.width = 16;
  test::RandomTrajectory traj(t, 8, 2, 1, 3, 64, 11u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.interval = 2;
  s.target_density = 0.3;
  s.policies = parse_policy_list("dense,moddit,oracle,window,radial", s.config, 0.3);
  s.snapshot_heads = {0, 2};
  s.source_label = "test";
  s.threads = 1;
  return run_evaluation(traj, s);
}

TEST(EvalReport, JsonHasRequiredKeysAndMatchesResult) {
  const EvalResult r = small_run();
  const auto j = nlohmann::json::parse(eval_report_json(r));
  ASSERT_TRUE(j.contains("settings"));
  const auto& s = j["settings"];
  for (const char* key : {"trajectory", "target_density", "config", "policies", "block_size", "eta",
                          "ridge_lambda", "threads", "hardware_threads", "wall_seconds",
                          "steps_run", "sparse_from_step"})
    EXPECT_TRUE(s.contains(key)) << key;
  EXPECT_EQ(s["target_density"].get<double>(), 0.3);
  ASSERT_EQ(j["policies"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    const auto& p = j["policies"][i];
    const PolicyResult& pr = r.policies[i];
    for (const char* key : {"density", "recall", "rel_l2"}) {
      ASSERT_TRUE(p.contains(key)) << key;
      ASSERT_TRUE(p[key].is_number()) << key;
      ASSERT_TRUE(p["per_step"].contains(key)) << key;
      EXPECT_EQ(p["per_step"][key].size(), r.steps.size());
    }
    EXPECT_DOUBLE_EQ(p["recall"].get<double>(), pr.recall);
    EXPECT_DOUBLE_EQ(p["rel_l2"].get<double>(), pr.rel_l2);
    EXPECT_DOUBLE_EQ(p["density"].get<double>(), pr.density);
    EXPECT_EQ(p.contains("nae"), pr.kind == "moddit");
    if (pr.kind == "moddit") {
      EXPECT_TRUE(p["nae"].is_number());
      EXPECT_TRUE(p["per_step"].contains("nae"));
      EXPECT_TRUE(p.contains("fits"));
    }
    // The summary repeats the means, keyed by label.
    const auto& m = j["summary"][pr.label];
    EXPECT_DOUBLE_EQ(m["recall"].get<double>(), pr.recall);
    EXPECT_DOUBLE_EQ(m["rel_l2"].get<double>(), pr.rel_l2);
    EXPECT_DOUBLE_EQ(m["density"].get<double>(), pr.density);
    EXPECT_EQ(m.contains("nae"), pr.kind == "moddit");
  }
  bool compound_note = false;
  for (const auto& n : j["notes"]) compound_note |= n.get<std::string>().find("compound") != std::string::npos;
  EXPECT_TRUE(compound_note);
}

TEST(EvalReport, WritesReportAndPictures) {
  const EvalResult r = small_run();
  const std::string dir = temp_dir("report") + "/nested/out";
  const auto files = write_eval_report(r, dir);
  ASSERT_GE(files.size(), 1u + 2 * 2 + 2);  // report, 2 heads x 2 steps, 2 plots
  EXPECT_EQ(files[0], dir + "/report.json");
  for (const auto& f : files) {
    ASSERT_TRUE(std::filesystem::exists(f)) << f;
    if (f.size() > 4 && f.substr(f.size() - 4) == ".png") {
      std::ifstream in(f, std::ios::binary);
      char sig[8] = {};
      in.read(sig, 8);
      EXPECT_EQ(std::string(sig + 1, 3), "PNG") << f;
    }
  }
  const auto j = nlohmann::json::parse(std::ifstream(files[0]));
  EXPECT_EQ(j["pictures"].size(), files.size() - 1);
  // No temporary files left behind.
  for (const auto& e : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  const std::string summary = inspect_file(files[0]);
  EXPECT_NE(summary.find("oracle"), std::string::npos);
  EXPECT_NE(summary.find("moddit"), std::string::npos);
  std::filesystem::remove_all(std::filesystem::path(dir).parent_path().parent_path());
}

TEST(EvalReport, PolicyListParsing) {
  ModditConfig c;
  auto specs = parse_policy_list("dense, moddit ,moddit:ridge_lambda=1:refresh=dense,oracle", c, 0.2);
  ASSERT_EQ(specs.size(), 4u);
  EXPECT_EQ(specs[1].label, "moddit");
  EXPECT_DOUBLE_EQ(specs[1].config.target_density, 0.2);
  EXPECT_EQ(specs[2].label, "moddit[ridge_lambda=1,refresh=dense]");
  EXPECT_DOUBLE_EQ(specs[2].config.ridge_lambda, 1.0);
  EXPECT_EQ(specs[2].config.refresh, "dense");
  EXPECT_THROW(parse_policy_list("dense,bogus", c, 0.2), Error);
  EXPECT_THROW(parse_policy_list("moddit:nope=1", c, 0.2), Error);
  EXPECT_THROW(parse_policy_list("moddit:eta=-1", c, 0.2), Error);
  EXPECT_THROW(parse_policy_list("oracle,oracle", c, 0.2), Error);
  EXPECT_THROW(parse_policy_list("oracle", c, 0.0), Error);
  EXPECT_THROW(parse_policy_list("", c, 0.2), Error);
}

TEST(EvalReport, SyntheticSettingsParsing) {
  SyntheticSpec s;
  apply_synthetic_settings({"frames=3", "heads=2,layers=1", "text_position=after"}, s);
  EXPECT_EQ(s.frames, 3);
  EXPECT_EQ(s.heads, 2);
  EXPECT_EQ(s.layers, 1);
  EXPECT_EQ(s.text_position, "after");
  EXPECT_THROW(apply_synthetic_settings({"frame=3"}, s), Error);
  EXPECT_THROW(apply_synthetic_settings({"frames=x"}, s), Error);
  // Ranges are SyntheticSpec::validate()'s (run by make_synthetic), one source for
  // the CLI flags and the key=value settings.
  SyntheticSpec zero;
  apply_synthetic_settings({"frames=0"}, zero);
  EXPECT_THROW(zero.validate(), Error);
  EXPECT_THROW(make_synthetic(zero), Error);
  EXPECT_THROW(apply_synthetic_settings({"frames=99999999999"}, s), Error);  // not an int
  EXPECT_THROW(apply_synthetic_settings({"text_position=middle"}, s), Error);
}

TEST(EvalReport, InspectTrajectoryFile) {
  SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 4;
  spec.width = 8;
  spec.num_steps = 3;
  spec.layers = 1;
  spec.heads = 2;
  auto src = make_synthetic(spec);
  const std::string dir = temp_dir("inspect");
  const std::string path = dir + "/t.safetensors";
  write_trajectory(*src, path, DType::BF16);
  const std::string out = inspect_file(path);
  EXPECT_NE(out.find("BF16"), std::string::npos) << out;
  EXPECT_NE(out.find("[1, 64, 2, 64]"), std::string::npos) << out;
  EXPECT_NE(out.find("0..2"), std::string::npos) << out;
  EXPECT_THROW(inspect_file(dir + "/missing.safetensors"), Error);
  std::filesystem::remove_all(dir);
}

// A report.json with a field of another type than moddit writes: one error that
// names the file and the field (nlohmann's own type_error escaped before; the
// inputs are in tests/fuzz/regressions/report/). Numbers of another type are
// shown as "-".
TEST(EvalReport, InspectNamesAReportFieldOfTheWrongType) {
  const std::string dir = temp_dir("inspect_bad");
  const auto inspect_text = [&](const std::string& text) {
    const std::string path = dir + "/report.json";
    std::ofstream(path) << text;
    return inspect_file(path);
  };
  const std::pair<const char*, const char*> cases[] = {
      {R"({"moddit_report":1,"policies":[{"label":5}]})", "'policies[0].label' is not a string"},
      {R"({"moddit_report":1,"policies":[5]})", "'policies[0]' is not an object"},
      {R"({"moddit_report":1,"policies":[],"settings":[]})", "'settings' is not an object"},
      {R"({"moddit_report":1,"policies":[],"settings":{"trajectory":3}})",
       "'settings.trajectory' is not an object"},
      {R"({"moddit_report":1,"policies":[],"pictures":7})", "'pictures' is not an array"},
      {R"({"moddit_report":1,"policies":[],"pictures":[{"file":1}]})",
       "'pictures[0].file' is not a string"},
  };
  for (const auto& [text, message] : cases) {
    try {
      inspect_text(text);
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("report.json"), std::string::npos) << e.what();
    }
  }
  const std::string shown =
      inspect_text(R"({"moddit_report":1,"policies":[],"settings":{"block_size":64,"eta":"x"}})");
  EXPECT_NE(shown.find("block size 64, eta -"), std::string::npos) << shown;
  std::filesystem::remove_all(dir);
}

TEST(EvalRun, RefusesTooLargeTopK) {
  TokenLayout t;
  t.frames = 2;
  t.height = 8;
  t.width = 8;
  test::RandomTrajectory traj(t, 6, 1, 1, 1, 64, 3u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 3;
  s.config.top_k = 6;  // n = 2: 3n - 1 = 5 lines
  s.policies = parse_policy_list("moddit", s.config, 0.5);
  EXPECT_THROW(run_evaluation(traj, s), Error);
}

}  // namespace
}  // namespace moddit
