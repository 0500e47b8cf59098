// The code checker's behaviour on honest answers: extraction, the test spec, verdicts,
// rewards, options and the refusal to run without a sandbox. Attacks: test_code_sandbox.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/error.h"
#include "rewards/code/code_extract.h"
#include "rewards/code/test_spec.h"
#include "rewards/registry.h"
#include "tests/rewards/test_code_util.h"

namespace grpo::rewards {
namespace {

using test::make_code_checker;
using test::request;

const char* kAddTests = R"({"style": "assert", "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0",
                                                          "assert add(10, 5) == 15"]})";
const char* kSumIo = R"({"style": "io", "cases": [{"input": "1 2\n", "output": "3\n"},
                                                   {"input": "5 7\n", "output": "12\n"}]})";

class CodeCheckerScore : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { checker_ = make_code_checker().release(); }
  static void TearDownTestSuite() {
    delete checker_;
    checker_ = nullptr;
  }
  void SetUp() override { GRPO_REQUIRE_SANDBOX(*checker_); }
  static CodeChecker* checker_;
};
CodeChecker* CodeCheckerScore::checker_ = nullptr;

// ---- extraction --------------------------------------------------------------------------

TEST(CodeCheckerExtract, LastPythonBlockWins) {
  CodeExtractOptions o{code_fence_tags("python"), true};
  std::string text = "```python\nfirst()\n```\ntext\n```py\nsecond()\n```\n```cpp\nint x;\n```\n";
  EXPECT_EQ(extract_code_block(text, o).value(), "second()\n");
  EXPECT_EQ(extract_code_block("```Python3\nx = 1\n```", o).value(), "x = 1\n");
  EXPECT_EQ(extract_code_block("````python\na = '```'\n````\n", o).value(), "a = '```'\n");
  EXPECT_EQ(extract_code_block("  ```python\r\nprint(1)\r\n  ```\r\n", o).value(), "print(1)\n");
}

TEST(CodeCheckerExtract, BareFenceIsAFallbackOnly) {
  CodeExtractOptions o{code_fence_tags("python"), true};
  EXPECT_EQ(extract_code_block("```\nbare()\n```\n", o).value(), "bare()\n");
  EXPECT_EQ(extract_code_block("```python\ntagged()\n```\n```\nbare()\n```\n", o).value(), "tagged()\n");
  o.bare_fence = false;
  EXPECT_FALSE(extract_code_block("```\nbare()\n```\n", o).has_value());
}

TEST(CodeCheckerExtract, OtherLanguagesAndUnclosedBlocksAreIgnored) {
  CodeExtractOptions o{code_fence_tags("python"), true};
  EXPECT_FALSE(extract_code_block("```javascript\nconsole.log(1)\n```\n", o).has_value());
  EXPECT_FALSE(extract_code_block("no code at all", o).has_value());
  EXPECT_EQ(extract_code_block("```python\ndone()\n```\n```python\ncut off mid", o).value(), "done()\n");
  EXPECT_THROW(code_fence_tags("rust"), Error);
}

// ---- the spec ----------------------------------------------------------------------------

TEST(CodeCheckerSpec, ParsesBothStylesAndInfersTheStyle) {
  TestSpec a = parse_test_spec(kAddTests);
  EXPECT_EQ(a.style, TestStyle::assert_style);
  EXPECT_EQ(a.cases.size(), 3u);
  TestSpec io = parse_test_spec(R"({"cases": [{"input": "x", "output": "y"}], "timeout_s": 1.5, "memory_mb": 128})");
  EXPECT_EQ(io.style, TestStyle::io_style);
  EXPECT_EQ(io.cases[0].input, "x");
  EXPECT_DOUBLE_EQ(io.timeout_s.value(), 1.5);
  EXPECT_EQ(io.memory_mb.value(), 128);
  TestSpec he = parse_test_spec(R"({"test_code": "def check(c):\n    assert c(1) == 2\n", "entry_point": "inc"})");
  EXPECT_EQ(he.style, TestStyle::assert_style);
  ASSERT_EQ(he.cases.size(), 1u);
  std::string program = build_case_program(he, 0, "def inc(x):\n    return x + 1");
  EXPECT_NE(program.find("check(inc)"), std::string::npos);
}

