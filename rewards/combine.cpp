#include "rewards/combine.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace grpo::rewards {

// ---- CombinedChecker -------------------------------------------------------------------------

CombinedChecker::CombinedChecker(std::string name, std::vector<WeightedChecker> parts)
    : name_(std::move(name)), parts_(std::move(parts)) {
  GRPO_CHECK(!parts_.empty(), "reward task \"" << name_ << "\" combines no checkers");
  for (size_t i = 0; i < parts_.size(); ++i) {
    GRPO_CHECK(parts_[i].checker != nullptr, "reward task \"" << name_ << "\": checker \"" << parts_[i].name << "\" is missing");
    GRPO_CHECK(std::isfinite(parts_[i].weight),
               "reward task \"" << name_ << "\": weight of \"" << parts_[i].name << "\" must be a finite number");
    if (std::fabs(parts_[i].weight) > std::fabs(parts_[primary_].weight)) primary_ = i;
  }
}

ScoreResult CombinedChecker::score(const ScoreRequest& request) {
  ScoreResult out;
  out.id = request.id;
  for (size_t i = 0; i < parts_.size(); ++i) {
    const WeightedChecker& part = parts_[i];
    ScoreResult r = part.checker->score(request);
    out.reward += part.weight * r.reward;
    out.components.push_back(RewardComponent{part.name, r.reward, part.weight, r.reason});
    for (CaseVerdict& c : r.cases) out.cases.push_back(std::move(c));
    if (i == primary_) {
      out.reason = std::move(r.reason);
      out.extracted = std::move(r.extracted);
    }
  }
  return out;
}

// ---- RewardSet -------------------------------------------------------------------------------

namespace {

std::string weights_text(const std::vector<WeightedChecker>& parts) {
  std::ostringstream os;
  for (size_t i = 0; i < parts.size(); ++i) os << (i ? " + " : "") << parts[i].weight << " * " << parts[i].name;
  return os.str();
}

}  // namespace

RewardSet::RewardSet(const CheckerRegistry& registry, ConfigNode* config) : registry_(registry) {
  if (!config) return;

  ConfigNode& checkers = config->child("checkers");
  for (auto it = checkers.raw().begin(); it != checkers.raw().end(); ++it) {
    const std::string& name = it.key();
    std::string where = "reward config \"" + checkers.key_path(name) + "\"";
    GRPO_CHECK(!name.empty(), "reward config \"checkers\": a checker needs a non-empty name");
    ConfigNode& entry = checkers.child(name);
    std::string use = entry.get<std::string>("use", name);
    std::shared_ptr<RewardChecker> checker;
    try {
      checker = registry_.create(use, entry);
    } catch (const Error& e) {
      GRPO_THROW(where << ": " << e.message());
    }
    std::string description = registry_.description(use);
    if (use != name) description = "\"" + use + "\" configured as \"" + name + "\": " + description;
    named_[name] = Named{"checker", description, std::move(checker)};
  }

  ConfigNode& tasks = config->child("tasks");
  std::set<std::string> task_names;
  for (auto it = tasks.raw().begin(); it != tasks.raw().end(); ++it) task_names.insert(it.key());
  for (const std::string& task : task_names) {
    std::string where = "reward config \"" + tasks.key_path(task) + "\"";
    GRPO_CHECK(!task.empty(), "reward config \"tasks\": a task needs a non-empty name");
    GRPO_CHECK(!named_.count(task) && !registry_.has(task),
               where << ": a task cannot have the name of a checker (\"" << task << "\"); pick another name");
    ConfigNode& weights = tasks.child(task);
    GRPO_CHECK(!weights.raw().empty(), where << ": a task needs at least one checker with a weight, e.g. {\"math\": 1.0}");
    std::vector<WeightedChecker> parts;
    for (auto w = weights.raw().begin(); w != weights.raw().end(); ++w) {
      const std::string& part_name = w.key();
      double weight = weights.get<double>(part_name, 0.0);
      GRPO_CHECK(!task_names.count(part_name),
                 where << ": \"" << part_name << "\" is a task; tasks combine checkers, not other tasks");
      parts.push_back(WeightedChecker{part_name, weight, part(task, part_name)});
    }
    auto combined = std::make_shared<CombinedChecker>(task, std::move(parts));
    named_[task] = Named{"task", weights_text(combined->parts()), combined};
  }

  default_ = config->get<std::string>("default", "");
  if (!default_.empty()) {
    try {
      get(default_);
    } catch (const Error& e) {
      GRPO_THROW("reward config \"default\": " << e.message());
    }
  }
  config->finish();
}

std::shared_ptr<RewardChecker> RewardSet::build_default(const std::string& name) {
  ConfigNode options(nlohmann::json::object(), "default options of reward checker \"" + name + "\"");
  std::shared_ptr<RewardChecker> checker = registry_.create(name, options);
  named_[name] = Named{"checker", registry_.description(name), checker};
  return checker;
}

std::shared_ptr<RewardChecker> RewardSet::part(const std::string& task, const std::string& name) {
  auto it = named_.find(name);
  if (it != named_.end()) return it->second.checker;
  if (registry_.has(name)) return build_default(name);
  std::vector<std::string> known;
  for (const Entry& e : list())
    if (e.kind == "checker") known.push_back(e.name);
  std::string hint = closest_match(name, known);
  std::ostringstream list_text;
  for (size_t i = 0; i < known.size(); ++i) list_text << (i ? ", " : "") << known[i];
  GRPO_THROW("reward config \"tasks." << task << "\": unknown checker \"" << name << "\" (known: "
                                     << (known.empty() ? "none" : list_text.str()) << ")"
                                     << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
}

std::shared_ptr<RewardChecker> RewardSet::get(const std::string& requested) {
  const std::string& name = requested.empty() ? default_ : requested;
  GRPO_CHECK(!name.empty(), "no reward checker named and no \"default\" in the reward config");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = named_.find(name);
    if (it != named_.end() && it->second.checker) return it->second.checker;
    if (registry_.has(name)) return build_default(name);
  }
  std::vector<std::string> known;
  for (const Entry& e : list()) known.push_back(e.name);
  std::ostringstream list_text;
  for (size_t i = 0; i < known.size(); ++i) list_text << (i ? ", " : "") << known[i];
  std::string hint = closest_match(name, known);
  GRPO_THROW("unknown reward checker \"" << name << "\" (known: " << (known.empty() ? "none" : list_text.str()) << ")"
                                         << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
}

std::vector<RewardSet::Entry> RewardSet::list() const {
  std::map<std::string, Entry> all;
  for (const std::string& name : registry_.names()) all[name] = Entry{name, "checker", registry_.description(name)};
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [name, named] : named_) all[name] = Entry{name, named.kind, named.description};
  }
  std::vector<Entry> out;
  for (auto& [name, entry] : all) out.push_back(std::move(entry));
  return out;
}

}  // namespace grpo::rewards
