// The `moddit` command, run as a process: demo/eval/inspect outputs, --help, and
// bad input giving a one-line "moddit: error: ..." and a non-zero exit.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "cli/cli_test_util.hpp"
#include "moddit/trajectory.hpp"

namespace {

namespace fs = std::filesystem;

using moddit::test::ProcessResult;
class CliTest : public moddit::test::CliFixture {};

const char* kTiny =
    "--steps 8 --warmup 4 --interval 2 --layers 1 --heads 2 --frames 2 --height 8 --width 16 "
    "--block-size 64 --threads 1 -q";

TEST_F(CliTest, DemoWritesReportAndPictures) {
  const ProcessResult r = run(std::string("demo ") + kTiny + " --density 0.4 --out '" + path("rep") + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* p : {"dense", "moddit", "oracle", "window", "radial", "recall", "rel_l2",
                        "report.json"})
    EXPECT_NE(r.out.find(p), std::string::npos) << p << "\n" << r.out;
  ASSERT_TRUE(fs::exists(path("rep/report.json")));
  const auto j = nlohmann::json::parse(std::ifstream(path("rep/report.json")));
  EXPECT_EQ(j["policies"].size(), 5u);
  EXPECT_DOUBLE_EQ(j["settings"]["target_density"].get<double>(), 0.4);
  int pngs = 0;
  for (const auto& e : fs::directory_iterator(path("rep"))) pngs += e.path().extension() == ".png";
  EXPECT_GE(pngs, 2 * 2 + 2);  // 2 heads x 2 steps of maps, 2 plots
  const ProcessResult i = run("inspect '" + path("rep/report.json") + "'");
  EXPECT_EQ(i.rc, 0) << i.err;
  EXPECT_NE(i.out.find("oracle"), std::string::npos) << i.out;
}

// Both map statistics side by side (a policy-list override), and the flag that
// sets it for every MOD-DiT entry; the report records each entry's config.
TEST_F(CliTest, DemoRunsModditWithEitherMapStatistic) {
  const ProcessResult r =
      run(std::string("demo ") + kTiny + " --policies moddit,moddit:map_statistic=mass --out '" +
          path("ms") + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("moddit[map_statistic=mass]"), std::string::npos) << r.out;
  const ProcessResult f = run(std::string("demo ") + kTiny +
                              " --policies moddit --map-statistic mass --out '" + path("mf") + "'");
  ASSERT_EQ(f.rc, 0) << f.err;
  const auto j = nlohmann::json::parse(std::ifstream(path("mf/report.json")));
  EXPECT_EQ(j["settings"]["config"]["map_statistic"], "mass") << j["settings"].dump();
}

TEST_F(CliTest, EvalOnTrajectoryFileWithLambdaSweepAndInspect) {
  moddit::SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 8;
  spec.width = 16;
  spec.num_steps = 7;
  spec.layers = 1;
  spec.heads = 2;
  auto src = moddit::make_synthetic(spec);
  moddit::write_trajectory(*src, path("t.safetensors"), moddit::DType::F16);
  const ProcessResult r = run("eval --trajectory '" + path("t.safetensors") +
                    "' --policies moddit,oracle --ridge-lambda 1e-3,1 --warmup 4 --interval 2 "
                    "--block-size 64 --density 0.5 -q --out '" + path("ev") + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("moddit[ridge_lambda=1e-3]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("moddit[ridge_lambda=1]"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(path("ev/report.json")));
  const ProcessResult i = run("inspect '" + path("t.safetensors") + "'");
  ASSERT_EQ(i.rc, 0) << i.err;
  EXPECT_NE(i.out.find("F16"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("0..6"), std::string::npos) << i.out;
}

TEST_F(CliTest, HelpOnEveryCommand) {
  for (const char* c : {"", "demo ", "eval ", "inspect "}) {
    const ProcessResult r = run(std::string(c) + "--help");
    EXPECT_EQ(r.rc, 0) << c;
    EXPECT_NE(r.out.find("--help"), std::string::npos) << c << r.out;
  }
  EXPECT_NE(run("demo --help").out.find("--density"), std::string::npos);
  EXPECT_NE(run("eval --help").out.find("--trajectory"), std::string::npos);
}

TEST_F(CliTest, BadInputGivesOneLineError) {
  expect_one_line_error(run("eval --trajectory '" + path("missing.safetensors") + "' -q"),
                        "missing.safetensors");
  expect_one_line_error(run("inspect '" + path("missing.json") + "'"), "missing.json");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --policies dense,bogus"), "bogus");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --top-k 1000 --out '" + path("x") + "'"),
                        "top_k");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --eta 0"), "eta");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --eta -1"), "eta");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --map-statistic max"), "map_statistic");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --policies moddit:map_statistic=max"),
                        "map_statistic");
  expect_one_line_error(run(std::string("demo ") + kTiny + " --density 1.5"), "density");
  expect_one_line_error(run("eval --synthetic frames=0 -q"), "frames");
  expect_one_line_error(run("eval -q"), "--trajectory");

  // A truncated trajectory file.
  moddit::SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 4;
  spec.width = 8;
  spec.num_steps = 3;
  spec.layers = 1;
  spec.heads = 1;
  auto src = moddit::make_synthetic(spec);
  moddit::write_trajectory(*src, path("t.safetensors"), moddit::DType::F32);
  fs::resize_file(path("t.safetensors"), fs::file_size(path("t.safetensors")) / 2);
  expect_one_line_error(run("eval --trajectory '" + path("t.safetensors") + "' -q --out '" +
                            path("y") + "'"),
                        "t.safetensors");
  expect_one_line_error(run("inspect '" + path("t.safetensors") + "'"), "t.safetensors");
}

TEST_F(CliTest, UnknownOptionFails) {
  // Parse errors come from CLI11 through main.cpp (non-zero exit, message names the option).
  const ProcessResult r = run("demo --bogus");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
}

}  // namespace
