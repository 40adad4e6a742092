// Loss plots (train/plot.h): ticks, labels and smoothing by value; training logs read into
// curves; and the PNG itself, decoded with cairo and checked pixel by pixel through the frame's
// data-to-pixel map: each run's colour on its curve, falling curves falling, markers at the
// validation points, the legend in an empty corner, and failures that leave no file behind.
#include "metalm/train/plot.h"

#include <cairo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/test_util.h"
#include "metalm/core/error.h"

namespace fs = std::filesystem;
using metalm::FormatError;
using metalm::IoError;
using metalm::ValueError;
using metalm::test::throws_with;
namespace train = metalm::train;

namespace {

// A decoded PNG: 0xRRGGBB per pixel.
struct Image {
  int w = 0, h = 0;
  std::vector<uint32_t> px;
  uint32_t at(int x, int y) const { return px[static_cast<size_t>(y) * w + x]; }
};

cairo_status_t read_from(void* closure, unsigned char* data, unsigned int n) {
  auto* in = static_cast<std::istringstream*>(closure);
  return in->read(reinterpret_cast<char*>(data), n) ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_READ_ERROR;
}

Image decode(const std::string& png) {
  std::istringstream in(png);
  cairo_surface_t* s = cairo_image_surface_create_from_png_stream(read_from, &in);
  Image img;
  if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) {
    img.w = cairo_image_surface_get_width(s);
    img.h = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char* data = cairo_image_surface_get_data(s);
    for (int y = 0; y < img.h; ++y)
      for (int x = 0; x < img.w; ++x)
        img.px.push_back(reinterpret_cast<const uint32_t*>(data + y * stride)[x] & 0xffffff);
  }
  cairo_surface_destroy(s);
  return img;
}

bool near(uint32_t p, train::Rgb c, int tol = 12) {
  return std::abs(static_cast<int>(p >> 16 & 0xff) - c.r) <= tol &&
         std::abs(static_cast<int>(p >> 8 & 0xff) - c.g) <= tol &&
         std::abs(static_cast<int>(p & 0xff) - c.b) <= tol;
}

// Pixels of colour c inside r (outside `skip`): their count and mean row.
struct Found {
  int64_t n = 0;
  double mean_y = 0;
};
Found find(const Image& img, train::Rgb c, const train::Rect& r, const train::Rect& skip = {}) {
  Found f;
  for (int y = std::max(0, int(r.y)); y < std::min(img.h, int(r.y + r.h)); ++y)
    for (int x = std::max(0, int(r.x)); x < std::min(img.w, int(r.x + r.w)); ++x)
      if (!skip.contains(x, y) && near(img.at(x, y), c)) {
        ++f.n;
        f.mean_y += y;
      }
  if (f.n) f.mean_y /= static_cast<double>(f.n);
  return f;
}

// Pixels of text or axis ink (every channel below 90) inside r.
int64_t count_dark(const Image& img, const train::Rect& r) {
  int64_t n = 0;
  for (int y = std::max(0, int(r.y)); y < std::min(img.h, int(r.y + r.h)); ++y)
    for (int x = std::max(0, int(r.x)); x < std::min(img.w, int(r.x + r.w)); ++x) {
      const uint32_t p = img.at(x, y);
      n += (p >> 16 & 0xff) < 90 && (p >> 8 & 0xff) < 90 && (p & 0xff) < 90;
    }
  return n;
}

// Is colour c within `radius` pixels of (x, y)?
bool colour_near(const Image& img, double x, double y, train::Rgb c, int radius = 2) {
  const train::Rect r{std::round(x) - radius, std::round(y) - radius, 2.0 * radius + 1, 2.0 * radius + 1};
  return find(img, c, r).n > 0;
}

