#include "progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace moddit::cli {

namespace {
std::string duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  return buf;
}
}  // namespace

ProgressBar::ProgressBar(std::string label, bool enabled)
    : label_(std::move(label)), enabled_(enabled), tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::update(int done, int total) {
  if (!enabled_ || total <= 0) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = double(done) / total;
  const std::string eta = done > 0 ? duration(elapsed * (total - done) / done) : "?";
  if (tty_) {
    const int width = 30, filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %d/%d %3.0f%%  elapsed %s  ETA %s   ", label_.c_str(),
                 bar.c_str(), done, total, 100 * frac, duration(elapsed).c_str(), eta.c_str());
    std::fflush(stderr);
    drawn_ = true;
  } else {
    const int decile = static_cast<int>(frac * 10);
    if (decile != last_decile_) {
      last_decile_ = decile;
      std::fprintf(stderr, "%s: %d/%d (%3.0f%%), elapsed %s, ETA %s\n", label_.c_str(), done,
                   total, 100 * frac, duration(elapsed).c_str(), eta.c_str());
    }
  }
}

void ProgressBar::finish() {
  if (drawn_) std::fprintf(stderr, "\n");
  drawn_ = false;
}

}  // namespace moddit::cli
