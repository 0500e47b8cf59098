// Built-in datasets (learner/datasets.h): arithmetic and countdown generators, their checkers,
// SFT traces and JSONL files. Generated answers are checked against an evaluator and a
// countdown solver written here, over exact rationals.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "learner/datasets.h"
#include "rewards/registry.h"

namespace grpo {
namespace {

// ---- An independent evaluator: exact rationals, recursive descent over the text.

struct Q {
  __int128 n = 0, d = 1;
};

Q reduce(__int128 n, __int128 d) {
  if (d < 0) n = -n, d = -d;
  __int128 a = n < 0 ? -n : n, b = d;
  while (b) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  return a > 1 ? Q{n / a, d / a} : Q{n, d};
}

struct Eval {
  std::string s;
  size_t p = 0;
  bool ok = true;
  bool inexact_division = false;  // some a / b with a remainder (or b = 0)
  __int128 max_abs = 0;           // largest |numerator| of an intermediate integer
  std::vector<int64_t> numbers;

  explicit Eval(std::string text) : s(std::move(text)) {}

  char peek() {
    while (p < s.size() && s[p] == ' ') ++p;
    return p < s.size() ? s[p] : '\0';
  }
  Q note(Q q) {
    max_abs = std::max(max_abs, q.n < 0 ? -q.n : q.n);
    return q;
  }
  Q expr() {
    Q a = term();
    while (ok && (peek() == '+' || peek() == '-')) {
      char op = s[p++];
      Q b = term();
      a = note(reduce(op == '+' ? a.n * b.d + b.n * a.d : a.n * b.d - b.n * a.d, a.d * b.d));
    }
    return a;
  }
  Q term() {
    Q a = factor();
    while (ok && (peek() == '*' || peek() == '/')) {
      char op = s[p++];
      Q b = factor();
      if (op == '*') {
        a = note(reduce(a.n * b.n, a.d * b.d));
      } else if (b.n == 0) {
        ok = false;
      } else {
        a = note(reduce(a.n * b.d, a.d * b.n));
        if (a.d != 1) inexact_division = true;
      }
    }
    return a;
  }
  Q factor() {
    char c = peek();
    if (c == '(') {
      ++p;
      Q v = expr();
      if (peek() != ')') ok = false;
      ++p;
      return v;
    }
    if (c == '-') {
      ++p;
      Q v = factor();
      return Q{-v.n, v.d};
    }
    if (c < '0' || c > '9') {
      ok = false;
      return {};
    }
    int64_t v = 0;
    while (p < s.size() && s[p] >= '0' && s[p] <= '9') v = v * 10 + (s[p++] - '0');
    numbers.push_back(v);
    return Q{v, 1};
  }
  std::optional<Q> run() {
    Q v = expr();
    if (!ok || peek() != '\0') return std::nullopt;
    return v;
  }
};

std::optional<Q> evaluate(const std::string& text) { return Eval(text).run(); }

// ---- An independent countdown solver over rationals (any intermediate, not just integers).

bool solvable(std::vector<Q> items, int64_t target) {
  if (items.size() == 1) return items[0].d == 1 && items[0].n == target;
  for (size_t i = 0; i < items.size(); ++i) {
    for (size_t j = 0; j < items.size(); ++j) {
      if (i == j) continue;
      std::vector<Q> rest;
      for (size_t k = 0; k < items.size(); ++k)
        if (k != i && k != j) rest.push_back(items[k]);
      const Q a = items[i], b = items[j];
      std::vector<Q> results = {reduce(a.n * b.d + b.n * a.d, a.d * b.d), reduce(a.n * b.d - b.n * a.d, a.d * b.d),
                                reduce(a.n * b.n, a.d * b.d)};
      if (b.n != 0) results.push_back(reduce(a.n * b.d, a.d * b.n));
      for (const Q& r : results) {
        rest.push_back(r);
        if (solvable(rest, target)) return true;
        rest.pop_back();
      }
    }
  }
  return false;
}

std::string answer_of(const std::string& completion) {
  size_t open = completion.rfind("<answer>"), close = completion.rfind("</answer>");
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return completion.substr(open + 8, close - open - 8);
}

std::string expression_of(const std::string& prompt) {  // "Compute X." -> X
  EXPECT_EQ(prompt.rfind("Compute ", 0), 0u) << prompt;
  EXPECT_EQ(prompt.back(), '.') << prompt;
  return prompt.substr(8, prompt.size() - 9);
}

rewards::ScoreResult score(rewards::RewardChecker& checker, const std::string& completion,
                           const std::string& reference) {
  rewards::ScoreRequest request;
  request.completion = completion;
  request.reference = reference;
  request.id = 3;
  return checker.score(request);
}

std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// ---- arithmetic

TEST(ArithmeticDataset, SameSeedSameItemsOtherSeedsDiffer) {
  int same_across_seeds = 0;
  std::set<std::string> prompts;
  for (uint64_t i = 0; i < 100; ++i) {
    ArithmeticItem a = arithmetic_item(7, i, 3), b = arithmetic_item(7, i, 3), c = arithmetic_item(8, i, 3);
    EXPECT_EQ(a.prompt, b.prompt);
    EXPECT_EQ(a.expression, b.expression);
    EXPECT_EQ(a.answer, b.answer);
    EXPECT_EQ(a.level, 3);
    same_across_seeds += a.prompt == c.prompt;
    prompts.insert(a.prompt);
  }
  EXPECT_LE(same_across_seeds, 2);
  EXPECT_GE(prompts.size(), 98u);  // indices are independent streams
}

TEST(ArithmeticDataset, LevelsAddOperandsAndBrackets) {
  const int expected_operands[] = {2, 3, 4, 5, 6, 8};
  int previous = 0;
  for (int level = 1; level <= kArithmeticMaxLevel; ++level) {
    const ArithmeticLevel& spec = arithmetic_level(level);
    EXPECT_EQ(spec.num_operands, expected_operands[level - 1]);
    EXPECT_GT(spec.num_operands, previous);
    previous = spec.num_operands;
    int with_brackets = 0, with_division = 0;
    for (uint64_t i = 0; i < 300; ++i) {
      ArithmeticItem item = arithmetic_item(1, i, level);
      Eval eval(expression_of(item.prompt));
      ASSERT_TRUE(eval.run().has_value()) << item.prompt;
      ASSERT_EQ(eval.numbers.size(), size_t(spec.num_operands)) << item.prompt;
      for (int64_t v : eval.numbers) {
        EXPECT_GE(v, 1) << item.prompt;
        EXPECT_LE(v, spec.max_operand) << item.prompt;
      }
      with_brackets += item.expression.find('(') != std::string::npos;
      with_division += item.expression.find('/') != std::string::npos;
    }
    if (level <= 2) EXPECT_EQ(with_brackets, 0) << "level " << level;
    else EXPECT_GT(with_brackets, 30) << "level " << level;
    EXPECT_GT(with_division, 20) << "level " << level;
  }
  EXPECT_THROW(arithmetic_level(0), Error);
  EXPECT_THROW(arithmetic_item(1, 0, kArithmeticMaxLevel + 1), Error);
}

TEST(ArithmeticDataset, AnswersMatchAnIndependentEvaluation) {
  for (int level = 1; level <= kArithmeticMaxLevel; ++level) {
    for (uint64_t i = 0; i < 500; ++i) {
      ArithmeticItem item = arithmetic_item(42, i, level);
      Eval eval(expression_of(item.prompt));
      std::optional<Q> v = eval.run();
      ASSERT_TRUE(v.has_value()) << item.prompt;
      EXPECT_FALSE(eval.inexact_division) << item.prompt;
      ASSERT_EQ(v->d, 1) << item.prompt;
      EXPECT_EQ(int64_t(v->n), item.answer) << item.prompt;
      EXPECT_LE(eval.max_abs, 1000000) << item.prompt;
    }
  }
}

TEST(ArithmeticTrace, HandWritten) {
  EXPECT_EQ(arithmetic_trace("12 + 7 * 3"),
            "<think>\n12 + 7 * 3\n7 * 3 = 21, so 12 + 21\n12 + 21 = 33\n</think>\n<answer>33</answer>");
  EXPECT_EQ(arithmetic_trace("(2 + 3) * (4 - 6)"),
            "<think>\n(2 + 3) * (4 - 6)\n2 + 3 = 5, so 5 * (4 - 6)\n4 - 6 = -2, so 5 * (-2)\n5 * (-2) = -10\n"
            "</think>\n<answer>-10</answer>");
  EXPECT_EQ(arithmetic_trace("20 - 6 / 3 - 4"),
            "<think>\n20 - 6 / 3 - 4\n6 / 3 = 2, so 20 - 2 - 4\n20 - 2 = 18, so 18 - 4\n18 - 4 = 14\n</think>\n"
            "<answer>14</answer>");
  EXPECT_EQ(arithmetic_trace("5"), "<think>\n5\n</think>\n<answer>5</answer>");
  EXPECT_THROW(arithmetic_trace("7 / 2"), Error);
  EXPECT_THROW(arithmetic_trace("1 / (2 - 2)"), Error);
  EXPECT_THROW(arithmetic_trace("2 + x"), Error);
  EXPECT_THROW(arithmetic_trace("9223372036854775807 + 1"), Error);
}

// Every step line "a op b = v[, so rest]" is right and every rest has the item's value.
TEST(ArithmeticTrace, StepsAreRightAndTheAnswerPasses) {
  auto checker = make_arithmetic_checker();
  const std::regex step(R"(^(\(?-?\d+\)?) ([-+*/]) (\(?-?\d+\)?) = (-?\d+)(, so (.*))?$)");
  for (int level = 1; level <= kArithmeticMaxLevel; ++level) {
    for (uint64_t i = 0; i < 100; ++i) {
      ArithmeticItem item = arithmetic_item(5, i, level);
      const std::string trace = arithmetic_trace(item.expression);
      ASSERT_EQ(trace.rfind("<think>\n", 0), 0u) << trace;
      const size_t end = trace.find("</think>\n<answer>");
      ASSERT_NE(end, std::string::npos) << trace;
      std::vector<std::string> lines;
      std::istringstream in(trace.substr(8, end - 8));
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      ASSERT_EQ(lines.size(), size_t(arithmetic_level(level).num_operands)) << trace;
      EXPECT_EQ(lines[0], item.expression);
      for (size_t k = 1; k < lines.size(); ++k) {
        std::smatch m;
        ASSERT_TRUE(std::regex_match(lines[k], m, step)) << lines[k];
        std::optional<Q> v = evaluate(m[1].str() + " " + m[2].str() + " " + m[3].str());
        ASSERT_TRUE(v.has_value()) << lines[k];
        EXPECT_EQ(v->d, 1) << lines[k];
        EXPECT_EQ(int64_t(v->n), std::stoll(m[4].str())) << lines[k];
        const std::string rest = m[6].matched ? m[6].str() : m[4].str();
        EXPECT_EQ(m[6].matched, k + 1 < lines.size()) << trace;
        std::optional<Q> r = evaluate(rest);
        ASSERT_TRUE(r.has_value()) << rest;
        EXPECT_EQ(int64_t(r->n), item.answer) << rest;
      }
      EXPECT_EQ(answer_of(trace), std::to_string(item.answer));
      rewards::ScoreResult s = score(*checker, trace, std::to_string(item.answer));
      EXPECT_EQ(s.reason, "correct") << trace;
      EXPECT_EQ(s.reward, 1.0);
    }
  }
}

struct Verdict {
  std::string completion;
  const char* reference;
  double reward;
  const char* reason;
};

TEST(ArithmeticChecker, Verdicts) {
  auto checker = make_arithmetic_checker();
  const std::string big = "123456789012345678901234567890";
  const Verdict cases[] = {
      {"<think>12 + 21</think>\n<answer>33</answer>", "33", 1, "correct"},
      {"<answer> 33\n</answer>", "33", 1, "correct"},
      {"<answer>+033</answer>", " 33 ", 1, "correct"},
      {"<answer>34</answer>", "33", 0, "wrong"},
      {"<answer>-33</answer>", "33", 0, "wrong"},
      {"<answer>32</answer> no, <answer>33</answer>", "33", 1, "correct"},  // the last tag counts
      {"<answer>33</answer> no, <answer>34</answer>", "33", 0, "wrong"},
      {"<answer>-05</answer>", "-5", 1, "correct"},
      {"<answer>-0</answer>", "0", 1, "correct"},
      {"<answer>" + big + "</answer>", big.c_str(), 1, "correct"},
      {"<answer>" + big + "1</answer>", big.c_str(), 0, "wrong"},
      {"The answer is 33.", "33", 0, "no_answer"},  // no tag: no guessing at the last number
      {"33", "33", 0, "no_answer"},
      {"<answer></answer>", "33", 0, "no_answer"},
      {"<answer>   </answer>", "33", 0, "no_answer"},
      {"<answer>33", "33", 0, "no_answer"},
      {"33</answer>", "33", 0, "no_answer"},
      {"", "33", 0, "no_answer"},
      {"<answer>33.0</answer>", "33", 0, "unparsable"},
      {"<answer>3 3</answer>", "33", 0, "unparsable"},
      {"<answer>thirty-three</answer>", "33", 0, "unparsable"},
      {"<answer>\\boxed{33}</answer>", "33", 0, "unparsable"},
      {"<answer>12 + 21</answer>", "33", 0, "unparsable"},
      {"<answer>-</answer>", "33", 0, "unparsable"},
      {std::string("\x01\xff\xfe<answer>\x80\x81</answer>\x00", 23), "33", 0, "unparsable"},
  };
  for (const Verdict& c : cases) {
    rewards::ScoreResult r = score(*checker, c.completion, c.reference);
    EXPECT_EQ(r.reason, c.reason) << c.completion;
    EXPECT_EQ(r.reward, c.reward) << c.completion;
    EXPECT_EQ(r.id, 3u);
    ASSERT_EQ(r.components.size(), 1u);
    EXPECT_EQ(r.components[0].name, "arithmetic");
    EXPECT_EQ(r.components[0].value, c.reward);
  }
  EXPECT_EQ(score(*checker, "<answer> 33 </answer>", "33").extracted, "33");
  EXPECT_EQ(score(*checker, "<answer>" + std::string(5000, '7') + "</answer>", "33").extracted.size(), 515u);
  const std::string junk(1 << 20, '<');  // a megabyte of almost-tags
  EXPECT_EQ(score(*checker, junk, "33").reason, "no_answer");
}

TEST(ArithmeticChecker, MalformedReferencesAreErrors) {
  auto checker = make_arithmetic_checker();
  for (const char* reference : {"", "  ", "abc", "1.5", "1 2", "--3", "<answer>3</answer>", "3/4"}) {
    EXPECT_THROW(score(*checker, "<answer>3</answer>", reference), Error) << reference;
    EXPECT_THROW(score(*checker, "garbage", reference), Error) << reference;
  }
}

// ---- countdown

TEST(CountdownDataset, SameSeedSameItemsOtherSeedsDiffer) {
  int same_across_seeds = 0;
  std::set<std::string> prompts;
  for (uint64_t i = 0; i < 100; ++i) {
    CountdownItem a = countdown_item(7, i), b = countdown_item(7, i), c = countdown_item(8, i);
    EXPECT_EQ(a.prompt, b.prompt);
    EXPECT_EQ(a.numbers, b.numbers);
    EXPECT_EQ(a.target, b.target);
    EXPECT_EQ(a.solution, b.solution);
    same_across_seeds += a.prompt == c.prompt;
    prompts.insert(a.prompt);
  }
  EXPECT_LE(same_across_seeds, 2);
  EXPECT_GE(prompts.size(), 98u);
}

TEST(CountdownDataset, EveryInstanceIsSolvableAndItsTracePasses) {
  auto checker = make_countdown_checker();
  CountdownOptions wide;
  wide.min_numbers = 2;
  wide.max_numbers = 5;
  wide.max_number = 20;
  wide.max_target = 500;
  for (const CountdownOptions& options : {CountdownOptions{}, wide}) {
    std::map<size_t, int> sizes;
    for (uint64_t i = 0; i < 150; ++i) {
      CountdownItem item = countdown_item(11, i, options);
      const size_t n = item.numbers.size();
      ASSERT_GE(n, size_t(options.min_numbers));
      ASSERT_LE(n, size_t(options.max_numbers));
      ++sizes[n];
      for (int64_t v : item.numbers) {
        EXPECT_GE(v, 1);
        EXPECT_LE(v, options.max_number);
      }
      EXPECT_GE(item.target, 1);
      EXPECT_LE(item.target, options.max_target);
      std::string shown;
      for (size_t k = 0; k < n; ++k) shown += (k ? ", " : "") + std::to_string(item.numbers[k]);
      EXPECT_NE(item.prompt.find("[" + shown + "]"), std::string::npos) << item.prompt;
      EXPECT_NE(item.prompt.find("equals " + std::to_string(item.target) + "."), std::string::npos) << item.prompt;
      EXPECT_EQ(nlohmann::json::parse(item.reference()),
                (nlohmann::json{{"numbers", item.numbers}, {"target", item.target}}));

      std::vector<Q> qs;
      for (int64_t v : item.numbers) qs.push_back(Q{v, 1});
      EXPECT_TRUE(solvable(qs, item.target)) << item.prompt;
      // The expression the target came from: right value, the given numbers, exact divisions.
      Eval from(item.solution);
      std::optional<Q> v = from.run();
      ASSERT_TRUE(v.has_value()) << item.solution;
      EXPECT_FALSE(from.inexact_division) << item.solution;
      EXPECT_TRUE(v->d == 1 && v->n == item.target) << item.solution;
      EXPECT_EQ(sorted(from.numbers), sorted(item.numbers)) << item.solution;
      // The SFT trace's answer, by this file's evaluator and by the checker.
      const std::string trace = countdown_trace(item.numbers, item.target);
      EXPECT_EQ(trace.rfind("<think>\nNumbers ", 0), 0u) << trace;
      Eval answer(answer_of(trace));
      std::optional<Q> a = answer.run();
      ASSERT_TRUE(a.has_value()) << trace;
      EXPECT_TRUE(a->d == 1 && a->n == item.target) << trace;
      EXPECT_EQ(sorted(answer.numbers), sorted(item.numbers)) << trace;
      rewards::ScoreResult s = score(*checker, trace, item.reference());
      EXPECT_EQ(s.reason, "correct") << trace;
      EXPECT_EQ(s.reward, 1.0);
    }
    for (int n = options.min_numbers; n <= options.max_numbers; ++n) EXPECT_GT(sizes[size_t(n)], 10) << n;
  }
}

TEST(CountdownDataset, SolverAndTrace) {
  EXPECT_EQ(countdown_trace({1, 2, 3}, 6),
            "<think>\nNumbers 1, 2, 3; target 6.\n1 + 2 = 3\n3 + 3 = 6\n</think>\n<answer>1 + 2 + 3</answer>");
  EXPECT_FALSE(countdown_solve({1, 1}, 5).has_value());
  EXPECT_FALSE(countdown_solve({7}, 5).has_value());
  ASSERT_TRUE(countdown_solve({5}, 5).has_value());
  std::optional<Expression> e = countdown_solve({4, 6, 10, 25}, 24);
  ASSERT_TRUE(e.has_value());
  std::optional<Q> v = evaluate(e->str());
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->d == 1 && v->n == 24) << e->str();
  // Nonnegative steps are tried first; a negative target needs the second pass.
  EXPECT_EQ(countdown_trace({3, 1}, 2),
            "<think>\nNumbers 3, 1; target 2.\n3 - 1 = 2\n</think>\n<answer>3 - 1</answer>");
  ASSERT_TRUE(countdown_solve({3, 1}, -2).has_value());
  EXPECT_EQ(countdown_solve({3, 1}, -2)->str(), "1 - 3");
  EXPECT_THROW(countdown_trace({1, 1}, 5), Error);
  EXPECT_THROW(countdown_solve({1, 2, 3, 4, 5, 6}, 5), Error);
  CountdownOptions bad;
  bad.max_numbers = 6;
  EXPECT_THROW(countdown_item(1, 0, bad), Error);
  bad = CountdownOptions{};
  bad.min_numbers = 1;
  EXPECT_THROW(countdown_item(1, 0, bad), Error);
  bad = CountdownOptions{};
  bad.max_number = 0;
  EXPECT_THROW(countdown_item(1, 0, bad), Error);
}

TEST(CountdownChecker, Verdicts) {
  auto checker = make_countdown_checker();
  const char* ref = R"({"numbers": [19, 36, 55, 7], "target": 65})";
  const char* ref335 = R"({"numbers": [3, 3, 5], "target": 5})";
  const char* big = R"({"numbers": [1000000000000, 1000000000000, 1000000000000], "target": 1})";
  const Verdict cases[] = {
      {"<think>55 + 36 = 91 ...</think>\n<answer>55 + 36 - 19 - 7</answer>", ref, 1, "correct"},
      {"<answer> (55 + 36) - (19 + 7) </answer>", ref, 1, "correct"},
      {"<answer>7 - 19 + 36 + 55 - 14</answer>", ref, 0, "wrong_numbers"},  // an extra number
      {"<answer>55 + 36 - 19 + 7</answer>", ref, 0, "wrong"},               // 79
      {"<answer>55 + 36 -- 19 - 7</answer>", ref, 0, "wrong"},              // unary minus: 103
      {"<answer>55 + 19 - 7 + 0</answer>", ref, 0, "wrong_numbers"},        // 36 missing, 0 extra
      {"<answer>55 + 19 - 7</answer>", ref, 0, "wrong_numbers"},
      {"<answer>55 + 55 - 36 - 19 + 7</answer>", ref, 0, "wrong_numbers"},  // 55 twice
      {"<answer>5 + 3 - 3</answer>", ref335, 1, "correct"},
      {"<answer>5 + 3</answer>", ref335, 0, "wrong_numbers"},              // a repeated number used once
      {"<answer>5 + 3 - 3 + 3 - 3</answer>", ref335, 0, "wrong_numbers"},  // ... or four times
      {"<answer>5 / (3 - 3)</answer>", ref335, 0, "division_by_zero"},
      {"<answer>(3 - 3) / 5</answer>", ref335, 0, "wrong"},
      {"<answer>-3 + 3 + 5</answer>", ref335, 1, "correct"},
      {"<answer>3 / 4 * 8</answer>", R"({"numbers": [3, 4, 8], "target": 6})", 1, "correct"},  // rational step
      {"<answer>8 / 3 * 4</answer>", R"({"numbers": [3, 4, 8], "target": 6})", 0, "wrong"},
      {"<answer>1000000000000 * 1000000000000 * 1000000000000</answer>", big, 0, "overflow"},
      {"<answer>55 + 36 - 19 - 7 = 65</answer>", ref, 0, "unparsable"},  // the left side only
      {"<answer>55.0 + 36 - 19 - 7</answer>", ref, 0, "unparsable"},
      {"<answer>55 + (36 - 19 - 7</answer>", ref, 0, "unparsable"},
      {"<answer>55 36 19 7</answer>", ref, 0, "unparsable"},
      {"<answer>55 × 36 - 19 - 7</answer>", ref, 0, "unparsable"},
      {"<answer>55 + 36 - 19 - 7 +</answer>", ref, 0, "unparsable"},
      {"<answer>()</answer>", ref, 0, "unparsable"},
      {"<answer>99999999999999999999 - 99999999999999999934</answer>", ref, 0, "unparsable"},
      {std::string("\x01\xff<answer>\x80\x81 55</answer>"), ref, 0, "unparsable"},
      {"55 + 36 - 19 - 7", ref, 0, "no_answer"},
      {"<answer></answer>", ref, 0, "no_answer"},
      {"<answer>55 + 36 - 19 - 7", ref, 0, "no_answer"},
  };
  for (const Verdict& c : cases) {
    rewards::ScoreResult r = score(*checker, c.completion, c.reference);
    EXPECT_EQ(r.reason, c.reason) << c.completion;
    EXPECT_EQ(r.reward, c.reward) << c.completion;
    ASSERT_EQ(r.components.size(), 1u);
    EXPECT_EQ(r.components[0].name, "countdown");
  }
  EXPECT_EQ(score(*checker, "<answer> 55 + 36 - 19 - 7 </answer>", ref).extracted, "55 + 36 - 19 - 7");
}

TEST(CountdownChecker, HugeAnswersAreScoredNotCrashed) {
  const char* ref = R"({"numbers": [1, 2], "target": 3})";
  auto strict = make_countdown_checker();
  auto loose = make_countdown_checker(100000);
  auto wrap = [](const std::string& s) { return "<answer>" + s + "</answer>"; };
  std::string deep = std::string(40000, '(') + "1 + 2" + std::string(40000, ')');
  std::string chain;
  for (int i = 0; i < 30000; ++i) chain += "1+";
  chain += "2";
  std::string negations = std::string(50000, '-') + "1 + 2";
  EXPECT_EQ(score(*strict, wrap(deep), ref).reason, "unparsable");  // longer than 1000 characters
  EXPECT_EQ(score(*loose, wrap(deep), ref).reason, "unparsable");   // nesting deeper than 100
  EXPECT_EQ(score(*loose, wrap(negations), ref).reason, "unparsable");
  EXPECT_EQ(score(*loose, wrap(chain), ref).reason, "wrong_numbers");  // parsed, 30001 numbers
  EXPECT_EQ(score(*loose, wrap(std::string(99 * 1, '(') + "1 + 2" + std::string(99, ')')), ref).reason, "correct");
  EXPECT_EQ(score(*loose, wrap(std::string(101, '(') + "1 + 2" + std::string(101, ')')), ref).reason, "unparsable");
  EXPECT_THROW(make_countdown_checker(0), Error);
  EXPECT_THROW(make_countdown_checker(100001), Error);
}

TEST(CountdownChecker, MalformedReferencesAreErrors) {
  auto checker = make_countdown_checker();
  const char* references[] = {
      "",
      "not json",
      "[1, 2, 3]",
      "65",
      R"({"numbers": [1, 2]})",
      R"({"target": 3})",
      R"({"numbers": [1, "2"], "target": 3})",
      R"({"numbers": [], "target": 3})",
      R"({"numbers": [1, -2], "target": 3})",
      R"({"numbers": [1, 2], "target": 3.5})",
      R"({"numbers": [1, 2], "target": 3, "extra": 1})",
      R"({"numbers": 12, "target": 3})",
  };
  for (const char* reference : references) {
    EXPECT_THROW(score(*checker, "<answer>1 + 2</answer>", reference), Error) << reference;
    EXPECT_THROW(score(*checker, "garbage", reference), Error) << reference;
  }
  try {
    score(*checker, "<answer>1 + 2</answer>", R"({"numbers": [1, 2]})");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"target\""), std::string::npos) << e.what();
  }
}

