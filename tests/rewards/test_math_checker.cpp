// The "math" reward checker end to end: registry and options, reasons, pathological inputs
// within a time budget, and scoring from many threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "rewards/math/math_checker.h"

namespace grpo::rewards {
namespace {

std::unique_ptr<RewardChecker> make_checker(const std::string& options_json = "{}") {
  CheckerRegistry registry;
  register_math_checkers(registry);
  ConfigNode options = ConfigNode::from_string(options_json, "test");
  return registry.create("math", options);
}

ScoreResult score(RewardChecker& checker, const std::string& completion, const std::string& reference) {
  ScoreRequest request;
  request.completion = completion;
  request.reference = reference;
  request.id = 7;
  return checker.score(request);
}

TEST(MathChecker, RegistersMathWithDescription) {
  CheckerRegistry registry;
  register_math_checkers(registry);
  ASSERT_TRUE(registry.has("math"));
  EXPECT_FALSE(registry.description("math").empty());
  auto checker = make_checker();
  EXPECT_EQ(checker->name(), "math");
}

TEST(MathChecker, ReasonsAndComponents) {
  auto checker = make_checker();
  ScoreResult r = score(*checker, "so \\boxed{\\frac{1}{2}}", "0.5");
  EXPECT_EQ(r.reward, 1);
  EXPECT_EQ(r.reason, "correct");
  EXPECT_EQ(r.extracted, "\\frac{1}{2}");
  EXPECT_EQ(r.id, 7u);
  ASSERT_EQ(r.components.size(), 1u);
  EXPECT_EQ(r.components[0].name, "math");
  EXPECT_EQ(r.components[0].value, 1);
  EXPECT_EQ(r.components[0].reason, "correct");

  r = score(*checker, "\\boxed{3}", "4");
  EXPECT_EQ(r.reward, 0);
  EXPECT_EQ(r.reason, "wrong");
  EXPECT_EQ(r.components.at(0).value, 0);

  r = score(*checker, "I don't know", "4");
  EXPECT_EQ(r.reason, "no_answer");
  EXPECT_EQ(r.reward, 0);
  EXPECT_TRUE(r.extracted.empty());

  r = score(*checker, "\\boxed{\\frac{1}{0}}", "4");
  EXPECT_EQ(r.reason, "unparsable");
  EXPECT_EQ(r.reward, 0);
  EXPECT_EQ(r.extracted, "\\frac{1}{0}");
}

TEST(MathChecker, ReferenceForms) {
  auto checker = make_checker();
  EXPECT_EQ(score(*checker, "#### 72", "Natalia sold 48/2 = 24 clips.\n#### 72").reason, "correct");
  EXPECT_EQ(score(*checker, "the answer is 1/2.", "The answer is $\\boxed{\\frac12}$").reason, "correct");
  EXPECT_EQ(score(*checker, "<answer>x = 3</answer>", "3").reason, "correct");
  EXPECT_THROW(score(*checker, "\\boxed{1}", "   "), grpo::Error);
}

TEST(MathChecker, ExtractedAnswerIsCapped) {
  auto checker = make_checker("{\"max_answer_chars\": 100}");
  std::string big(5000, '1');
  ScoreResult r = score(*checker, "\\boxed{" + big + "}", "1");
  EXPECT_EQ(r.reason, "unparsable");
  EXPECT_LE(r.extracted.size(), 520u);
}

TEST(MathChecker, Options) {
  auto tag_only = make_checker(R"({"extract": ["answer_tag"], "rel_tol": 0.01, "time_limit_ms": 500})");
  EXPECT_EQ(score(*tag_only, "\\boxed{5}", "5").reason, "no_answer");
  EXPECT_EQ(score(*tag_only, "<answer>3.14</answer>", "\\pi").reason, "correct");
  auto strict = make_checker(R"({"rel_tol": 0})");
  EXPECT_EQ(score(*strict, "\\boxed{3.1415926536}", "\\pi").reason, "wrong");

  EXPECT_THROW(make_checker(R"({"extract": ["boxd"]})"), grpo::Error);
  EXPECT_THROW(make_checker(R"({"extract": []})"), grpo::Error);
  EXPECT_THROW(make_checker(R"({"rel_tol": -1})"), grpo::Error);
  EXPECT_THROW(make_checker(R"({"max_answer_chars": 0})"), grpo::Error);
  EXPECT_THROW(make_checker(R"({"time_limit_ms": 0})"), grpo::Error);
  try {
    make_checker(R"({"rel_toll": 0.1})");
    FAIL() << "an unknown option must be an error";
  } catch (const grpo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("rel_tol"), std::string::npos) << e.what();
  }
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(MathChecker, PathologicalInputsFinishWithinBudget) {
  struct Case {
    std::string name, completion, reference, reason;
  };
  std::vector<Case> cases = {
      {"parentheses 10000 deep", "\\boxed{" + repeat("(", 10000) + "1" + repeat(")", 10000) + "}", "1", "unparsable"},
      {"braces 10000 deep", "\\boxed{" + repeat("{", 10000) + "1" + repeat("}", 10000) + "}", "1", "unparsable"},
      {"fractions 5000 deep", "\\boxed{" + repeat("\\frac{1}{", 5000) + "2" + repeat("}", 5000) + "}", "1",
       "unparsable"},
      {"unary minus 10000 deep", "\\boxed{" + repeat("-", 10000) + "1}", "1", "unparsable"},
      {"exponents 3000 deep", "\\boxed{" + repeat("2^{", 3000) + "2" + repeat("}", 3000) + "}", "1", "unparsable"},
      {"95 kB of LaTeX", "\\boxed{" + repeat("\\frac{x^{2}+1}{\\sqrt{y}} + ", 3500) + "1}", "1", "wrong"},
      {"10^{10^{10}}", "\\boxed{10^{10^{10}}}", "1", "unparsable"},
      {"9^{9^{9^9}}", "\\boxed{9^{9^{9^9}}}", "1", "unparsable"},
      {"2^{2^{2^{2^{2^2}}}}", "\\boxed{2^{2^{2^{2^{2^2}}}}}", "1", "unparsable"},
      {"1e999999999", "\\boxed{1e999999999}", "1", "unparsable"},
      {"10^{-10^{9}}", "\\boxed{10^{-10^{9}}}", "0", "unparsable"},
      {"1000000!", "\\boxed{1000000!}", "1", "unparsable"},
      {"(5000!)!", "\\boxed{(5000!)!}", "1", "unparsable"},
      {"3000!", "\\boxed{3000!}", "(3000)!", "correct"},
      {"2^{100000} vs 4^{50000}", "\\boxed{2^{100000}}", "4^{50000}", "correct"},
      {"2^{100000} vs 2^{100000}+1", "\\boxed{2^{100000}}", "2^{100000}+1", "wrong"},
      {"(\\sqrt{2})^{100000}", "\\boxed{(\\sqrt{2})^{100000}}", "2^{50000}", "correct"},
      {"(\\sqrt{2})^{1000000}", "\\boxed{(\\sqrt{2})^{1000000}}", "1", "unparsable"},
      {"(x/100+1)^{10^8}", "\\boxed{(x/100+1)^{100000000}}", "1", "unparsable"},
      {"(2^{100000}x)^{10000}", "\\boxed{(2^{100000}x)^{10000}}", "1", "unparsable"},
      {"(3^{217}x+y)^{720} vs 1", "\\boxed{(3^{217}x+y)^{720}}", "1", "wrong"},
      {"binomial(9e^{17}, 40)", "\\boxed{\\sqrt{\\binom{9e^{17}}{40}}}", "\\pi", "wrong"},
      {"binomial(9e^{17}, 120)", "\\boxed{\\sqrt{\\binom{9e^{17}}{120}}}", "\\pi", "unparsable"},
      {"(x+1)^{100000}", "\\boxed{(x+1)^{100000}}", "(1+x)^{100000}", "correct"},
      {"(x+y+z)^{200}, no expansion", "\\boxed{(x+y+z)^{200}}", "(-x-y-z)^{200}", "correct"},
      {"x^{10^9} vs x^{10^9}+1", "\\boxed{x^{1000000000}}", "x^{1000000000}+1", "wrong"},
      {"sin(10^{50000})", "\\boxed{\\sin(10^{50000})}", "0", "wrong"},
      {"x^{10^{1000}}: floats would wrap", "\\boxed{(x^{10^{900}})^{10^{100}}}", "1", "wrong"},
      {"e^{5^{110}}: no exact work", "\\boxed{\\frac{\\pi}{53\\pi e - 17e^{5^{110}}}}", "120", "wrong"},
      {"(13x^{14^{969}})^{21^{87}}", "\\boxed{(13 x^{14^{969}})^{21^{87}}}", "1", "unparsable"},
      {"|5y|^{24!}", "\\boxed{|5y|^{24!}}", "1", "wrong"},
      {"898.58^{(18 \\pm 5)!}", "\\boxed{(898.58)^{(18 \\pm 5)!}}", "1", "unparsable"},
      {"|atan(277.7)^{x^{30362}}|^{5^{52}}", "\\boxed{|(\\arctan(277.7))^{x^{30362}}|^{\\sqrt{5^{105}}}}", "1",
       "wrong"},
      {"tower of exponentials", "\\boxed{e^{e^{e^{e^{10}}}}}", "1", "wrong"},
      {"binomial(10^9, 5)", "\\boxed{\\binom{1000000000}{5}}", "1", "unparsable"},
      {"20000 unclosed boxes", repeat("\\boxed{", 20000), "1", "no_answer"},
      {"a 900-digit integer", "\\boxed{" + std::string(900, '9') + ".0}", std::string(900, '9'), "correct"},
  };
  // A wide answer cap so that the parser's own guards (depth, sizes, budget) are what stops these.
  auto checker = make_checker(R"({"max_answer_chars": 100000})");
  for (const Case& c : cases) {
    auto start = std::chrono::steady_clock::now();
    ScoreResult r = score(*checker, c.completion, c.reference);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.reason, c.reason) << c.name;
    EXPECT_LT(seconds, 1.0) << c.name;
    std::printf("  %-32s %-10s %8.2f ms\n", c.name.c_str(), r.reason.c_str(), seconds * 1e3);
  }
  // With the default cap (1000 characters) a long answer is refused before any parsing.
  auto narrow = make_checker();
  EXPECT_EQ(score(*narrow, cases[5].completion, "1").reason, "unparsable");
}

TEST(MathChecker, TimeBudgetStopsSlowComparisons) {
  // 8000 distinct symbols: each addition costs more than the last; the budget ends it.
  std::string sum;
  for (int i = 0; i < 8000; ++i) sum += (i ? "+x_{" : "x_{") + std::to_string(i) + "}";
  auto checker = make_checker(R"({"max_answer_chars": 100000, "time_limit_ms": 200})");
  auto start = std::chrono::steady_clock::now();
  ScoreResult r = score(*checker, "\\boxed{" + sum + "}", "1");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_TRUE(r.reason == "unparsable" || r.reason == "wrong") << r.reason;
  EXPECT_LT(seconds, 1.5);
  std::printf("  8000-symbol sum: %s in %.2f ms\n", r.reason.c_str(), seconds * 1e3);
}

// Random well-formed LaTeX (numbers, big powers, functions, factorials, binomials, tuples,
// sets, lists, percentages): every comparison returns a verdict, none crashes or runs long.
class RandomLatex {
 public:
  explicit RandomLatex(uint32_t seed) : rng_(seed) {}

