#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "io/cleanup_on_signal.hpp"
#include "io/file_facts.hpp"
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

// Where a write to `path` lands, and what is there now.
struct Target {
  std::string path;
  bool exists = false;
  struct stat st {};
};

Target resolve_target(const std::string& path) {
  MODDIT_CHECK(!path.empty(), "cannot write a file with an empty path");
  MODDIT_CHECK(path.back() != '/', "cannot write '", path, "': it names a directory");
  Target t;
  t.path = path;
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    // Written through to the final target, which must exist (a dangling link
    // would otherwise be replaced by a file, or create one somewhere unexpected).
    char* real = ::realpath(path.c_str(), nullptr);
    MODDIT_CHECK(real != nullptr, "cannot write '", path, "': it is a symlink whose target does "
                 "not exist (", errno_text(), ")");
    t.path = real;
    std::free(real);
  }
  if (::stat(t.path.c_str(), &t.st) == 0) {
    t.exists = true;
    MODDIT_CHECK(S_ISREG(t.st.st_mode), "cannot write '", path, "': not a regular file (",
                 file_kind(t.st.st_mode), "); moddit replaces regular files only");
  } else {
    MODDIT_CHECK(errno == ENOENT, "cannot write '", path, "': ", errno_text());
  }
  const std::string dir = parent_dir(t.path);
  struct stat dst {};
  MODDIT_CHECK(::stat(dir.c_str(), &dst) == 0, "cannot write '", path, "': directory '", dir,
               "': ", errno_text());
  MODDIT_CHECK(S_ISDIR(dst.st_mode), "cannot write '", path, "': '", dir, "' is not a directory");
  MODDIT_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, "cannot write '", path,
               "': directory '", dir, "' is not writable: ", errno_text());
  return t;
}

}  // namespace

std::string check_output_file(const std::string& path) { return resolve_target(path).path; }

AtomicFile::AtomicFile(const std::string& path) : path_(path) {
  const Target t = resolve_target(path);
  target_ = t.path;
  std::string templ = target_ + ".tmp.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  fd_ = ::mkstemp(buf.data());
  MODDIT_CHECK(fd_ >= 0, "cannot write '", path, "': cannot create a temporary file in '",
               parent_dir(target_), "': ", errno_text());
  temp_path_ = buf.data();
  guard_ = std::make_unique<CleanupOnSignal>(temp_path_);
  // mkstemp creates 0600: give the file the mode (and owner) of the one it
  // replaces, or what a new file would get.
  if (t.exists) {
    (void)::fchmod(fd_, t.st.st_mode & 07777);
    if (::geteuid() == 0) (void)::fchown(fd_, t.st.st_uid, t.st.st_gid);
  } else {
    (void)::fchmod(fd_, 0666 & ~current_umask());
  }
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
  guard_.reset();
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
  // What is there may have changed while the data was written: still never
  // replace anything but a regular file.
  struct stat st {};
  if (::lstat(target_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    abort();
    throw Error("cannot write '" + path_ + "': not a regular file (" + file_kind(st.st_mode) +
                "); moddit replaces regular files only");
  }
  if (::rename(temp_path_.c_str(), target_.c_str()) != 0) {
    const std::string why = errno_text();
    abort();
    throw Error("cannot write '" + path_ + "': rename from temporary file failed: " + why);
  }
  committed_ = true;
  temp_path_.clear();
  guard_.reset();
  buffer_.clear();
  buffer_.shrink_to_fit();
  sync_directory(parent_dir(target_));
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