// ---- expressions, registry, JSONL

TEST(Expression, ParsePrintAndErrors) {
  const std::pair<std::string, std::string> cases[] = {
      {"1 - (2 - 3)", "1 - (2 - 3)"}, {"(1 - 2) - 3", "1 - 2 - 3"}, {"2 * (3 + 4)", "2 * (3 + 4)"},
      {"(2 * 3) + 4", "2 * 3 + 4"},   {"8 / (4 / 2)", "8 / (4 / 2)"}, {"8 / 4 * 2", "8 / 4 * 2"},
      {"8 / (4 * 2)", "8 / (4 * 2)"}, {"-(2 + 3)", "-(2 + 3)"},      {"2 * -3", "2 * (-3)"},
      {" 007\t+\n1 ", "7 + 1"},        {"((5))", "5"},
  };
  for (const auto& [text, printed] : cases) {
    ExprParse p = parse_expression(text);
    ASSERT_EQ(p.error, ExprError::none) << text;
    EXPECT_EQ(p.expr.str(), printed) << text;
  }
  EXPECT_EQ(parse_expression("2 + 3 * (4 - 1)").expr.numbers(), (std::vector<int64_t>{2, 3, 4, 1}));
  EXPECT_EQ(parse_expression("2 + x").error, ExprError::bad_char);
  EXPECT_EQ(parse_expression("2 = 2").error, ExprError::bad_char);
  EXPECT_EQ(parse_expression("").error, ExprError::syntax);
  EXPECT_EQ(parse_expression("2 +").error, ExprError::syntax);
  EXPECT_EQ(parse_expression("(2").error, ExprError::syntax);
  EXPECT_EQ(parse_expression("2)").error, ExprError::syntax);
  EXPECT_EQ(parse_expression("2 3").error, ExprError::syntax);
  EXPECT_EQ(parse_expression("9223372036854775808").error, ExprError::number_too_large);
  EXPECT_EQ(parse_expression("9223372036854775807").error, ExprError::none);
  EXPECT_EQ(parse_expression(std::string(200000, '(') + "1" + std::string(200000, ')')).error, ExprError::too_deep);
  EXPECT_EQ(parse_expression("((1))", 2).error, ExprError::none);
  EXPECT_EQ(parse_expression("((1))", 1).error, ExprError::too_deep);
}

