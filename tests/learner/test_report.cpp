// `grpo report` (learner/report.h): the plots are computed from the data (one polyline point
// per step, x linear in the step on an axis shared by every plot, y linear in the value with
// the largest value highest), only keys present are plotted, every text from the run is
// escaped and the page is well nested, and the input errors name FILE:LINE or the path.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "learner/report.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("grpo_report_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << p;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// The message of the grpo::Error that render_report throws, or "" when it does not throw.
std::string render_error(const fs::path& dir, const ReportOptions& opt = {}) {
  try {
    render_report(dir.string(), opt);
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

struct XY {
  double x, y;
};

// One plot of the page: its plot area and the points of its line.
struct Plot {
  double left = 0, top = 0, width = 0, height = 0;
  std::vector<XY> line;
  std::string svg;  // from its data-key to the end of its caption
};

double attr(const std::string& s, const std::string& name) {
  const size_t at = s.find(" " + name + "=\"");
  EXPECT_NE(at, std::string::npos) << name << " in " << s;
  return at == std::string::npos ? NAN : std::strtod(s.c_str() + at + name.size() + 3, nullptr);
}

// The plot of key; fails the test when the page has none.
Plot plot_of(const std::string& page, const std::string& key) {
  Plot p;
  const size_t begin = page.find("data-key=\"" + key + "\"");
  EXPECT_NE(begin, std::string::npos) << "no plot of " << key;
  if (begin == std::string::npos) return p;
  p.svg = page.substr(begin, page.find("</figure>", begin) - begin);  // the svg and its caption
  const size_t rect = p.svg.find("<rect class=\"area\"");
  EXPECT_NE(rect, std::string::npos);
  const std::string r = p.svg.substr(rect, p.svg.find("/>", rect) - rect);
  p.left = attr(r, "x"), p.top = attr(r, "y"), p.width = attr(r, "width"), p.height = attr(r, "height");
  const std::string marker = "class=\"line\" points=\"";
  const size_t pts = p.svg.find(marker);
  EXPECT_NE(pts, std::string::npos) << "no line in the plot of " << key;
  if (pts == std::string::npos) return p;
  std::istringstream in(p.svg.substr(pts + marker.size(), p.svg.find('"', pts + marker.size()) - pts - marker.size()));
  std::string pair;
  while (in >> pair) {
    const size_t comma = pair.find(',');
    EXPECT_NE(comma, std::string::npos) << pair;
    p.line.push_back({std::stod(pair.substr(0, comma)), std::stod(pair.substr(comma + 1))});
  }
  return p;
}

// x is the step mapped linearly onto [left, left + width] over the run's steps [lo, hi].
void expect_x_of_steps(const Plot& p, const std::vector<double>& steps, double lo, double hi) {
  ASSERT_EQ(p.line.size(), steps.size());
  for (size_t i = 0; i < steps.size(); ++i)
    EXPECT_NEAR(p.line[i].x, p.left + (steps[i] - lo) / (hi - lo) * p.width, 0.011) << "point " << i;
}

// y = a - b * value with b > 0 for every point: a linear map with larger values higher.
void expect_y_linear_decreasing(const Plot& p, const std::vector<double>& values) {
  ASSERT_EQ(p.line.size(), values.size());
  const size_t i_max = size_t(std::max_element(values.begin(), values.end()) - values.begin());
  const size_t i_min = size_t(std::min_element(values.begin(), values.end()) - values.begin());
  ASSERT_GT(values[i_max], values[i_min]);
  const double b = (p.line[i_min].y - p.line[i_max].y) / (values[i_max] - values[i_min]);
  EXPECT_GT(b, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_GE(p.line[i].y, p.line[i_max].y) << "the largest value must have the smallest y";
    EXPECT_NEAR(p.line[i].y, p.line[i_max].y + b * (values[i_max] - values[i]), 0.02) << "point " << i;
    EXPECT_GE(p.line[i].y, p.top - 0.01);
    EXPECT_LE(p.line[i].y, p.top + p.height + 0.01);
  }
}

// Every element opened is closed in order (void elements and "/>" aside), and nothing that
// looks like a tag is left unclosed: a check that the run's text could not inject markup.
void expect_well_nested(const std::string& page) {
  static const std::vector<std::string> kVoid = {"meta", "br", "hr", "img", "input", "link"};
  std::vector<std::string> open;
  for (size_t at = page.find('<'); at != std::string::npos; at = page.find('<', at + 1)) {
    const size_t end = page.find('>', at);
    ASSERT_NE(end, std::string::npos) << "unterminated tag at " << at;
    const std::string tag = page.substr(at + 1, end - at - 1);
    if (tag.rfind("!DOCTYPE", 0) == 0) continue;
    if (tag[0] == '/') {
      ASSERT_FALSE(open.empty()) << "</" << tag << "> closes nothing";
      ASSERT_EQ("/" + open.back(), tag) << "at " << at;
      open.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    if (tag.back() == '/' || std::find(kVoid.begin(), kVoid.end(), name) != kVoid.end()) continue;
    open.push_back(name);
  }
  EXPECT_TRUE(open.empty()) << open.size() << " elements left open, the first " << open.front();
}

// Steps 1..5 with the training metrics; eval/pass@1 at steps 0 (eval only) and 4 only.
const std::vector<double> kSteps = {1, 2, 3, 4, 5};
const std::vector<double> kReward = {0.10, 0.35, 0.20, 0.60, 0.55};
const std::vector<double> kAccuracy = {0.125, 0.25, 0.25, 0.5, 0.625};

fs::path write_run(const std::string& name) {
  const fs::path dir = temp_dir(name);
  std::string m = R"({"step": 0, "eval/pass@1": 0.2, "elapsed_s": 1.0})" "\n";
  for (size_t i = 0; i < kSteps.size(); ++i) {
    m += "{\"step\": " + std::to_string(int(kSteps[i])) + ", \"reward/mean\": " + std::to_string(kReward[i]) +
         ", \"reward/std\": 0.05, \"accuracy\": " + std::to_string(kAccuracy[i]) + ", \"kl\": " +
         std::to_string(0.001 * double(i)) + ", \"loss\": " + std::to_string(1.0 - 0.1 * double(i)) +
         ", \"elapsed_s\": " + std::to_string(10.0 * double(i + 1)) + R"(, "phase": "train", "warm": true)";
    if (kSteps[i] == 4) m += R"(, "eval/pass@1": 0.4)";
    m += "}\n";
  }
  write_file(dir / "metrics.jsonl", m);
  write_file(dir / "samples.jsonl",
             R"({"step": 5, "group": 0, "sample": 0, "prompt": "Is 1 < 2 & \"3\" > 2?", "completion": "<script>alert(1)</script> yes & no", "reward": 1.0, "components": {"format": 0.5, "<acc>": 1}, "finish": "stop", "tokens": 12, "advantage": 0.7})"
             "\n"
             R"({"step": 5, "group": 0, "sample": 1, "prompt": "Is 1 < 2 & \"3\" > 2?", "completion": "ctrl\u0001char", "reward": 0.0, "finish": "length"})"
             "\n");
  write_file(dir / "config.json", "{\"note\": \"<b>bold</b> & \\\"q\\\"\"}\n");
  return dir;
}

