// Cross-check with Hugging Face math-verify: fixtures/math_verify_cases.json holds its verdicts
// on every pair of test_math_equiv.cpp and a few more (written by make_math_fixtures.py). We
// must agree on each case, except those marked "deliberate", where the fixture says why we
// differ and the test checks that we still do.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "rewards/math/math_compare.h"

namespace grpo::rewards::math {
namespace {

TEST(MathEquiv, AgreesWithMathVerify) {
  std::filesystem::path file = std::filesystem::path(__FILE__).parent_path() / "fixtures" / "math_verify_cases.json";
  std::ifstream in(file);
  if (!in) GTEST_SKIP() << "no fixture at " << file << " (run tests/rewards/make_math_fixtures.py)";
  nlohmann::json root = nlohmann::json::parse(in);
  const nlohmann::json& cases = root.at("cases");
  ASSERT_GT(cases.size(), 100u);
  size_t agree = 0, deliberate = 0;
  for (const nlohmann::json& c : cases) {
    std::string reference = c.at("reference"), predicted = c.at("predicted");
    bool theirs = c.at("math_verify");
    Verdict verdict = compare_answers(reference, predicted);
    bool ours = verdict == Verdict::kEqual;
    std::string context = "reference: " + reference + "\npredicted: " + predicted +
                          "\nmath-verify: " + (theirs ? "equal" : "not equal") + ", ours: " + verdict_name(verdict) +
                          "\nreference read as " + describe_answer(reference) + ", prediction as " +
                          describe_answer(predicted);
    if (c.contains("deliberate")) {
      ++deliberate;
      EXPECT_NE(ours, theirs) << "a documented disagreement no longer holds (" << c.at("deliberate").get<std::string>()
                              << ")\n"
                              << context;
    } else {
      EXPECT_EQ(ours, theirs) << context;
      agree += ours == theirs;
    }
  }
  std::printf("  math-verify: agree on %zu of %zu cases, %zu deliberate disagreements\n", agree,
              cases.size() - deliberate, deliberate);
}

}  // namespace
}  // namespace grpo::rewards::math
