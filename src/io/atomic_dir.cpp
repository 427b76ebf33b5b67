#include "io/atomic_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "io/cleanup_on_signal.hpp"
#include "io/file_facts.hpp"
#include "moddit/error.hpp"

namespace moddit {

namespace fs = std::filesystem;

namespace {

std::string errno_text() { return std::strerror(errno); }

std::string parent_of(const std::string& p) {
  const fs::path parent = fs::path(p).parent_path();
  return parent.empty() ? "." : parent.string();
}

std::string without_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// Swaps two directories in one step where the kernel can (Linux renameat2);
// elsewhere moves the old one aside first.
void swap_into_place(const std::string& staging, const std::string& target, const std::string& what) {
#ifdef RENAME_EXCHANGE
  if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) return;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
    throw Error(what + " '" + target + "': cannot put the new contents in place: " + errno_text());
#endif
  std::string aside = target + ".old.XXXXXX";
  std::vector<char> buf(aside.begin(), aside.end());
  buf.push_back('\0');
  MODDIT_CHECK(::mkdtemp(buf.data()) != nullptr, what, " '", target, "': ", errno_text());
  aside = buf.data();
  MODDIT_CHECK(::rename(target.c_str(), aside.c_str()) == 0, what, " '", target,
               "': cannot move the old contents aside: ", errno_text());
  if (::rename(staging.c_str(), target.c_str()) != 0) {
    const std::string why = errno_text();
    (void)::rename(aside.c_str(), target.c_str());
    throw Error(what + " '" + target + "': cannot put the new contents in place: " + why);
  }
  // The old contents now live at `aside`; the caller removes `staging`.
  (void)::rename(aside.c_str(), staging.c_str());
  std::error_code ec;
  fs::remove_all(aside, ec);
}

}  // namespace

std::string AtomicDirectory::check(const std::string& path_in, const Replaceable& replaceable,
                                   const std::string& what) {
  MODDIT_CHECK(!path_in.empty(), what, ": empty path");
  const std::string path = without_trailing_slashes(path_in);
  std::string target = path;
  struct stat lst {};
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    char* real = ::realpath(path.c_str(), nullptr);
    MODDIT_CHECK(real != nullptr, what, " '", path, "': a symlink whose target does not exist");
    target = real;
    std::free(real);
  }
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0) {
    MODDIT_CHECK(S_ISDIR(st.st_mode), what, " '", path, "': not a directory");
    DIR* d = ::opendir(target.c_str());
    MODDIT_CHECK(d != nullptr, what, " '", path, "': cannot list: ", errno_text());
    std::string foreign;
    while (dirent* e = ::readdir(d)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      struct stat est {};
      const bool regular =
          ::lstat((target + "/" + name).c_str(), &est) == 0 && S_ISREG(est.st_mode);
      if (!regular || !replaceable(name)) {
        foreign = name;
        break;
      }
    }
    ::closedir(d);
    MODDIT_CHECK(foreign.empty(), what, " '", path, "' holds '", foreign,
                 "', which this writer did not make: its contents are replaced as a whole, so "
                 "choose another directory");
  } else {
    MODDIT_CHECK(errno == ENOENT, what, " '", path, "': ", errno_text());
    // The nearest existing ancestor must be a directory we can create in.
    std::string up = parent_of(target);
    struct stat ust {};
    while (::stat(up.c_str(), &ust) != 0) {
      MODDIT_CHECK(errno == ENOENT, what, " '", path, "': '", up, "': ", errno_text());
      const std::string next = parent_of(up);
      if (next == up) break;
      up = next;
    }
    MODDIT_CHECK(S_ISDIR(ust.st_mode), what, " '", path, "': cannot be created: '", up,
                 "' is not a directory");
  }
  const std::string parent = parent_of(target);
  struct stat pst {};
  if (::stat(parent.c_str(), &pst) == 0)
    MODDIT_CHECK(::access(parent.c_str(), W_OK | X_OK) == 0, what, " '", path, "': directory '",
                 parent, "' is not writable: ", errno_text());
  return target;
}

AtomicDirectory::AtomicDirectory(const std::string& path, const Replaceable& replaceable,
                                 const std::string& what)
    : path_(path), what_(what) {
  target_ = check(path, replaceable, what);
  std::error_code ec;
  fs::create_directories(parent_of(target_), ec);
  MODDIT_CHECK(!ec, what, " '", path, "': cannot create '", parent_of(target_), "': ", ec.message());
  std::string templ = target_ + ".new.XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  MODDIT_CHECK(::mkdtemp(buf.data()) != nullptr, what, " '", path,
               "': cannot create a staging directory: ", errno_text());
  staging_ = buf.data();
  guards_.push_back(std::make_unique<CleanupOnSignal>(staging_, true));
  // mkdtemp makes 0700: the mode of the directory replaced, or a new one's.
  struct stat st {};
  const mode_t mode = ::stat(target_.c_str(), &st) == 0 ? (st.st_mode & 07777)
                                                          : (0777 & ~current_umask());
  (void)::chmod(staging_.c_str(), mode);
}

AtomicDirectory::~AtomicDirectory() {
  guards_.clear();
  if (!committed_ && !staging_.empty()) {
    std::error_code ec;
    fs::remove_all(staging_, ec);
  }
}

std::string AtomicDirectory::file(const std::string& name) {
  MODDIT_CHECK(!committed_, what_, " '", path_, "': already committed");
  MODDIT_CHECK(!name.empty() && name.find('/') == std::string::npos, what_, ": bad file name '",
               name, "'");
  const std::string p = staging_ + "/" + name;
  // Before the directory's guard, which must come last (rmdir needs it empty).
  guards_.insert(guards_.begin(), std::make_unique<CleanupOnSignal>(p));
  return p;
}

void AtomicDirectory::commit() {
  MODDIT_CHECK(!committed_, what_, " '", path_, "': already committed");
  struct stat st {};
  if (::stat(target_.c_str(), &st) != 0) {
    // No old contents: the staging directory simply takes the name.
    MODDIT_CHECK(::rename(staging_.c_str(), target_.c_str()) == 0, what_, " '", path_,
                 "': cannot put the new contents in place: ", errno_text());
    staging_.clear();
  } else {
    swap_into_place(staging_, target_, what_);
  }
  committed_ = true;
  guards_.clear();  // from here the old contents may be removed, not the new
  if (!staging_.empty()) {
    std::error_code ec;
    fs::remove_all(staging_, ec);  // the old contents, now at the staging path
  }
  sync_directory(parent_of(target_));
}

}  // namespace moddit