TEST(Report, PlotsEachKeyPresentFromTheData) {
  const fs::path dir = write_run("plots");
  const std::string page = render_report(dir.string());
  EXPECT_EQ(page.rfind("<!DOCTYPE html>", 0), 0u);
  expect_well_nested(page);

  // One svg per key: the main keys present, then loss and elapsed_s; reward/std is the band.
  for (const char* key : {"reward/mean", "accuracy", "eval/pass@1", "kl", "loss", "elapsed_s"})
    EXPECT_EQ(count(page, std::string("data-key=\"") + key + "\""), 1u) << key;
  EXPECT_EQ(count(page, "<svg"), 6u);
  for (const char* key : {"reward/std", "response_length/mean", "entropy", "grad_norm", "lr", "time/step_s", "phase",
                          "warm", "step"})
    EXPECT_EQ(page.find(std::string("data-key=\"") + key + "\""), std::string::npos) << key;
  EXPECT_LT(page.find("data-key=\"reward/mean\""), page.find("data-key=\"accuracy\""));
  EXPECT_LT(page.find("data-key=\"accuracy\""), page.find("data-key=\"eval/pass@1\""));
  EXPECT_LT(page.find("data-key=\"eval/pass@1\""), page.find("data-key=\"kl\""));
  EXPECT_LT(page.find("data-key=\"elapsed_s\""), page.find("data-key=\"loss\""));

  // reward/mean: one point per step on the step axis 0..5 shared by all plots, y linear.
  const Plot reward = plot_of(page, "reward/mean");
  expect_x_of_steps(reward, kSteps, 0, 5);
  expect_y_linear_decreasing(reward, kReward);
  EXPECT_NE(reward.svg.find("class=\"band\""), std::string::npos) << "no reward/std band";

  // accuracy (no band): the extremes sit on the edges of the plot area; min/max labels.
  const Plot acc = plot_of(page, "accuracy");
  expect_x_of_steps(acc, kSteps, 0, 5);
  expect_y_linear_decreasing(acc, kAccuracy);
  EXPECT_NEAR(acc.line.back().y, acc.top, 0.011);
  EXPECT_NEAR(acc.line.front().y, acc.top + acc.height, 0.011);
  EXPECT_NE(acc.svg.find(">0.625</text>"), std::string::npos);
  EXPECT_NE(acc.svg.find(">0.125</text>"), std::string::npos);
  EXPECT_EQ(acc.svg.find("class=\"band\""), std::string::npos);

  // eval/pass@1 from its sparse steps 0 and 4.
  const Plot eval = plot_of(page, "eval/pass@1");
  expect_x_of_steps(eval, {0, 4}, 0, 5);
  EXPECT_LT(eval.line[1].y, eval.line[0].y);

  // Summary.
  EXPECT_NE(page.find("first 0.1 (step 1), last 0.55 (step 5)"), std::string::npos);
  EXPECT_NE(page.find("0h 00m 50s"), std::string::npos);

  // Text from the run is escaped; the raw markup never reaches the page.
  EXPECT_NE(page.find("&lt;script&gt;alert(1)&lt;/script&gt; yes &amp; no"), std::string::npos);
  EXPECT_NE(page.find("Is 1 &lt; 2 &amp; &quot;3&quot; &gt; 2?"), std::string::npos);
  EXPECT_NE(page.find("&lt;acc&gt;=1"), std::string::npos);
  EXPECT_NE(page.find("&lt;b&gt;bold&lt;/b&gt; &amp;"), std::string::npos);
  EXPECT_NE(page.find("ctrl\xEF\xBF\xBD" "char"), std::string::npos) << "a control character is replaced";
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("<b>"), std::string::npos);
  EXPECT_EQ(page.find("http"), std::string::npos);
  EXPECT_EQ(page.find("src="), std::string::npos);
  EXPECT_EQ(page.find("url("), std::string::npos);
  EXPECT_EQ(count(page, "class=\"completion\""), 2u);
  fs::remove_all(dir);
}

