#include "rewards/format/format_checker.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string_view>

#include "core/error.h"
#include "rewards/format/utf8.h"

namespace grpo::rewards {

namespace {

constexpr size_t kMaxExtracted = 4096;
constexpr uint32_t kMatchLimit = 10'000'000;  // backtracking steps per match
constexpr uint32_t kDepthLimit = 10'000;      // nested backtracking frames per match (interpreter)

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kAnswerOpen = "<answer>";
constexpr std::string_view kAnswerClose = "</answer>";

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string cap(std::string_view s) {
  if (s.size() <= kMaxExtracted) return std::string(s);
  size_t n = kMaxExtracted;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // keep whole UTF-8 characters
  return std::string(s.substr(0, n));
}

ScoreResult verdict(const ScoreRequest& request, bool ok, std::string reason, std::string_view extracted = {}) {
  ScoreResult r;
  r.id = request.id;
  r.reward = ok ? 1.0 : 0.0;
  r.reason = reason;
  r.extracted = cap(extracted);
  r.components.push_back(RewardComponent{"format", r.reward, 1.0, std::move(reason)});
  return r;
}

// ---- the default rule -----------------------------------------------------------------------

class TagFormatChecker final : public RewardChecker {
 public:
  explicit TagFormatChecker(const FormatOptions& options) : options_(options) {}
  std::string name() const override { return "format"; }

  ScoreResult score(const ScoreRequest& request) override {
    std::string_view text = request.completion;
    size_t pos = 0;
    while (pos < text.size() && is_space(text[pos])) ++pos;
    if (text.substr(pos).starts_with(kThinkOpen)) {
      pos += kThinkOpen.size();
    } else if (!trim(request.prompt).ends_with(kThinkOpen)) {
      return verdict(request, false, "missing_think");
    }
    size_t close = text.find(kThinkClose, pos);
    if (close == std::string_view::npos) return verdict(request, false, "unclosed_think");
    std::string_view thinking = text.substr(pos, close - pos);
    if (thinking.find(kThinkOpen) != std::string_view::npos) return verdict(request, false, "nested_think");
    if (!options_.allow_empty_think && trim(thinking).empty()) return verdict(request, false, "empty_think");

    std::string_view rest = text.substr(close + kThinkClose.size());
    if (rest.find(kThinkOpen) != std::string_view::npos || rest.find(kThinkClose) != std::string_view::npos)
      return verdict(request, false, "multiple_think");
    if (!options_.answer_tag) {
      std::string_view answer = trim(rest);
      if (answer.empty()) return verdict(request, false, "empty_answer");
      return verdict(request, true, "ok", answer);
    }

    std::string_view after = trim(rest);
    if (!after.starts_with(kAnswerOpen)) return verdict(request, false, "missing_answer_tag");
    after.remove_prefix(kAnswerOpen.size());
    size_t end = after.find(kAnswerClose);
    if (end == std::string_view::npos) return verdict(request, false, "unclosed_answer");
    std::string_view answer = after.substr(0, end);
    if (answer.find(kAnswerOpen) != std::string_view::npos) return verdict(request, false, "nested_answer");
    if (!trim(after.substr(end + kAnswerClose.size())).empty()) return verdict(request, false, "text_after_answer");
    if (trim(answer).empty()) return verdict(request, false, "empty_answer");
    return verdict(request, true, "ok", trim(answer));
  }

