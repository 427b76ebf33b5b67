#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moddit/error.hpp"

namespace moddit {
namespace {

constexpr size_t kBufferSize = size_t(1) << 20;

std::string errno_text() { return std::strerror(errno); }

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes the rename durable; failure here is not fatal (some file systems refuse
// fsync on directories), the data itself is already synced.
void sync_dir(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  (void)::fsync(dfd);
  ::close(dfd);
}

}  // namespace

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  MODDIT_CHECK(!path.empty(), "cannot write a file with an empty path");
  MODDIT_CHECK(path.back() != '/', "cannot write '", path, "': it names a directory");
  std::string templ = path + ".tmp.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  MODDIT_CHECK(fd_ >= 0, "cannot write '", path, "': cannot create a temporary file in '",
               parent_dir(path), "': ", errno_text());
  temp_path_ = buf.data();
  // mkstemp creates 0600; make the result readable like an ordinary file.
  (void)::fchmod(fd_, 0644);
  buffer_.resize(kBufferSize);
}

AtomicFile::~AtomicFile() {
  if (!committed_) abort();
}

void AtomicFile::abort() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!committed_ && !temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

void AtomicFile::flush_buffer() {
  const uint8_t* p = buffer_.data();
  size_t left = buffered_;
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = n < 0 ? errno_text() : "short write";
      abort();
      throw Error("cannot write '" + path_ + "': " + why);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  buffered_ = 0;
}

void AtomicFile::write(const void* data, size_t size) {
  MODDIT_CHECK(fd_ >= 0 && !committed_, "cannot write '", path_, "': file already closed");
  const uint8_t* src = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const size_t n = std::min(size, buffer_.size() - buffered_);
    std::memcpy(buffer_.data() + buffered_, src, n);
    buffered_ += n;
    src += n;
    size -= n;
    written_ += n;
    if (buffered_ == buffer_.size()) flush_buffer();
  }
}

void AtomicFile::commit() {
  MODDIT_CHECK(fd_ >= 0 && !committed_, "cannot commit '", path_, "': file already closed");
  flush_buffer();
  if (::fsync(fd_) != 0) {
    const std::string why = errno_text();
    abort();
    throw Error("cannot write '" + path_ + "': fsync failed: " + why);
  }
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    const std::string why = errno_text();
    abort();
    throw Error("cannot write '" + path_ + "': close failed: " + why);
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    const std::string why = errno_text();
    abort();
    throw Error("cannot write '" + path_ + "': rename from temporary file failed: " + why);
  }
  committed_ = true;
  temp_path_.clear();
  buffer_.clear();
  buffer_.shrink_to_fit();
  sync_dir(parent_dir(path_));
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  AtomicFile f(path);
  f.write(data, size);
  f.commit();
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, contents.data(), contents.size());
}

}  // namespace moddit