TEST(CodeCheckerSpec, MalformedSpecsThrow) {
  for (const char* bad :
       {"not json", "[1, 2]", "{}", R"({"tests": []})", R"({"tests": [1]})", R"({"tests": "assert 1"})",
        R"({"style": "assert", "cases": [{"output": "1"}]})", R"({"tests": ["assert 1"], "test_code": "x"})",
        R"({"cases": [{"input": "1"}]})", R"({"cases": [{"input": "1", "output": "1", "extra": 1}]})",
        R"({"cases": []})", R"({"style": "unit", "tests": ["assert 1"]})",
        R"({"tests": ["assert 1"], "entry_point": "f(); import os"})", R"({"tests": ["assert 1"], "timeout_s": -1})",
        R"({"tests": ["assert 1"], "memory_mb": 1.5})",
        R"({"cases": [{"input": "1", "output": "1"}], "setup": "x"})"}) {
    EXPECT_THROW(parse_test_spec(bad), Error) << bad;
  }
  try {
    parse_test_spec(R"({"tests": ["assert 1"], "entry_pont": "f"})");
    FAIL() << "unknown key accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean \"entry_point\""), std::string::npos) << e.what();
  }
}

TEST(CodeCheckerSpec, OutputComparisonIsWhitespaceTolerant) {
  EXPECT_TRUE(outputs_match("3\n", "3"));
  EXPECT_TRUE(outputs_match("1 2 3\n4\n", "1  2\t3   \r\n4\n\n\n"));
  EXPECT_TRUE(outputs_match("a b\n", "  a b  \n"));
  EXPECT_TRUE(outputs_match("", "\n\n"));
  std::string why;
  EXPECT_FALSE(outputs_match("1 2\n", "1\n2\n", &why));
  EXPECT_NE(why.find("line 1"), std::string::npos) << why;
  EXPECT_FALSE(outputs_match("12\n", "1 2\n"));
  EXPECT_FALSE(outputs_match("1\n2\n", "1\n", &why));
  EXPECT_NE(why.find("expected 2 lines, got 1"), std::string::npos) << why;
  EXPECT_FALSE(outputs_match("1\n", "1\n\n2\n"));
}

// ---- scoring -----------------------------------------------------------------------------

TEST_F(CodeCheckerScore, AssertStyleCorrectAndWrong) {
  ScoreResult ok = checker_->score(request("def add(a, b):\n    return a + b", kAddTests));
  EXPECT_EQ(ok.reward, 1.0);
  EXPECT_EQ(ok.reason, "correct");
  ASSERT_EQ(ok.cases.size(), 3u);
  for (const CaseVerdict& c : ok.cases) EXPECT_EQ(c.verdict, "pass") << c.detail;
  EXPECT_EQ(ok.extracted, "def add(a, b):\n    return a + b\n");
  ASSERT_EQ(ok.components.size(), 1u);
  EXPECT_EQ(ok.components[0].name, "code");

  ScoreResult wrong = checker_->score(request("def add(a, b):\n    return a * b if a > 0 else a + b", kAddTests));
  EXPECT_EQ(wrong.reward, 0.0);
  EXPECT_EQ(wrong.reason, "wrong");
  ASSERT_EQ(wrong.cases.size(), 3u);
  EXPECT_EQ(wrong.cases[0].verdict, "wrong_answer");
  EXPECT_NE(wrong.cases[0].detail.find("AssertionError"), std::string::npos) << wrong.cases[0].detail;
  EXPECT_EQ(wrong.cases[1].verdict, "pass");

  ScoreResult crash = checker_->score(request("def add(a, b):\n    return a + c", kAddTests));
  EXPECT_EQ(crash.reason, "runtime_error");
  EXPECT_NE(crash.cases[0].detail.find("NameError"), std::string::npos) << crash.cases[0].detail;

  ScoreResult syntax = checker_->score(request("def add(a, b)\n    return a + b", kAddTests));
  EXPECT_EQ(syntax.reason, "runtime_error");
  EXPECT_NE(syntax.cases[0].detail.find("SyntaxError"), std::string::npos) << syntax.cases[0].detail;
}

TEST_F(CodeCheckerScore, HumanEvalStyleCheckWithEntryPoint) {
  const char* spec =
      R"({"test_code": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 9\n",
                         "entry_point": "square", "setup": "import math"})";
  EXPECT_EQ(checker_->score(request("def square(x):\n    return x * x", spec)).reward, 1.0);
  ScoreResult wrong = checker_->score(request("def square(x):\n    return 2 * x", spec));
  EXPECT_EQ(wrong.reason, "wrong");
  ScoreResult missing = checker_->score(request("def cube(x):\n    return x ** 3", spec));
  EXPECT_EQ(missing.reason, "runtime_error");
  EXPECT_NE(missing.cases[0].detail.find("NameError"), std::string::npos) << missing.cases[0].detail;
}

