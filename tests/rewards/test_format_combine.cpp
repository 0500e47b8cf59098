// Tasks (weighted combinations of checkers) and the reward config (rewards/combine.h).
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <string>

#include "core/error.h"
#include "rewards/combine.h"
#include "rewards/format/format_checker.h"

namespace grpo::rewards {
namespace {

// Reward `value` with reason `reason`; throws for the reference "malformed".
class FixedChecker final : public RewardChecker {
 public:
  FixedChecker(std::string name, double value, std::string reason) : name_(std::move(name)), value_(value), reason_(std::move(reason)) {}
  std::string name() const override { return name_; }
  ScoreResult score(const ScoreRequest& request) override {
    GRPO_CHECK(request.reference != "malformed", name_ << ": malformed reference");
    ScoreResult r;
    r.id = request.id;
    r.reward = value_;
    r.reason = reason_;
    r.extracted = name_ + " extracted";
    r.components.push_back({name_, value_, 1.0, reason_});
    if (name_ == "cases") r.cases.push_back(CaseVerdict{true, "pass", "", 0.1});
    return r;
  }

 private:
  std::string name_;
  double value_;
  std::string reason_;
};

std::atomic<int> g_built{0};

CheckerRegistry test_registry() {
  CheckerRegistry registry;
  register_format_checker(registry);
  auto fixed = [](std::string name, double value, std::string reason) {
    return [=](ConfigNode& options) {
      ++g_built;
      double v = options.get<double>("value", value);
      return std::make_unique<FixedChecker>(name, v, reason);
    };
  };
  registry.add("right", "always 1", fixed("right", 1.0, "correct"));
  registry.add("half", "always 0.5", fixed("half", 0.5, "partial"));
  registry.add("wrong", "always 0", fixed("wrong", 0.0, "wrong"));
  registry.add("cases", "1 with a case verdict", fixed("cases", 1.0, "correct"));
  return registry;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

ScoreRequest request(const std::string& completion, const std::string& reference = "") {
  ScoreRequest r;
  r.completion = completion;
  r.reference = reference;
  r.id = 11;
  return r;
}

TEST(CombinedChecker, WeightedSumAndComponents) {
  auto right = std::make_shared<FixedChecker>("right", 1.0, "correct");
  auto half = std::make_shared<FixedChecker>("half", 0.5, "partial");
  auto wrong = std::make_shared<FixedChecker>("wrong", 0.0, "wrong");
  CombinedChecker task("t", {{"half", 0.2, half}, {"right", 1.0, right}, {"wrong", -0.5, wrong}});
  ScoreResult r = task.score(request("x"));
  EXPECT_DOUBLE_EQ(r.reward, 0.2 * 0.5 + 1.0 * 1.0 - 0.5 * 0.0);
  EXPECT_EQ(r.id, 11u);
  EXPECT_EQ(r.reason, "correct");  // from the part with the largest |weight|
  EXPECT_EQ(r.extracted, "right extracted");
  ASSERT_EQ(r.components.size(), 3u);
  EXPECT_EQ(r.components[0].name, "half");
  EXPECT_DOUBLE_EQ(r.components[0].value, 0.5);
  EXPECT_DOUBLE_EQ(r.components[0].weight, 0.2);
  EXPECT_EQ(r.components[0].reason, "partial");
  EXPECT_EQ(r.components[2].name, "wrong");
  EXPECT_DOUBLE_EQ(r.components[2].weight, -0.5);

  EXPECT_THROW(CombinedChecker("empty", {}), Error);
  EXPECT_THROW(CombinedChecker("nan", {{"right", std::nan(""), right}}), Error);
}

TEST(RewardSet, MathPlusFormatStyleTask) {
  CheckerRegistry registry = test_registry();
  ConfigNode config = ConfigNode::from_string(R"({
    "tasks": {"r1": {"right": 1.0, "format": 0.1}},
    "default": "r1"
  })", "rewards.json");
  RewardSet set(registry, &config);
  auto task = set.get("r1");
  ScoreResult good = task->score(request("<think>hm</think>42"));
  EXPECT_DOUBLE_EQ(good.reward, 1.1);
  ASSERT_EQ(good.components.size(), 2u);
  EXPECT_EQ(good.components[0].name, "format");
  EXPECT_EQ(good.components[0].reason, "ok");
  EXPECT_DOUBLE_EQ(good.components[0].weight, 0.1);
  EXPECT_EQ(good.components[1].name, "right");
  ScoreResult unformatted = task->score(request("42"));
  EXPECT_DOUBLE_EQ(unformatted.reward, 1.0);
  EXPECT_EQ(unformatted.components[0].reason, "missing_think");
  EXPECT_EQ(set.get("")->name(), "r1");  // the default
  EXPECT_EQ(set.default_checker(), "r1");
}

TEST(RewardSet, ConfiguredInstancesAndDefaults) {
  CheckerRegistry registry = test_registry();
  ConfigNode config = ConfigNode::from_string(R"({
    "checkers": {
      "strict_format": {"use": "format", "answer_tag": true},
      "half": {"value": 0.25}
    },
    "tasks": {"mix": {"strict_format": 0.5, "half": 2}}
  })", "rewards.json");
  RewardSet set(registry, &config);
  EXPECT_EQ(set.get("strict_format")->score(request("<think>a</think>42")).reason, "missing_answer_tag");
  EXPECT_EQ(set.get("format")->score(request("<think>a</think>42")).reason, "ok");  // unconfigured: defaults
  EXPECT_DOUBLE_EQ(set.get("half")->score(request("x")).reward, 0.25);             // configured value
  ScoreResult mix = set.get("mix")->score(request("<think>a</think><answer>1</answer>"));
  EXPECT_DOUBLE_EQ(mix.reward, 0.5 * 1 + 2 * 0.25);
  EXPECT_EQ(mix.reason, "partial");  // "half" has the largest weight

