// `grpo report`: one HTML page per run (report.h). Reads RUN_DIR/metrics.jsonl, and
// samples.jsonl and config.json when present; writes HTML with inline SVG and CSS, nothing
// that loads from elsewhere. Every text that comes from the run goes through append_escaped.
#include "learner/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace grpo {

namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// ---- text --------------------------------------------------------------------------------

// s as HTML text or attribute value: & < > " ' escaped; invalid UTF-8 bytes, control
// characters other than tab/LF/CR and Unicode noncharacters (parse errors in HTML5) become
// U+FFFD, so any bytes a model generated still make a valid page.
void append_escaped(std::string& out, std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        case '\t': case '\n': case '\r': out += char(c); break;
        default: out += (c < 0x20 || c == 0x7F) ? kReplacement : std::string_view(&s[i], 1);
      }
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, min_cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2, cp = c & 0x1F, min_cp = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3, cp = c & 0x0F, min_cp = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4, cp = c & 0x07, min_cp = 0x10000;
    }
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      valid = (cc & 0xC0) == 0x80;
      cp = (cp << 6) | (cc & 0x3F);
    }
    valid = valid && cp >= min_cp && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (!valid) {
      out += kReplacement;
      ++i;
      continue;
    }
    const bool noncharacter = (cp >= 0x80 && cp <= 0x9F) || (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
    out += noncharacter ? kReplacement : s.substr(i, len);
    i += len;
  }
}

std::string escaped(std::string_view s) {
  std::string out;
  append_escaped(out, s);
  return out;
}

