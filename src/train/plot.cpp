// Drawing loss curves with cairo (train/plot.h): the layout (plot area, axes, legend corner),
// then grid, curves, frame, labels and legend on an RGB image, written as PNG through a stream.
#include "metalm/train/plot.h"

#include <cairo.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>

#include "metalm/core/error.h"
#include "metalm/core/file.h"
#include "metalm/io/json.h"

namespace metalm::train {
namespace {

using SurfacePtr = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using ContextPtr = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

void check_cairo(cairo_status_t s, const char* what) {
  MLM_CHECK(s == CAIRO_STATUS_SUCCESS, Error, "[plot] cairo: ", what, ": ",
            cairo_status_to_string(s));
}

// Text as cairo takes it: valid UTF-8 (invalid bytes become U+FFFD, as the JSON writer does),
// control characters as spaces.
std::string printable(const std::string& s) {
  std::string t = io::Json::parse(io::Json(s).dump(-1, ' ', false, io::Json::error_handler_t::replace))
                      .get<std::string>();
  for (char& c : t)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return t;
}

// Sizes grow with the picture, so a large PNG stays readable.
struct Metrics {
  double s, tick_font, label_font, title_font, legend_font, row_h, pad, sample_w;
  explicit Metrics(const PlotOptions& o)
      : s(std::clamp(std::min(o.width / 960.0, o.height / 600.0), 0.75, 3.0)),
        tick_font(12 * s), label_font(14 * s), title_font(17 * s), legend_font(13 * s),
        row_h(1.6 * legend_font), pad(8 * s), sample_w(32 * s) {}
};

void set_font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL,
                         bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& text) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, text.c_str(), &e);
  return e.x_advance;
}

// Draws text with its anchor at (x, y): ax, ay in {0, 0.5, 1} = left/centre/right, top/middle/bottom.
void draw_text(cairo_t* cr, const std::string& text, double x, double y, double ax, double ay) {
  cairo_font_extents_t fe;
  cairo_font_extents(cr, &fe);
  const double w = text_width(cr, text), h = fe.ascent + fe.descent;
  cairo_move_to(cr, x - ax * w, y - ay * h + fe.ascent);
  cairo_show_text(cr, text.c_str());
}

// The points a run shows: finite, and positive where an axis is logarithmic.
Curve visible(const Curve& c, const PlotOptions& o) {
  Curve v;
  for (size_t i = 0; i < c.step.size(); ++i) {
    const double x = c.step[i], y = c.value[i];
    if (!std::isfinite(x) || !std::isfinite(y) || (o.log_x && x <= 0) || (o.log_y && y <= 0))
      continue;
    v.step.push_back(x);
    v.value.push_back(y);
  }
  return v;
}

Axis make_axis(double lo, double hi, bool log, double pad, int max_ticks) {
  double a = log ? std::log10(lo) : lo, b = log ? std::log10(hi) : hi;
  if (b - a <= 1e-12 * std::max(1.0, std::fabs(a))) {  // one value: give it some room
    const double d = log ? 0.1 : (a == 0 ? 1 : 0.05 * std::fabs(a));
    a -= d;
    b += d;
  }
  const double p = (b - a) * pad;
  Axis ax;
  ax.log = log;
  ax.lo = log ? std::pow(10.0, a - p) : a - p;
  ax.hi = log ? std::pow(10.0, b + p) : b + p;
  ax.ticks = nice_ticks(ax.lo, ax.hi, log, max_ticks);
  return ax;
}

struct LegendRow {
  std::string label;
  size_t run;
  bool val;
};

std::vector<LegendRow> legend_rows(const std::vector<RunCurves>& runs) {
  const bool any_val = std::any_of(runs.begin(), runs.end(), [](auto& r) { return !r.val.step.empty(); });
  std::vector<LegendRow> rows;
  for (size_t i = 0; i < runs.size(); ++i) {
    const std::string name = printable(runs[i].name);
    if (!runs[i].train.step.empty()) rows.push_back({any_val ? name + " train" : name, i, false});
    if (!runs[i].val.step.empty()) rows.push_back({name + " validation", i, true});
  }
  return rows;
}

