#pragma once
// A progress bar on stderr with elapsed time and ETA. On a terminal it redraws
// one line; otherwise (pipes, logs) it prints a line every 10%.
#include <chrono>
#include <string>

namespace moddit::cli {

class ProgressBar {
 public:
  ProgressBar(std::string label, bool enabled);
  void update(int done, int total);
  void finish();

 private:
  std::string label_;
  bool enabled_, tty_;
  bool drawn_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace moddit::cli
