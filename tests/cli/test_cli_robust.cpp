// The `moddit` command against bad input (issue 13): sentinel values refused,
// sizes and thread counts bounded before any work, output paths checked before
// the computation, FIFOs refused as inputs and outputs, overflowing and non-finite
// trajectories refused. Every case: one line "moddit: error: ...", exit 1, and
// nothing written or lost.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "cli/cli_test_util.hpp"
#include "io/safetensors.hpp"
#include "moddit/trajectory.hpp"

namespace {

namespace fs = std::filesystem;

using moddit::test::ProcessResult;
class CliRobust : public moddit::test::CliFixture {};

const std::string kTinyEval =
    "eval --synthetic frames=2 height=4 width=16 num_steps=6 layers=1 heads=2 head_dim=16 "
    "--warmup 2 --interval 2 --block-size 64 --threads 1 -q";

TEST_F(CliRobust, SentinelValuesAreRefused) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--eta nan", "--eta"},           {"--eta inf", "--eta"},
      {"--top-k -1", "--top-k"},        {"--warmup -1", "--warmup"},
      {"--interval -1", "--interval"},  {"--block-size -1", "--block-size"},
      {"--max-layers -1", "--max-layers"}, {"--snapshot-heads -1", "--snapshot-heads"},
      {"--first-step -1", "--first-step"}, {"--density nan", "--density"},
      {"--threads -1", "--threads"},
  };
  for (const auto& [flags, needle] : cases) {
    SCOPED_TRACE(flags);
    expect_one_line_error(run(kTinyEval + " " + flags + " --out rep"), needle);
  }
  for (const std::string d : {"0", "nan", "-0.5", "1.5"}) {
    SCOPED_TRACE(d);
    expect_one_line_error(run("search --synthetic frames=2,height=4,width=16,num_steps=4,layers=1,heads=1,"
                              "head_dim=16 --block-size 64 -q --target-density " + d + " --out c.json"),
                          "--target-density");
  }
  EXPECT_TRUE(entries().empty());  // nothing written
}

TEST_F(CliRobust, SizesAndThreadsAreBoundedBeforeAnyWork) {
  expect_one_line_error(run(kTinyEval + " --threads 2147483647 --out rep"), "--threads");
  expect_one_line_error(run("search -q --threads 2147483647 --out c.json"), "--threads");
  for (const std::string flag : {"--steps", "--layers", "--heads", "--batch"}) {
    SCOPED_TRACE(flag);
    const ProcessResult r = run("demo -q --threads 1 " + flag + " 2147483647 --out rep");
    expect_one_line_error(r, "out of range");
  }
  EXPECT_TRUE(entries().empty());
}

TEST_F(CliRobust, OutputPathsAreCheckedBeforeTheComputation) {
  std::ofstream(path("file")) << "x";
  // --vdit-config is read during the run: an --out error must come first.
  const ProcessResult r = run(kTinyEval + " --policies sparse_vdit --vdit-config missing.json --out file/rep");
  expect_one_line_error(r, "file/rep");
  expect_one_line_error(run(kTinyEval + " --out file"), "not a directory");
  expect_one_line_error(run("search -q --out missing_dir/c.json"), "missing_dir");
  // A report directory holding someone else's files is refused, and they stay.
  fs::create_directory(path("mine"));
  std::ofstream(path("mine/notes.txt")) << "keep me";
  expect_one_line_error(run(kTinyEval + " --out mine"), "notes.txt");
  EXPECT_EQ(slurp(path("mine/notes.txt")), "keep me");
  EXPECT_EQ(entries(), (std::vector<std::string>{"file", "mine"}));
}

