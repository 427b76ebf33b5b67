// Atomic writes that respect what is there (issue 13): only regular files are
// replaced (a FIFO or device node is refused and left alone), a symlinked output
// is written through to its target, the file mode is kept, temporaries are removed
// on failure and when the process is killed by SIGINT/SIGTERM, and a report
// directory's contents are replaced as one unit.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "io/atomic_file.hpp"
#include "io_test_util.hpp"
#include "expect_error.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

using moddit::test::expect_error;

namespace fs = std::filesystem;
using test::ScratchDir;

std::string text_of(const std::string& path) {
  const auto b = test::read_all(path);
  return std::string(b.begin(), b.end());
}

TEST(AtomicFileRobust, RefusesToReplaceAFifoAndLeavesIt) {
  ScratchDir dir;
  const std::string p = dir.file("pipe");
  ASSERT_EQ(::mkfifo(p.c_str(), 0644), 0);
  expect_error([&] { write_file_atomic(p, std::string("x")); }, "not a regular file");
  struct stat st {};
  ASSERT_EQ(::lstat(p.c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"pipe"});  // no temporary left
}

TEST(AtomicFileRobust, RefusesADirectoryTarget) {
  ScratchDir dir;
  fs::create_directory(dir.file("d"));
  expect_error([&] { write_file_atomic(dir.file("d"), std::string("x")); }, "not a regular file");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"d"});
}

TEST(AtomicFileRobust, WritesThroughASymlinkToItsTarget) {
  ScratchDir dir;
  fs::create_directory(dir.file("real"));
  write_file_atomic(dir.file("real/out.txt"), std::string("old"));
  fs::create_symlink("real/out.txt", dir.file("link.txt"));
  write_file_atomic(dir.file("link.txt"), std::string("new"));
  EXPECT_TRUE(fs::is_symlink(dir.file("link.txt")));
  EXPECT_EQ(text_of(dir.file("real/out.txt")), "new");
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"link.txt", "real"}));
  // A chain of links resolves to the last target.
  fs::create_symlink("link.txt", dir.file("link2.txt"));
  write_file_atomic(dir.file("link2.txt"), std::string("newer"));
  EXPECT_EQ(text_of(dir.file("real/out.txt")), "newer");
  EXPECT_TRUE(fs::is_symlink(dir.file("link2.txt")));
}

TEST(AtomicFileRobust, RefusesADanglingSymlink) {
  ScratchDir dir;
  fs::create_symlink("missing/target.txt", dir.file("dangling"));
  expect_error([&] { write_file_atomic(dir.file("dangling"), std::string("x")); }, "symlink");
  EXPECT_TRUE(fs::is_symlink(dir.file("dangling")));
}