TEST(Report, MalformedMiddleLineNamesFileAndLine) {
  const fs::path dir = temp_dir("malformed");
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"kl\": 0.1}\n\n{\"step\": 2, \"kl\": \n{\"step\": 3, \"kl\": 0.3}\n");
  EXPECT_NE(render_error(dir).find((dir / "metrics.jsonl").string() + ":3: not valid JSON"), std::string::npos)
      << render_error(dir);
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"kl\": 0.1}\n[1, 2]\n");
  EXPECT_NE(render_error(dir).find("metrics.jsonl:2: expected a JSON object"), std::string::npos) << render_error(dir);
  write_file(dir / "metrics.jsonl", "{\"kl\": 0.1}\n");
  EXPECT_NE(render_error(dir).find("metrics.jsonl:1: missing a numeric \"step\""), std::string::npos)
      << render_error(dir);
  // samples.jsonl follows the same rules.
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"kl\": 0.1}\n");
  write_file(dir / "samples.jsonl", "{\"step\": 1}\n{oops}\n{\"step\": 1}\n");
  EXPECT_NE(render_error(dir).find((dir / "samples.jsonl").string() + ":2: not valid JSON"), std::string::npos)
      << render_error(dir);
  fs::remove_all(dir);
}

TEST(Report, TornLastLineIsSkipped) {
  const fs::path dir = temp_dir("torn");
  write_file(dir / "metrics.jsonl",
             "{\"step\": 1, \"reward/mean\": 0.1}\n{\"step\": 2, \"reward/mean\": 0.3}\n{\"step\": 3, \"rew");
  write_file(dir / "samples.jsonl", "{\"step\": 2, \"completion\": \"whole\"}\n{\"step\": 3, \"compl");
  const std::string page = render_report(dir.string());
  expect_x_of_steps(plot_of(page, "reward/mean"), {1, 2}, 1, 2);
  EXPECT_NE(page.find(">whole</pre>"), std::string::npos);
  // A whole last line without its newline is read.
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"reward/mean\": 0.1}\n{\"step\": 2, \"reward/mean\": 0.3}");
  EXPECT_EQ(plot_of(render_report(dir.string()), "reward/mean").line.size(), 2u);
  fs::remove_all(dir);
}

