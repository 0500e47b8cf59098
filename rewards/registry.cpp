#include "rewards/registry.h"

#include <sstream>

#include "core/error.h"

namespace grpo::rewards {

void CheckerRegistry::add(const std::string& name, const std::string& description, CheckerFactory factory) {
  GRPO_CHECK(!name.empty(), "reward checker registry: a checker needs a name");
  GRPO_CHECK(factory != nullptr, "reward checker registry: checker \"" << name << "\" has no factory");
  GRPO_CHECK(!entries_.count(name), "reward checker registry: checker \"" << name << "\" is already registered");
  entries_.emplace(name, Entry{description, std::move(factory)});
}

bool CheckerRegistry::has(const std::string& name) const { return entries_.count(name) > 0; }

std::vector<std::string> CheckerRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : entries_) out.push_back(name);
  return out;
}

std::string CheckerRegistry::description(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? std::string() : it->second.description;
}

std::unique_ptr<RewardChecker> CheckerRegistry::create(const std::string& name, ConfigNode& options) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::vector<std::string> known = names();
    std::ostringstream list;
    for (size_t i = 0; i < known.size(); ++i) list << (i ? ", " : "") << known[i];
    std::string hint = closest_match(name, known);
    GRPO_THROW("unknown reward checker \"" << name << "\" (known: " << (known.empty() ? "none" : list.str()) << ")"
                                           << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  std::unique_ptr<RewardChecker> checker = it->second.factory(options);
  GRPO_CHECK(checker != nullptr, "reward checker \"" << name << "\": factory returned nothing");
  options.finish();
  return checker;
}

}  // namespace grpo::rewards
