#pragma once
// Atomic file writing: every file moddit writes goes through here, so a reader
// never sees a half-written file and a crash never leaves one behind under the
// final name. Data goes to a temporary file in the destination's directory (same
// file system, so rename is atomic), which is fsync'ed and renamed over the target.
//
// What is there is respected: only a regular file is ever replaced (a FIFO, a
// device node or a directory is refused and left alone); a symlink is followed
// to its final target, which is the file replaced (the link stays; a dangling
// link is refused); a replaced file keeps its mode (and owner, where allowed), a
// new file gets 0666 minus the umask. The temporary file is removed on every
// failure and when SIGINT or SIGTERM kills the process (io/cleanup_on_signal.hpp).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moddit {

// Throws moddit::Error naming `path` unless a file can be written there: its
// directory exists and is writable, and `path` is absent, a regular file or a
// symlink to one. Returns the path the write lands on (symlinks resolved).
// Commands run it on their outputs before any work.
std::string check_output_file(const std::string& path);

class CleanupOnSignal;

class AtomicFile {
 public:
  // Creates "<target>.tmp.XXXXXX" next to the target (check_output_file);
  // throws moddit::Error naming `path`.
  explicit AtomicFile(const std::string& path);
  // Without commit() the temporary file is removed and the target is untouched.
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends bytes (buffered).
  void write(const void* data, size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs, closes and renames the temporary file onto the target.
  void commit();
  // Drops the temporary file (also done by the destructor).
  void abort() noexcept;

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  void flush_buffer();

  std::string path_, target_, temp_path_;
  std::unique_ptr<CleanupOnSignal> guard_;
  int fd_ = -1;
  bool committed_ = false;
  uint64_t written_ = 0;
  std::vector<uint8_t> buffer_;
  size_t buffered_ = 0;
};

// One-shot helpers.
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace moddit