// A value for a label or a table cell: whole numbers in full (steps, token counts), others
// with 4 significant digits.
std::string fmt_value(double v) {
  char buf[64];
  if (v == std::trunc(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

// An SVG coordinate.
std::string fmt_coord(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string fmt_duration(double seconds) {
  const auto s = static_cast<long long>(std::llround(seconds));
  char buf[96];
  std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds (%s s)", s / 3600, s / 60 % 60, s % 60,
                fmt_value(seconds).c_str());
  return buf;
}

// A JSON value of a sample as cell text: numbers with 4 digits, strings as they are, objects
// of numbers as "name=value, ...", anything else as JSON.
std::string cell_text(const Json& v) {
  if (v.is_number()) return fmt_value(v.get<double>());
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    std::string out;
    for (auto it = v.begin(); it != v.end(); ++it)
      out += (out.empty() ? "" : ", ") + it.key() + "=" + (it->is_number() ? fmt_value(it->get<double>()) : it->dump());
    return out;
  }
  return v.is_null() ? "" : v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// ---- JSONL -------------------------------------------------------------------------------

// Python's json module writes NaN, Infinity and -Infinity as bare words, which JSON lacks.
// Returns line with those words (outside strings) replaced by null, for a second parse.
std::string nonfinite_words_to_null(const std::string& line) {
  static constexpr std::string_view kWords[] = {"-Infinity", "Infinity", "NaN"};
  std::string out;
  bool in_string = false;
  for (size_t i = 0; i < line.size();) {
    const char c = line[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < line.size()) out += line[++i];
      else if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (std::string_view w : kWords) {
      if (line.compare(i, w.size(), w) == 0) {
        out += "null";
        i += w.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += line[i++];
  }
  return out;
}

// Calls fn(object, "FILE:LINE") for each non-blank line of path. A line that is not a JSON
// object is an error naming FILE:LINE, except a last line without its newline (a write torn
// by a crash or still in progress), which is skipped.
void for_each_jsonl(const std::string& path, const std::function<void(const Json&, const std::string&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.is_open(), path << ": cannot open the file");
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    const bool unterminated = in.eof();
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    Json j;
    try {
      j = Json::parse(line);
    } catch (const Json::parse_error& e) {
      j = Json::parse(nonfinite_words_to_null(line), nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() && unterminated) break;
      GRPO_CHECK(!j.is_discarded(), where << ": not valid JSON (" << e.what() << ")");
    }
    GRPO_CHECK(j.is_object(), where << ": expected a JSON object, got " << j.type_name());
    fn(j, where);
  }
  GRPO_CHECK(in.eof(), path << ": read error");
}

// ---- metrics -----------------------------------------------------------------------------

struct Point {
  double step, value;
};

struct Metrics {
  // key -> step -> value; NaN where the line had a non-finite value (null, NaN, Infinity).
  // A step written twice (a resumed run repeats the steps after its checkpoint) keeps the
  // later line's value.
  std::map<std::string, std::map<double, double>> series;
  double first_step = 0, last_step = 0;
  int64_t n_lines = 0;
};

Metrics read_metrics(const std::string& path) {
  Metrics m;
  for_each_jsonl(path, [&](const Json& j, const std::string& where) {
    GRPO_CHECK(j.contains("step") && j["step"].is_number(), where << ": missing a numeric \"step\"");
    const double step = j["step"].get<double>();
    GRPO_CHECK(std::isfinite(step), where << ": \"step\" is not finite");
    m.first_step = m.n_lines == 0 ? step : std::min(m.first_step, step);
    m.last_step = m.n_lines == 0 ? step : std::max(m.last_step, step);
    ++m.n_lines;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "step") continue;
      if (it->is_number()) {
        const double v = it->get<double>();
        m.series[it.key()][step] = std::isfinite(v) ? v : std::numeric_limits<double>::quiet_NaN();
      } else if (it->is_null()) {  // how nlohmann::json writes NaN and infinities
        m.series[it.key()][step] = std::numeric_limits<double>::quiet_NaN();
      }  // strings, booleans, arrays and objects: not a metric
    }
  });
  return m;
}

std::vector<Point> finite_points(const std::map<double, double>& s) {
  std::vector<Point> out;
  for (const auto& [step, v] : s)
    if (std::isfinite(v)) out.push_back({step, v});
  return out;
}

int64_t count_nonfinite(const std::map<double, double>& s) {
  return std::count_if(s.begin(), s.end(), [](const auto& kv) { return !std::isfinite(kv.second); });
}

// At most max_points of pts, evenly spaced by index; the first and the last are kept.
std::vector<Point> thin(const std::vector<Point>& pts, int64_t max_points) {
  if (int64_t(pts.size()) <= max_points) return pts;
  std::vector<Point> out;
  out.reserve(size_t(max_points));
  const double stride = double(pts.size() - 1) / double(max_points - 1);
  for (int64_t i = 0; i < max_points; ++i) out.push_back(pts[size_t(std::llround(double(i) * stride))]);
  return out;
}

// ---- plots -------------------------------------------------------------------------------

struct PlotBox {
  double width, height;              // the whole svg
  double left, right, top, bottom;   // margins around the plot area
};
constexpr PlotBox kMainBox{640, 240, 64, 16, 30, 30};
constexpr PlotBox kSmallBox{320, 160, 56, 10, 26, 26};
constexpr size_t kMaxDots = 40;  // markers on every point of a series this short (sparse evals)

// The linear maps step -> x and value -> y (larger values higher up) of one plot.
struct Frame {
  PlotBox box;
  double step_lo, step_hi, v_lo, v_hi;
  double x(double step) const {
    const double w = box.width - box.left - box.right;
    return step_hi > step_lo ? box.left + (step - step_lo) / (step_hi - step_lo) * w : box.left + w / 2;
  }
  double y(double v) const {
    const double h = box.height - box.top - box.bottom;
    return v_hi > v_lo ? box.top + (v_hi - v) / (v_hi - v_lo) * h : box.top + h / 2;
  }
};

std::string points_attr(const Frame& f, const std::vector<Point>& pts) {
  std::string out;
  for (const Point& p : pts) {
    if (!out.empty()) out += ' ';
    out += fmt_coord(f.x(p.step));
    out += ',';
    out += fmt_coord(f.y(p.value));
  }
  return out;
}

void append_text(std::string& out, const std::string& cls, double x, double y, const char* anchor,
                 const std::string& text) {
  out += "<text class=\"" + cls + "\" x=\"" + fmt_coord(x) + "\" y=\"" + fmt_coord(y) + "\" text-anchor=\"" + anchor +
         "\">" + escaped(text) + "</text>\n";
}

// One <figure> with the svg of key. band_sd: the values of a standard-deviation band around
// the line (reward/std around reward/mean), may be null.
void append_plot(std::string& out, const std::string& key, const std::map<double, double>& series,
                 const std::map<double, double>* band_sd, const Metrics& m, const ReportOptions& opt,
                 const PlotBox& box) {
  const std::vector<Point> all = finite_points(series);
  const int64_t n_left_out = count_nonfinite(series);
  std::vector<Point> hi, lo;  // the band where both the value and its std are finite
  if (band_sd)
    for (const Point& p : all)
      if (auto it = band_sd->find(p.step); it != band_sd->end() && std::isfinite(it->second)) {
        hi.push_back({p.step, p.value + it->second});
        lo.push_back({p.step, p.value - it->second});
      }
  Frame f{box, m.first_step, m.last_step, 0, 0};
  if (!all.empty()) {
    f.v_lo = f.v_hi = all[0].value;
    for (const std::vector<Point>& pts : {std::cref(all), std::cref(hi), std::cref(lo)})
      for (const Point& p : pts) f.v_lo = std::min(f.v_lo, p.value), f.v_hi = std::max(f.v_hi, p.value);
  }
  const std::string key_text = escaped(key);
  out += "<figure class=\"plot\">\n<svg class=\"plot\" data-key=\"" + key_text + "\" width=\"" + fmt_coord(box.width) +
         "\" height=\"" + fmt_coord(box.height) + "\" viewBox=\"0 0 " + fmt_coord(box.width) + " " +
         fmt_coord(box.height) + "\" role=\"img\" aria-label=\"" + key_text + "\">\n<title>" + key_text +
         "</title>\n";
  append_text(out, "name", box.left, box.top - 10, "start", key);
  const double x0 = box.left, x1 = box.width - box.right, y0 = box.top, y1 = box.height - box.bottom;
  out += "<rect class=\"area\" x=\"" + fmt_coord(x0) + "\" y=\"" + fmt_coord(y0) + "\" width=\"" + fmt_coord(x1 - x0) +
         "\" height=\"" + fmt_coord(y1 - y0) + "\"/>\n";
  if (all.empty()) {
    append_text(out, "empty", (x0 + x1) / 2, (y0 + y1) / 2, "middle", "no finite values");
  } else {
    if (!hi.empty()) {
      std::vector<Point> hi_t = thin(hi, opt.max_points), lo_t = thin(lo, opt.max_points);
      std::reverse(lo_t.begin(), lo_t.end());
      out += "<polygon class=\"band\" points=\"" + points_attr(f, hi_t) + " " + points_attr(f, lo_t) + "\"/>\n";
    }
    const std::vector<Point> line = thin(all, opt.max_points);
    out += "<polyline class=\"line\" points=\"" + points_attr(f, line) + "\"/>\n";
    if (line.size() <= kMaxDots)
      for (const Point& p : line)
        out += "<circle class=\"dot\" cx=\"" + fmt_coord(f.x(p.step)) + "\" cy=\"" + fmt_coord(f.y(p.value)) +
               "\" r=\"2.5\"/>\n";
    append_text(out, "label", x0 - 4, y0 + 4, "end", fmt_value(f.v_hi));
    append_text(out, "label", x0 - 4, y1, "end", fmt_value(f.v_lo));
  }
  append_text(out, "label", x0, y1 + 14, "start", fmt_value(m.first_step));
  append_text(out, "label", x1, y1 + 14, "end", fmt_value(m.last_step));
  append_text(out, "label", (x0 + x1) / 2, y1 + 14, "middle", "step");
  out += "</svg>\n<figcaption>";
  std::string caption;
  if (!all.empty()) {
    caption = "last " + fmt_value(all.back().value) + " at step " + fmt_value(all.back().step) + "; " +
              std::to_string(all.size()) + " points";
    if (int64_t(all.size()) > opt.max_points) caption += " (" + std::to_string(opt.max_points) + " drawn)";
    if (!hi.empty()) caption += "; band: \xC2\xB1 reward/std";
  }
  if (n_left_out > 0) caption += (caption.empty() ? "" : "; ") + std::to_string(n_left_out) + " non-finite left out";
  out += escaped(caption) + "</figcaption>\n</figure>\n";
}

// ---- samples -----------------------------------------------------------------------------

struct Samples {
  std::map<double, std::vector<Json>> by_step;  // the newest max_sample_steps steps
  int64_t n_without_step = 0;
};

Samples read_samples(const std::string& path, int64_t max_steps) {
  Samples s;
  for_each_jsonl(path, [&](const Json& j, const std::string&) {
    if (!j.contains("step") || !j["step"].is_number()) {
      ++s.n_without_step;
      return;
    }
    s.by_step[j["step"].get<double>()].push_back(j);
    if (int64_t(s.by_step.size()) > max_steps) s.by_step.erase(s.by_step.begin());
  });
  return s;
}

std::string field_text(const Json& j, const char* key) { return j.contains(key) ? cell_text(j[key]) : ""; }

// The samples of one step, in blocks of consecutive samples with the same group and prompt.
void append_step_samples(std::string& out, double step, const std::vector<Json>& samples) {
  out += "<section class=\"step\">\n<h3>step " + escaped(fmt_value(step)) + "</h3>\n";
  size_t i = 0;
  while (i < samples.size()) {
    const std::string group = field_text(samples[i], "group"), prompt = field_text(samples[i], "prompt");
    size_t end = i + 1;
    while (end < samples.size() && field_text(samples[end], "group") == group &&
           field_text(samples[end], "prompt") == prompt)
      ++end;
    out += "<div class=\"group\">\n<div class=\"ghead\">group " + escaped(group.empty() ? "?" : group) + "</div>\n";
    out += "<pre class=\"prompt\">" + escaped(prompt) + "</pre>\n";
    out += "<table class=\"samples\">\n<thead><tr><th>sample</th><th>reward</th><th>components</th><th>advantage</th>"
           "<th>finish</th><th>length</th><th>extracted</th><th>reason</th><th>completion</th></tr></thead>\n<tbody>\n";
    for (; i < end; ++i) {
      const Json& j = samples[i];
      std::string length = field_text(j, "tokens");
      if (length.empty() && j.contains("completion") && j["completion"].is_string())
        length = std::to_string(j["completion"].get_ref<const std::string&>().size()) + " bytes";
      else if (!length.empty())
        length += " tokens";
      out += "<tr>";
      for (const std::string& cell : {field_text(j, "sample"), field_text(j, "reward"), field_text(j, "components"),
                                      field_text(j, "advantage"), field_text(j, "finish"), length,
                                      field_text(j, "extracted"), field_text(j, "reason")})
        out += "<td>" + escaped(cell) + "</td>";
      out += "<td><pre class=\"completion\">" + escaped(field_text(j, "completion")) + "</pre></td></tr>\n";
    }
    out += "</tbody>\n</table>\n</div>\n";
  }
  out += "</section>\n";
}

// ---- page --------------------------------------------------------------------------------

constexpr const char* kStyle = R"(body{font-family:system-ui,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:20px;word-break:break-all}h2{font-size:17px;margin-top:28px}h3{font-size:15px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}
table.summary td:first-child{font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:12px}figure.plot{margin:0}figcaption{font-size:12px;color:#555}
svg.plot{background:#fff}svg .area{fill:#fafafa;stroke:#999}svg .line{fill:none;stroke:#1f77b4;stroke-width:1.5}
svg .band{fill:#1f77b4;fill-opacity:0.15;stroke:none}svg .dot{fill:#1f77b4}
svg text{font-size:11px;fill:#444}svg .name{font-size:13px;font-weight:600;fill:#222}
pre{white-space:pre-wrap;word-break:break-word;margin:0;max-width:900px}
pre.prompt{background:#f4f4f4;padding:6px;margin:4px 0}.group{margin:10px 0 18px}.ghead{font-weight:600}
details pre{background:#f4f4f4;padding:8px})";

// The main plots, in page order.
constexpr const char* kMainKeys[] = {"reward/mean", "accuracy", "eval/pass@1", "response_length/mean", "kl",
                                     "entropy",     "grad_norm", "lr",          "time/step_s"};

void append_summary(std::string& out, const std::string& run_dir, const Metrics& m) {
  auto row = [&](const std::string& name, const std::string& value) {
    out += "<tr><td>" + escaped(name) + "</td><td>" + escaped(value) + "</td></tr>\n";
  };
  out += "<table class=\"summary\">\n";
  row("run directory", run_dir);
  row("metric lines", std::to_string(m.n_lines));
  if (m.n_lines > 0) row("steps", fmt_value(m.first_step) + " \xE2\x80\x93 " + fmt_value(m.last_step));
  for (const char* key : {"reward/mean", "accuracy", "eval/pass@1"}) {
    auto it = m.series.find(key);
    if (it == m.series.end()) continue;
    const std::vector<Point> pts = finite_points(it->second);
    if (pts.empty()) continue;
    row(key, "first " + fmt_value(pts.front().value) + " (step " + fmt_value(pts.front().step) + "), last " +
                 fmt_value(pts.back().value) + " (step " + fmt_value(pts.back().step) + ")");
  }
  if (auto it = m.series.find("elapsed_s"); it != m.series.end()) {
    const std::vector<Point> pts = finite_points(it->second);
    if (!pts.empty()) row("total time", fmt_duration(pts.back().value));
  }
  out += "</table>\n";
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.is_open(), path << ": cannot open the file");
  std::ostringstream ss;
  ss << in.rdbuf();
  GRPO_CHECK(!in.bad(), path << ": read error");
  return ss.str();
}

}  // namespace

std::string render_report(const std::string& run_dir, const ReportOptions& options) {
  GRPO_CHECK(options.max_sample_steps >= 0, "report: max_sample_steps must be >= 0, got " << options.max_sample_steps);
  GRPO_CHECK(options.max_points >= 2, "report: max_points must be >= 2, got " << options.max_points);
  GRPO_CHECK(fs::is_directory(run_dir), run_dir << ": no such run directory");
  const std::string metrics_path = (fs::path(run_dir) / "metrics.jsonl").string();
  GRPO_CHECK(fs::is_regular_file(metrics_path), metrics_path << ": no such file (written by grpo train)");
  const Metrics m = read_metrics(metrics_path);

  std::string out;
  out += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>grpo report: " +
         escaped(run_dir) + "</title>\n<style>\n" + kStyle + "\n</style>\n</head>\n<body>\n";
  out += "<h1>grpo report: " + escaped(run_dir) + "</h1>\n";
  append_summary(out, run_dir, m);

  const std::string config_path = (fs::path(run_dir) / "config.json").string();
  if (fs::is_regular_file(config_path))
    out += "<details>\n<summary>config.json</summary>\n<pre class=\"config\">" + escaped(read_text_file(config_path)) +
           "</pre>\n</details>\n";

  // Main plots, then one small plot per remaining key; reward/std is drawn as the band of
  // reward/mean when both exist.
  const bool band = m.series.count("reward/mean") && m.series.count("reward/std");
  out += "<h2>Training curves</h2>\n";
  if (m.series.empty()) out += "<p>No metrics yet.</p>\n";
  out += "<div class=\"plots main\">\n";
  for (const char* key : kMainKeys)
    if (auto it = m.series.find(key); it != m.series.end())
      append_plot(out, key, it->second, band && it->first == "reward/mean" ? &m.series.at("reward/std") : nullptr, m,
                  options, kMainBox);
  out += "</div>\n";
  std::string other;
  for (const auto& [key, series] : m.series) {
    if (std::find(std::begin(kMainKeys), std::end(kMainKeys), key) != std::end(kMainKeys)) continue;
    if (band && key == "reward/std") continue;
    append_plot(other, key, series, nullptr, m, options, kSmallBox);
  }
  if (!other.empty()) out += "<h2>Other metrics</h2>\n<div class=\"plots other\">\n" + other + "</div>\n";

  const std::string samples_path = (fs::path(run_dir) / "samples.jsonl").string();
  if (options.max_sample_steps > 0 && fs::is_regular_file(samples_path)) {
    const Samples s = read_samples(samples_path, options.max_sample_steps);
    out += "<h2>Samples</h2>\n";
    if (s.by_step.empty()) out += "<p>No samples with a step.</p>\n";
    if (s.n_without_step > 0)
      out += "<p>" + escaped(std::to_string(s.n_without_step) + " sample(s) without a numeric \"step\" left out.") +
             "</p>\n";
    for (auto it = s.by_step.rbegin(); it != s.by_step.rend(); ++it) append_step_samples(out, it->first, it->second);
  }
  out += "</body>\n</html>\n";
  return out;
}

std::string write_report(const std::string& run_dir, const std::string& out_path, const ReportOptions& options) {
  const std::string html = render_report(run_dir, options);
  const std::string path = out_path.empty() ? (fs::path(run_dir) / "report.html").string() : out_path;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    GRPO_CHECK(out.is_open(), path << ": cannot write (opening " << tmp << " failed)");
    out.write(html.data(), std::streamsize(html.size()));
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      GRPO_THROW(path << ": writing " << tmp << " failed");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    GRPO_THROW(path << ": cannot rename " << tmp << " to it: " << ec.message());
  }
  return path;
}

}  // namespace grpo