// How many points of the curves (and of the segments between them) fall inside r.
int64_t points_inside(const Rect& r, const PlotFrame& f, const std::vector<Curve>& curves) {
  int64_t n = 0;
  for (const Curve& c : curves)
    for (size_t i = 0; i < c.step.size(); ++i) {
      const double x1 = f.px(c.step[i]), y1 = f.py(c.value[i]);
      const double x0 = i ? f.px(c.step[i - 1]) : x1, y0 = i ? f.py(c.value[i - 1]) : y1;
      const int k = static_cast<int>(std::min(64.0, std::hypot(x1 - x0, y1 - y0) / 6)) + 1;
      for (int j = 1; j <= k; ++j)
        n += r.contains(x0 + (x1 - x0) * j / k, y0 + (y1 - y0) * j / k);
    }
  return n;
}

void check_options(const std::vector<RunCurves>& runs, const PlotOptions& o) {
  MLM_CHECK(!runs.empty(), ValueError, "[plot] no runs to plot");
  MLM_CHECK(o.width >= 240 && o.width <= 8192 && o.height >= 240 && o.height <= 8192, ValueError,
            "[plot] image size must be in [240, 8192] pixels, got ", o.width, "x", o.height);
  MLM_CHECK(o.smooth >= 0 && o.smooth < 1, ValueError, "[plot] smoothing must be in [0, 1), got ",
            o.smooth);
}

PlotFrame layout(cairo_t* cr, const std::vector<RunCurves>& runs, const PlotOptions& o) {
  check_options(runs, o);
  const Metrics m(o);
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  std::vector<Curve> shown;
  for (const RunCurves& r : runs) {
    const Curve t = visible(r.train, o), v = visible(r.val, o);
    MLM_CHECK(!t.step.empty() || !v.step.empty(), ValueError, "[plot] run ", io::quote(r.name),
              " has nothing to draw",
              o.log_x || o.log_y ? " on a log axis (steps and losses must be > 0)" : "");
    for (const Curve* c : {&t, &v})
      for (size_t i = 0; i < c->step.size(); ++i) {
        x_lo = std::min(x_lo, c->step[i]);
        x_hi = std::max(x_hi, c->step[i]);
        y_lo = std::min(y_lo, c->value[i]);
        y_hi = std::max(y_hi, c->value[i]);
      }
    shown.push_back(t);
    shown.push_back(v);
  }
  PlotFrame f;
  const double top = (o.title.empty() ? 16 : 44) * m.s, bottom = 54 * m.s, right = 20 * m.s;
  f.area.y = top;
  f.area.h = o.height - top - bottom;
  f.y = make_axis(y_lo, y_hi, o.log_y, 0.05, std::max(3, static_cast<int>(f.area.h / (48 * m.s))));
  set_font(cr, m.tick_font);
  double label_w = 0;
  for (const std::string& l : tick_labels(f.y.ticks, f.y.log)) label_w = std::max(label_w, text_width(cr, l));
  f.area.x = 14 * m.s + m.label_font * 1.3 + label_w + 8 * m.s;
  f.area.w = o.width - f.area.x - right;
  f.x = make_axis(x_lo, x_hi, o.log_x, 0.02, std::max(3, static_cast<int>(f.area.w / (90 * m.s))));

  set_font(cr, m.legend_font);
  double text_w = 0;
  const std::vector<LegendRow> rows = legend_rows(runs);
  for (const LegendRow& row : rows) text_w = std::max(text_w, text_width(cr, row.label));
  f.legend.w = std::min(f.area.w - 2 * m.pad, 3 * m.pad + m.sample_w + text_w);
  f.legend.h = std::min(f.area.h - 2 * m.pad, 2 * m.pad + m.row_h * static_cast<double>(rows.size()));
  const double left_x = f.area.x + m.pad, right_x = f.area.x + f.area.w - m.pad - f.legend.w;
  const double top_y = f.area.y + m.pad, bottom_y = f.area.y + f.area.h - m.pad - f.legend.h;
  int64_t best = -1;  // the emptiest corner; ties go to the first of this order
  for (const auto& [x, y] : std::array<std::pair<double, double>, 4>{
           {{right_x, top_y}, {left_x, top_y}, {right_x, bottom_y}, {left_x, bottom_y}}}) {
    const Rect r{x, y, f.legend.w, f.legend.h};
    const int64_t n = points_inside(r, f, shown);
    if (best < 0 || n < best) {
      best = n;
      f.legend = r;
    }
  }
  return f;
}

void set_colour(cairo_t* cr, Rgb c, double alpha = 1) {
  cairo_set_source_rgba(cr, c.r / 255.0, c.g / 255.0, c.b / 255.0, alpha);
}

