// Loss curves as pictures (DESIGN section 2): one PNG with one or more runs, each a train curve
// (loss vs step, optionally EMA-smoothed over the faint raw points) and a validation curve
// (val_loss vs step, markers), with a legend, nice-number ticks and optional log axes.
//
// Drawn with cairo rather than PLplot (both allowed by D1): cairo is one library with no global
// state (PLplot keeps its current stream, colour map and page in process-wide state, which
// STYLE's house rules forbid outside the thread pool), it renders into memory and writes the PNG
// through a stream callback, so the file goes through core's atomic write like every other
// output, and its PNG reader lets the tests check pixels. What a plotting library would add
// (ticks, legend placement) is a page of code here, and is tested.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace metalm::train {

// Points of one curve in increasing step order.
struct Curve {
  std::vector<double> step, value;
};

// One run as read from its training log (train/logger.h): "loss" lines make the train curve,
// "val_loss" lines the validation curve. A step logged twice (a resumed run logs again the steps
// after its last checkpoint) keeps the later value.
struct RunCurves {
  std::string name;  // the legend label
  Curve train, val;
  int64_t null_losses = 0;           // "loss": null, which is how a NaN or Inf loss is logged
  bool truncated_last_line = false;  // a last line cut mid-write was skipped
};

struct ReadLogOptions {
  uint64_t max_bytes = uint64_t(1) << 30;  // a trainer logs ~150 bytes per step
  // A log that ends mid-line is what kill -9 leaves, or a run still writing: skip that line.
  bool skip_truncated_last_line = true;
};

// Reads a JSONL training log. Errors start "[log] <path>": "cannot open", "line 12: record is not
// valid JSON", "line 3: loss: expected a number", "empty log", "no \"loss\" or \"val_loss\"".
RunCurves read_training_log(const std::string& path, const ReadLogOptions& options = {});
// The log of a run: `run` itself if it is a file, `run`/log.jsonl if it is a directory.
std::string run_log_path(const std::string& run);

struct PlotOptions {
  int width = 960, height = 600;  // pixels, each in [240, 8192]
  std::string title;
  double smooth = 0;  // EMA weight in [0, 1): 0 draws the raw train curve solid
  bool log_x = false, log_y = false;
  std::string x_label = "step", y_label = "loss";
};

// An axis: its range (padded around the data) and tick positions, all in data units.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;
};
// Ticks at nice numbers (steps of 1, 2, 2.5, 5 x 10^k on a linear axis; decades, then 1-2-5
// and 1..9 per decade, on a log axis), all within [lo, hi], at most max_ticks of them (a linear
// axis may pass that rather than show a single tick).
std::vector<double> nice_ticks(double lo, double hi, bool log, int max_ticks);
// Labels for ticks: "0.5", "1.0", "1.5" (a linear axis shares its decimals), "20k", "1.5M".
std::vector<std::string> tick_labels(const std::vector<double>& ticks, bool log);
// Debiased exponential moving average: s_i = w s_{i-1} + (1 - w) x_i, divided by 1 - w^(i+1)
// so that the curve starts at the data rather than at 0 (as TensorBoard smooths).
std::vector<double> ema(const std::vector<double>& values, double weight);

struct Rect {
  double x = 0, y = 0, w = 0, h = 0;
  bool contains(double px, double py) const {
    return px >= x && px < x + w && py >= y && py < y + h;
  }
};

// Where a plot puts things, in pixels: the plot area, the data-to-pixel map and the legend box
// (in the corner of the plot area that covers the fewest points). Points that a log axis cannot
// show (step or loss <= 0) are left out. ValueError "[plot] ..." for bad options, no runs, or a
// run with nothing to draw.
struct PlotFrame {
  Rect area;
  Axis x, y;
  Rect legend;
  double px(double v) const;
  double py(double v) const;
};
PlotFrame plot_frame(const std::vector<RunCurves>& runs, const PlotOptions& options);

struct Rgb {
  uint8_t r, g, b;
};
// The colour of run i: a palette of 10 (matplotlib's), repeating.
Rgb run_colour(size_t i);

// The PNG bytes of the plot.
std::string render_loss_plot(const std::vector<RunCurves>& runs, const PlotOptions& options);
// Renders and writes path atomically (IoError "[plot] path: cannot create ..."): a failure
// leaves no partial file and the previous picture, if any, in place.
void write_loss_plot(const std::string& path, const std::vector<RunCurves>& runs,
                     const PlotOptions& options);

}  // namespace metalm::train