// Is p a light tint of c: c over white at an opacity in [0.05, 0.5] (the faint raw points,
// drawn at 0.3 with 1 px lines, and lighter where a pixel is partly covered)?
bool tint_of(uint32_t p, train::Rgb c) {
  const int pc[3] = {int(p >> 16 & 0xff), int(p >> 8 & 0xff), int(p & 0xff)}, cc[3] = {c.r, c.g, c.b};
  double lo = 1, hi = 0;
  for (int k = 0; k < 3; ++k) {
    const double a = (255.0 - pc[k]) / (255.0 - cc[k]);
    lo = std::min(lo, a);
    hi = std::max(hi, a);
  }
  return lo >= 0.05 && hi <= 0.5 && hi - lo < 0.1;
}

bool tint_near(const Image& img, double x, double y, train::Rgb c, int radius) {
  for (int py = int(std::round(y)) - radius; py <= int(std::round(y)) + radius; ++py)
    for (int px = int(std::round(x)) - radius; px <= int(std::round(x)) + radius; ++px)
      if (px >= 0 && py >= 0 && px < img.w && py < img.h && tint_of(img.at(px, py), c)) return true;
  return false;
}

// loss = 1.5 + 4 exp(-step / 150) + noise * (+-1 alternating), steps 1..n; val every 100 steps.
train::RunCurves falling(const std::string& name, int n = 600, double noise = 0, double shift = 0,
                         double val_offset = 0.6) {
  train::RunCurves r;
  r.name = name;
  for (int s = 1; s <= n; ++s) {
    r.train.step.push_back(s);
    r.train.value.push_back(shift + 1.5 + 4 * std::exp(-s / 150.0) + (s % 2 ? noise : -noise));
  }
  for (int s = 100; s <= n; s += 100) {
    r.val.step.push_back(s);
    r.val.value.push_back(shift + 1.5 + 4 * std::exp(-s / 150.0) + val_offset);
  }
  return r;
}

class Plot : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("metalm_plot_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& bytes) const {
    const std::string p = path(name);
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
  fs::path dir_;
};

TEST(PlotTicks, LinearTicksAreNiceAndInRange) {
  const std::vector<double> t = train::nice_ticks(-12, 612, false, 8);
  EXPECT_EQ(t, (std::vector<double>{0, 100, 200, 300, 400, 500, 600}));
  EXPECT_EQ(train::nice_ticks(1.58, 5.72, false, 8), (std::vector<double>{2, 3, 4, 5}));
  // By 2s only -2 would fit: a finer step gives three ticks.
  EXPECT_EQ(train::nice_ticks(-3.7, -0.4, false, 3), (std::vector<double>{-3, -2, -1}));
  EXPECT_EQ(train::nice_ticks(0.013, 0.913, false, 3), (std::vector<double>{0.25, 0.5, 0.75}));
  // Over many ranges: increasing, within the range, at most max_ticks, at least 2, and the
  // step is 1, 2, 2.5 or 5 x 10^k.
  for (double lo : {-3.7, -0.31, 0.0, 0.013, 1.58, 47.0, 9e5})
    for (double span : {0.004, 0.9, 1.37, 3.3, 17.0, 190.0, 640.0, 2.5e6})
      for (int max_ticks : {3, 5, 8, 12}) {
        const std::vector<double> ticks = train::nice_ticks(lo, lo + span, false, max_ticks);
        ASSERT_GE(ticks.size(), 2u) << lo << " " << span << " " << max_ticks;
        ASSERT_LE(static_cast<int>(ticks.size()), max_ticks);
        const double step = ticks[1] - ticks[0];
        const double m = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
        EXPECT_TRUE(std::fabs(m - 1) < 1e-6 || std::fabs(m - 2) < 1e-6 ||
                    std::fabs(m - 2.5) < 1e-6 || std::fabs(m - 5) < 1e-6)
            << "step " << step;
        for (size_t i = 0; i < ticks.size(); ++i) {
          EXPECT_GE(ticks[i], lo - 1e-9 * span);
          EXPECT_LE(ticks[i], lo + span + 1e-9 * span);
          if (i) {
            EXPECT_NEAR(ticks[i] - ticks[i - 1], step, 1e-6 * step);
          }
        }
      }
}

