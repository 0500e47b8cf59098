// Reward plug-ins: the example library (examples/custom_reward) loads and scores; broken
// libraries give clear errors (rewards/plugin.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/error.h"
#include "rewards/combine.h"
#include "rewards/format/format_checker.h"
#include "rewards/plugin.h"

#ifndef GRPO_EXAMPLE_PLUGIN
#error "GRPO_EXAMPLE_PLUGIN (path of libgrpo_custom_reward.so) must be defined by the build"
#endif
#ifndef GRPO_BAD_PLUGIN_DIR
#error "GRPO_BAD_PLUGIN_DIR must be defined by the build"
#endif

namespace grpo::rewards {
namespace {

std::string bad_plugin(const char* name) { return std::string(GRPO_BAD_PLUGIN_DIR) + "/libgrpo_bad_plugin_" + name + ".so"; }

std::string load_error(const std::string& path, CheckerRegistry& registry) {
  try {
    load_reward_plugin(path, registry);
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

ScoreRequest request(const std::string& completion, const std::string& reference = "") {
  ScoreRequest r;
  r.completion = completion;
  r.reference = reference;
  r.id = 5;
  return r;
}

TEST(Plugin, ExampleLoadsAndScores) {
  CheckerRegistry registry;
  register_format_checker(registry);
  std::vector<std::string> names = load_reward_plugin(GRPO_EXAMPLE_PLUGIN, registry);
  ASSERT_EQ(names, (std::vector<std::string>{"keyword", "length_penalty"}));
  EXPECT_TRUE(registry.has("keyword"));
  EXPECT_FALSE(registry.description("keyword").empty());

  ConfigNode config = ConfigNode::from_string(R"({
    "checkers": {"length_penalty": {"target_chars": 10, "max_chars": 20}},
    "tasks": {"short_and_formatted": {"format": 1.0, "length_penalty": 0.5}}
  })", "rewards.json");
  RewardSet set(registry, &config);

  ScoreResult k = set.get("keyword")->score(request("The Mitochondria is the powerhouse", "mitochondria\npowerhouse\nribosome\n"));
  EXPECT_DOUBLE_EQ(k.reward, 2.0 / 3.0);
  EXPECT_EQ(k.reason, "some_missing");
  EXPECT_EQ(k.extracted, "missing: ribosome");
  EXPECT_EQ(k.id, 5u);

  ScoreResult l = set.get("length_penalty")->score(request("123456789012345"));  // 15 chars: halfway
  EXPECT_DOUBLE_EQ(l.reward, 0.5);
  EXPECT_EQ(l.reason, "over_target");

  ScoreResult t = set.get("short_and_formatted")->score(request("<think></think>4"));  // 16 chars
  EXPECT_DOUBLE_EQ(t.reward, 1.0 + 0.5 * 0.4);
  ASSERT_EQ(t.components.size(), 2u);
  EXPECT_EQ(t.components[1].name, "length_penalty");
  EXPECT_DOUBLE_EQ(t.components[1].value, 0.4);

  // A checker's own errors (bad reference, bad options) come through as grpo::Error.
  EXPECT_THROW(set.get("keyword")->score(request("x", "\n \n")), Error);
  ConfigNode bad = ConfigNode::from_string(R"({"target_chars": 50, "max_chars": 10})", "test");
  EXPECT_THROW(registry.create("length_penalty", bad), Error);
}

TEST(Plugin, LoadingTwiceIsADuplicate) {
  CheckerRegistry registry;
  load_reward_plugin(GRPO_EXAMPLE_PLUGIN, registry);
  std::string e = load_error(GRPO_EXAMPLE_PLUGIN, registry);
  EXPECT_NE(e.find("checker \"keyword\" is already registered"), std::string::npos) << e;
}

TEST(Plugin, Errors) {
  CheckerRegistry registry;
  register_format_checker(registry);

  std::string e = load_error("/nonexistent/libnothing.so", registry);
  EXPECT_NE(e.find("/nonexistent/libnothing.so: no such file"), std::string::npos) << e;

  std::string not_a_library = testing::TempDir() + "/grpo_not_a_library.so";
  std::ofstream(not_a_library) << "this is text, not ELF\n";
  e = load_error(not_a_library, registry);
  EXPECT_NE(e.find("cannot load"), std::string::npos) << e;
  std::remove(not_a_library.c_str());

  e = load_error(bad_plugin("no_symbol"), registry);
  EXPECT_NE(e.find("does not export grpo_register_reward_checkers"), std::string::npos) << e;

  e = load_error(bad_plugin("returns_error"), registry);
  EXPECT_NE(e.find("returned 3"), std::string::npos) << e;

  e = load_error(bad_plugin("throws"), registry);
  EXPECT_NE(e.find("failed: plug-in exploded"), std::string::npos) << e;

  e = load_error(bad_plugin("registers_nothing"), registry);
  EXPECT_NE(e.find("registered no checker"), std::string::npos) << e;

  e = load_error(bad_plugin("duplicate"), registry);
  EXPECT_NE(e.find("checker \"format\" is already registered"), std::string::npos) << e;
  EXPECT_NE(e.find("libgrpo_bad_plugin_duplicate.so"), std::string::npos) << e;

  // Nothing of the failed plug-ins was added.
  EXPECT_EQ(registry.names(), std::vector<std::string>{"format"});
}

}  // namespace
}  // namespace grpo::rewards
