// The progress line of long data work (tokenizing a corpus): bytes done of the total, MB/s and
// ETA, redrawn in place on a terminal at most a few times a second, and printed as plain lines
// every few seconds when stderr is a log file (so logs stay readable).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace metalm::data {

// "1:05:09" / "4:07": a duration for a progress line ("?" when not finite or negative).
std::string format_duration(double seconds);

// "kjv  12.3/40.0 MB  31%  18.5 MB/s  ETA 0:02": what one redraw prints. With a unit, counts
// instead of bytes: "sst2  120/872 examples  14%  31.2/s  ETA 0:24".
std::string format_progress(const std::string& label, uint64_t done, uint64_t total,
                            double seconds, const std::string& unit = "");

class ProgressBar {
 public:
  // out = nullptr: silent (tests, library users who report their own way). unit "": bytes;
  // else what the counts count ("examples").
  ProgressBar(std::string label, uint64_t total_bytes, std::FILE* out = stderr,
              std::string unit = "");
  void update(uint64_t done_bytes);  // cheap when called often: redraws on a timer
  void finish();                     // the final line, with the total time
  // Finishes, except while an exception unwinds: then the error is what the user should see
  // last, and a terminal line is only ended.
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

 private:
  using Clock = std::chrono::steady_clock;
  void draw(bool last);
  std::string label_, unit_;
  uint64_t total_, done_ = 0;
  std::FILE* out_;
  bool tty_ = false, finished_ = false;
  int uncaught_ = 0;
  Clock::time_point start_, last_draw_;
};

}  // namespace metalm::data