TEST(Report, MissingInputsNameThePath) {
  const fs::path dir = temp_dir("missing");
  EXPECT_NE(render_error(dir / "absent").find((dir / "absent").string()), std::string::npos);
  EXPECT_NE(render_error(dir).find((dir / "metrics.jsonl").string()), std::string::npos) << render_error(dir);
  EXPECT_THROW(write_report((dir / "absent").string()), Error);
  EXPECT_FALSE(fs::exists(dir / "absent"));
  fs::remove_all(dir);
}

TEST(Report, NonFiniteValuesAreLeftOut) {
  const fs::path dir = temp_dir("nonfinite");
  // null (how nlohmann::json writes NaN and infinities), NaN, Infinity and -Infinity (how
  // Python's json writes them): all left out.
  write_file(dir / "metrics.jsonl",
             "{\"step\": 1, \"kl\": 0.1, \"loss\": null}\n"
             "{\"step\": 2, \"kl\": NaN, \"loss\": Infinity, \"note\": \"NaN in a string\"}\n"
             "{\"step\": 3, \"kl\": -Infinity, \"loss\": null}\n"
             "{\"step\": 4, \"kl\": 0.3, \"loss\": null}\n");
  const std::string page = render_report(dir.string());
  const Plot kl = plot_of(page, "kl");
  expect_x_of_steps(kl, {1, 4}, 1, 4);
  EXPECT_LT(kl.line[1].y, kl.line[0].y);
  EXPECT_NE(kl.svg.find("2 non-finite left out"), std::string::npos) << kl.svg;
  // A key with no finite value has a plot that says so, and no line.
  const size_t loss = page.find("data-key=\"loss\"");
  ASSERT_NE(loss, std::string::npos);
  const std::string loss_svg = page.substr(loss, page.find("</figure>", loss) - loss);
  EXPECT_EQ(loss_svg.find("class=\"line\""), std::string::npos);
  EXPECT_NE(loss_svg.find("no finite values"), std::string::npos);
  EXPECT_NE(loss_svg.find("4 non-finite left out"), std::string::npos);
  for (const char* bad : {"nan", "inf", "NaN", "Inf"}) EXPECT_EQ(kl.svg.find(bad), std::string::npos) << bad;
  fs::remove_all(dir);
}

TEST(Report, ThinningKeepsFirstAndLast) {
  const fs::path dir = temp_dir("thin");
  std::string m;
  for (int s = 0; s < 50; ++s) m += "{\"step\": " + std::to_string(s) + ", \"kl\": " + std::to_string(s * s) + "}\n";
  write_file(dir / "metrics.jsonl", m);
  ReportOptions opt;
  opt.max_points = 5;
  const std::string page = render_report(dir.string(), opt);
  const Plot kl = plot_of(page, "kl");
  ASSERT_EQ(kl.line.size(), 5u);
  EXPECT_NEAR(kl.line.front().x, kl.left, 0.011);
  EXPECT_NEAR(kl.line.back().x, kl.left + kl.width, 0.011);
  EXPECT_NEAR(kl.line.front().y, kl.top + kl.height, 0.011);  // 0, the smallest
  EXPECT_NEAR(kl.line.back().y, kl.top, 0.011);                // 49^2, the largest
  for (size_t i = 1; i < kl.line.size(); ++i) EXPECT_GT(kl.line[i].x, kl.line[i - 1].x);
  EXPECT_NE(page.find("50 points (5 drawn)"), std::string::npos);
  // Without thinning every step is a point.
  EXPECT_EQ(plot_of(render_report(dir.string()), "kl").line.size(), 50u);
  fs::remove_all(dir);
}