 private:
  FormatOptions options_;
};

// ---- a configured PCRE2 pattern ---------------------------------------------------------------

class PatternFormatChecker final : public RewardChecker {
 public:
  explicit PatternFormatChecker(const FormatOptions& options) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    uint32_t flags = PCRE2_DOTALL | PCRE2_UTF;
    if (options.full_match) flags |= PCRE2_ANCHORED | PCRE2_ENDANCHORED;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(options.pattern.data()), options.pattern.size(), flags, &error,
                          &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      GRPO_THROW("format checker: \"pattern\" does not compile at offset " << offset << ": "
                                                                           << reinterpret_cast<const char*>(message));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // best effort: without JIT, pcre2_match interprets
    match_context_ = pcre2_match_context_create(nullptr);
    GRPO_CHECK(match_context_ != nullptr, "format checker: out of memory");
    pcre2_set_match_limit(match_context_, kMatchLimit);
    pcre2_set_depth_limit(match_context_, kDepthLimit);
    answer_group_ = pcre2_substring_number_from_name(code_, reinterpret_cast<PCRE2_SPTR>("answer"));
  }
  ~PatternFormatChecker() override {
    pcre2_match_context_free(match_context_);
    pcre2_code_free(code_);
  }
  PatternFormatChecker(const PatternFormatChecker&) = delete;
  PatternFormatChecker& operator=(const PatternFormatChecker&) = delete;

  std::string name() const override { return "format"; }

  // pcre2_code and the match context are read-only here; match data is per call, so this is
  // safe from many threads.
  ScoreResult score(const ScoreRequest& request) override {
    pcre2_match_data* data = pcre2_match_data_create_from_pattern(code_, nullptr);
    if (!data) return verdict(request, false, "pattern_limit");
    // PCRE2 cannot match across invalid UTF-8 ("." stops at it), so a stray byte is first
    // replaced by U+FFFD; offsets below refer to `text`.
    std::string repaired;
    std::string_view text = request.completion;
    if (!is_valid_utf8(text)) {
      repaired = valid_utf8(text);
      text = repaired;
    }
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    // pcre2_match runs the JIT code when there is some; a JIT stack overflow retries on the
    // interpreter, which is bounded by the match and depth limits.
    int rc = pcre2_match(code_, subject, text.size(), 0, 0, data, match_context_);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(code_, subject, text.size(), 0, PCRE2_NO_JIT, data, match_context_);
    ScoreResult result;
    if (rc >= 0) {
      std::string_view answer;
      if (answer_group_ > 0) {
        PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
        size_t group = static_cast<size_t>(answer_group_);
        if (group < pcre2_get_ovector_count(data) && ovector[2 * group] != PCRE2_UNSET)
          answer = text.substr(ovector[2 * group], ovector[2 * group + 1] - ovector[2 * group]);
      }
      result = verdict(request, true, "ok", answer);
    } else if (rc == PCRE2_ERROR_NOMATCH || rc == PCRE2_ERROR_PARTIAL) {
      result = verdict(request, false, "no_match");
    } else {
      result = verdict(request, false, "pattern_limit");  // match, depth or heap limit
    }
    pcre2_match_data_free(data);
    return result;
  }

 private:
  pcre2_code* code_ = nullptr;
  pcre2_match_context* match_context_ = nullptr;
  int answer_group_ = -1;
};

}  // namespace

std::unique_ptr<RewardChecker> make_format_checker(const FormatOptions& options) {
  if (options.pattern.empty()) {
    GRPO_CHECK(options.full_match, "format checker: \"full_match\" applies only with \"pattern\"");
    return std::make_unique<TagFormatChecker>(options);
  }
  GRPO_CHECK(!options.answer_tag && options.allow_empty_think,
             "format checker: \"pattern\" replaces the default rule; drop \"answer_tag\" / \"allow_empty_think\"");
  return std::make_unique<PatternFormatChecker>(options);
}

void register_format_checker(CheckerRegistry& registry) {
  registry.add("format", "R1 format: <think>...</think> then an answer (options: answer_tag, allow_empty_think, pattern)",
               [](ConfigNode& config) {
                 FormatOptions options;
                 options.answer_tag = config.get<bool>("answer_tag", options.answer_tag);
                 options.allow_empty_think = config.get<bool>("allow_empty_think", options.allow_empty_think);
                 options.pattern = config.get<std::string>("pattern", options.pattern);
                 options.full_match = config.get<bool>("full_match", options.full_match);
                 return make_format_checker(options);
               });
}

}  // namespace grpo::rewards