  std::string answer() {
    std::string e = expression(1 + pick(5));
    switch (pick(8)) {
      case 0:
        return "(" + e + ", " + expression(2) + ")";
      case 1:
        return "\\{" + e + ", " + expression(2) + "\\}";
      case 2:
        return "[" + e + ", " + expression(2) + ")";
      case 3:
        return "x = " + e;
      case 4:
        return e + " \\text{ or } " + expression(2);
      case 5:
        return e + "\\%";
      default:
        return e;
    }
  }

 private:
  int pick(int n) { return static_cast<int>(rng_() % static_cast<uint32_t>(n)); }

  std::string expression(int depth) {
    if (depth <= 0 || pick(4) == 0) {
      switch (pick(8)) {
        case 0:
          return std::to_string(pick(20));
        case 1:
          return std::to_string(pick(1000)) + "." + std::to_string(pick(100));
        case 2:
          return "x";
        case 3:
          return "y";
        case 4:
          return "\\pi";
        case 5:
          return "e";
        case 6:
          return std::to_string(pick(30)) + "^{" + std::to_string(pick(400)) + "}";
        default:
          return std::to_string(pick(9) + 1);
      }
    }
    std::string a = expression(depth - 1), b = expression(depth - 1);
    switch (pick(22)) {
      case 14:
        return "\\tan(" + a + ")";
      case 15:
        return "\\log_{" + b + "}(" + a + ")";
      case 16:
        return a + " \\pm " + b;
      case 17:
        return "(" + a + ")^{(" + b + ")!}";
      case 18:
        return "|" + a + "|^{" + b + "}";
      case 19:
        return "(" + std::to_string(pick(50)) + a + ")^{" + b + "}";
      case 20:
        return a + "^\\circ";
      case 21:
        return "\\frac{" + a + "}{" + b + "}x^{" + std::to_string(pick(100000)) + "}";
      case 0:
        return a + "+" + b;
      case 1:
        return a + "-" + b;
      case 2:
        return a + " \\cdot " + b;
      case 3:
        return "\\frac{" + a + "}{" + b + "}";
      case 4:
        return "(" + a + ")^{" + b + "}";
      case 5:
        return "\\sqrt{" + a + "}";
      case 6:
        return "\\sin(" + a + ")";
      case 7:
        return "\\log(" + a + ")";
      case 8:
        return "e^{" + a + "}";
      case 9:
        return "(" + a + ")!";
      case 10:
        return "|" + a + "|";
      case 11:
        return "\\sqrt[" + std::to_string(pick(5) + 2) + "]{" + a + "}";
      case 12:
        return "(" + a + ")(" + b + ")";
      default:
        return "\\binom{" + a + "}{" + b + "}";
    }
  }