TEST(Report, SamplesOfTheNewestStepsFirst) {
  const fs::path dir = temp_dir("samples");
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"kl\": 0}\n{\"step\": 3, \"kl\": 0}\n");
  std::string s;
  for (int step = 1; step <= 4; ++step)
    for (int g = 0; g < 2; ++g)
      s += "{\"step\": " + std::to_string(step) + ", \"group\": " + std::to_string(g) + ", \"prompt\": \"p" +
           std::to_string(step) + "g" + std::to_string(g) + "\", \"completion\": \"c" + std::to_string(step) + "\"}\n";
  s += "{\"completion\": \"no step\"}\n";
  write_file(dir / "samples.jsonl", s);
  ReportOptions opt;
  opt.max_sample_steps = 2;
  const std::string page = render_report(dir.string(), opt);
  expect_well_nested(page);
  const size_t s4 = page.find("<h3>step 4</h3>"), s3 = page.find("<h3>step 3</h3>");
  ASSERT_NE(s4, std::string::npos);
  ASSERT_NE(s3, std::string::npos);
  EXPECT_LT(s4, s3);
  EXPECT_EQ(page.find("<h3>step 2</h3>"), std::string::npos);
  EXPECT_EQ(page.find(">p1g0</pre>"), std::string::npos);
  EXPECT_EQ(count(page, "class=\"group\""), 4u);  // one block per group of each step shown
  EXPECT_NE(page.find(">p4g1</pre>"), std::string::npos);
  EXPECT_NE(page.find("1 sample(s) without a numeric &quot;step&quot; left out"), std::string::npos);
  opt.max_sample_steps = 0;
  EXPECT_EQ(render_report(dir.string(), opt).find("<h2>Samples</h2>"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Report, RepeatedStepKeepsTheLaterLine) {
  // A resumed run writes the steps after its checkpoint again.
  const fs::path dir = temp_dir("repeat");
  write_file(dir / "metrics.jsonl",
             "{\"step\": 1, \"kl\": 0.1}\n{\"step\": 2, \"kl\": 0.9}\n{\"step\": 2, \"kl\": 0.2}\n{\"step\": 3, \"kl\": "
             "0.3}\n");
  const Plot kl = plot_of(render_report(dir.string()), "kl");
  expect_x_of_steps(kl, {1, 2, 3}, 1, 3);
  expect_y_linear_decreasing(kl, {0.1, 0.2, 0.3});
  fs::remove_all(dir);
}

TEST(Report, EmptyMetricsStillMakeAPage) {
  const fs::path dir = temp_dir("empty");
  write_file(dir / "metrics.jsonl", "");
  const std::string page = render_report(dir.string());
  EXPECT_NE(page.find("No metrics yet."), std::string::npos);
  EXPECT_EQ(page.find("<svg"), std::string::npos);
  expect_well_nested(page);
  fs::remove_all(dir);
}

TEST(Report, InvalidUtf8IsReplaced) {
  const fs::path dir = temp_dir("utf8");
  write_file(dir / "metrics.jsonl", "{\"step\": 1, \"kl\": 0.1}\n");
  write_file(dir / "config.json", "{\"a\": \"\xff\xc3\x28 caf\xc3\xa9\"}");  // bad lead, bad continuation, é
  const std::string page = render_report(dir.string());
  EXPECT_NE(page.find("\xEF\xBF\xBD\xEF\xBF\xBD( caf\xC3\xA9"), std::string::npos);
  fs::remove_all(dir);
}

TEST(Report, WriteReportReplacesThePage) {
  const fs::path dir = write_run("write");
  write_file(dir / "report.html", "old");
  const std::string path = write_report(dir.string());
  EXPECT_EQ(path, (dir / "report.html").string());
  EXPECT_EQ(read_text(path), render_report(dir.string()));
  EXPECT_FALSE(fs::exists(dir / "report.html.tmp"));
  EXPECT_EQ(write_report(dir.string(), (dir / "other.html").string()), (dir / "other.html").string());
  EXPECT_TRUE(fs::exists(dir / "other.html"));
  try {
    write_report(dir.string(), (dir / "no_such_dir" / "page.html").string());
    ADD_FAILURE() << "writing into a missing directory did not throw";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find((dir / "no_such_dir" / "page.html").string()), std::string::npos) << e.message();
  }
  fs::remove_all(dir);
}

TEST(Report, OptionsAreChecked) {
  const fs::path dir = write_run("options");
  ReportOptions opt;
  opt.max_points = 1;
  EXPECT_NE(render_error(dir, opt).find("max_points"), std::string::npos);
  opt = {};
  opt.max_sample_steps = -1;
  EXPECT_NE(render_error(dir, opt).find("max_sample_steps"), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace grpo::test
