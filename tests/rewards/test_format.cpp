// The "format" checker: R1's <think>...</think> then an answer, the <answer> tag variant and
// configured PCRE2 patterns.
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.h"
#include "rewards/format/format_checker.h"

namespace grpo::rewards {
namespace {

ScoreResult score(RewardChecker& checker, const std::string& completion, const std::string& prompt = "") {
  ScoreRequest request;
  request.completion = completion;
  request.prompt = prompt;
  request.id = 7;
  return checker.score(request);
}

struct Case {
  const char* completion;
  double reward;
  const char* reason;
  const char* extracted;
};

TEST(FormatChecker, DefaultRule) {
  auto checker = make_format_checker(FormatOptions{});
  const Case cases[] = {
      {"<think>2+2 is 4</think>The answer is 4.", 1, "ok", "The answer is 4."},
      {"  \n<think>\nreasoning\n</think>\n\n\\boxed{4}\n", 1, "ok", "\\boxed{4}"},
      {"<think></think>4", 1, "ok", "4"},
      {"The answer is 4.", 0, "missing_think", ""},
      {"Sure! <think>x</think>4", 0, "missing_think", ""},
      {"<think>still thinking", 0, "unclosed_think", ""},
      {"<think>a<think>b</think>4", 0, "nested_think", ""},
      {"<think>a</think>4<think>b</think>5", 0, "multiple_think", ""},
      {"<think>a</think>4</think>", 0, "multiple_think", ""},
      {"<think>a</think>", 0, "empty_answer", ""},
      {"<think>a</think> \n\t ", 0, "empty_answer", ""},
      {"", 0, "missing_think", ""},
      {"<THINK>a</THINK>4", 0, "missing_think", ""},
  };
  for (const Case& c : cases) {
    ScoreResult r = score(*checker, c.completion);
    EXPECT_EQ(r.reward, c.reward) << c.completion;
    EXPECT_EQ(r.reason, c.reason) << c.completion;
    EXPECT_EQ(r.extracted, c.extracted) << c.completion;
    EXPECT_EQ(r.id, 7u);
    ASSERT_EQ(r.components.size(), 1u);
    EXPECT_EQ(r.components[0].name, "format");
    EXPECT_EQ(r.components[0].value, c.reward);
    EXPECT_EQ(r.components[0].weight, 1.0);
    EXPECT_EQ(r.components[0].reason, c.reason);
  }
}

TEST(FormatChecker, ThinkOpenedByThePrompt) {
  auto checker = make_format_checker(FormatOptions{});
  const std::string prompt = "<|User|>What is 2+2?<|Assistant|><think>\n";
  EXPECT_EQ(score(*checker, "2+2 is 4.\n</think>\n4", prompt).reason, "ok");
  EXPECT_EQ(score(*checker, "<think>2+2 is 4.</think>4", prompt).reason, "ok");
  EXPECT_EQ(score(*checker, "2+2 is 4 and no close", prompt).reason, "unclosed_think");
  EXPECT_EQ(score(*checker, "2+2 is 4.\n</think>\n4", "no tag here").reason, "missing_think");
}

TEST(FormatChecker, EmptyThinkingCanBeRefused) {
  FormatOptions options;
  options.allow_empty_think = false;
  auto checker = make_format_checker(options);
  EXPECT_EQ(score(*checker, "<think> \n </think>4").reason, "empty_think");
  EXPECT_EQ(score(*checker, "<think>hm</think>4").reason, "ok");
}

TEST(FormatChecker, AnswerTag) {
  FormatOptions options;
  options.answer_tag = true;
  auto checker = make_format_checker(options);
  const Case cases[] = {
      {"<think>a</think><answer>42</answer>", 1, "ok", "42"},
      {"<think>\na\n</think>\n<answer>\n x = 42 \n</answer>\n", 1, "ok", "x = 42"},
      {"<think>a</think>42", 0, "missing_answer_tag", ""},
      {"<think>a</think>so <answer>42</answer>", 0, "missing_answer_tag", ""},
      {"<think>a</think><answer>42", 0, "unclosed_answer", ""},
      {"<think>a</think><answer>4<answer>2</answer>", 0, "nested_answer", ""},
      {"<think>a</think><answer>42</answer> and more", 0, "text_after_answer", ""},
      {"<think>a</think><answer>42</answer><answer>43</answer>", 0, "text_after_answer", ""},
      {"<think>a</think><answer> \n </answer>", 0, "empty_answer", ""},
      {"<answer>42</answer>", 0, "missing_think", ""},
  };
  for (const Case& c : cases) {
    ScoreResult r = score(*checker, c.completion);
    EXPECT_EQ(r.reward, c.reward) << c.completion;
    EXPECT_EQ(r.reason, c.reason) << c.completion;
    EXPECT_EQ(r.extracted, c.extracted) << c.completion;
  }
}

TEST(FormatChecker, ExtractedAnswerIsCappedOnACharacterBoundary) {
  auto checker = make_format_checker(FormatOptions{});
  std::string answer = "x";
  for (int i = 0; i < 3000; ++i) answer += "\xC3\xA9";  // é, two bytes each
  ScoreResult r = score(*checker, "<think>a</think>" + answer);
  EXPECT_EQ(r.reason, "ok");
  EXPECT_LE(r.extracted.size(), 4096u);
  EXPECT_GT(r.extracted.size(), 4000u);
  EXPECT_EQ(r.extracted.size() % 2, 1u) << "cut inside a two-byte character";
}

TEST(FormatChecker, Pattern) {
  FormatOptions options;
  // open-r1's strict format reward.
  options.pattern = "^<think>\\n.*?\\n</think>\\n<answer>\\n(?<answer>.*?)\\n</answer>$";
  auto checker = make_format_checker(options);
  ScoreResult ok = score(*checker, "<think>\nhm\nyes\n</think>\n<answer>\n42\n</answer>");
  EXPECT_EQ(ok.reward, 1);
  EXPECT_EQ(ok.reason, "ok");
  EXPECT_EQ(ok.extracted, "42");
  EXPECT_EQ(score(*checker, "<think>hm</think><answer>42</answer>").reason, "no_match");
  // Full match: trailing text is not allowed.
  EXPECT_EQ(score(*checker, "<think>\nhm\n</think>\n<answer>\n42\n</answer>\nextra").reason, "no_match");

  options.pattern = "<answer>(?<answer>\\d+)</answer>";
  options.full_match = false;
  auto search = make_format_checker(options);
  ScoreResult found = score(*search, "blah <answer>17</answer> blah");
  EXPECT_EQ(found.reason, "ok");
  EXPECT_EQ(found.extracted, "17");
  options.full_match = true;
  EXPECT_EQ(score(*make_format_checker(options), "blah <answer>17</answer> blah").reason, "no_match");
}

TEST(FormatChecker, PatternSurvivesBadInput) {
  FormatOptions options;
  options.pattern = "<think>.*</think>.+";
  auto checker = make_format_checker(options);
  EXPECT_EQ(score(*checker, "<think>\xff\xfe</think>\x80 answer").reason, "ok");  // invalid UTF-8 is matched, not fatal
  EXPECT_EQ(score(*checker, std::string("<think>a\0b</think>c", 19)).reason, "ok");

  // Catastrophic backtracking is cut off by the match limit, in bounded time.
  options.pattern = "(a|aa)+$";
  auto slow = make_format_checker(options);
  auto start = std::chrono::steady_clock::now();
  ScoreResult r = score(*slow, std::string(5000, 'a') + "b");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.reward, 0);
  EXPECT_TRUE(r.reason == "pattern_limit" || r.reason == "no_match") << r.reason;
  EXPECT_LT(seconds, 10.0);
}

TEST(FormatChecker, BadOptions) {
  FormatOptions options;
  options.pattern = "(unclosed";
  try {
    make_format_checker(options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("does not compile at offset 9"), std::string::npos) << e.message();
  }
  options.pattern = "x";
  options.answer_tag = true;
  EXPECT_THROW(make_format_checker(options), Error);
  FormatOptions no_pattern;
  no_pattern.full_match = false;
  EXPECT_THROW(make_format_checker(no_pattern), Error);
}

TEST(FormatChecker, RegistryReadsOptionsStrictly) {
  CheckerRegistry registry;
  register_format_checker(registry);
  ASSERT_TRUE(registry.has("format"));
  ConfigNode options = ConfigNode::from_string(R"({"answer_tag": true})", "test");
  auto checker = registry.create("format", options);
  EXPECT_EQ(score(*checker, "<think>a</think>42").reason, "missing_answer_tag");

  ConfigNode typo = ConfigNode::from_string(R"({"answer_tags": true})", "test");
  try {
    registry.create("format", typo);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("did you mean \"answer_tag\""), std::string::npos) << e.message();
  }
  ConfigNode wrong_type = ConfigNode::from_string(R"({"pattern": 3})", "test");
  EXPECT_THROW(registry.create("format", wrong_type), Error);
}

}  // namespace
}  // namespace grpo::rewards