TEST(PlotTicks, LogTicks) {
  auto close = [](const std::vector<double>& a, const std::vector<double>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (std::fabs(a[i] - b[i]) > 1e-9 * b[i]) return false;
    return true;
  };
  EXPECT_TRUE(close(train::nice_ticks(1.5, 5.6, true, 8), {2, 3, 4, 5}));  // one decade: 1..9
  EXPECT_TRUE(close(train::nice_ticks(0.45, 22, true, 8), {0.5, 1, 2, 5, 10, 20}));  // 1-2-5
  EXPECT_TRUE(close(train::nice_ticks(0.9, 2e6, true, 10), {1, 10, 100, 1e3, 1e4, 1e5, 1e6}));
  EXPECT_TRUE(close(train::nice_ticks(1, 1e12, true, 5), {1, 1e3, 1e6, 1e9, 1e12}));  // every 3rd
  EXPECT_TRUE(close(train::nice_ticks(1.62, 2.41, true, 8), {1.8, 2.0, 2.2, 2.4}));  // linear
}

TEST(PlotTicks, Labels) {
  using L = std::vector<std::string>;
  EXPECT_EQ(train::tick_labels({0, 0.5, 1, 1.5}, false), (L{"0", "0.5", "1.0", "1.5"}));
  EXPECT_EQ(train::tick_labels({0, 100, 200}, false), (L{"0", "100", "200"}));
  EXPECT_EQ(train::tick_labels({0, 20000, 40000}, false), (L{"0", "20k", "40k"}));
  EXPECT_EQ(train::tick_labels({5e5, 1e6, 1.5e6}, false), (L{"0.5M", "1.0M", "1.5M"}));
  EXPECT_EQ(train::tick_labels({-0.02, 0, 0.02}, false), (L{"-0.02", "0", "0.02"}));
  EXPECT_EQ(train::tick_labels({0.5, 1, 2, 5, 10}, true), (L{"0.5", "1", "2", "5", "10"}));
  EXPECT_EQ(train::tick_labels({100, 1000, 1e4, 1e5, 1e6}, true),
            (L{"100", "1000", "10k", "100k", "1M"}));
  EXPECT_EQ(train::tick_labels({1e-4}, true), (L{"0.0001"}));
  EXPECT_EQ(train::tick_labels({1e-5}, true), (L{"1e-05"}));
}

TEST(PlotTicks, EmaIsDebiased) {
  for (double v : train::ema({3, 3, 3}, 0.9)) EXPECT_NEAR(v, 3, 1e-12);  // starts at the data
  const std::vector<double> e = train::ema({0, 10, 10}, 0.5);
  EXPECT_DOUBLE_EQ(e[0], 0);
  EXPECT_DOUBLE_EQ(e[1], 5 / 0.75);    // (0.5 * 0 + 0.5 * 10) / (1 - 0.25)
  EXPECT_DOUBLE_EQ(e[2], 7.5 / 0.875);  // (0.5 * 5 + 0.5 * 10) / (1 - 0.125)
  EXPECT_EQ(train::ema({1, 7, 2}, 0), (std::vector<double>{1, 7, 2}));
}

