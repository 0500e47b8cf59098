// Strict JSON configs: typed defaults, required keys, wrong types, unknown keys with a
// "did you mean" hint, nested objects and choices.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "core/config.h"
#include "core/error.h"

namespace grpo {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

TEST(Config, TypedDefaultsAndValues) {
  ConfigNode c = ConfigNode::from_string(R"({"steps": 12, "lr": 0.5, "name": "x", "flag": true, "ids": [1, 2]})", "run.json");
  EXPECT_EQ(c.get<int64_t>("steps", 3), 12);
  EXPECT_EQ(c.get<double>("lr", 1.0), 0.5);
  EXPECT_EQ(c.get<float>("lr", 1.0f), 0.5f);
  EXPECT_EQ(c.get<std::string>("name", "y"), "x");
  EXPECT_EQ(c.get<bool>("flag", false), true);
  EXPECT_EQ(c.get<std::vector<int64_t>>("ids", {}), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(c.get<int>("absent", 7), 7);
  EXPECT_NO_THROW(c.finish());
}

TEST(Config, UnknownKeyNamesPathAndSuggests) {
  ConfigNode c = ConfigNode::from_string(R"({"optimizer": {"lerning_rate": 1e-3}, "steps": 1})", "run.json");
  c.get<int64_t>("steps", 1);
  ConfigNode& opt = c.child("optimizer");
  opt.get<double>("learning_rate", 1e-6);
  opt.get<double>("weight_decay", 0.0);
  std::string msg = error_of([&] { c.finish(); });
  EXPECT_NE(msg.find("run.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key \"optimizer.lerning_rate\""), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean \"learning_rate\""), std::string::npos) << msg;
}

TEST(Config, UnknownKeyWithoutCloseMatchHasNoHint) {
  ConfigNode c = ConfigNode::from_string(R"({"zzzzzzzz": 1})", "run.json");
  c.get<int64_t>("steps", 1);
  std::string msg = error_of([&] { c.finish(); });
  EXPECT_NE(msg.find("unknown key \"zzzzzzzz\""), std::string::npos) << msg;
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesKeyAndExpectation) {
  ConfigNode c = ConfigNode::from_string(R"({"trainer": {"steps": "ten"}, "ratio": 0.5})", "run.json");
  std::string msg = error_of([&] { c.child("trainer").get<int64_t>("steps", 1); });
  EXPECT_NE(msg.find("\"trainer.steps\" must be an integer, got string \"ten\""), std::string::npos) << msg;
  msg = error_of([&] { c.get<int64_t>("ratio", 1); });
  EXPECT_NE(msg.find("\"ratio\" must be an integer"), std::string::npos) << msg;
  msg = error_of([&] { c.child("ratio"); });
  EXPECT_NE(msg.find("\"ratio\" must be an object"), std::string::npos) << msg;
}

TEST(Config, RequiredAndChoices) {
  ConfigNode c = ConfigNode::from_string(R"({"schedule": "cosin"})", "run.json");
  std::string msg = error_of([&] { c.require<std::string>("model"); });
  EXPECT_NE(msg.find("missing required key \"model\""), std::string::npos) << msg;
  msg = error_of([&] { c.get_choice("schedule", "constant", {"constant", "cosine"}); });
  EXPECT_NE(msg.find("expected one of constant, cosine"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean \"cosine\""), std::string::npos) << msg;
}

TEST(Config, FilesThatAreMissingOrNotJson) {
  std::string msg = error_of([] { ConfigNode::from_file("/nonexistent/run.json"); });
  EXPECT_NE(msg.find("/nonexistent/run.json: cannot open"), std::string::npos) << msg;
  std::string path = ::testing::TempDir() + "grpo_bad_config.json";
  {
    std::ofstream f(path);
    f << "{\"steps\": 1,,}";
  }
  msg = error_of([&] { ConfigNode::from_file(path); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  {
    std::ofstream f(path);
    f << "[1, 2]";
  }
  msg = error_of([&] { ConfigNode::from_file(path); });
  EXPECT_NE(msg.find("must be a JSON object"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(Config, FilesMayCarryComments) {
  std::string path = ::testing::TempDir() + "grpo_commented_config.json";
  {
    std::ofstream f(path);
    f << "// a run\n{\"steps\": 7, /* inline */ \"name\": \"a // not a comment\"}\n";
  }
  ConfigNode c = ConfigNode::from_file(path);
  EXPECT_EQ(c.get<int64_t>("steps", 0), 7);
  EXPECT_EQ(c.get<std::string>("name", ""), "a // not a comment");
  c.finish();
  {
    std::ofstream f(path);
    f << "{\"steps\": 7 /* never closed }";
  }
  const std::string msg = error_of([&] { ConfigNode::from_file(path); });
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(Config, EditDistance) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(closest_match("lerning_rate", {"learning_rate", "steps"}), "learning_rate");
  EXPECT_EQ(closest_match("qqqq", {"learning_rate", "steps"}), "");
}

}  // namespace
}  // namespace grpo