void stroke_curve(cairo_t* cr, const PlotFrame& f, const std::vector<double>& xs,
                  const std::vector<double>& ys, double width) {
  if (xs.size() == 1) {  // a lone point is a dot, not an invisible zero-length line
    cairo_arc(cr, f.px(xs[0]), f.py(ys[0]), width * 1.2, 0, 2 * M_PI);
    cairo_fill(cr);
    return;
  }
  for (size_t i = 0; i < xs.size(); ++i) cairo_line_to(cr, f.px(xs[i]), f.py(ys[i]));
  cairo_set_line_width(cr, width);
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  cairo_stroke(cr);
}

void draw_marker(cairo_t* cr, double x, double y, Rgb c, const Metrics& m) {
  cairo_arc(cr, x, y, 4.5 * m.s, 0, 2 * M_PI);
  set_colour(cr, c);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_set_line_width(cr, 1.2 * m.s);
  cairo_stroke(cr);
}

void draw_curves(cairo_t* cr, const PlotFrame& f, const std::vector<RunCurves>& runs,
                 const PlotOptions& o, const Metrics& m) {
  cairo_save(cr);
  cairo_rectangle(cr, f.area.x, f.area.y, f.area.w, f.area.h);
  cairo_clip(cr);
  for (size_t i = 0; i < runs.size(); ++i) {  // raw points faint under every smoothed curve
    const Curve t = visible(runs[i].train, o);
    if (o.smooth == 0 || t.step.empty()) continue;
    set_colour(cr, run_colour(i), 0.3);
    stroke_curve(cr, f, t.step, t.value, 1.0 * m.s);
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    const Curve t = visible(runs[i].train, o);
    if (t.step.empty()) continue;
    set_colour(cr, run_colour(i));
    stroke_curve(cr, f, t.step, o.smooth > 0 ? ema(t.value, o.smooth) : t.value, 2.2 * m.s);
  }
  for (size_t i = 0; i < runs.size(); ++i) {  // validation on top: dashed, with markers
    const Curve v = visible(runs[i].val, o);
    if (v.step.empty()) continue;
    set_colour(cr, run_colour(i));
    const double dash[] = {6 * m.s, 4 * m.s};
    cairo_set_dash(cr, dash, 2, 0);
    if (v.step.size() > 1) stroke_curve(cr, f, v.step, v.value, 1.4 * m.s);
    cairo_set_dash(cr, nullptr, 0, 0);
    for (size_t k = 0; k < v.step.size(); ++k)
      draw_marker(cr, f.px(v.step[k]), f.py(v.value[k]), run_colour(i), m);
  }
  cairo_restore(cr);
}

void draw_axes(cairo_t* cr, const PlotFrame& f, const PlotOptions& o, const Metrics& m) {
  const Rect& a = f.area;
  cairo_set_line_width(cr, 1);
  cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);  // grid
  for (double t : f.x.ticks) {
    const double x = std::round(f.px(t)) + 0.5;
    cairo_move_to(cr, x, a.y);
    cairo_line_to(cr, x, a.y + a.h);
  }
  for (double t : f.y.ticks) {
    const double y = std::round(f.py(t)) + 0.5;
    cairo_move_to(cr, a.x, y);
    cairo_line_to(cr, a.x + a.w, y);
  }
  cairo_stroke(cr);
  cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
  cairo_rectangle(cr, std::round(a.x) + 0.5, std::round(a.y) + 0.5, std::round(a.w), std::round(a.h));
  cairo_stroke(cr);
  const double tick = 5 * m.s, gap = 3 * m.s;
  set_font(cr, m.tick_font);
  const std::vector<std::string> xl = tick_labels(f.x.ticks, f.x.log), yl = tick_labels(f.y.ticks, f.y.log);
  for (size_t i = 0; i < f.x.ticks.size(); ++i) {
    const double x = std::round(f.px(f.x.ticks[i])) + 0.5;
    cairo_move_to(cr, x, a.y + a.h);
    cairo_line_to(cr, x, a.y + a.h + tick);
    cairo_stroke(cr);
    draw_text(cr, xl[i], x, a.y + a.h + tick + gap, 0.5, 0);
  }
  for (size_t i = 0; i < f.y.ticks.size(); ++i) {
    const double y = std::round(f.py(f.y.ticks[i])) + 0.5;
    cairo_move_to(cr, a.x - tick, y);
    cairo_line_to(cr, a.x, y);
    cairo_stroke(cr);
    draw_text(cr, yl[i], a.x - tick - gap, y, 1, 0.5);
  }
  set_font(cr, m.label_font);
  draw_text(cr, printable(o.x_label), a.x + a.w / 2, o.height - 6 * m.s, 0.5, 1);
  cairo_save(cr);
  cairo_translate(cr, 6 * m.s, a.y + a.h / 2);
  cairo_rotate(cr, -M_PI / 2);
  draw_text(cr, printable(o.y_label), 0, 0, 0.5, 0);
  cairo_restore(cr);
  if (!o.title.empty()) {
    set_font(cr, m.title_font, true);
    draw_text(cr, printable(o.title), a.x + a.w / 2, a.y / 2, 0.5, 0.5);
  }
}

