// The `pre_tokenizer` of a tokenizer.json: Split (a PCRE2 JIT regex or a literal string),
// ByteLevel and Sequences of them. Splits text into the words that BPE merges one by one.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace grpo {

// A compiled PCRE2 pattern (UTF + UCP, JIT when the platform has it). Immutable; matching
// uses per-thread match data, so one Regex serves many threads.
class Regex {
 public:
  // `literal`: match `pattern` as a plain string. `field` names the pattern in errors.
  Regex(const std::string& pattern, bool literal, const std::string& field);
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;
  ~Regex();

  struct Match {
    uint32_t begin, end;
  };
  // Every non-overlapping match in `s` (valid UTF-8), left to right, appended to `out`. An
  // empty match is recorded and the search goes on one code point further.
  void find_all(std::string_view s, std::vector<Match>& out) const;
  const std::string& pattern() const { return pattern_; }
  bool literal() const { return literal_; }
  bool jit() const { return jit_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool literal_ = false;
  bool jit_ = false;
};

// Reused buffers of one encode call (see PreTokenizer::split).
struct PreTokenizeScratch {
  std::vector<std::string_view> a, b;
  std::vector<Regex::Match> matches;
  struct Span {
    uint32_t begin, end;
    bool is_match;
  };
  std::vector<Span> spans;
  std::string arena;  // words with a prefix space added (ByteLevel add_prefix_space)
};

class PreTokenizer {
 public:
  enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

  PreTokenizer() = default;
  // `j` is the "pre_tokenizer" value; `field` names it in errors.
  static PreTokenizer from_json(const nlohmann::json& j, const std::string& field);

  // Whether a ByteLevel step maps bytes to the BPE alphabet (BPE then merges byte symbols).
  bool byte_level() const { return byte_level_; }
  // Splits `text` into words, appended to `out` (views of `text` or of scratch.arena, valid
  // until the next call with the same scratch). Empty words are dropped.
  void split(std::string_view text, std::vector<std::string_view>& out, PreTokenizeScratch& scratch) const;
  // Each Split's pattern as a PCRE2 regex (literal strings quoted with \Q...\E).
  std::vector<std::string> split_patterns() const;

 private:
  struct SplitStep {
    std::shared_ptr<const Regex> regex;
    Behavior behavior;
    bool invert;
  };
  void add(const nlohmann::json& j, const std::string& field);
  void split_one(const SplitStep& step, std::string_view piece, std::vector<std::string_view>& out,
                 PreTokenizeScratch& scratch) const;

  std::vector<SplitStep> steps_;  // Split steps in order (ByteLevel's own regex included last)
  bool byte_level_ = false;
  bool add_prefix_space_ = false;
  size_t n_splits_before_prefix_ = 0;  // steps_ before ByteLevel's prefix space is added
};

}  // namespace grpo
