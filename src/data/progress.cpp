#include "metalm/data/progress.h"

#include <unistd.h>

#include <cmath>
#include <exception>
#include <utility>

namespace metalm::data {
std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long t = std::lround(seconds);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string format_progress(const std::string& label, uint64_t done, uint64_t total,
                            double seconds, const std::string& unit) {
  if (!unit.empty()) {
    const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
    const double pct =
        total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
    const double eta = rate > 0 ? static_cast<double>(total - done) / rate : -1.0;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s  %llu/%llu %s  %3.0f%%  %.1f/s  ETA %s", label.c_str(),
                  static_cast<unsigned long long>(done), static_cast<unsigned long long>(total),
                  unit.c_str(), pct, rate, format_duration(eta).c_str());
    return buf;
  }
  const double mb = 1e-6 * static_cast<double>(done), total_mb = 1e-6 * static_cast<double>(total);
  const double rate = seconds > 0 ? mb / seconds : 0.0;
  const double pct =
      total > 0 ? 100.0 * static_cast<double>(done) / static_cast<double>(total) : 100.0;
  const double eta = rate > 0 ? (total_mb - mb) / rate : -1.0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s  %.1f/%.1f MB  %3.0f%%  %.1f MB/s  ETA %s", label.c_str(), mb,
                total_mb, pct, rate, format_duration(eta).c_str());
  return buf;
}

ProgressBar::ProgressBar(std::string label, uint64_t total_bytes, std::FILE* out,
                         std::string unit)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total_bytes),
      out_(out),
      start_(Clock::now()),
      last_draw_(start_) {
  tty_ = out_ != nullptr && ::isatty(::fileno(out_)) == 1;
  uncaught_ = std::uncaught_exceptions();
}

ProgressBar::~ProgressBar() {
  if (std::uncaught_exceptions() > uncaught_ && !finished_) {
    finished_ = true;
    if (out_ != nullptr && tty_) std::fputs("\n", out_);
    return;
  }
  finish();
}

void ProgressBar::update(uint64_t done_bytes) {
  done_ = done_bytes;
  if (out_ == nullptr) return;
  const auto now = Clock::now();
  if (now - last_draw_ < (tty_ ? std::chrono::milliseconds(200) : std::chrono::seconds(5))) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (out_ != nullptr) draw(true);
}

void ProgressBar::draw(bool last) {
  const double s = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string line = format_progress(label_, done_, total_, s, unit_);
  if (last) {
    char took[32];
    std::snprintf(took, sizeof took, "%.1f s", s);
    line = line.substr(0, line.rfind("  ETA")) + "  done in " + (s < 60 ? took : format_duration(s));
  }
  // "\r" + erase-to-end redraws in place on a terminal; a log gets one line per draw.
  std::fprintf(out_, tty_ ? "\r%s\033[K%s" : "%s%s\n", line.c_str(), tty_ && last ? "\n" : "");
  std::fflush(out_);
}

}  // namespace metalm::data