TEST(AtomicFileRobust, KeepsTheModeOfTheFileItReplaces) {
  ScratchDir dir;
  const std::string p = dir.file("secret.txt");
  write_file_atomic(p, std::string("a"));
  ASSERT_EQ(::chmod(p.c_str(), 0600), 0);
  write_file_atomic(p, std::string("b"));
  struct stat st {};
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(::chmod(p.c_str(), 0640), 0);
  write_file_atomic(p, std::string("c"));
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

TEST(AtomicFileRobust, NewFilesFollowTheUmask) {
  ScratchDir dir;
  const mode_t old = ::umask(027);
  write_file_atomic(dir.file("n.txt"), std::string("a"));
  ::umask(old);
  struct stat st {};
  ASSERT_EQ(::stat(dir.file("n.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
}

// A child writes half a file and is killed by `sig`: no temporary may remain.
void expect_no_temporary_after(int sig) {
  ScratchDir dir;
  const std::string p = dir.file("big.bin");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    AtomicFile f(p);
    std::vector<uint8_t> chunk(1 << 20, 7);
    for (int i = 0; i < 4; ++i) f.write(chunk.data(), chunk.size());
    ::raise(sig);
    ::_exit(3);  // not reached when the signal kills
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
  EXPECT_TRUE(dir.entries().empty()) << "left behind: " << dir.entries().front();
}

TEST(AtomicFileRobust, TemporaryRemovedWhenKilledBySigterm) { expect_no_temporary_after(SIGTERM); }
TEST(AtomicFileRobust, TemporaryRemovedWhenKilledBySigint) { expect_no_temporary_after(SIGINT); }

TEST(AtomicFileRobust, TemporaryRemovedWhenTheRenameFails) {
  ScratchDir dir;
  AtomicFile f(dir.file("x.txt"));
  f.write("data");
  fs::create_directory(dir.file("x.txt"));  // the target became a directory meanwhile
  EXPECT_THROW(f.commit(), Error);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"x.txt"});
}

// ---- report directories -------------------------------------------------------

EvalResult tiny_result(const std::vector<int>& snapshot_heads) {
  SyntheticSpec spec;
  spec.frames = 2;
  spec.height = 4;
  spec.width = 8;
  spec.num_steps = 6;
  spec.layers = 1;
  spec.heads = 2;
  spec.head_dim = 16;
  auto src = make_synthetic(spec);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 2;
  s.config.interval = 2;
  s.policies = parse_policy_list("dense,moddit", s.config, 0.5);
  s.threads = 1;
  s.snapshot_heads = snapshot_heads;
  return run_evaluation(*src, s);
}

std::vector<std::string> entries_of(const std::string& d) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(d)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ReportDirectory, ContentsAreReplacedAsOneUnit) {
  ScratchDir dir;
  const std::string rep = dir.file("rep");
  write_eval_report(tiny_result({0, 1}), rep);
  const auto first = entries_of(rep);
  EXPECT_NE(std::find(first.begin(), first.end(), "maps_s5_l0_h1.png"), first.end());
  ASSERT_EQ(::chmod(rep.c_str(), 0750), 0);
  // The second run pictures head 0 only: head 1's picture of the first run must
  // not stay behind next to a report.json that does not list it.
  write_eval_report(tiny_result({0}), rep);
  const auto second = entries_of(rep);
  EXPECT_EQ(std::find(second.begin(), second.end(), "maps_s5_l0_h1.png"), second.end());
  EXPECT_NE(std::find(second.begin(), second.end(), "maps_s5_l0_h0.png"), second.end());
  EXPECT_NE(std::find(second.begin(), second.end(), "report.json"), second.end());
  struct stat st {};
  ASSERT_EQ(::stat(rep.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"rep"});  // no staging directory left
}

TEST(ReportDirectory, ADirectoryHoldingOtherFilesIsRefusedAndLeftAlone) {
  ScratchDir dir;
  const std::string rep = dir.file("mine");
  fs::create_directory(rep);
  write_file_atomic(rep + "/notes.txt", std::string("my notes"));
  expect_error([&] { check_report_dir(rep); }, "notes.txt");
  expect_error([&] { write_eval_report(tiny_result({0}), rep); }, "notes.txt");
  EXPECT_EQ(entries_of(rep), std::vector<std::string>{"notes.txt"});
  EXPECT_EQ(text_of(rep + "/notes.txt"), "my notes");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"mine"});
}

TEST(ReportDirectory, ASymlinkedReportDirectoryIsWrittenThrough) {
  ScratchDir dir;
  fs::create_directory(dir.file("real"));
  fs::create_symlink("real", dir.file("link"));
  write_eval_report(tiny_result({0}), dir.file("link"));
  EXPECT_TRUE(fs::is_symlink(dir.file("link")));
  EXPECT_TRUE(fs::exists(dir.file("real/report.json")));
}

TEST(ReportDirectory, BadPathsAreRefusedBeforeAnyWork) {
  ScratchDir dir;
  write_file_atomic(dir.file("file"), std::string("x"));
  expect_error([&] { check_report_dir(dir.file("file")); }, "not a directory");
  expect_error([&] { check_report_dir(dir.file("file/sub")); }, "file/sub");
  expect_error([&] { check_report_dir(""); }, "empty");
  EXPECT_NO_THROW(check_report_dir(dir.file("new/deeper")));  // created when written
  EXPECT_FALSE(fs::exists(dir.file("new")));                  // ... but not by the check
  EXPECT_NO_THROW(check_output_file(dir.file("out.json")));
  expect_error([&] { check_output_file(dir.file("missing/out.json")); }, "missing");
}

}  // namespace
}  // namespace moddit
