#pragma once
// The `moddit` command run as a process from a scratch directory, for the CLI
// tests: its exit status and output, and the check of the one-line error.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace moddit::test {

struct ProcessResult {
  int rc = -1;
  std::string out, err;
};

class CliFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("moddit_cli_test_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Runs `moddit ARGS` in the scratch directory under a 4 GiB address-space limit
  // (a regression that allocates without bound fails instead of swapping) and a
  // 60 s timeout (one that blocks fails instead of hanging). Its stdout and
  // stderr files are removed again, so that the directory shows what it wrote.
  ProcessResult run(const std::string& args) {
    const std::string bin = std::string(MODDIT_BINARY_DIR) + "/cli/moddit";
    const std::string out = (dir_ / "stdout.txt").string(), err = (dir_ / "stderr.txt").string();
#ifdef __SANITIZE_ADDRESS__
    const std::string limit = "";  // AddressSanitizer reserves terabytes of address space
#else
    const std::string limit = "ulimit -v 4194304 && ";
#endif
    const std::string cmd = "cd '" + dir_.string() + "' && " + limit + "timeout 60 '" + bin + "' " +
                            args + " >'" + out + "' 2>'" + err + "'";
    const int status = std::system(("bash -c \"" + cmd + "\"").c_str());
    ProcessResult r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out);
    r.err = slurp(err);
    std::filesystem::remove(out);
    std::filesystem::remove(err);
    return r;
  }
  static std::string slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  // Exactly one line on stderr, "moddit: error: ...", naming `needle`; exit status 1.
  static void expect_one_line_error(const ProcessResult& r, const std::string& needle) {
    EXPECT_EQ(r.rc, 1) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.rfind("moddit: error: ", 0), 0u) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "wanted '" << needle << "' in: " << r.err;
  }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::filesystem::path dir_;
};

}  // namespace moddit::test
