#pragma once
// A directory whose contents are replaced as one unit (a report: report.json and
// the pictures it lists). Files are written into a new staging directory next to
// it ("<dir>.new.XXXXXX", same file system), which then takes the directory's
// place in one rename (an atomic exchange where the kernel has one); the old
// contents are removed after. A failure or a kill by SIGINT/SIGTERM before the
// swap leaves the old directory as it was and no staging directory behind.
//
// An existing directory is replaced only when every entry in it is one the
// caller says it may drop (`replaceable`): anything else (a user's notes, a
// subdirectory, `--out .`) makes the writer refuse, naming the entry, before
// anything is written. A symlink to a directory is followed: the target is what
// is replaced, the link stays.
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moddit {

class CleanupOnSignal;

class AtomicDirectory {
 public:
  using Replaceable = std::function<bool(const std::string& name)>;

  // Checks without creating anything; returns the directory written (symlinks
  // resolved). Errors name `what` ("report directory") and `path`.
  static std::string check(const std::string& path, const Replaceable& replaceable,
                           const std::string& what);

  // check(), then creates the staging directory (and missing parents).
  AtomicDirectory(const std::string& path, const Replaceable& replaceable,
                  const std::string& what);
  ~AtomicDirectory();  // without commit(): the staging directory and its files go
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // Where to write file `name` of the new contents (write it atomically there:
  // io/atomic_file.hpp); call before writing it, so a kill removes it too.
  std::string file(const std::string& name);
  // Puts the new contents in place of the old ones.
  void commit();

 private:
  std::string path_, target_, what_, staging_;
  bool committed_ = false;
  std::vector<std::unique_ptr<CleanupOnSignal>> guards_;  // files first, the directory last
};

}  // namespace moddit
