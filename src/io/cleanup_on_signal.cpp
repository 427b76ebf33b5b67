#include "io/cleanup_on_signal.hpp"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>

namespace moddit {

namespace {

constexpr int kSlots = 64;
enum SlotState : int { kFree = 0, kFilling = 1, kFile = 2, kDirectory = 3 };

struct Slot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX];
};
Slot g_slots[kSlots];

constexpr int kSignals[] = {SIGINT, SIGTERM};
struct sigaction g_previous[2];
std::once_flag g_install_once;

void remove_guarded() {
  // Only async-signal-safe calls here (unlink, rmdir).
  for (Slot& s : g_slots)
    if (s.state.load() == kFile) ::unlink(s.path);
  for (Slot& s : g_slots)
    if (s.state.load() == kDirectory) ::rmdir(s.path);
}

void on_signal(int sig, siginfo_t* info, void* context) {
  const int i = sig == SIGINT ? 0 : 1;
  const struct sigaction& prev = g_previous[i];
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction) prev.sa_sigaction(sig, info, context);
    return;
  }
  if (prev.sa_handler == SIG_IGN) return;
  if (prev.sa_handler != SIG_DFL) {
    prev.sa_handler(sig);  // the program handles it and goes on: its owners clean up
    return;
  }
  // The default disposition: the process dies now. Remove what it leaves behind,
  // then die of the same signal.
  remove_guarded();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install() {
  for (int i = 0; i < 2; ++i) {
    struct sigaction now {};
    if (::sigaction(kSignals[i], nullptr, &now) != 0) continue;
    if (!(now.sa_flags & SA_SIGINFO) && now.sa_handler == SIG_IGN) {
      g_previous[i] = now;  // ignored: nothing to do, keep it ignored
      continue;
    }
    g_previous[i] = now;
    struct sigaction sa {};
    sa.sa_sigaction = &on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(kSignals[i], &sa, nullptr);
  }
}

}  // namespace

CleanupOnSignal::CleanupOnSignal(const std::string& path, bool directory) {
  if (path.size() >= PATH_MAX) return;
  std::call_once(g_install_once, install);
  for (int i = 0; i < kSlots; ++i) {
    int expected = kFree;
    if (!g_slots[i].state.compare_exchange_strong(expected, kFilling)) continue;
    std::memcpy(g_slots[i].path, path.c_str(), path.size() + 1);
    g_slots[i].state.store(directory ? kDirectory : kFile);
    slot_ = i;
    return;
  }
}

CleanupOnSignal::~CleanupOnSignal() {
  if (slot_ >= 0) g_slots[slot_].state.store(kFree);
}

}  // namespace moddit