TEST_F(CodeCheckerScore, IoStyleCorrectWrongAndWhitespace) {
  ScoreResult ok = checker_->score(request("a, b = map(int, input().split())\nprint(a + b)", kSumIo));
  EXPECT_EQ(ok.reward, 1.0);
  EXPECT_EQ(ok.reason, "correct");
  ScoreResult sloppy = checker_->score(request(
      "import sys\na, b = map(int, sys.stdin.read().split())\nsys.stdout.write('  %d   \\r\\n\\n\\n' % (a + b))",
      kSumIo));
  EXPECT_EQ(sloppy.reward, 1.0) << sloppy.cases[0].verdict << " " << sloppy.cases[0].detail;
  ScoreResult wrong = checker_->score(request("a, b = map(int, input().split())\nprint(a - b)", kSumIo));
  EXPECT_EQ(wrong.reward, 0.0);
  EXPECT_EQ(wrong.reason, "wrong");
  EXPECT_EQ(wrong.cases[0].verdict, "wrong_answer");
  EXPECT_NE(wrong.cases[0].detail.find("expected \"3\""), std::string::npos) << wrong.cases[0].detail;
  ScoreResult crash = checker_->score(request("raise SystemExit(3)", kSumIo));
  EXPECT_EQ(crash.cases[0].verdict, "runtime_error");
  // A large input goes in through stdin without blocking anyone.
  std::string big = R"({"cases": [{"input": ")" + std::string(300000, '7') + R"(\n", "output": "300000"}]})";
  EXPECT_EQ(checker_->score(request("print(len(input()))", big)).reward, 1.0);
}

TEST(CodeChecker, FractionReward) {
  auto checker = make_code_checker(R"("reward": "fraction")");
  GRPO_REQUIRE_SANDBOX(*checker);
  ScoreResult r = checker->score(request("def add(a, b):\n    return a * b if a > 0 else a + b", kAddTests));
  EXPECT_NEAR(r.reward, 1.0 / 3.0, 1e-12);
  EXPECT_EQ(r.reason, "wrong");
  EXPECT_NEAR(r.components[0].value, 1.0 / 3.0, 1e-12);
  ScoreResult io = checker->score(request("a, b = map(int, input().split())\nprint(3)", kSumIo));
  EXPECT_DOUBLE_EQ(io.reward, 0.5) << io.cases[0].verdict << " " << io.cases[0].detail << " | " << io.cases[1].verdict
                                   << " " << io.cases[1].detail;
}

TEST_F(CodeCheckerScore, NoCodeBlock) {
  for (const char* completion : {"The answer is to add them.", "```python\n\n   \n```", "```java\nclass A {}\n```"}) {
    ScoreRequest req;
    req.completion = completion;
    req.reference = kAddTests;
    req.id = 42;
    ScoreResult r = checker_->score(req);
    EXPECT_EQ(r.reward, 0.0);
    EXPECT_EQ(r.reason, "no_code") << completion;
    EXPECT_EQ(r.id, 42u);
    EXPECT_TRUE(r.cases.empty());
  }
  // A malformed spec is the caller's mistake, even when the model gave no code.
  ScoreRequest bad;
  bad.completion = "nothing";
  bad.reference = "{\"tests\": 3}";
  EXPECT_THROW(checker_->score(bad), Error);
}

TEST(CodeChecker, SpecLimitsOverrideDefaultsWithinCaps) {
  ConfigNode options = ConfigNode::from_string(
      R"({"timeout_s": 2, "max_timeout_s": 3, "memory_mb": 96, "max_memory_mb": 256})", "opts");
  CodeChecker checker(options);
  options.finish();
  GRPO_REQUIRE_SANDBOX(checker);
  // 150 MB fails under the default 96 MB; the spec's 4096 MB is clamped to 256 MB, enough.
  const char* alloc = "x = bytearray(150 << 20)\ndef add(a, b):\n    return a + b";
  EXPECT_EQ(checker.score(request(alloc, R"({"tests": ["assert add(1, 2) == 3"]})")).reason, "memory");
  EXPECT_EQ(checker.score(request(alloc, R"({"tests": ["assert add(1, 2) == 3"], "memory_mb": 4096})")).reward, 1.0);
  // The spec's 100 s is clamped to 3 s (and is longer than the 2 s default). The default is
  // generous so that a loaded CI machine still starts Python and allocates within it.
  auto start = std::chrono::steady_clock::now();
  ScoreResult r = checker.score(request("while True:\n    pass", R"({"tests": ["assert True"], "timeout_s": 100})"));
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.reason, "timeout");
  EXPECT_GT(elapsed, 2.9);
  EXPECT_LT(elapsed, 6.0);
}

