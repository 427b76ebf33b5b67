#pragma once
// Temporary files and directories that must not outlive a process killed by
// SIGINT or SIGTERM (a half-written trajectory can be gigabytes). While a guard
// lives, its path is removed by a signal handler if the signal is about to kill
// the process (the disposition before moddit's was the default one); a program
// that handles the signal itself (Python turns SIGINT into KeyboardInterrupt)
// keeps running, and the owners' destructors clean up as usual. The handler is
// installed on first use and chains to the one it replaced.
#include <string>

namespace moddit {

class CleanupOnSignal {
 public:
  // Files are unlinked first, then directories removed (they must be empty by
  // then: register the files inside them too). At most 64 paths are guarded at
  // once; beyond that a path is simply not guarded.
  explicit CleanupOnSignal(const std::string& path, bool directory = false);
  ~CleanupOnSignal();  // stops guarding; removes nothing
  CleanupOnSignal(const CleanupOnSignal&) = delete;
  CleanupOnSignal& operator=(const CleanupOnSignal&) = delete;

 private:
  int slot_ = -1;
};

}  // namespace moddit