TEST_F(CliRobust, FifosAreRefusedAsInputsAndOutputs) {
  ASSERT_EQ(::mkfifo(path("pipe").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo(path("pipe.json").c_str(), 0644), 0);
  expect_one_line_error(run("inspect pipe"), "not a regular file");
  expect_one_line_error(run("inspect pipe.json"), "not a regular file");
  expect_one_line_error(run("eval -q --trajectory pipe --out rep"), "not a regular file");
  expect_one_line_error(run(kTinyEval + " --config pipe --out rep"), "not a regular file");
  expect_one_line_error(run(kTinyEval + " --policies sparse_vdit --vdit-config pipe.json --out rep"),
                        "not a regular file");
  expect_one_line_error(run("search -q --trajectory pipe --out c.json"), "not a regular file");
  // As an output: refused, the FIFO left as it is.
  expect_one_line_error(run("search -q --synthetic frames=2,height=4,width=16,num_steps=4,layers=1,"
                            "heads=1,head_dim=16 --block-size 64 --out pipe"),
                        "not a regular file");
  struct stat st {};
  ASSERT_EQ(::lstat(path("pipe").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(entries(), (std::vector<std::string>{"pipe", "pipe.json"}));
}

TEST_F(CliRobust, OverflowingTokenCountIsRefused) {
  const int64_t N = 256, H = 1, D = 16;
  std::vector<float> x(size_t(N * H * D), 0.25f);
  std::map<std::string, std::string> md = {
      {"moddit.trajectory", "1"}, {"frames", "65792"}, {"height", "5153"},
      {"width", "54410972897"},   {"text_tokens", "0"}, {"text_valid", "0"},
      {"text_position", "none"},  {"num_steps", "1"}};
  moddit::write_safetensors(path("wrap.safetensors"),
                            {{"q/s0/l0", moddit::DType::F32, {1, N, H, D}, x.data()},
                             {"k/s0/l0", moddit::DType::F32, {1, N, H, D}, x.data()},
                             {"v/s0/l0", moddit::DType::F32, {1, N, H, D}, x.data()}},
                            md);
  expect_one_line_error(run("eval -q --trajectory wrap.safetensors --first-step 0 --out rep"), "overflow");
  expect_one_line_error(run("inspect wrap.safetensors"), "overflow");
  EXPECT_FALSE(fs::exists(path("rep")));
}

TEST_F(CliRobust, NonFiniteTrajectoryIsRefusedNotScored) {
  moddit::SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 4;
  spec.width = 16;
  spec.num_steps = 6;
  spec.layers = 1;
  spec.heads = 2;
  spec.head_dim = 16;
  auto src = moddit::make_synthetic(spec);
  moddit::write_trajectory(*src, path("t.safetensors"), moddit::DType::F32);
  // Poison one value of v/s4/l0 in place (the file's layout is the writer's).
  moddit::SafetensorsReader reader(path("t.safetensors"));
  const moddit::SafetensorsEntry& e = reader.at("v/s4/l0");
  std::vector<uint8_t> bytes;
  {
    std::ifstream in(path("t.safetensors"), std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  uint64_t L = 0;
  for (int i = 7; i >= 0; --i) L = (L << 8) | bytes[size_t(i)];
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + 8 + L + e.begin + 4 * 10, &nan, 4);
  std::ofstream(path("t.safetensors"), std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  const ProcessResult r = run("eval -q --trajectory t.safetensors --warmup 2 --interval 2 "
                              "--block-size 64 --threads 1 --out rep");
  expect_one_line_error(r, "v/s4/l0");
  EXPECT_NE(r.err.find("non-finite"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("rep")));
}

TEST_F(CliRobust, SearchOutputKeepsModeAndWritesThroughSymlinks) {
  const std::string search =
      "search -q --synthetic frames=2,height=4,width=16,num_steps=4,layers=1,heads=1,head_dim=16 "
      "--block-size 64 --threads 1 --out ";
  std::ofstream(path("real.json")) << "old";
  ASSERT_EQ(::chmod(path("real.json").c_str(), 0600), 0);
  fs::create_symlink("real.json", path("link.json"));
  const ProcessResult r = run(search + "link.json");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(fs::is_symlink(path("link.json")));
  EXPECT_NE(slurp(path("real.json")).find("moddit.sparse_vdit"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path("real.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

}  // namespace