TEST_F(CodeCheckerScore, SpecTimeoutOverrideIsApplied) {
  auto start = std::chrono::steady_clock::now();
  ScoreResult r = checker_->score(request("while True:\n    pass", R"({"tests": ["assert True"], "timeout_s": 0.5})"));
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.reason, "timeout");
  EXPECT_LT(elapsed, 1.9);
}

TEST_F(CodeCheckerScore, ConcurrentScoresAreIndependent) {
  std::vector<std::thread> threads;
  std::vector<double> rewards(6, -1);
  for (size_t t = 0; t < rewards.size(); ++t) {
    threads.emplace_back([&, t] {
      bool good = t % 2 == 0;
      rewards[t] =
          checker_
              ->score(request(good ? "def add(a, b):\n    return a + b" : "def add(a, b):\n    return 0", kAddTests))
              .reward;
    });
  }
  for (auto& th : threads) th.join();
  for (size_t t = 0; t < rewards.size(); ++t) EXPECT_EQ(rewards[t], t % 2 == 0 ? 1.0 : 0.0) << t;
}

TEST(CodeChecker, CasesRunInParallel) {
  auto checker = make_code_checker();
  GRPO_REQUIRE_SANDBOX(*checker);
  const char* spec = R"j({"tests": ["assert f()", "assert f()", "assert f()", "assert f()"]})j";
  auto start = std::chrono::steady_clock::now();
  ScoreResult r = checker->score(request("import time\ndef f():\n    time.sleep(1.0)\n    return True", spec));
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.reward, 1.0) << r.reason << ": " << (r.cases.empty() ? "" : r.cases[0].detail);
  // Serially the four cases take at least 4 s; two slots finish in about 2 s plus start-up.
  EXPECT_LT(elapsed, 3.95) << "4 cases of 1 s on max_parallel 2 should take about 2 s";
}

TEST(CodeChecker, RefusesToRunWithoutAWorkingSandbox) {
  for (const char* bwrap : {"/bin/false", "/nonexistent/bwrap"}) {
    auto checker = make_code_checker(std::string(R"("bwrap": ")") + bwrap + "\"");
    EXPECT_FALSE(checker->sandbox_available()) << bwrap;
    EXPECT_FALSE(checker->unavailable_reason().empty());
    ScoreResult r = checker->score(request("def add(a, b):\n    return a + b", kAddTests));
    EXPECT_EQ(r.reward, 0.0);
    EXPECT_EQ(r.reason, "sandbox_unavailable");
    ASSERT_EQ(r.cases.size(), 3u);
    EXPECT_EQ(r.cases[0].verdict, "sandbox_error");
    EXPECT_EQ(r.cases[0].detail, checker->unavailable_reason());
  }
}

TEST(CodeChecker, RegistryAndStrictOptions) {
  CheckerRegistry registry;
  register_code_checkers(registry);
  ASSERT_TRUE(registry.has("code"));
  ConfigNode ok = ConfigNode::from_string(R"({"reward": "fraction", "timeout_s": 2})", "opts");
  std::unique_ptr<RewardChecker> checker = registry.create("code", ok);
  EXPECT_EQ(checker->name(), "code");
  ConfigNode typo = ConfigNode::from_string(R"({"timeout": 2})", "opts");
  EXPECT_THROW(registry.create("code", typo), Error);
  for (const char* bad :
       {R"({"reward": "best"})", R"({"language": "cobol"})", R"({"python": "/opt/python3"})", R"({"max_parallel": 0})",
        R"({"timeout_s": 0})", R"({"memory_mb": 4})", R"({"timeout_s": 90})"}) {
    ConfigNode opts = ConfigNode::from_string(bad, "opts");
    EXPECT_THROW(registry.create("code", opts), Error) << bad;
  }
}

}  // namespace
}  // namespace grpo::rewards
