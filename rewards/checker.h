// The reward contract inside a process: a RewardChecker scores one completion against its
// reference and says why. Checkers are looked up by name in a CheckerRegistry; the reward
// service (rewards/service) exposes the same thing over gRPC (proto/reward.proto).
//
// Reward components: a checker may report several named components (e.g. "math" and
// "format"); `reward` is their configured weighted combination. A checker never throws for
// bad model output: unparsable answers, missing answers, failing or hostile code are all
// scored (usually 0) with a reason. It throws grpo::Error only for bad configuration or a
// malformed reference (the caller's mistake), and score() must be safe to call from many
// threads at once.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace grpo::rewards {

struct ScoreRequest {
  std::string prompt;      // the prompt text (may be empty; some checkers ignore it)
  std::string completion;  // the model's output
  std::string reference;   // math: the expected answer; code: a JSON test spec (see rewards/code)
  uint64_t id = 0;         // caller's id, echoed back
};

// Verdict of one test case of a code answer.
struct CaseVerdict {
  bool passed = false;
  std::string verdict;  // "pass", "wrong_answer", "runtime_error", "timeout", "memory", "output_limit", ...
  std::string detail;   // a short excerpt (stderr tail, expected vs got), capped in size
  double seconds = 0;
};

struct RewardComponent {
  std::string name;  // "math", "format", "code", or a user checker's name
  double value = 0;
  double weight = 1;
  std::string reason;
};

struct ScoreResult {
  double reward = 0;          // weighted sum of the components
  std::string reason;         // the main reason: "correct", "wrong", "no_answer", "unparsable", "timeout", ...
  std::string extracted;      // the answer the checker extracted (math), or the code block (code), capped
  std::vector<RewardComponent> components;
  std::vector<CaseVerdict> cases;  // code checker only
  uint64_t id = 0;
};

class RewardChecker {
 public:
  virtual ~RewardChecker() = default;
  virtual std::string name() const = 0;
  // Thread-safe. Never throws for bad model output (see above).
  virtual ScoreResult score(const ScoreRequest& request) = 0;
};

}  // namespace grpo::rewards