  std::mt19937 rng_;
};

TEST(MathChecker, RandomExpressionsNeverCrashOrHang) {
  auto checker = make_checker();
  RandomLatex gen(12345);
  int counts[3] = {0, 0, 0};
  double worst = 0;
  std::string worst_case;
  for (int k = 0; k < 1500; ++k) {
    std::string a = gen.answer();
    std::string b = k % 3 == 0 ? a : k % 3 == 1 ? "(" + a + ")" : gen.answer();
    auto start = std::chrono::steady_clock::now();
    ScoreResult r = score(*checker, "\\boxed{" + b + "}", a);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    counts[r.reason == "correct" ? 0 : r.reason == "wrong" ? 1 : 2]++;
    if (seconds > worst) {
      worst = seconds;
      worst_case = a + "  vs  " + b;
    }
  }
  EXPECT_LT(worst, 1.0) << worst_case;
  EXPECT_GT(counts[0], 400);  // identical and parenthesised answers are found equal
  std::printf("  correct %d, wrong %d, unparsable %d; slowest %.1f ms\n", counts[0], counts[1], counts[2], worst * 1e3);
}

TEST(MathChecker, ConcurrentScoringMatchesSerial) {
  struct Case {
    const char* completion;
    const char* reference;
  };
  const std::vector<Case> cases = {
      {"\\boxed{\\frac{1}{2}}", "0.5"},
      {"\\boxed{(x+1)^2}", "x^2+2x+1"},
      {"\\boxed{[0,1)}", "[0,1]"},
      {"\\boxed{\\{1,2\\}}", "x=2 or x=1"},
      {"\\boxed{50\\%}", "0.5"},
      {"#### 1,000", "1000"},
      {"\\boxed{\\sqrt{8}}", "2\\sqrt{2}"},
      {"\\boxed{2}", "20"},
      {"nothing", "1"},
      {"\\boxed{\\frac{1}{0}}", "1"},
      {"\\boxed{\\sin^2x+\\cos^2x}", "1"},
      {"\\boxed{(1,2)}", "(2,1)"},
  };
  auto checker = make_checker();
  std::vector<std::string> serial;
  for (const Case& c : cases) serial.push_back(score(*checker, c.completion, c.reference).reason);

  constexpr int kThreads = 8, kRounds = 25;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        size_t k = static_cast<size_t>(t + round) % cases.size();
        if (score(*checker, cases[k].completion, cases[k].reference).reason != serial[k]) ++mismatches;
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(serial[0], "correct");
  EXPECT_EQ(serial[2], "wrong");
  EXPECT_EQ(serial[8], "no_answer");
  EXPECT_EQ(serial[9], "unparsable");
}

}  // namespace
}  // namespace grpo::rewards
