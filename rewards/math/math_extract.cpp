#include "rewards/math/math_extract.h"

#include <cctype>

namespace grpo::rewards::math {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Strips what wraps an answer in prose: **bold**, $...$, \(...\), \[...\], a leading ':' and a
// trailing sentence period.
std::string_view strip_wrapping(std::string_view s) {
  for (bool changed = true; changed;) {
    changed = false;
    s = trim(s);
    if (starts_with(s, ":")) {
      s.remove_prefix(1);
      changed = true;
      continue;
    }
    if (ends_with(s, ".") && !ends_with(s, "..")) {
      s.remove_suffix(1);
      changed = true;
      continue;
    }
    for (auto [open, close] : {std::pair<std::string_view, std::string_view>{"**", "**"},
                               {"$$", "$$"},
                               {"$", "$"},
                               {"\\(", "\\)"},
                               {"\\[", "\\]"}}) {
      if (s.size() >= open.size() + close.size() && starts_with(s, open) && ends_with(s, close)) {
        s = s.substr(open.size(), s.size() - open.size() - close.size());
        changed = true;
        break;
      }
    }
  }
  return s;
}

std::optional<std::string> non_empty(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  return std::string(s);
}

// For every '{' the index of its matching '}' (npos when unclosed), in one pass; backslash
// escapes (\{ \}) are skipped.
std::vector<size_t> match_braces(std::string_view s) {
  std::vector<size_t> match(s.size(), std::string_view::npos);
  std::vector<size_t> open;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == '{') open.push_back(i);
    if (s[i] == '}' && !open.empty()) {
      match[open.back()] = i;
      open.pop_back();
    }
  }
  return match;
}

}  // namespace

std::optional<ExtractMethod> extract_method_from_name(std::string_view name) {
  if (name == "boxed") return ExtractMethod::kBoxed;
  if (name == "answer_tag") return ExtractMethod::kAnswerTag;
  if (name == "gsm8k") return ExtractMethod::kGsm8k;
  if (name == "the_answer_is") return ExtractMethod::kTheAnswerIs;
  return std::nullopt;
}

const char* extract_method_name(ExtractMethod method) {
  switch (method) {
    case ExtractMethod::kBoxed:
      return "boxed";
    case ExtractMethod::kAnswerTag:
      return "answer_tag";
    case ExtractMethod::kGsm8k:
      return "gsm8k";
    case ExtractMethod::kTheAnswerIs:
      return "the_answer_is";
  }
  return "?";
}

std::optional<std::string> extract_boxed(std::string_view text) {
  std::vector<size_t> starts;  // index just past "\boxed" / "\fbox"
  for (size_t i = text.find('\\'); i != std::string_view::npos; i = text.find('\\', i + 1)) {
    for (std::string_view cmd : {"\\boxed", "\\fbox"}) {
      size_t end = i + cmd.size();
      if (text.substr(i, cmd.size()) == cmd && (end >= text.size() || !is_alpha(text[end]))) starts.push_back(end);
    }
  }
  if (starts.empty()) return std::nullopt;
  std::vector<size_t> match = match_braces(text);
  for (auto it = starts.rbegin(); it != starts.rend(); ++it) {
    size_t p = *it;
    while (p < text.size() && is_space(text[p])) ++p;
    if (p >= text.size()) continue;
    if (text[p] == '{') {
      if (match[p] == std::string_view::npos) continue;  // unclosed (a cut-off completion)
      if (auto answer = non_empty(text.substr(p + 1, match[p] - p - 1))) return answer;
      continue;
    }
    size_t end = p;  // \boxed 5: up to whitespace or '$'
    while (end < text.size() && !is_space(text[end]) && text[end] != '$') ++end;
    if (auto answer = non_empty(text.substr(p, end - p))) return answer;
  }
  return std::nullopt;
}

std::optional<std::string> extract_answer_tag(std::string_view text) {
  size_t close = text.rfind("</answer>");
  while (close != std::string_view::npos) {
    size_t open = text.rfind("<answer>", close);
    if (open != std::string_view::npos) {
      std::string_view inside = text.substr(open + 8, close - open - 8);
      if (auto boxed = extract_boxed(inside)) return boxed;
      if (auto answer = non_empty(strip_wrapping(inside))) return answer;
    }
    if (close == 0) break;
    close = text.rfind("</answer>", close - 1);
  }
  return std::nullopt;
}

std::optional<std::string> extract_gsm8k(std::string_view text) {
  size_t at = text.rfind("####");
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(at + 4);
  rest = rest.substr(0, rest.find('\n'));
  return non_empty(strip_wrapping(rest));
}

std::optional<std::string> extract_the_answer_is(std::string_view text) {
  std::string low(text);
  for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t found = std::string::npos;
  for (size_t at = low.find("answer is"); at != std::string::npos; at = low.find("answer is", at + 1)) {
    std::string_view before = trim(std::string_view(low).substr(0, at));
    while (!before.empty() && before.back() == '*') before.remove_suffix(1);
    if (ends_with(before, "the") || ends_with(before, "final")) found = at + 9;
  }
  if (found == std::string::npos) return std::nullopt;
  std::string_view rest = text.substr(found);
  rest = rest.substr(0, rest.find('\n'));
  if (auto boxed = extract_boxed(rest)) return boxed;
  // The sentence ends at a period followed by a space (decimals have no space after the point).
  for (size_t i = 0; i + 1 < rest.size(); ++i) {
    if (rest[i] == '.' && is_space(rest[i + 1]) && !(i > 0 && rest[i - 1] == '.')) {
      rest = rest.substr(0, i);
      break;
    }
  }
  while (!rest.empty() && (is_space(rest.front()) || rest.front() == '*')) rest.remove_prefix(1);
  while (!rest.empty() && (is_space(rest.back()) || rest.back() == '*')) rest.remove_suffix(1);
  return non_empty(strip_wrapping(rest));
}

std::optional<Extraction> extract_answer(std::string_view completion, const std::vector<ExtractMethod>& order) {
  for (ExtractMethod method : order) {
    std::optional<std::string> answer;
    switch (method) {
      case ExtractMethod::kBoxed:
        answer = extract_boxed(completion);
        break;
      case ExtractMethod::kAnswerTag:
        answer = extract_answer_tag(completion);
        break;
      case ExtractMethod::kGsm8k:
        answer = extract_gsm8k(completion);
        break;
      case ExtractMethod::kTheAnswerIs:
        answer = extract_the_answer_is(completion);
        break;
    }
    if (answer) return Extraction{std::move(*answer), method};
  }
  return std::nullopt;
}

std::string reference_answer(std::string_view reference) {
  if (auto boxed = extract_boxed(reference)) return *boxed;
  if (reference.find("####") != std::string_view::npos) {
    if (auto gsm = extract_gsm8k(reference)) return *gsm;
  }
  return std::string(trim(reference));
}

}  // namespace grpo::rewards::math
