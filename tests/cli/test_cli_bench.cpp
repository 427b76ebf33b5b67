// `moddit bench --overhead-only`: the MOD-DiT host-work table and the state line
// (no GPU needed; with one, the dense time is measured too). The state must grow
// in proportion to the layers, and the table must name every call kind.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

std::string run_bench(const std::string& args, int& rc) {
  const fs::path out = fs::temp_directory_path() /
                       ("moddit_bench_test_" + std::to_string(std::random_device{}()) + ".txt");
  const std::string cmd = "'" + std::string(MODDIT_BINARY_DIR) + "/cli/moddit' bench " + args +
                          " >'" + out.string() + "' 2>&1";
  const int status = std::system(cmd.c_str());
  rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  fs::remove(out);
  return ss.str();
}

long long state_bytes(const std::string& text) {
  std::smatch m;
  const std::regex re("MOD-DiT state, whole model .*: ([0-9]+) bytes");
  if (!std::regex_search(text, m, re)) return -1;
  return std::stoll(m[1].str());
}

TEST(CliBench, OverheadTableAndStateScaleWithLayers) {
  int rc1 = -1, rc2 = -1;
  const std::string one = run_bench("--overhead-only --overhead-layers 1 --iters 1", rc1);
  const std::string two = run_bench("--overhead-only --overhead-layers 2 --iters 1", rc2);
  ASSERT_EQ(rc1, 0) << one;
  ASSERT_EQ(rc2, 0) << two;
  for (const char* kind : {"\nrecord ", "\nsparse ", "\nsparse* ", "\nrefresh "})
    EXPECT_NE(one.find(kind), std::string::npos) << kind << "\n" << one;
  EXPECT_NE(one.find("dense attention, same call (B=2): "), std::string::npos) << one;
  const long long s1 = state_bytes(one), s2 = state_bytes(two);
  ASSERT_GT(s1, 0) << one;
  // Per (layer, slot, head) at least the 256x256 fused count map in uint16.
  EXPECT_GE(s1, 2LL * 40 * 256 * 256 * 2);
  EXPECT_EQ(s2, 2 * s1);
  EXPECT_NE(two.find("fits in 1 GiB"), std::string::npos) << two;
}

TEST(CliBench, BadOverheadLayersIsAOneLineError) {
  int rc = -1;
  const std::string out = run_bench("--overhead-only --overhead-layers 0", rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("moddit: error: "), std::string::npos) << out;
  EXPECT_NE(out.find("overhead-layers"), std::string::npos) << out;
}

}  // namespace
