// An example reward plug-in: two checkers, "keyword" and "length_penalty", in a shared library
// that `grpo reward serve --plugin` / `grpo reward score --plugin` (or any program using
// rewards/plugin.h) loads at run time.
//
//   keyword         reference: the required keywords, one per line. reward = fraction found
//                   (options: "case_sensitive" false, "all_or_nothing" false).
//   length_penalty  reward 1 up to "target_chars" characters of completion (default 2000),
//                   falling linearly to 0 at "max_chars" (default 4000). Use it with a
//                   negative weight in a task, or as a positive "stay short" reward.
//
// Build (inside the grpo.cpp tree this is done by CMake, examples/custom_reward/CMakeLists.txt):
//   g++ -std=c++20 -O2 -shared -fPIC -I /path/to/grpo.cpp custom_reward.cpp -o libgrpo_custom_reward.so
// The library leaves grpo's symbols (CheckerRegistry::add, ConfigNode, grpo::Error)
// undefined; the `grpo` executable provides them when it loads the plug-in.
#include <algorithm>
#include <cctype>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "rewards/checker.h"
#include "rewards/registry.h"

namespace {

using grpo::rewards::RewardChecker;
using grpo::rewards::ScoreRequest;
using grpo::rewards::ScoreResult;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

class KeywordChecker final : public RewardChecker {
 public:
  KeywordChecker(bool case_sensitive, bool all_or_nothing) : case_sensitive_(case_sensitive), all_or_nothing_(all_or_nothing) {}
  std::string name() const override { return "keyword"; }

  ScoreResult score(const ScoreRequest& request) override {
    std::vector<std::string> keywords;
    std::istringstream lines(request.reference);
    for (std::string line; std::getline(lines, line);) {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      size_t start = line.find_first_not_of(" \t");
      if (start != std::string::npos) keywords.push_back(line.substr(start));
    }
    // A reference without keywords is the caller's mistake: say so instead of scoring.
    GRPO_CHECK(!keywords.empty(), "keyword checker: the reference lists no keywords (one per line)");
    std::string text = case_sensitive_ ? request.completion : lower(request.completion);
    std::string missing;
    size_t found = 0;
    for (const std::string& k : keywords) {
      if (text.find(case_sensitive_ ? k : lower(k)) != std::string::npos) {
        ++found;
      } else {
        missing += (missing.empty() ? "" : ", ") + k;
      }
    }
    ScoreResult r;
    r.id = request.id;
    double fraction = static_cast<double>(found) / static_cast<double>(keywords.size());
    r.reward = all_or_nothing_ ? (found == keywords.size() ? 1.0 : 0.0) : fraction;
    r.reason = found == keywords.size() ? "all_found" : found == 0 ? "none_found" : "some_missing";
    r.extracted = missing.empty() ? "" : "missing: " + missing;
    r.components.push_back({"keyword", r.reward, 1.0, r.reason});
    return r;
  }

 private:
  bool case_sensitive_, all_or_nothing_;
};

class LengthPenaltyChecker final : public RewardChecker {
 public:
  LengthPenaltyChecker(int64_t target, int64_t max) : target_(target), max_(max) {}
  std::string name() const override { return "length_penalty"; }

  ScoreResult score(const ScoreRequest& request) override {
    int64_t chars = 0;  // UTF-8 characters: count bytes that do not continue a sequence
    for (unsigned char c : request.completion)
      if ((c & 0xC0) != 0x80) ++chars;
    ScoreResult r;
    r.id = request.id;
    if (chars <= target_) {
      r.reward = 1.0;
      r.reason = "within_target";
    } else if (chars >= max_) {
      r.reward = 0.0;
      r.reason = "over_max";
    } else {
      r.reward = 1.0 - static_cast<double>(chars - target_) / static_cast<double>(max_ - target_);
      r.reason = "over_target";
    }
    r.extracted = std::to_string(chars) + " characters";
    r.components.push_back({"length_penalty", r.reward, 1.0, r.reason});
    return r;
  }

 private:
  int64_t target_, max_;
};

}  // namespace

extern "C" int grpo_register_reward_checkers(grpo::rewards::CheckerRegistry* registry) {
  try {
    registry->add("keyword", "fraction of the reference's keywords (one per line) found in the completion",
                  [](grpo::ConfigNode& options) {
                    bool case_sensitive = options.get<bool>("case_sensitive", false);
                    bool all_or_nothing = options.get<bool>("all_or_nothing", false);
                    return std::make_unique<KeywordChecker>(case_sensitive, all_or_nothing);
                  });
    registry->add("length_penalty", "1 up to target_chars characters, falling linearly to 0 at max_chars",
                  [](grpo::ConfigNode& options) {
                    int64_t target = options.get<int64_t>("target_chars", 2000);
                    int64_t max = options.get<int64_t>("max_chars", 4000);
                    GRPO_CHECK(target >= 0 && max > target, "length_penalty: need 0 <= target_chars < max_chars, got "
                                                                << target << " and " << max);
                    return std::make_unique<LengthPenaltyChecker>(target, max);
                  });
  } catch (const grpo::Error&) {
    return 1;  // e.g. a name already taken; the loader reports a non-zero return
  }
  return 0;
}