TEST_F(Plot, ReadsTrainingLog) {
  const std::string p = file("log.jsonl",
                             "{\"event\": \"start\", \"config\": \"c.json\"}\n"
                             "{\"step\": 1, \"loss\": 5.5, \"lr\": 1e-4, \"grad_norm\": 2.0}\n"
                             "{\"step\": 2, \"loss\": 4.0}\n"
                             "{\"step\": 2, \"val_loss\": 4.5}\n"
                             "{\"step\": 3, \"loss\": null}\n"
                             "{\"step\": 3, \"loss\": 3.25}\n"  // resumed: later record wins
                             "{\"step\": 2, \"loss\": 3.9}\n"
                             "{\"step\": 4, \"loss\": 3.0, \"val_loss\": 3.5}\n");
  const train::RunCurves r = train::read_training_log(p);
  EXPECT_EQ(r.train.step, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(r.train.value, (std::vector<double>{5.5, 3.9, 3.25, 3.0}));
  EXPECT_EQ(r.val.step, (std::vector<double>{2, 4}));
  EXPECT_EQ(r.val.value, (std::vector<double>{4.5, 3.5}));
  EXPECT_EQ(r.null_losses, 1);
  EXPECT_FALSE(r.truncated_last_line);
  // A run directory stands for its log.jsonl.
  EXPECT_EQ(train::run_log_path(dir_.string()), p);
  EXPECT_EQ(train::run_log_path(p), p);
}

TEST_F(Plot, BadLogs) {
  const std::string missing = path("none.jsonl");
  EXPECT_TRUE(throws_with<IoError>([&] { train::read_training_log(missing); },
                                   {"[log] " + missing + ": cannot open"}));
  const std::string empty = file("empty.jsonl", "\n\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { train::read_training_log(empty); },
                                       {"[log] " + empty + ": empty log"}));
  const std::string no_loss = file("noloss.jsonl", "{\"step\": 1, \"lr\": 0.1}\n{\"step\": 2}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { train::read_training_log(no_loss); },
                                       {no_loss + ": no \"loss\" or \"val_loss\" values in 2 records"}));
  const std::string nulls = file("nulls.jsonl", "{\"step\": 1, \"loss\": null}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { train::read_training_log(nulls); },
                                       {nulls + ": every loss is null"}));
  const std::string bad = file("bad.jsonl", "{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n"
                                            "{\"step\": 3, \"loss\": 3,}\n");
  EXPECT_TRUE(throws_with<FormatError>([&] { train::read_training_log(bad); },
                                       {"[log] " + bad + ": line 3: record is not valid JSON"}));
  const std::string str = file("str.jsonl", "{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": \"4\"}\n");
  EXPECT_TRUE(throws_with<ValueError>([&] { train::read_training_log(str); },
                                      {str + ": line 2: loss: expected a number, got string \"4\""}));
  const std::string nostep = file("nostep.jsonl", "{\"val_loss\": 5}\n");
  EXPECT_TRUE(throws_with<ValueError>([&] { train::read_training_log(nostep); },
                                      {nostep + ": line 1: step: missing"}));
  const std::string arr = file("arr.jsonl", "[1, 2]\n");
  EXPECT_TRUE(throws_with<ValueError>([&] { train::read_training_log(arr); },
                                      {arr + ": line 1: expected a JSON object"}));
  fs::create_directories(dir_ / "run");
  EXPECT_TRUE(throws_with<IoError>([&] { train::run_log_path(path("run")); },
                                   "a directory without log.jsonl"));
}

TEST_F(Plot, TruncatedLastLineSkippedByDefaultOrRefused) {
  const std::string p = file("log.jsonl", "{\"step\": 1, \"loss\": 5}\n{\"step\": 2, \"loss\": 4}\n"
                                          "{\"step\": 3, \"lo");
  const train::RunCurves r = train::read_training_log(p);
  EXPECT_TRUE(r.truncated_last_line);
  EXPECT_EQ(r.train.step, (std::vector<double>{1, 2}));
  EXPECT_TRUE(throws_with<FormatError>(
      [&] { train::read_training_log(p, {uint64_t(1) << 30, false}); },
      {p + ": line 3: truncated last line"}));
}