void draw_legend(cairo_t* cr, const PlotFrame& f, const std::vector<RunCurves>& runs,
                 const Metrics& m) {
  const Rect& l = f.legend;
  cairo_rectangle(cr, l.x + 0.5, l.y + 0.5, l.w, l.h);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.9);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  cairo_save(cr);
  cairo_rectangle(cr, l.x, l.y, l.w, l.h);
  cairo_clip(cr);
  set_font(cr, m.legend_font);
  double y = l.y + m.pad + m.row_h / 2;
  for (const LegendRow& row : legend_rows(runs)) {
    const Rgb c = run_colour(row.run);
    const double x0 = l.x + m.pad, x1 = x0 + m.sample_w;
    set_colour(cr, c);
    const double dash[] = {6 * m.s, 4 * m.s};
    cairo_set_dash(cr, dash, row.val ? 2 : 0, 0);
    cairo_move_to(cr, x0, y);
    cairo_line_to(cr, x1, y);
    cairo_set_line_width(cr, (row.val ? 1.4 : 2.2) * m.s);
    cairo_stroke(cr);
    cairo_set_dash(cr, nullptr, 0, 0);
    if (row.val) draw_marker(cr, (x0 + x1) / 2, y, c, m);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    draw_text(cr, row.label, x1 + m.pad, y, 0, 0.5);
    y += m.row_h;
  }
  cairo_restore(cr);
}

cairo_status_t append_png(void* closure, const unsigned char* data, unsigned int n) {
  static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), n);
  return CAIRO_STATUS_SUCCESS;
}

}  // namespace

double PlotFrame::px(double v) const {
  const double t = x.log ? (std::log10(v) - std::log10(x.lo)) / (std::log10(x.hi) - std::log10(x.lo))
                         : (v - x.lo) / (x.hi - x.lo);
  return area.x + t * area.w;
}

double PlotFrame::py(double v) const {
  const double t = y.log ? (std::log10(v) - std::log10(y.lo)) / (std::log10(y.hi) - std::log10(y.lo))
                         : (v - y.lo) / (y.hi - y.lo);
  return area.y + (1 - t) * area.h;
}

PlotFrame plot_frame(const std::vector<RunCurves>& runs, const PlotOptions& options) {
  SurfacePtr scratch(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1), cairo_surface_destroy);
  ContextPtr cr(cairo_create(scratch.get()), cairo_destroy);
  return layout(cr.get(), runs, options);
}

std::string render_loss_plot(const std::vector<RunCurves>& runs, const PlotOptions& o) {
  check_options(runs, o);
  SurfacePtr surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, o.width, o.height),
                     cairo_surface_destroy);
  check_cairo(cairo_surface_status(surface.get()), "image surface");
  ContextPtr cr(cairo_create(surface.get()), cairo_destroy);
  const PlotFrame f = layout(cr.get(), runs, o);
  const Metrics m(o);
  cairo_set_source_rgb(cr.get(), 1, 1, 1);
  cairo_paint(cr.get());
  draw_axes(cr.get(), f, o, m);
  draw_curves(cr.get(), f, runs, o, m);
  draw_legend(cr.get(), f, runs, m);
  check_cairo(cairo_status(cr.get()), "drawing");
  cairo_surface_flush(surface.get());
  std::string png;
  check_cairo(cairo_surface_write_to_png_stream(surface.get(), append_png, &png), "PNG encoding");
  return png;
}

void write_loss_plot(const std::string& path, const std::vector<RunCurves>& runs,
                     const PlotOptions& options) {
  const std::string png = render_loss_plot(runs, options);  // before the file exists
  write_file_atomic("plot", path, png);
}

}  // namespace metalm::train
