// The math checker's equivalence table: pairs of (reference, prediction) that must be equal or
// must not be, one block per kind of answer (issue #5).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "rewards/math/math_compare.h"

namespace grpo::rewards::math {
namespace {

struct Pair {
  const char* reference;
  const char* predicted;
};

void expect_all(const std::vector<Pair>& pairs, Verdict want) {
  for (const Pair& p : pairs) {
    Verdict got = compare_answers(p.reference, p.predicted);
    EXPECT_EQ(got, want) << "reference: " << p.reference << "  -> " << describe_answer(p.reference)
                         << "\npredicted: " << p.predicted << "  -> " << describe_answer(p.predicted) << "\nwant "
                         << verdict_name(want) << ", got " << verdict_name(got);
  }
}

TEST(MathEquiv, IntegersAndDecimals) {
  expect_all({{"2", "2"},      {"2", "2.0"},           {"-3", "-3"},      {"0", "0.0"},
              {"7", "007"},    {"1000", "1000.00"},    {"0.5", ".5"},     {"2", "+2"},
              {"42", "$42$"},  {"42", "\\$42"},        {"3", "3."},       {"-0", "0"},
              {"18", "18.00"}, {"0.1", "0.10"},        {"-2.5", "-2.50"}, {"2", "\\left(2\\right)"},
              {"3", "{3}"},    {"12", "\\mathbf{12}"}, {"5", "\\(5\\)"},  {"4", "\\[4\\]"}},
             Verdict::kEqual);
}

TEST(MathEquiv, Fractions) {
  expect_all({{"\\frac{1}{2}", "1/2"},
              {"\\frac{1}{2}", "\\dfrac{1}{2}"},
              {"\\frac{1}{2}", "\\tfrac12"},
              {"\\frac{2}{4}", "\\frac12"},
              {"\\frac{3}{2}", "1.5"},
              {"0.5", "\\frac12"},
              {"1.25", "\\frac{5}{4}"},
              {"-0.75", "-\\frac{3}{4}"},
              {"\\frac{-1}{2}", "-\\frac{1}{2}"},
              {"\\frac{1}{-2}", "-0.5"},
              {"\\frac{6}{8}", "\\frac{3}{4}"},
              {"\\frac{1}{3}", "\\frac{2}{6}"},
              {"\\frac{1}{2}", "1 / 2"},
              {"\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}"},
              {"\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"},
              {"\\frac{1}{3}", "0.\\overline{3}"},
              {"\\frac{1}{6}", "0.1\\overline{6}"},
              {"\\frac{1}{3}", "0.3333333"},
              {"\\frac{2}{3}", "0.66666667"},
              {"\\frac{a}{b}", "a/b"},
              {"\\frac{1}{2}", "\\cfrac{1}{2}"},
              {"\\frac{3}{4}", "3/4"}},
             Verdict::kEqual);
}

TEST(MathEquiv, MixedNumbers) {
  expect_all({{"\\frac{7}{2}", "3\\frac{1}{2}"},
              {"3.5", "3\\frac12"},
              {"-\\frac{7}{2}", "-3\\frac{1}{2}"},
              {"\\frac{10}{3}", "3\\frac{1}{3}"},
              {"2\\frac{1}{4}", "2.25"},
              {"3 \\frac{1}{2}", "3\\frac{1}{2}"}},
             Verdict::kEqual);
}

TEST(MathEquiv, RootsAndPowers) {
  expect_all({{"\\sqrt{2}", "2^{1/2}"},
              {"\\sqrt{8}", "2\\sqrt{2}"},
              {"\\sqrt{12}", "2\\sqrt3"},
              {"\\sqrt[3]{8}", "2"},
              {"\\sqrt[3]{2}", "2^{1/3}"},
              {"2^{10}", "1024"},
              {"2^10", "1024"},
              {"x^2", "x^{2}"},
              {"\\sqrt{2}\\sqrt{3}", "\\sqrt{6}"},
              {"\\sqrt{18}", "3\\sqrt{2}"},
              {"4^{1/2}", "2"},
              {"8^{-1/3}", "\\frac{1}{2}"},
              {"(\\sqrt{5})^2", "5"},
              {"2^{-2}", "0.25"},
              {"\\sqrt{\\frac{1}{4}}", "\\frac12"},
              {"\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}"},
              {"2^{2^{3}}", "256"},
              {"\\sqrt{2}", "1.41421356237"},
              {"2^{100}", "1267650600228229401496703205376"},
              {"\\sqrt[4]{16}", "2"},
              {"27^{2/3}", "9"},
              {"3^{-1}", "\\frac13"}},
             Verdict::kEqual);
}

TEST(MathEquiv, ConstantsAndFunctions) {
  expect_all({{"\\pi", "\\pi"},
              {"2\\pi", "2 \\pi"},
              {"\\frac{\\pi}{2}", "\\pi/2"},
              {"\\frac{\\pi}{2}", "0.5\\pi"},
              {"e", "e^1"},
              {"e^{2}", "\\exp(2)"},
              {"\\infty", "\\infty"},
              {"-\\infty", "-\\infty"},
              {"\\pi r^2", "r^2\\pi"},
              {"3.14159265358979", "\\pi"},
              {"\\ln 8", "3\\ln 2"},
              {"\\log_2 8", "3"},
              {"\\log_{3} 81", "4"},
              {"-1", "e^{i\\pi}"},
              {"-1", "i^2"},
              {"2i", "(1+i)^2"},
              {"\\frac{1}{2}", "\\sin 30^\\circ"},
              {"\\frac{1}{2}", "\\cos\\frac{\\pi}{3}"},
              {"1", "\\tan(\\pi/4)"},
              {"\\frac{\\pi}{4}", "\\arctan 1"},
              {"\\frac{\\pi}{6}", "\\sin^{-1}(1/2)"},
              {"2", "\\sqrt{2}^2"},
              {"\\pi", "π"},
              {"6", "3!"},
              {"10", "\\binom{5}{2}"},
              {"10", "{5 \\choose 2}"},
              {"120", "5!"},
              {"3", "|-3|"},
              {"2", "\\left|-2\\right|"},
              {"e^{x}", "\\exp(x)"}},
             Verdict::kEqual);
}

TEST(MathEquiv, Operators) {
  expect_all({{"6", "2\\cdot3"},
              {"6", "2\\times 3"},
              {"3", "6\\div2"},
              {"0.5", "\\left(\\frac{1}{2}\\right)"},
              {"12", "3 \\times 4"},
              {"2", "\\frac{4}{2}"},
              {"6", "2 × 3"},
              {"-2", "−2"},
              {"1", "\\left( \\frac{1}{2} \\right) \\cdot 2"},
              {"8", "2^3"},
              {"-4", "-2^2"},
              {"4", "(-2)^2"}},
             Verdict::kEqual);
}

TEST(MathEquiv, ThousandsSeparators) {
  expect_all({{"1000", "1,000"},
              {"1000", "1{,}000"},
              {"1000", "1 000"},
              {"1000000", "1,000,000"},
              {"1234567", "1,234,567"},
              {"1000", "1\\,000"},
              {"1234.5", "1,234.5"},
              {"12345", "12,345"},
              {"1,000", "1000"},
              {"\\$1,250", "1250"},
              {"1{,}000{,}000", "10^6"},
              {"2500", "2,\\!500"},
              {"1000000", "1,\\!000,\\!000"}},
             Verdict::kEqual);
}

TEST(MathEquiv, PercentagesAndDegrees) {
  expect_all({{"50\\%", "50"},
              {"50\\%", "0.5"},
              {"50\\%", "50\\%"},
              {"50", "50\\%"},
              {"0.5", "50\\%"},
              {"12.5\\%", "\\frac{1}{8}"},
              {"25\\%", "25 percent"},
              {"50%", "50\\%"},
              {"30^\\circ", "30"},
              {"30^\\circ", "30^{\\circ}"},
              {"30^\\circ", "\\frac{\\pi}{6}"},
              {"30", "30^\\circ"},
              {"\\frac{\\pi}{6}", "30^\\circ"},
              {"45", "45 degrees"},
              {"90^\\circ", "90\\degree"},
              {"60", "60°"},
              {"45^\\circ", "45 \\text{ degrees}"}},
             Verdict::kEqual);
}

TEST(MathEquiv, UnitsAndText) {
  expect_all({{"5", "5 \\text{ cm}"},
              {"5", "5\\mathrm{cm}"},
              {"12", "12 \\text{dollars}"},
              {"5", "5 cm"},
              {"3", "3 \\text{ units}"},
              {"10", "\\$10"},
              {"7", "\\text{7}"},
              {"\\text{Monday}", "Monday"},
              {"\\text{(A)}", "(A)"},
              {"A", "\\textbf{A}"},
              {"4", "4 \\, \\mathrm{kg}"},
              {"\\text{yes}", "Yes"},
              {"\\text{(C)}", "C"},
              {"C", "\\textbf{(C)}"},
              {"\\frac{1}{2}", "\\frac{1}{2}\\text{ cm}^2"},
              {"20", "20\\text{ m}^{2}"},
              {"6", "6 cm^2"},
              {"4", "2²"}},
             Verdict::kEqual);
}

TEST(MathEquiv, ScientificNotation) {
  expect_all({{"1500", "1.5e3"},
              {"1500", "1.5\\times10^{3}"},
              {"0.001", "1e-3"},
              {"1.5 \\times 10^{3}", "1500"},
              {"2.5\\times 10^{-4}", "0.00025"},
              {"1000000", "1E6"},
              {"3 \\cdot 10^8", "300000000"},
              {"6.02 \\times 10^{23}", "6.02e23"}},
             Verdict::kEqual);
}

TEST(MathEquiv, LeadingVariable) {
  expect_all({{"x = 5", "5"},
              {"5", "x=5"},
              {"y=2x+3", "2x+3"},
              {"x=3", "x = 3"},
              {"\\theta = \\frac{\\pi}{4}", "\\frac{\\pi}{4}"},
              {"f(x) = x^2", "x^2"},
              {"5", "x = 2 + 3 = 5"},
              {"x_1 = 2", "2"},
              {"5", "5 = x"},
              {"k = 7", "n = 7"},
              {"x = \\frac{1}{2}", "0.5"},
              {"5", "\\frac{10}{2} = 5"},
              {"12", "3 \\cdot 4 = 12"}},
             Verdict::kEqual);
}

TEST(MathEquiv, Intervals) {
  expect_all({{"[0,1)", "[0, 1)"},
              {"(0,1]", "\\left(0,1\\right]"},
              {"(-\\infty, 2]", "(-\\infty,2]"},
              {"[2,\\infty)", "x \\ge 2"},
              {"(-\\infty, 3)", "x<3"},
              {"(1,5]", "1 < x \\le 5"},
              {"(-\\infty,0)\\cup(1,\\infty)", "(1,\\infty)\\cup(-\\infty,0)"},
              {"(2, \\infty)", "x > 2"},
              {"[1,2]", "[1,2]"},
              {"(-\\infty, \\infty)", "(-\\infty,\\infty)"},
              {"[\\frac12, 3)", "[0.5, 3)"},
              {"(-\\infty, 2]", "[-\\infty, 2]"},
              {"(0,1)", "0<x<1"},
              {"[-1, 1]", "-1 \\le x \\le 1"},
              {"(2, 5)", "5 > x > 2"},
              {"[3, \\infty)", "x \\in [3, \\infty)"},
              {"(-\\infty, -1) \\cup (1, \\infty)", "x \\in (-\\infty,-1)\\cup(1,\\infty)"}},
             Verdict::kEqual);
}

TEST(MathEquiv, TuplesVectorsMatrices) {
  expect_all({{"(1,2)", "(1, 2)"},
              {"(1,2)", "\\left(1,2\\right)"},
              {"(1, -2, 3)", "(1,-2,3)"},
              {"(1,2)", "1, 2"},
              {"(\\frac12, 3)", "(0.5, 3)"},
              {"(3, 4)", "x=3, y=4"},
              {"[1,2,3]", "(1,2,3)"},
              {"\\langle 1, 2, 3\\rangle", "(1,2,3)"},
              {"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"},
              {"\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}", "\\begin{bmatrix} 1 & 2 \\\\ 3 & 4 \\end{bmatrix}"},
              {"\\begin{pmatrix} \\frac12 \\\\ -1 \\end{pmatrix}", "\\begin{pmatrix} 0.5 \\\\ -1 \\end{pmatrix}"},
              {"((1,2),(3,4))", "((1, 2), (3, 4))"}},
             Verdict::kEqual);
}

TEST(MathEquiv, SetsAndSolutionLists) {
  expect_all({{"\\{2,3\\}", "\\{3,2\\}"},
              {"2,3", "3,2"},
              {"x=2 \\text{ or } x=3", "3, 2"},
              {"\\{2,3\\}", "x=2 or x=3"},
              {"2, 3", "\\{2, 3\\}"},
              {"\\pm 2", "2, -2"},
              {"x=\\pm2", "-2,2"},
              {"2 \\pm \\sqrt{3}", "2+\\sqrt3, 2-\\sqrt3"},
              {"\\{1,2,3\\}", "\\{3,1,2\\}"},
              {"1, 2", "x = 1 \\text{ and } x = 2"},
              {"\\emptyset", "\\{\\}"},
              {"\\{5\\}", "5"},
              {"x = 1, 2", "\\{1, 2\\}"},
              {"x \\in \\{1,2\\}", "\\{2,1\\}"},
              {"-1, \\frac{1}{2}", "0.5; -1"},
              {"\\varnothing", "\\emptyset"},
              {"x = 1 \\lor x = 2", "2, 1"},
              {"\\frac{-1 \\pm \\sqrt{5}}{2}", "\\frac{-1-\\sqrt5}{2}, \\frac{-1+\\sqrt5}{2}"}},
             Verdict::kEqual);
}

TEST(MathEquiv, SymbolicExpressions) {
  expect_all({{"(x+1)^2", "x^2+2x+1"},
              {"x^2-1", "(x-1)(x+1)"},
              {"\\frac{x^2-1}{x-1}", "x+1"},
              {"2x", "x+x"},
              {"\\sin^2 x + \\cos^2 x", "1"},
              {"\\frac{1}{x}+\\frac{1}{y}", "\\frac{x+y}{xy}"},
              {"a^2 b", "b a^2"},
              {"2\\sin x \\cos x", "\\sin 2x"},
              {"\\frac{x}{2}", "0.5x"},
              {"3x+2y", "2y+3x"},
              {"(a+b)^3", "a^3+3a^2b+3ab^2+b^3"},
              {"x^{-1}", "\\frac{1}{x}"},
              {"\\sqrt{x}\\sqrt{x}", "x"},
              {"\\frac{\\pi r^2}{4}", "\\frac{1}{4}\\pi r^2"},
              {"|x|", "\\left|x\\right|"},
              {"n!", "n!"},
              {"\\alpha + \\beta", "\\beta+\\alpha"},
              {"e^{\\ln x}", "x"},
              {"\\frac{2}{x^2-1}", "\\frac{1}{x-1}-\\frac{1}{x+1}"},
              {"x_1 + x_2", "x_2 + x_1"},
              {"\\frac{\\sqrt{3}}{2}a^2", "\\frac{a^2\\sqrt{3}}{2}"},
              {"(x+1)^{10}", "(1+x)^{10}"},
              {"x^2 y", "y \\cdot x \\cdot x"},
              {"\\cos(2\\theta)", "1 - 2\\sin^2\\theta"}},
             Verdict::kEqual);
}

TEST(MathEquiv, Relations) {
  expect_all({{"x + y = 1", "y + x = 1"},
              {"2x + 2y = 2", "x + y = 1"},
              {"y > x", "x < y"},
              {"x^2 + y^2 = 1", "y^2 + x^2 - 1 = 0"},
              {"x + y \\le 3", "3 \\ge y + x"},
              {"2y - 4x = 6", "-4x + 2y - 6 = 0"},
              {"x \\ne y", "y \\neq x"}},
             Verdict::kEqual);
}

TEST(MathEquiv, RealisticAnswers) {
  expect_all({{"\\$18.90", "18.9"},
              {"10\\sqrt{2}", "\\sqrt{200}"},
              {"x^2+7x+10", "(x+2)(x+5)"},
              {"\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)"},
              {"\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix}-\\frac13\\\\ \\frac23\\end{pmatrix}"},
              {"6\\pi", "6π"},
              {"12\\text{ inches}", "12"},
              {"\\text{even}", "Even"},
              {"y = -\\frac{1}{2}x + 3", "y=-0.5x+3"},
              {"x \\in [-2, 7]", "[-2,7]"},
              {"a = 2, b = 3", "(2, 3)"},
              {"(x, y) = (1, 2)", "(1,2)"},
              {"0.\\overline{36}", "\\frac{4}{11}"},
              {"-\\sqrt{3}", "-1.7320508"},
              {"\\frac{25}{4}", "6\\frac{1}{4}"},
              {"\\dfrac{14}{3}", "4\\tfrac{2}{3}"},
              {"-2,1", "x=-2 \\text{ and } x=1"},
              {"\\sqrt{2}+\\sqrt{3}", "\\sqrt{5+2\\sqrt{6}}"},
              {"e^{-1}", "\\frac{1}{e}"},
              {"\\ln 2", "\\log 2"},
              {"1", "\\log_{10} 10"},
              {"\\frac{5!}{3!}", "20"},
              {"\\cos^{2}x", "\\frac{1+\\cos 2x}{2}"},
              {"\\tan x", "\\frac{\\sin x}{\\cos x}"},
              {"\\sec x", "\\frac1{\\cos x}"},
              {"7", "m+n = 7"},
              {"\\boxed{5}", "5"},
              {"3", "3.0."},
              {"2.5\\%", "0.025"},
              {"\\mathrm{(B)}", "B"},
              {"\\frac{-b}{2a}", "-\\frac{b}{2a}"},
              {"\\{1, 2\\} \\cup \\{2, 3\\}", "\\{1,2,3\\}"},
              {"n(n+1)/2", "\\frac{n^2+n}{2}"},
              {"3 \\le x \\le 5", "[3,5]"},
              {"-i", "\\frac{1}{i}"},
              {"\\sqrt{-4}", "2i"},
              {"27\\text{ cm}^3", "27"},
              {"\\$1,000,000", "1000000"},
              {"x=\\frac{3}{2}", "1\\frac12"}},
             Verdict::kEqual);
  expect_all({{"x=1", "x = 1, x = 1"},
              {"14", "2x = 14"},
              {"7", "2x = 7"},
              {"7", "m + n = 8"},
              {"\\{1, 2\\} \\cup \\{3\\}", "\\{1,2\\}"}},
             Verdict::kNotEqual);
}

TEST(MathEquiv, NeverEqualByAccident) {
  expect_all({{"2", "20"},
              {"20", "2"},
              {"1/2", "2"},
              {"\\frac12", "2"},
              {"[0,1)", "[0,1]"},
              {"(1,2)", "\\{1,2\\}"},
              {"\\{1,2\\}", "(1,2)"},
              {"1/3", "0.333"},
              {"\\frac13", "0.33"},
              {"\\frac13", "0.333333"},
              {"1000000007", "1000000008"},
              {"2^{100}", "2^{100}+1"},
              {"3", "-3"},
              {"x", "y"},
              {"x+1", "x-1"},
              {"(x+1)^2", "x^2+1"},
              {"\\sqrt{2}", "1.414"},
              {"\\pi", "3.14"},
              {"(1,2)", "(2,1)"},
              {"(0,1)", "[0,1]"},
              {"(0,1]", "[0,1)"},
              {"\\{1,2\\}", "\\{1,2,3\\}"},
              {"1,2", "1,2,3"},
              {"2,3", "2"},
              {"x=2", "x=3"},
              {"50\\%", "5"},
              {"50\\%", "0.05"},
              {"50\\%", "0.5\\%"},
              {"30^\\circ", "\\frac{\\pi}{3}"},
              {"\\frac{\\pi}{6}", "30"},
              {"1,000", "1"},
              {"1,2", "12"},
              {"12", "1,2"},
              {"(1,2)", "[1,2]"},
              {"2", "2x"},
              {"x^2", "x^3"},
              {"\\sqrt{x^2}", "x"},
              {"|x|", "x"},
              {"e", "2.718"},
              {"1", "0.99999"},
              {"10", "10.1"},
              {"-\\infty", "\\infty"},
              {"(-\\infty,2)", "(-\\infty,2]"},
              {"x>2", "x \\ge 2"},
              {"y=2x", "y=3x"},
              {"x+y=1", "x-y=1"},
              {"x < y", "x > y"},
              {"1", "i"},
              {"0", "10^{-30}"},
              {"\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}"},
              {"\\{2\\}", "\\{2, 3\\}"},
              {"\\emptyset", "0"},
              {"5", "50 cm"},
              {"3\\frac12", "1.5"},
              {"\\frac{3}{2}", "3\\frac12"},
              {"10_{2}", "2"},
              {"0.5", "5"},
              {"2\\pi", "2"},
              {"1e3", "1"},
              {"x = 2", "y = 2x"},
              {"\\text{Monday}", "Tuesday"},
              {"1 000", "1, 000"},
              {"\\frac{1}{1000000}", "0"},
              {"(1,2,3)", "\\{1,2,3\\}"},
              {"2\\sqrt{2}", "\\sqrt{2}"},
              {"\\log_2 8", "\\log_3 8"},
              {"x^2 - 1", "x^2 + 1"},
              {"\\frac{x}{y}", "\\frac{y}{x}"},
              {"4", "\\sqrt{4}"},
              {"(1, 2)", "1"},
              {"\\text{yes}", "No"},
              {"\\text{(C)}", "D"},
              {"5", "2 + 2 = 4"},
              {"x^2", "X^2"}},
             Verdict::kNotEqual);
}

TEST(MathEquiv, UnparsablePredictions) {
  expect_all({{"1", "\\frac{1}{"},
              {"1", "((("},
              {"1", "1 +"},
              {"1", "\\frac{1}{0}"},
              {"1", "\\lim_{x\\to0} x"},
              {"1", "x =="},
              {"1", "\\dots"},
              {"1", "10^{10^{10}}"},
              {"1", "9^{9^{9^9}}"},
              {"1", "(10^6)!"},
              {"1", "\\sqrt{"},
              {"1", "2 3"},
              {"1", "☃"},
              {"1", ")("},
              {"1", "\\binom{10^9}{5}"},
              {"1", "1/0"},
              {"1", "\\begin{cases} 1 \\end{cases}"},
              {"1", "\\log 0"},
              {"1", "(2x)^{1000000}"}},
             Verdict::kUnparsable);
}

TEST(MathEquiv, TextuallyIdenticalHugeAnswersAreEqual) {
  // Too large to evaluate, but written identically: equal without evaluation.
  expect_all({{"10^{10^{10}}", "10^{10^{10}}"}, {"9^{9^{9^9}}", "9^{ 9^{9^9} }"}}, Verdict::kEqual);
}

TEST(MathEquiv, ToleranceOption) {
  CompareOptions loose;
  loose.rel_tol = 1e-2;
  EXPECT_EQ(compare_answers("\\frac13", "0.333", loose), Verdict::kEqual);
  EXPECT_EQ(compare_answers("\\pi", "3.14", loose), Verdict::kEqual);
  EXPECT_EQ(compare_answers("1000", "1001", loose), Verdict::kNotEqual);  // integers stay exact
  CompareOptions strict;
  strict.rel_tol = 0;
  EXPECT_EQ(compare_answers("\\frac13", "0.3333333", strict), Verdict::kNotEqual);
  EXPECT_EQ(compare_answers("\\frac12", "0.5", strict), Verdict::kEqual);
  EXPECT_EQ(compare_answers("(x+1)^2", "x^2+2x+1", strict), Verdict::kEqual);
}

TEST(MathEquiv, UnreadableReferenceIsComparedAsText) {
  EXPECT_EQ(compare_answers("\\dots weird", "\\dots weird"), Verdict::kEqual);
  EXPECT_EQ(compare_answers("\\dots weird", "5"), Verdict::kNotEqual);
  EXPECT_EQ(compare_answers("\\dots weird", "\\frac{"), Verdict::kUnparsable);
}

}  // namespace
}  // namespace grpo::rewards::math