TEST_F(Plot, PngSignatureAndSize) {
  train::PlotOptions o;
  o.width = 640;
  o.height = 400;
  const std::string out = path("a.png");
  train::write_loss_plot(out, {falling("a")}, o);
  std::ifstream f(out, std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  ASSERT_GT(png.size(), 33u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(png.substr(12, 4), "IHDR");
  auto be32 = [&](size_t i) {
    return (uint32_t(uint8_t(png[i])) << 24) | (uint32_t(uint8_t(png[i + 1])) << 16) |
           (uint32_t(uint8_t(png[i + 2])) << 8) | uint32_t(uint8_t(png[i + 3]));
  };
  EXPECT_EQ(be32(16), 640u);
  EXPECT_EQ(be32(20), 400u);
  const Image img = decode(png);
  EXPECT_EQ(img.w, 640);
  EXPECT_EQ(img.h, 400);
  EXPECT_EQ(files(), std::vector<std::string>{"a.png"});  // no temporary left
}

TEST_F(Plot, FallingCurveFallsInItsColour) {
  std::vector<train::RunCurves> train_only = {falling("a")};
  train_only[0].val = {};
  const train::PlotOptions o;
  const train::PlotFrame f = train::plot_frame(train_only, o);
  const Image img = decode(train::render_loss_plot(train_only, o));
  const train::Rgb c = train::run_colour(0);
  const train::Rect& a = f.area;
  const Found left = find(img, c, {a.x, a.y, a.w / 3, a.h}, f.legend);
  const Found right = find(img, c, {a.x + 2 * a.w / 3, a.y, a.w / 3, a.h}, f.legend);
  ASSERT_GT(left.n, 50);
  ASSERT_GT(right.n, 50);
  EXPECT_LT(left.mean_y, right.mean_y - a.h / 4);  // high on the left, low on the right
  // And the colour lies on the curve: at each of these steps, within 2 pixels of the point.
  for (size_t i : {0, 50, 150, 300, 599})
    EXPECT_TRUE(colour_near(img, f.px(train_only[0].train.step[i]), f.py(train_only[0].train.value[i]), c))
        << "step " << i + 1;
  // ... and not far from it: 40 px above the curve at step 300 is background.
  EXPECT_FALSE(colour_near(img, f.px(300), f.py(train_only[0].train.value[299]) - 40, c, 4));
}

TEST_F(Plot, ValidationMarkersAtTheirPoints) {
  const train::RunCurves r = falling("a", 600, 0, 0, /*val_offset=*/1.0);
  const train::PlotOptions o;
  const train::PlotFrame f = train::plot_frame({r}, o);
  const Image img = decode(train::render_loss_plot({r}, o));
  const train::Rgb c = train::run_colour(0);
  for (size_t k = 0; k < r.val.step.size(); ++k) {
    const double x = f.px(r.val.step[k]), y = f.py(r.val.value[k]);
    // A filled disk (radius 4.5): the centre and 2 px away in all four directions (a 1.4 px
    // dashed line alone covers at most three of them).
    int hits = 0;
    for (const auto& [dx, dy] : std::array<std::pair<int, int>, 5>{{{0, 0}, {2, 0}, {-2, 0}, {0, 2}, {0, -2}}})
      hits += near(img.at(int(std::floor(x)) + dx, int(std::floor(y)) + dy), c, 16);
    EXPECT_EQ(hits, 5) << "validation point " << k;
  }
  // Between markers the dashed line joins them: some colour halfway between points 1 and 2.
  const double mx = f.px(250), my = (f.py(r.val.value[1]) + f.py(r.val.value[2])) / 2;
  EXPECT_TRUE(colour_near(img, mx, my, c, 8));
}

TEST_F(Plot, ALoneStepIsADot) {
  train::RunCurves r;
  r.name = "one";
  r.train = {{10}, {3.5}};
  const train::PlotFrame f = train::plot_frame({r}, {});
  const Image img = decode(train::render_loss_plot({r}, {}));
  EXPECT_TRUE(colour_near(img, f.px(10), f.py(3.5), train::run_colour(0), 1));
}

TEST_F(Plot, TwoRunsTwoColoursAndALegend) {
  const train::RunCurves a = falling("a", 600, 0, 1.5), b = falling("b", 600, 0, 0);
  const train::PlotOptions o;
  const train::PlotFrame f = train::plot_frame({a, b}, o);
  const Image img = decode(train::render_loss_plot({a, b}, o));
  const train::Rgb ca = train::run_colour(0), cb = train::run_colour(1);
  ASSERT_GT(std::abs(ca.r - cb.r) + std::abs(ca.g - cb.g) + std::abs(ca.b - cb.b), 100);
  const Found fa = find(img, ca, f.area, f.legend), fb = find(img, cb, f.area, f.legend);
  ASSERT_GT(fa.n, 200);
  ASSERT_GT(fb.n, 200);
  EXPECT_LT(fa.mean_y, fb.mean_y);  // run a lies 1.5 above run b
  // The legend holds both colours (line samples and markers) and text.
  EXPECT_GT(find(img, ca, f.legend).n, 20);
  EXPECT_GT(find(img, cb, f.legend).n, 20);
  EXPECT_GT(count_dark(img, f.legend), 20);
  // Falling curves leave the upper right empty: the legend goes there.
  EXPECT_GT(f.legend.x, f.area.x + f.area.w / 2);
  EXPECT_LT(f.legend.y, f.area.y + f.area.h / 2);
  // A rising curve fills the upper right: the legend moves to another corner.
  train::RunCurves up = a;
  std::reverse(up.train.value.begin(), up.train.value.end());
  up.val = {};
  const train::PlotFrame g = train::plot_frame({up}, o);
  EXPECT_FALSE(g.legend.x > g.area.x + g.area.w / 2 && g.legend.y < g.area.y + g.area.h / 2);
}

TEST_F(Plot, SmoothingDrawsTheEmaSolidAndTheRawPointsFaint) {
  train::RunCurves r = falling("a", 600, /*noise=*/0.8);
  r.val = {};
  train::PlotOptions o;
  o.smooth = 0.9;
  const train::PlotFrame f = train::plot_frame({r}, o);
  const Image img = decode(train::render_loss_plot({r}, o));
  const train::Rgb c = train::run_colour(0);
  const std::vector<double> s = train::ema(r.train.value, 0.9);
  for (size_t i : {100, 250, 400, 550}) {
    const double x = f.px(r.train.step[i]);
    EXPECT_TRUE(colour_near(img, x, f.py(s[i]), c)) << "smoothed curve at step " << i + 1;
    // The raw extremes lie 0.8 off the EMA: faint there, never solid.
    const double y_raw = f.py(r.train.value[i]);
    ASSERT_GT(std::fabs(y_raw - f.py(s[i])), 20);
    EXPECT_TRUE(tint_near(img, x, y_raw, c, 2)) << "raw point at step " << i + 1;
    EXPECT_FALSE(colour_near(img, x, y_raw, c, 2)) << "raw point solid at step " << i + 1;
  }
  // Unsmoothed, the same raw extremes are solid.
  const Image raw = decode(train::render_loss_plot({r}, train::PlotOptions{}));
  const train::PlotFrame fr = train::plot_frame({r}, train::PlotOptions{});
  EXPECT_TRUE(colour_near(raw, fr.px(r.train.step[250]), fr.py(r.train.value[250]), c));
}

TEST_F(Plot, LogAxes) {
  train::RunCurves r;
  r.name = "a";
  for (int s = 0; s <= 1000; s += 10) {  // loss 100 at step 0 down to 1 at step 1000
    r.train.step.push_back(s);
    r.train.value.push_back(std::pow(10.0, 2 - s / 500.0));
  }
  train::PlotOptions o;
  o.log_y = true;
  const train::PlotFrame f = train::plot_frame({r}, o);
  EXPECT_TRUE(f.y.log);
  EXPECT_NEAR(f.py(10), (f.py(1) + f.py(100)) / 2, 1e-9);  // decades evenly spaced
  EXPECT_TRUE(std::count(f.y.ticks.begin(), f.y.ticks.end(), 10.0) == 1);
  const Image img = decode(train::render_loss_plot({r}, o));
  // On a log axis this exponential is a straight line: its midpoint is at (500, 10).
  EXPECT_TRUE(colour_near(img, f.px(500), f.py(10), train::run_colour(0)));
  // Log x drops step 0 (it has no place on the axis) and keeps the rest.
  o.log_x = true;
  const train::PlotFrame g = train::plot_frame({r}, o);
  EXPECT_GT(g.x.lo, 0);
  EXPECT_LE(g.x.lo, 10);
  // A run with no positive loss has nothing to draw on a log axis.
  train::RunCurves zero = r;
  for (double& v : zero.train.value) v = 0;
  EXPECT_TRUE(throws_with<ValueError>([&] { train::plot_frame({zero}, o); },
                                      {"[plot] run \"a\" has nothing to draw on a log axis"}));
}

TEST_F(Plot, TitleAndLabelsAreDrawn) {
  train::PlotOptions o;
  const train::PlotFrame f0 = train::plot_frame({falling("a")}, o);
  const Image plain = decode(train::render_loss_plot({falling("a")}, o));
  o.title = "toy LM";
  const train::PlotFrame f = train::plot_frame({falling("a")}, o);
  const Image titled = decode(train::render_loss_plot({falling("a")}, o));
  EXPECT_GT(f.area.y, f0.area.y);  // room for the title
  const train::Rect band{f.area.x, 0, f.area.w, f.area.y - 2}, band0{f0.area.x, 0, f0.area.w, f0.area.y - 2};
  EXPECT_GT(count_dark(titled, band), 30);
  EXPECT_EQ(count_dark(plain, band0), 0);
  // Tick labels below and left of the plot area.
  const train::Rect below{f.area.x, f.area.y + f.area.h + 8, f.area.w, 24};
  const train::Rect left{0, f.area.y, f.area.x - 8, f.area.h};
  EXPECT_GT(count_dark(titled, below), 30);
  EXPECT_GT(count_dark(titled, left), 30);
}

TEST_F(Plot, HostileNamesAndBadOptions) {
  train::RunCurves r = falling("bad \xff\xfe name\n\x01");
  train::PlotOptions o;
  o.title = "\xc3\x28 title \xed\xa0\x80";  // invalid UTF-8, a surrogate
  EXPECT_GT(train::render_loss_plot({r}, o).size(), 1000u);
  EXPECT_TRUE(throws_with<ValueError>([&] { train::render_loss_plot({}, o); }, "no runs"));
  o.width = 10;
  EXPECT_TRUE(throws_with<ValueError>([&] { train::render_loss_plot({r}, o); }, "image size"));
  o.width = 960;
  o.smooth = 1;
  EXPECT_TRUE(throws_with<ValueError>([&] { train::render_loss_plot({r}, o); }, "smoothing"));
  train::RunCurves empty;
  empty.name = "e";
  EXPECT_TRUE(throws_with<ValueError>([&] { train::render_loss_plot({empty}, {}); },
                                      "run \"e\" has nothing to draw"));
}

TEST_F(Plot, FailedWriteLeavesNoFile) {
  const std::string nodir = path("missing/a.png");
  EXPECT_TRUE(throws_with<IoError>([&] { train::write_loss_plot(nodir, {falling("a")}, {}); },
                                   {"[plot] " + nodir + ": cannot create"}));
  EXPECT_TRUE(files().empty());
  // Over a directory: the rename fails, the temporary goes, the directory stays.
  fs::create_directories(dir_ / "d.png");
  EXPECT_TRUE(throws_with<IoError>(
      [&] { train::write_loss_plot(path("d.png"), {falling("a")}, {}); }, "cannot rename"));
  EXPECT_EQ(files(), std::vector<std::string>{"d.png"});
  EXPECT_TRUE(fs::is_directory(dir_ / "d.png"));
  // A plot that cannot be drawn leaves the previous picture as it was.
  const std::string out = path("a.png");
  train::write_loss_plot(out, {falling("a")}, {});
  const auto before = fs::file_size(out);
  train::RunCurves empty;
  empty.name = "e";
  EXPECT_THROW(train::write_loss_plot(out, {empty}, {}), ValueError);
  EXPECT_EQ(fs::file_size(out), before);
  EXPECT_EQ(files(), (std::vector<std::string>{"a.png", "d.png"}));
}

}  // namespace
