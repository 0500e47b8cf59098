#include "rewards/code/code_extract.h"

#include <algorithm>
#include <cctype>

#include "core/error.h"

namespace grpo::rewards {
namespace {

struct Line {
  std::string_view text;  // without the line break
  size_t begin = 0;       // offset of the line in the completion
  size_t end = 0;         // offset just past the line break (or the end)
};

std::vector<Line> split_lines(std::string_view s) {
  std::vector<Line> lines;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t nl = s.find('\n', pos);
    size_t stop = nl == std::string_view::npos ? s.size() : nl;
    std::string_view text = s.substr(pos, stop - pos);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    lines.push_back({text, pos, nl == std::string_view::npos ? s.size() : nl + 1});
    pos = nl == std::string_view::npos ? s.size() : nl + 1;
  }
  return lines;
}

// A fence line: up to 3 spaces, then >= 3 backticks. Returns the backtick count (0 if not a
// fence) and the info string's first word, lower-cased.
size_t parse_fence(std::string_view line, std::string* info_word, bool* info_rest_empty) {
  size_t i = 0;
  while (i < line.size() && i < 3 && line[i] == ' ') ++i;
  size_t n = 0;
  while (i + n < line.size() && line[i + n] == '`') ++n;
  if (n < 3) return 0;
  std::string_view rest = line.substr(i + n);
  // CommonMark: the info string of a backtick fence may not contain backticks.
  if (rest.find('`') != std::string_view::npos) return 0;
  size_t b = 0;
  while (b < rest.size() && std::isspace(static_cast<unsigned char>(rest[b]))) ++b;
  size_t e = b;
  while (e < rest.size() && !std::isspace(static_cast<unsigned char>(rest[e])) && rest[e] != '{') ++e;
  info_word->clear();
  for (size_t k = b; k < e; ++k) info_word->push_back(char(std::tolower(static_cast<unsigned char>(rest[k]))));
  *info_rest_empty = b == rest.size();
  return n;
}

bool is_closing_fence(std::string_view line, size_t open_ticks) {
  size_t i = 0;
  while (i < line.size() && i < 3 && line[i] == ' ') ++i;
  size_t n = 0;
  while (i + n < line.size() && line[i + n] == '`') ++n;
  if (n < open_ticks) return false;
  for (size_t k = i + n; k < line.size(); ++k)
    if (line[k] != ' ' && line[k] != '\t') return false;
  return true;
}

}  // namespace

std::vector<std::string> code_fence_tags(const std::string& language) {
  if (language == "python") return {"python", "py", "python3"};
  GRPO_THROW("code checker: language \"" << language << "\" is not supported (supported: python)");
}

std::optional<std::string> extract_code_block(std::string_view completion, const CodeExtractOptions& options) {
  std::vector<Line> lines = split_lines(completion);
  std::optional<std::string> tagged, bare;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string word;
    bool rest_empty = false;
    size_t ticks = parse_fence(lines[i].text, &word, &rest_empty);
    if (ticks == 0) continue;
    size_t close = i + 1;
    while (close < lines.size() && !is_closing_fence(lines[close].text, ticks)) ++close;
    if (close == lines.size()) break;  // unclosed: the completion was cut off inside a block
    std::string body;
    for (size_t k = i + 1; k < close; ++k) {
      body.append(lines[k].text);
      body.push_back('\n');
    }
    bool wanted = std::find(options.tags.begin(), options.tags.end(), word) != options.tags.end();
    if (wanted)
      tagged = std::move(body);
    else if (rest_empty)
      bare = std::move(body);
    i = close;  // continue after the closing fence
  }
  if (tagged) return tagged;
  if (options.bare_fence && bare) return bare;
  return std::nullopt;
}

}  // namespace grpo::rewards
