// Final-answer extraction for the math checker.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "rewards/math/math_extract.h"

namespace grpo::rewards::math {
namespace {

const std::vector<ExtractMethod> kDefaultOrder = {ExtractMethod::kBoxed, ExtractMethod::kAnswerTag,
                                                  ExtractMethod::kGsm8k, ExtractMethod::kTheAnswerIs};

std::string extracted(std::string_view text, const std::vector<ExtractMethod>& order = kDefaultOrder) {
  auto e = extract_answer(text, order);
  return e ? e->answer : "<none>";
}

TEST(MathExtract, LastBoxedWithNestedBraces) {
  EXPECT_EQ(extracted("so \\boxed{1} or rather \\boxed{\\frac{1}{2}}."), "\\frac{1}{2}");
  EXPECT_EQ(extracted("\\boxed{\\{1, 2\\}}"), "\\{1, 2\\}");
  EXPECT_EQ(extracted("\\boxed{\\left(\\frac{a}{b}\\right)^{2}}"), "\\left(\\frac{a}{b}\\right)^{2}");
  EXPECT_EQ(extracted("\\fbox{42}"), "42");
  EXPECT_EQ(extracted("Thus $\\boxed 5$."), "5");
  EXPECT_EQ(extracted("\\boxed { 7 }"), "7");
  EXPECT_EQ(extracted("$\\boxed{x=2}$ and \\boxed{ }"), "x=2");  // an empty box is skipped
}

TEST(MathExtract, UnclosedLastBoxFallsBackToTheOneBefore) {
  EXPECT_EQ(extracted("\\boxed{3} ... finally \\boxed{4"), "3");
  EXPECT_EQ(extracted("\\boxed{"), "<none>");
  EXPECT_EQ(extracted("\\boxedfoo{3}"), "<none>");  // not the \boxed command
}

TEST(MathExtract, AnswerTag) {
  EXPECT_EQ(extracted("<think>2+2</think><answer> 4 </answer>"), "4");
  EXPECT_EQ(extracted("<answer>1</answer> then <answer>$\\frac{3}{4}$</answer>"), "\\frac{3}{4}");
  EXPECT_EQ(extracted("<answer>The result is \\boxed{9}</answer>", {ExtractMethod::kAnswerTag}), "9");
  EXPECT_EQ(extracted("<answer>unfinished", {ExtractMethod::kAnswerTag}), "<none>");
  EXPECT_EQ(extracted("<answer></answer>", {ExtractMethod::kAnswerTag}), "<none>");
}

TEST(MathExtract, Gsm8k) {
  EXPECT_EQ(extracted("Janet sells 16 - 3 - 4 = 9 eggs.\n#### 18"), "18");
  EXPECT_EQ(extracted("#### 1,234\nmore text"), "1,234");
  EXPECT_EQ(extracted("#### 5\n#### 6"), "6");
  EXPECT_EQ(extracted("####   "), "<none>");
}

TEST(MathExtract, TheAnswerIs) {
  EXPECT_EQ(extracted("So the answer is 42."), "42");
  EXPECT_EQ(extracted("THE ANSWER IS: $\\frac{1}{2}$."), "\\frac{1}{2}");
  EXPECT_EQ(extracted("The final answer is 3.5. Done."), "3.5");
  EXPECT_EQ(extracted("**The answer is 7**"), "7");
  EXPECT_EQ(extracted("The answer is 1. No wait, the answer is 2."), "2");
  EXPECT_EQ(extracted("My answer is 5."), "<none>");  // "the"/"final" must come first
  EXPECT_EQ(extracted("the answer is \\boxed{8} because"), "8");
}

TEST(MathExtract, NoAnswer) {
  EXPECT_EQ(extracted(""), "<none>");
  EXPECT_EQ(extracted("I think it is probably 5"), "<none>");
}

TEST(MathExtract, ConfiguredOrder) {
  std::string text = "<answer>1</answer> \\boxed{2} #### 3 the answer is 4";
  EXPECT_EQ(extracted(text), "2");
  EXPECT_EQ(extracted(text, {ExtractMethod::kAnswerTag, ExtractMethod::kBoxed}), "1");
  EXPECT_EQ(extracted(text, {ExtractMethod::kGsm8k}), "3 the answer is 4");
  EXPECT_EQ(extracted(text, {ExtractMethod::kTheAnswerIs}), "4");
  EXPECT_EQ(extracted("\\boxed{2}", {ExtractMethod::kGsm8k, ExtractMethod::kTheAnswerIs}), "<none>");
  auto e = extract_answer("#### 5", kDefaultOrder);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->method, ExtractMethod::kGsm8k);
}

TEST(MathExtract, MethodNames) {
  for (ExtractMethod m : kDefaultOrder) EXPECT_EQ(extract_method_from_name(extract_method_name(m)), m);
  EXPECT_FALSE(extract_method_from_name("box").has_value());
}

TEST(MathExtract, ReferenceAnswer) {
  EXPECT_EQ(reference_answer(" 42 "), "42");
  EXPECT_EQ(reference_answer("The sum is $\\boxed{\\frac{1}{2}}$."), "\\frac{1}{2}");
  EXPECT_EQ(reference_answer("Natalia sold 48/2 = 24 clips in May.\n#### 72"), "72");
}

TEST(MathExtract, ManyUnclosedBoxesStayLinear) {
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "\\boxed{";  // 140 kB, nothing closes
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(extracted(text), "<none>");
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 1.0);
}

}  // namespace
}  // namespace grpo::rewards::math
