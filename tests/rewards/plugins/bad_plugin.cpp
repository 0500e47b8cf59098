// Misbehaving reward plug-ins for tests/rewards/test_plugin.cpp, one library per
// GRPO_BAD_PLUGIN value:
//   1 no_symbol          exports no grpo_register_reward_checkers
//   2 returns_error      returns 3
//   3 throws             throws a std::runtime_error
//   4 registers_nothing  returns 0 without registering
//   5 duplicate          registers "format", which the host already has
#include <memory>
#include <stdexcept>

#include "rewards/checker.h"
#include "rewards/registry.h"

namespace {

class Constant final : public grpo::rewards::RewardChecker {
 public:
  std::string name() const override { return "format"; }
  grpo::rewards::ScoreResult score(const grpo::rewards::ScoreRequest& request) override {
    grpo::rewards::ScoreResult r;
    r.id = request.id;
    r.reward = 0.5;
    r.reason = "constant";
    return r;
  }
};

}  // namespace

#if GRPO_BAD_PLUGIN == 1
extern "C" int grpo_register_reward_checkers_misspelled(grpo::rewards::CheckerRegistry*) { return 0; }
#else
extern "C" int grpo_register_reward_checkers(grpo::rewards::CheckerRegistry* registry) {
#if GRPO_BAD_PLUGIN == 2
  (void)registry;
  return 3;
#elif GRPO_BAD_PLUGIN == 3
  (void)registry;
  throw std::runtime_error("plug-in exploded");
#elif GRPO_BAD_PLUGIN == 4
  (void)registry;
  return 0;
#else
  registry->add("format", "a second format checker", [](grpo::ConfigNode&) { return std::make_unique<Constant>(); });
  return 0;
#endif
}
#endif
