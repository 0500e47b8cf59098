// Tasks (weighted combinations of checkers) and the set of named checkers a process scores
// with, built from the registry and a reward config.
//
// Reward config (strict JSON; every part optional):
//   {
//     "checkers": {                                  // named checker instances
//       "math":   {"...": "options of the math checker"},        // configures the built-in "math"
//       "strict": {"use": "format", "answer_tag": true},         // a second "format", renamed
//       "judge":  {"use": "remote", "address": "127.0.0.1:50051", "checker": "keyword"}
//     },
//     "tasks": {                                     // weighted sums of named checkers
//       "r1_math": {"math": 1.0, "format": 0.1}
//     },
//     "default": "r1_math"                           // used when an item names no checker
//   }
// An instance's "use" names the registered checker it configures (default: its own name);
// the other keys are that checker's options, checked strictly. A registered checker that the
// config does not mention is still available under its own name, with default options.
// Task weights are any finite numbers (negative ones penalise); unknown checker names, task
// names that shadow a checker, empty tasks and tasks inside tasks are errors.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rewards/checker.h"
#include "rewards/registry.h"

namespace grpo::rewards {

struct WeightedChecker {
  std::string name;  // component name reported in results
  double weight = 1;
  std::shared_ptr<RewardChecker> checker;
};

// reward = sum(weight_i * reward_i). Reports one component per part (value = the part's
// reward, reason = the part's reason); `reason` and `extracted` come from the part with the
// largest |weight| (the first such in name order), `cases` from all parts in order.
// A part that throws (malformed reference, failed remote) makes the whole score throw.
class CombinedChecker final : public RewardChecker {
 public:
  CombinedChecker(std::string name, std::vector<WeightedChecker> parts);
  std::string name() const override { return name_; }
  ScoreResult score(const ScoreRequest& request) override;
  const std::vector<WeightedChecker>& parts() const { return parts_; }

 private:
  std::string name_;
  std::vector<WeightedChecker> parts_;
  size_t primary_ = 0;
};

class RewardSet {
 public:
  struct Entry {
    std::string name;
    std::string kind;  // "checker" or "task"
    std::string description;
  };

  // Builds every configured checker and task now (so config errors surface at start-up);
  // `config` may be null (no config). The registry must outlive the set.
  RewardSet(const CheckerRegistry& registry, ConfigNode* config);

  // The checker or task called `name` ("" = the configured default). Unconfigured registered
  // checkers are built on first use. Thread-safe. Unknown names throw grpo::Error listing the
  // known ones, with a "did you mean" hint.
  std::shared_ptr<RewardChecker> get(const std::string& name);

  const std::string& default_checker() const { return default_; }
  // Every name get() accepts, sorted.
  std::vector<Entry> list() const;

 private:
  struct Named {
    std::string kind, description;
    std::shared_ptr<RewardChecker> checker;  // null until first use (unconfigured built-ins)
  };
  std::shared_ptr<RewardChecker> build_default(const std::string& name);
  std::shared_ptr<RewardChecker> part(const std::string& task, const std::string& name);

  const CheckerRegistry& registry_;
  mutable std::mutex mutex_;
  std::map<std::string, Named> named_;
  std::string default_;
};

}  // namespace grpo::rewards