TEST(DatasetCheckers, RegisteredByName) {
  rewards::CheckerRegistry registry;
  register_dataset_checkers(registry);
  ASSERT_TRUE(registry.has("arithmetic"));
  ASSERT_TRUE(registry.has("countdown"));
  ConfigNode none = ConfigNode::from_string("{}", "test");
  auto arithmetic = registry.create("arithmetic", none);
  EXPECT_EQ(arithmetic->name(), "arithmetic");
  EXPECT_EQ(score(*arithmetic, "<answer>4</answer>", "4").reason, "correct");
  ConfigNode options = ConfigNode::from_string(R"({"max_answer_chars": 10})", "test");
  auto countdown = registry.create("countdown", options);
  EXPECT_EQ(countdown->name(), "countdown");
  const char* ref = R"({"numbers": [1, 2], "target": 3})";
  EXPECT_EQ(score(*countdown, "<answer>1 + 2</answer>", ref).reason, "correct");
  EXPECT_EQ(score(*countdown, "<answer>1 + 2         </answer>", ref).reason, "correct");  // trimmed first
  EXPECT_EQ(score(*countdown, "<answer>(((((1))))) + 2</answer>", ref).reason, "unparsable");
  ConfigNode bad = ConfigNode::from_string(R"({"max_answer_chars": 0})", "test");
  EXPECT_THROW(registry.create("countdown", bad), Error);
  ConfigNode unknown = ConfigNode::from_string(R"({"max_chars": 10})", "test");
  EXPECT_THROW(registry.create("arithmetic", unknown), Error);
  EXPECT_THROW(register_dataset_checkers(registry), Error);  // already there
}

class DatasetFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("grpo_datasets_" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path(name)) << text; }
  std::filesystem::path dir_;
};

TEST_F(DatasetFiles, WriteReadRoundTripAndCompletionsPass) {
  rewards::CheckerRegistry registry;
  register_dataset_checkers(registry);
  for (const char* name : {"arithmetic", "countdown"}) {
    DatasetSpec spec;
    spec.name = name;
    spec.seed = 3;
    spec.count = 40;
    spec.min_level = 2;
    spec.max_level = 5;
    spec.completions = true;
    std::vector<DatasetRecord> records = generate_dataset(spec);
    ASSERT_EQ(records.size(), 40u);
    const std::string file = path(std::string(name) + ".jsonl");
    write_dataset_jsonl(file, records);
    EXPECT_FALSE(std::filesystem::exists(file + ".tmp"));
    std::vector<DatasetRecord> back = read_dataset_jsonl(file);
    ASSERT_EQ(back.size(), records.size());
    ConfigNode none = ConfigNode::from_string("{}", "test");
    auto checker = registry.create(name, none);
    for (size_t i = 0; i < records.size(); ++i) {
      EXPECT_EQ(back[i].id, i);
      EXPECT_EQ(back[i].checker, name);
      EXPECT_EQ(back[i].prompt, records[i].prompt);
      EXPECT_EQ(back[i].reference, records[i].reference);
      EXPECT_EQ(back[i].completion, records[i].completion);
      EXPECT_EQ(back[i].level, records[i].level);
      EXPECT_EQ(score(*checker, back[i].completion, back[i].reference).reason, "correct") << back[i].completion;
    }
    if (std::string(name) == "arithmetic") {
      for (size_t i = 0; i < records.size(); ++i) EXPECT_EQ(records[i].level, 2 + int(i % 4));
      EXPECT_EQ(records[5].prompt, arithmetic_item(3, 5, 3).prompt);
    } else {
      EXPECT_EQ(records[5].prompt, countdown_item(3, 5).prompt);
    }
    // The raw lines: documented fields only.
    std::ifstream in(file);
    std::string line;
    ASSERT_TRUE(std::getline(in, line));
    nlohmann::json j = nlohmann::json::parse(line);
    std::set<std::string> keys;
    for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
    std::set<std::string> expected = {"id", "checker", "prompt", "reference", "completion"};
    if (std::string(name) == "arithmetic") expected.insert("level");
    EXPECT_EQ(keys, expected);
    EXPECT_TRUE(j["reference"].is_string());
  }
}

