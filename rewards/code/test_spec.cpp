#include "rewards/code/test_spec.h"

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"

namespace grpo::rewards {
namespace {

using Json = nlohmann::json;

const std::vector<std::string>& known_keys() {
  static const std::vector<std::string> keys = {"style",       "tests", "test_code", "setup",
                                                "entry_point", "cases", "timeout_s", "memory_mb"};
  return keys;
}

std::string get_string(const Json& obj, const char* key, const std::string& where) {
  const Json& v = obj.at(key);
  GRPO_CHECK(v.is_string(), "code test spec: \"" << where << "\" must be a string, got " << v.type_name());
  return v.get<std::string>();
}

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

// Lines with trailing blanks removed, \r\n read as \n, and trailing empty lines dropped.
std::vector<std::string_view> normalized_lines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t nl = s.find('\n', pos);
    size_t stop = nl == std::string_view::npos ? s.size() : nl;
    std::string_view line = s.substr(pos, stop - pos);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

std::vector<std::string_view> tokens(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    size_t b = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > b) out.push_back(line.substr(b, i - b));
  }
  return out;
}

std::string excerpt(std::string_view s, size_t max_chars = 80) {
  std::string out(s.substr(0, max_chars));
  if (s.size() > max_chars) out += "...";
  return out;
}

}  // namespace

TestSpec parse_test_spec(std::string_view json_text) {
  Json root;
  try {
    root = Json::parse(json_text);
  } catch (const Json::parse_error& e) {
    GRPO_THROW("code test spec: not valid JSON (" << e.what() << ")");
  }
  GRPO_CHECK(root.is_object(), "code test spec: must be a JSON object, got " << root.type_name());
  for (const auto& [key, value] : root.items()) {
    const auto& keys = known_keys();
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) continue;
    std::string hint = closest_match(key, keys);
    GRPO_THROW("code test spec: unknown key \"" << key << "\""
                                                << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }

  bool has_assert = root.contains("tests") || root.contains("test_code");
  bool has_io = root.contains("cases");
  TestSpec spec;
  if (root.contains("style")) {
    std::string style = get_string(root, "style", "style");
    GRPO_CHECK(style == "assert" || style == "io",
               "code test spec: \"style\" must be \"assert\" or \"io\", got \"" << style << "\"");
    spec.style = style == "io" ? TestStyle::io_style : TestStyle::assert_style;
  } else {
    GRPO_CHECK(has_assert || has_io,
               "code test spec: needs \"tests\" or \"test_code\" (assert style) or \"cases\" (io style)");
    spec.style = has_io ? TestStyle::io_style : TestStyle::assert_style;
  }

  if (spec.style == TestStyle::assert_style) {
    GRPO_CHECK(!has_io, "code test spec: \"cases\" belongs to the io style, not the assert style");
    GRPO_CHECK(root.contains("tests") != root.contains("test_code"),
               "code test spec: the assert style needs exactly one of \"tests\" (list of asserts) and \"test_code\"");
    if (root.contains("tests")) {
      const Json& tests = root.at("tests");
      GRPO_CHECK(tests.is_array() && !tests.empty(), "code test spec: \"tests\" must be a non-empty list of strings");
      for (size_t i = 0; i < tests.size(); ++i) {
        GRPO_CHECK(tests[i].is_string(),
                   "code test spec: \"tests[" << i << "]\" must be a string, got " << tests[i].type_name());
        spec.cases.push_back({tests[i].get<std::string>(), "", ""});
      }
    } else {
      spec.cases.push_back({get_string(root, "test_code", "test_code"), "", ""});
    }
    if (root.contains("setup")) spec.setup = get_string(root, "setup", "setup");
    if (root.contains("entry_point")) {
      spec.entry_point = get_string(root, "entry_point", "entry_point");
      GRPO_CHECK(is_identifier(spec.entry_point), "code test spec: \"entry_point\" must be a Python identifier, got \""
                                                      << excerpt(spec.entry_point) << "\"");
    }
  } else {
    GRPO_CHECK(!has_assert && !root.contains("setup") && !root.contains("entry_point"),
               "code test spec: \"tests\", \"test_code\", \"setup\" and \"entry_point\" belong to the assert style, "
               "not the io style");
    GRPO_CHECK(root.contains("cases"), "code test spec: the io style needs \"cases\"");
    const Json& cases = root.at("cases");
    GRPO_CHECK(cases.is_array() && !cases.empty(),
               "code test spec: \"cases\" must be a non-empty list of {\"input\", \"output\"}");
    for (size_t i = 0; i < cases.size(); ++i) {
      const Json& c = cases[i];
      std::string where = "cases[" + std::to_string(i) + "]";
      GRPO_CHECK(c.is_object(), "code test spec: \"" << where << "\" must be an object with \"input\" and \"output\"");
      for (const auto& [key, value] : c.items())
        GRPO_CHECK(key == "input" || key == "output",
                   "code test spec: unknown key \"" << where << "." << key << "\" (known: input, output)");
      GRPO_CHECK(c.contains("output"), "code test spec: \"" << where << ".output\" is missing");
      TestCase tc;
      if (c.contains("input")) tc.input = get_string(c, "input", where + ".input");
      tc.expected_output = get_string(c, "output", where + ".output");
      spec.cases.push_back(std::move(tc));
    }
  }

  if (root.contains("timeout_s")) {
    const Json& v = root.at("timeout_s");
    GRPO_CHECK(v.is_number() && v.get<double>() > 0, "code test spec: \"timeout_s\" must be a positive number");
    spec.timeout_s = v.get<double>();
  }
  if (root.contains("memory_mb")) {
    const Json& v = root.at("memory_mb");
    GRPO_CHECK(v.is_number_integer() && v.get<int64_t>() > 0,
               "code test spec: \"memory_mb\" must be a positive integer");
    spec.memory_mb = v.get<int64_t>();
  }
  return spec;
}

std::string build_case_program(const TestSpec& spec, size_t index, const std::string& code) {
  GRPO_ASSERT(index < spec.cases.size());
  if (spec.style == TestStyle::io_style) return code;
  std::string program = code;
  if (!program.empty() && program.back() != '\n') program.push_back('\n');
  program += "\n";
  if (!spec.setup.empty()) program += spec.setup + "\n";
  if (!spec.entry_point.empty()) program += spec.entry_point + "\n";  // NameError when undefined
  program += spec.cases[index].test;
  program += "\n";
  if (!spec.entry_point.empty())
    program += "if callable(globals().get('check')):\n    check(" + spec.entry_point + ")\n";
  return program;
}

bool outputs_match(std::string_view expected, std::string_view got, std::string* why) {
  std::vector<std::string_view> want = normalized_lines(expected), have = normalized_lines(got);
  size_t n = std::max(want.size(), have.size());
  for (size_t i = 0; i < n; ++i) {
    if (i >= want.size() || i >= have.size()) {
      if (why)
        *why = "expected " + std::to_string(want.size()) + " lines, got " + std::to_string(have.size()) +
               (i < have.size() ? "; extra line: " + excerpt(have[i]) : "; missing line: " + excerpt(want[i]));
      return false;
    }
    if (tokens(want[i]) != tokens(have[i])) {
      if (why)
        *why = "line " + std::to_string(i + 1) + ": expected \"" + excerpt(want[i]) + "\", got \"" + excerpt(have[i]) +
               "\"";
      return false;
    }
  }
  return true;
}

}  // namespace grpo::rewards
