#define PCRE2_CODE_UNIT_WIDTH 8
#include "policy/tokenizer_pretokenize.h"

#include <pcre2.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "policy/tokenizer_utf8.h"

namespace grpo {

namespace {

// GPT-2's pattern, which ByteLevel applies itself when "use_regex" is true.
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Match data, match context and JIT stack of the calling thread. Match data sized for one
// pair: only the whole match is read (a pattern with groups then reports rc == 0).
struct ThreadMatchState {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  ThreadMatchState() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    GRPO_CHECK(data && context && stack, "PCRE2: out of memory creating match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~ThreadMatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
  ThreadMatchState(const ThreadMatchState&) = delete;
  ThreadMatchState& operator=(const ThreadMatchState&) = delete;
};

ThreadMatchState& thread_match_state() {
  thread_local ThreadMatchState state;
  return state;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buffer));
}

const nlohmann::json& member(const nlohmann::json& j, const char* key, const std::string& field) {
  GRPO_CHECK(j.contains(key), field << "." << key << " is missing");
  return j[key];
}

bool bool_member(const nlohmann::json& j, const char* key, const std::string& field, bool default_value) {
  if (!j.contains(key) || j[key].is_null()) return default_value;
  GRPO_CHECK(j[key].is_boolean(), field << "." << key << " must be true or false, got " << j[key].dump());
  return j[key].get<bool>();
}

}  // namespace

// ---- Regex --------------------------------------------------------------------------------

Regex::Regex(const std::string& pattern, bool literal, const std::string& field)
    : pattern_(pattern), literal_(literal) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_LITERAL admits UTF but not UCP (which only matters for classes anyway).
  const uint32_t options = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error,
                                   &offset, nullptr);
  GRPO_CHECK(code, field << ": regex does not compile at offset " << offset << ": " << pcre2_message(error));
  code_ = code;
  // JIT is an accelerator: where the platform lacks it, the interpreter gives the same matches.
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::Regex(Regex&& other) noexcept
    : pattern_(std::move(other.pattern_)),
      code_(std::exchange(other.code_, nullptr)),
      literal_(other.literal_),
      jit_(other.jit_) {}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
    pattern_ = std::move(other.pattern_);
    code_ = std::exchange(other.code_, nullptr);
    literal_ = other.literal_;
    jit_ = other.jit_;
  }
  return *this;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

void Regex::find_all(std::string_view s, std::vector<Match>& out) const {
  ThreadMatchState& st = thread_match_state();
  const auto* code = static_cast<const pcre2_code*>(code_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  const PCRE2_SIZE n = s.size();
  PCRE2_SIZE start = 0;
  while (start <= n) {
    // The caller validated the UTF-8 once for the whole text.
    const int rc = jit_ ? pcre2_jit_match(code, subject, n, start, 0, st.data, st.context)
                        : pcre2_match(code, subject, n, start, PCRE2_NO_UTF_CHECK, st.data, st.context);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    GRPO_CHECK(rc >= 0, "pre-tokenizer regex /" << pattern_ << "/ failed on a " << n
                                                << "-byte piece: " << pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(st.data);
    out.push_back({static_cast<uint32_t>(ov[0]), static_cast<uint32_t>(ov[1])});
    if (ov[1] > ov[0]) {
      start = ov[1];
    } else {
      if (ov[1] >= n) break;
      start = ov[1] + utf8::sequence_length(static_cast<unsigned char>(s[ov[1]]));
    }
  }
}

// ---- PreTokenizer -------------------------------------------------------------------------

void PreTokenizer::add(const nlohmann::json& j, const std::string& field) {
  if (j.is_null()) return;
  GRPO_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
             field << " must be an object with a string \"type\"");
  GRPO_CHECK(!byte_level_, field << ": a pre-tokenizer after ByteLevel is not supported (ByteLevel must come last)");
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    const nlohmann::json& list = member(j, "pretokenizers", field);
    GRPO_CHECK(list.is_array(), field << ".pretokenizers must be an array");
    for (size_t i = 0; i < list.size(); ++i)
      add(list[i], field + ".pretokenizers[" + std::to_string(i) + "]");
    return;
  }
  if (type == "Split") {
    const nlohmann::json& pattern = member(j, "pattern", field);
    std::string text;
    bool literal;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      text = pattern["Regex"].get<std::string>();
      literal = false;
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      text = pattern["String"].get<std::string>();
      literal = true;
    } else {
      GRPO_THROW(field << ".pattern must be {\"Regex\": \"...\"} or {\"String\": \"...\"}, got " << pattern.dump());
    }
    const nlohmann::json& behavior = member(j, "behavior", field);
    GRPO_CHECK(behavior.is_string(), field << ".behavior must be a string");
    const std::string b = behavior.get<std::string>();
    SplitStep step;
    if (b == "Removed") step.behavior = Behavior::kRemoved;
    else if (b == "Isolated") step.behavior = Behavior::kIsolated;
    else if (b == "MergedWithPrevious") step.behavior = Behavior::kMergedWithPrevious;
    else if (b == "MergedWithNext") step.behavior = Behavior::kMergedWithNext;
    else if (b == "Contiguous") step.behavior = Behavior::kContiguous;
    else
      GRPO_THROW(field << ".behavior \"" << b
                       << "\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous");
    step.invert = bool_member(j, "invert", field, false);
    step.regex = std::make_shared<const Regex>(text, literal, field + ".pattern");
    steps_.push_back(std::move(step));
    return;
  }
  if (type == "ByteLevel") {
    byte_level_ = true;
    add_prefix_space_ = bool_member(j, "add_prefix_space", field, true);
    n_splits_before_prefix_ = steps_.size();
    if (bool_member(j, "use_regex", field, true))
      steps_.push_back({std::make_shared<const Regex>(kByteLevelPattern, false, field + " (GPT-2 regex)"),
                        Behavior::kIsolated, false});
    return;
  }
  GRPO_THROW(field << ".type \"" << type << "\" is not supported (supported: Split, ByteLevel, Sequence)");
}