TEST_F(DatasetFiles, IndexRangesAreSplits) {
  DatasetSpec all;
  all.name = "countdown";
  all.count = 15;
  DatasetSpec tail = all;
  tail.first_index = 10;
  tail.count = 5;
  std::vector<DatasetRecord> a = generate_dataset(all), b = generate_dataset(tail);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(b[i].id, 10 + i);
    EXPECT_EQ(b[i].prompt, a[10 + i].prompt);
    EXPECT_TRUE(b[i].completion.empty());
  }
  all.count = 0;
  EXPECT_TRUE(generate_dataset(all).empty());
  all.name = "sudoku";
  EXPECT_THROW(generate_dataset(all), Error);
}

TEST_F(DatasetFiles, ReadErrorsNameTheLine) {
  auto message = [&](const std::string& text) -> std::string {
    write("bad.jsonl", text);
    try {
      read_dataset_jsonl(path("bad.jsonl"));
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  const std::string ok = R"({"prompt": "Compute 1 + 1.", "reference": "2"})";
  EXPECT_NE(message(ok + "\n{not json\n").find("bad.jsonl:2: not valid JSON"), std::string::npos);
  EXPECT_NE(message(ok + "\n\n" + R"({"promt": "x"})")
                .find("bad.jsonl:3: unknown key \"promt\" (did you mean \"prompt\"?)"),
            std::string::npos);
  EXPECT_NE(message(R"({"reference": "2"})").find("bad.jsonl:1: missing \"prompt\""), std::string::npos);
  EXPECT_NE(message(R"({"prompt": 5})").find("\"prompt\" must be a string"), std::string::npos);
  EXPECT_NE(message(R"({"prompt": "x", "reference": [1]})").find("\"reference\" must be"), std::string::npos);
  EXPECT_NE(message(R"({"prompt": "x", "level": 9})").find("\"level\""), std::string::npos);
  EXPECT_NE(message(R"({"prompt": "x", "id": -1})").find("\"id\""), std::string::npos);
  EXPECT_NE(message("[1]").find("expected a JSON object"), std::string::npos);
  // Object and integer references become their JSON text; missing ids count lines read.
  write("ok.jsonl", ok + "\n" +
                        R"({"prompt": "p", "reference": {"numbers": [1, 2], "target": 3}, "checker": "countdown"})" +
                        "\n" + R"({"prompt": "q", "reference": 7})" + "\n");
  std::vector<DatasetRecord> r = read_dataset_jsonl(path("ok.jsonl"));
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].reference, "2");
  EXPECT_EQ(r[1].reference, R"({"numbers":[1,2],"target":3})");
  EXPECT_EQ(r[1].checker, "countdown");
  EXPECT_EQ(r[2].reference, "7");
  EXPECT_EQ(r[2].id, 2u);
  EXPECT_THROW(read_dataset_jsonl(path("missing.jsonl")), Error);
  EXPECT_THROW(write_dataset_jsonl(path("no/such/dir/x.jsonl"), r), Error);
  EXPECT_FALSE(std::filesystem::exists(path("no")));
}

