#pragma once
// Atomic file writing: every file moddit writes goes through here, so a reader
// never sees a half-written file and a crash never leaves one behind under the
// final name. Data goes to a temporary file in the destination's directory (same
// file system, so rename is atomic), which is fsync'ed and renamed over the target.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moddit {

class AtomicFile {
 public:
  // Creates "<path>.tmp.XXXXXX" next to `path`; throws moddit::Error naming `path`.
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

  std::string path_, temp_path_;
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
