// Every committed fuzz input through the fuzzed readers (tests/fuzz/fuzz_targets.hpp):
// the seed corpus (tests/fuzz/corpus/<target>/) and the inputs of crashes found
// by fuzzing and fixed (tests/fuzz/regressions/<target>/). Each is refused with
// moddit::Error or accepted, never a crash, another exception or an accepted
// input that breaks a promise (under ASan/UBSan in the sanitizer pass). Seeds
// named valid-* must be accepted and those named bad-* refused, so the corpus
// keeps exercising both sides of each reader as the formats change.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.hpp"

namespace moddit {
namespace {

namespace fs = std::filesystem;
using Target = bool (*)(const uint8_t*, size_t);

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs every file of the target's corpus and regression folders; returns how
// many it ran.
int run_inputs(const std::string& target, Target fn) {
  int count = 0;
  for (const char* folder : {"corpus", "regressions"}) {
    const fs::path dir = fs::path(MODDIT_SOURCE_DIR) / "tests/fuzz" / folder / target;
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      const std::string name = f.filename().string();
      const std::vector<uint8_t> bytes = read_file(f);
      ++count;
      try {
        const bool accepted = fn(bytes.data(), bytes.size());
        if (name.rfind("valid-", 0) == 0) EXPECT_TRUE(accepted) << f << " was refused";
        if (name.rfind("bad-", 0) == 0) EXPECT_FALSE(accepted) << f << " was accepted";
      } catch (const std::exception& e) {
        ADD_FAILURE() << f << ": " << e.what();
      }
    }
  }
  return count;
}

TEST(FuzzInputs, Trajectory) { EXPECT_GT(run_inputs("trajectory", fuzz::trajectory), 0); }
TEST(FuzzInputs, ModditConfig) { EXPECT_GT(run_inputs("moddit_config", fuzz::moddit_config), 0); }
TEST(FuzzInputs, VditConfig) { EXPECT_GT(run_inputs("vdit_config", fuzz::vdit_config), 0); }
TEST(FuzzInputs, Report) { EXPECT_GT(run_inputs("report", fuzz::report), 0); }

}  // namespace
}  // namespace moddit