TEST(DatasetSpecConfig, StrictKeys) {
  ConfigNode node = ConfigNode::from_string(
      R"({"name": "countdown", "seed": 9, "count": 5, "max_numbers": 5, "max_target": 999, "completions": true})", "t");
  DatasetSpec s = parse_dataset_spec(node);
  node.finish();
  EXPECT_EQ(s.name, "countdown");
  EXPECT_EQ(s.seed, 9u);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(s.countdown.max_numbers, 5);
  EXPECT_EQ(s.countdown.max_target, 999);
  EXPECT_TRUE(s.completions);
  ConfigNode levels = ConfigNode::from_string(R"({"name": "arithmetic", "min_level": 2, "max_level": 6})", "t");
  s = parse_dataset_spec(levels);
  levels.finish();
  EXPECT_EQ(s.min_level, 2);
  EXPECT_EQ(s.max_level, 6);
  ConfigNode level_for_countdown = ConfigNode::from_string(R"({"name": "countdown", "min_level": 2})", "t");
  parse_dataset_spec(level_for_countdown);
  EXPECT_THROW(level_for_countdown.finish(), Error);
  for (const char* text : {R"({"name": "sudoku"})", R"({"max_level": 7})", R"({"min_level": 3, "max_level": 2})",
                           R"({"count": -1})", R"({"name": "countdown", "max_numbers": 6})",
                           R"({"name": "countdown", "max_number": 0})", R"({"seed": -1})"}) {
    ConfigNode bad = ConfigNode::from_string(text, "t");
    EXPECT_THROW(parse_dataset_spec(bad), Error) << text;
  }
}

}  // namespace
}  // namespace grpo
