// Checkers by name. Built-in checkers register themselves through their module's
// register_*_checkers(registry) function; plug-ins (shared libraries) export
//   extern "C" int grpo_register_reward_checkers(grpo::rewards::CheckerRegistry* registry);
// and are loaded by rewards/plugin.h. A factory reads its options from a strict ConfigNode
// (unknown option keys are errors, with a "did you mean" hint).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "rewards/checker.h"

namespace grpo::rewards {

using CheckerFactory = std::function<std::unique_ptr<RewardChecker>(ConfigNode& options)>;

class CheckerRegistry {
 public:
  // Throws grpo::Error if `name` is already registered or empty.
  void add(const std::string& name, const std::string& description, CheckerFactory factory);
  bool has(const std::string& name) const;
  std::vector<std::string> names() const;
  std::string description(const std::string& name) const;
  // Builds a checker; an unknown name is an error listing the known ones (with a hint), and
  // options are checked strictly after the factory ran.
  std::unique_ptr<RewardChecker> create(const std::string& name, ConfigNode& options) const;

 private:
  struct Entry {
    std::string description;
    CheckerFactory factory;
  };
  std::map<std::string, Entry> entries_;
};

}  // namespace grpo::rewards

// The symbol a plug-in library exports; returns 0 on success.
extern "C" {
typedef int (*grpo_register_reward_checkers_fn)(grpo::rewards::CheckerRegistry* registry);
}