  std::vector<RewardSet::Entry> list = set.list();
  std::map<std::string, std::string> kinds;
  for (const auto& e : list) kinds[e.name] = e.kind;
  EXPECT_EQ(kinds["mix"], "task");
  EXPECT_EQ(kinds["strict_format"], "checker");
  EXPECT_EQ(kinds["right"], "checker");  // registered, not configured: still listed
  EXPECT_EQ(kinds.size(), 7u);           // format, right, half, wrong, cases, strict_format, mix
}

TEST(RewardSet, UnconfiguredCheckersAreBuiltOnceOnFirstUse) {
  CheckerRegistry registry = test_registry();
  RewardSet set(registry, nullptr);
  int before = g_built.load();
  auto a = set.get("wrong");
  auto b = set.get("wrong");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(g_built.load(), before + 1);
}

TEST(RewardSet, PartsThatThrowFailTheTask) {
  CheckerRegistry registry = test_registry();
  ConfigNode config = ConfigNode::from_string(R"({"tasks": {"t": {"right": 1, "cases": 1}}})", "rewards.json");
  RewardSet set(registry, &config);
  EXPECT_THROW(set.get("t")->score(request("x", "malformed")), Error);
  ScoreResult r = set.get("t")->score(request("x"));
  ASSERT_EQ(r.cases.size(), 1u);  // case verdicts of the parts are kept
  EXPECT_EQ(r.cases[0].verdict, "pass");
}

TEST(RewardSet, ConfigErrorsNameTheKeyAndHint) {
  CheckerRegistry registry = test_registry();
  auto build = [&](const char* json) {
    return error_of([&] {
      ConfigNode config = ConfigNode::from_string(json, "rewards.json");
      RewardSet set(registry, &config);
    });
  };
  std::string e = build(R"({"tasks": {"t": {"rigth": 1.0}}})");
  EXPECT_NE(e.find("tasks.t"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown checker \"rigth\""), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"right\""), std::string::npos) << e;

  e = build(R"({"checkers": {"x": {"use": "fromat"}}})");
  EXPECT_NE(e.find("checkers.x"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"format\""), std::string::npos) << e;

  e = build(R"({"checkers": {"format": {"answer_tag": true, "colour": 1}}})");
  EXPECT_NE(e.find("unknown key \"checkers.format.colour\""), std::string::npos) << e;

  e = build(R"({"tasks": {"right": {"format": 1}}})");
  EXPECT_NE(e.find("cannot have the name of a checker"), std::string::npos) << e;

  e = build(R"({"tasks": {"a": {"right": 1}, "b": {"a": 1}}})");
  EXPECT_NE(e.find("is a task"), std::string::npos) << e;

  e = build(R"({"tasks": {"t": {}}})");
  EXPECT_NE(e.find("at least one checker"), std::string::npos) << e;

  e = build(R"({"tasks": {"t": {"right": "heavy"}}})");
  EXPECT_NE(e.find("must be a number"), std::string::npos) << e;

  e = build(R"({"task": {"t": {"right": 1}}})");
  EXPECT_NE(e.find("unknown key \"task\""), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"tasks\""), std::string::npos) << e;

  e = build(R"({"default": "nope"})");
  EXPECT_NE(e.find("\"default\""), std::string::npos) << e;
  EXPECT_NE(e.find("unknown reward checker \"nope\""), std::string::npos) << e;
}

TEST(RewardSet, UnknownNamesAtScoringTime) {
  CheckerRegistry registry = test_registry();
  RewardSet set(registry, nullptr);
  std::string e = error_of([&] { set.get("formt"); });
  EXPECT_NE(e.find("unknown reward checker \"formt\""), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean \"format\""), std::string::npos) << e;
  e = error_of([&] { set.get(""); });
  EXPECT_NE(e.find("no \"default\""), std::string::npos) << e;
}

}  // namespace
}  // namespace grpo::rewards
