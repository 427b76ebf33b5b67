#include "io/input_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/file_facts.hpp"
#include "moddit/error.hpp"

namespace moddit {

int open_input_file(const std::string& path, const std::string& what) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  MODDIT_CHECK(fd >= 0, what, " '", path, "': cannot open: ", std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(what + " '" + path + "': cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(what + " '" + path + "': not a regular file (" + file_kind(st.st_mode) + ")");
  }
  // Regular files never block; clear the flag so reads behave as usual.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

std::string read_input_file(const std::string& path, const std::string& what, uint64_t max_bytes) {
  const int fd = open_input_file(path, what);
  std::string out;
  try {
    struct stat st {};
    MODDIT_CHECK(::fstat(fd, &st) == 0, what, " '", path, "': cannot stat: ", std::strerror(errno));
    MODDIT_CHECK(uint64_t(st.st_size) <= max_bytes, what, " '", path, "': ", st.st_size,
                 " bytes is more than the ", max_bytes, " this reader accepts");
    out.reserve(static_cast<size_t>(st.st_size));
    char buf[1 << 16];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      MODDIT_CHECK(n >= 0, what, " '", path, "': read failed: ", std::strerror(errno));
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
      MODDIT_CHECK(out.size() <= max_bytes, what, " '", path, "': more than ", max_bytes, " bytes");
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return out;
}

}  // namespace moddit