PreTokenizer PreTokenizer::from_json(const nlohmann::json& j, const std::string& field) {
  PreTokenizer p;
  p.add(j, field);
  if (!p.byte_level_) p.n_splits_before_prefix_ = p.steps_.size();
  return p;
}

std::vector<std::string> PreTokenizer::split_patterns() const {
  std::vector<std::string> out;
  for (const SplitStep& s : steps_)
    out.push_back(s.regex->literal() ? "\\Q" + s.regex->pattern() + "\\E" : s.regex->pattern());
  return out;
}

void PreTokenizer::split_one(const SplitStep& step, std::string_view piece, std::vector<std::string_view>& out,
                             PreTokenizeScratch& scratch) const {
  scratch.matches.clear();
  step.regex->find_all(piece, scratch.matches);
  if (scratch.matches.empty() && !step.invert) {
    out.push_back(piece);  // no match: the piece stays whole whatever the behavior
    return;
  }
  // Alternating (range, is_match) spans covering the piece, as HF's find_matches builds them.
  auto& spans = scratch.spans;
  spans.clear();
  uint32_t prev = 0;
  for (const Regex::Match& m : scratch.matches) {
    if (m.begin != prev) spans.push_back({prev, m.begin, step.invert});
    spans.push_back({m.begin, m.end, !step.invert});
    prev = m.end;
  }
  if (prev != piece.size()) spans.push_back({prev, static_cast<uint32_t>(piece.size()), step.invert});

  auto emit = [&](uint32_t b, uint32_t e) {
    if (e > b) out.push_back(piece.substr(b, e - b));
  };
  switch (step.behavior) {
    case Behavior::kIsolated:
      for (const auto& s : spans) emit(s.begin, s.end);
      break;
    case Behavior::kRemoved:
      for (const auto& s : spans)
        if (!s.is_match) emit(s.begin, s.end);
      break;
    case Behavior::kMergedWithPrevious: {
      // A match joins the span before it (unless that one is a match too).
      bool previous_match = false;
      uint32_t cur_b = 0, cur_e = 0;
      bool have = false;
      for (const auto& s : spans) {
        if (s.is_match && !previous_match && have) {
          cur_e = s.end;
        } else {
          if (have) emit(cur_b, cur_e);
          cur_b = s.begin;
          cur_e = s.end;
          have = true;
        }
        previous_match = s.is_match;
      }
      if (have) emit(cur_b, cur_e);
      break;
    }
    case Behavior::kMergedWithNext: {
      // A match joins the span after it (unless that one is a match too): walk backwards.
      const size_t first = out.size();
      bool previous_match = false;
      uint32_t cur_b = 0, cur_e = 0;
      bool have = false;
      for (size_t k = spans.size(); k-- > 0;) {
        const auto& s = spans[k];
        if (s.is_match && !previous_match && have) {
          cur_b = s.begin;
        } else {
          if (have) emit(cur_b, cur_e);
          cur_b = s.begin;
          cur_e = s.end;
          have = true;
        }
        previous_match = s.is_match;
      }
      if (have) emit(cur_b, cur_e);
      std::reverse(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
      break;
    }
    case Behavior::kContiguous: {
      // Neighbouring spans of the same kind join.
      bool previous_match = false;
      uint32_t cur_b = 0, cur_e = 0;
      bool have = false;
      for (const auto& s : spans) {
        if (s.is_match == previous_match && have) {
          cur_e = s.end;
        } else {
          if (have) emit(cur_b, cur_e);
          cur_b = s.begin;
          cur_e = s.end;
          have = true;
        }
        previous_match = s.is_match;
      }
      if (have) emit(cur_b, cur_e);
      break;
    }
  }
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out,
                         PreTokenizeScratch& scratch) const {
  if (text.empty()) return;
  auto& cur = scratch.a;
  auto& next = scratch.b;
  cur.clear();
  cur.push_back(text);
  auto add_prefix_spaces = [&] {
    size_t total = 0;
    for (std::string_view w : cur) total += w.size() + 1;
    scratch.arena.clear();
    scratch.arena.reserve(total);  // no reallocation below: the views stay valid
    for (std::string_view& w : cur) {
      if (w.front() == ' ') continue;
      const size_t at = scratch.arena.size();
      scratch.arena.push_back(' ');
      scratch.arena.append(w);
      w = std::string_view(scratch.arena).substr(at, w.size() + 1);
    }
  };
  for (size_t k = 0; k < steps_.size(); ++k) {
    if (add_prefix_space_ && k == n_splits_before_prefix_) add_prefix_spaces();
    next.clear();
    for (std::string_view piece : cur) split_one(steps_[k], piece, next, scratch);
    std::swap(cur, next);
  }
  if (add_prefix_space_ && n_splits_before_prefix_ == steps_.size()) add_prefix_spaces();
  out.insert(out.end(), cur.begin(), cur.end());
}

}  // namespace grpo
