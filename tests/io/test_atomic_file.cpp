#include <gtest/gtest.h>

#include <filesystem>

#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "io_test_util.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace {

using test::ScratchDir;

TEST(AtomicFile, WritesContentAndLeavesNoTempFile) {
  ScratchDir dir;
  std::mt19937 rng(test::test_seed());
  std::vector<uint8_t> data(3'000'000);  // spans several internal buffer flushes
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  const std::string path = dir.file("out.bin");
  write_file_atomic(path, data.data(), data.size());
  EXPECT_EQ(test::read_all(path), data);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFile, TargetAbsentUntilCommit) {
  ScratchDir dir;
  const std::string path = dir.file("late.txt");
  {
    AtomicFile f(path);
    f.write("hello ");
    f.write("world");
    EXPECT_FALSE(std::filesystem::exists(path));  // never a partial file under the name
    EXPECT_TRUE(std::filesystem::exists(f.temp_path()));
    f.commit();
  }
  const auto got = test::read_all(path);
  EXPECT_EQ(std::string(got.begin(), got.end()), "hello world");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"late.txt"});
}

TEST(AtomicFile, AbandonedWriteKeepsOldContent) {
  ScratchDir dir;
  const std::string path = dir.file("keep.txt");
  write_file_atomic(path, std::string("old content"));
  {
    AtomicFile f(path);
    f.write("new content that is never committed");
  }  // destroyed without commit
  const auto got = test::read_all(path);
  EXPECT_EQ(std::string(got.begin(), got.end()), "old content");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"keep.txt"});
}

TEST(AtomicFile, ReplacesExistingFile) {
  ScratchDir dir;
  const std::string path = dir.file("r.txt");
  write_file_atomic(path, std::string("first, longer content"));
  write_file_atomic(path, std::string("second"));
  const auto got = test::read_all(path);
  EXPECT_EQ(std::string(got.begin(), got.end()), "second");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"r.txt"});
}

TEST(AtomicFile, MissingDirectoryErrorNamesPath) {
  ScratchDir dir;
  const std::string path = dir.file("no/such/dir/file.bin");
  try {
    write_file_atomic(path, std::string("x"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(AtomicFile, FailedStreamingWriteLeavesNothing) {
  ScratchDir dir;
  const std::string path = dir.file("t.safetensors");
  {
    SafetensorsWriter w(path);
    w.declare("a", DType::F32, {4});
    const float x[2] = {1.f, 2.f};
    w.write("a", x, sizeof(x));  // only half of the tensor
    EXPECT_THROW(w.finish(), Error);
  }
  EXPECT_TRUE(dir.entries().empty());
}

}  // namespace
}  // namespace moddit
