// The "math" reward checker: extracts the final answer from a completion and decides whether
// it equals the reference answer, the way a careful human grader would (issue #5).
//
// Options (a strict ConfigNode; unknown keys are errors):
//   "extract"          list of extraction methods, tried in this order; default
//                      ["boxed", "answer_tag", "gsm8k", "the_answer_is"]:
//                        boxed          the last \boxed{...} or \fbox{...} (nested braces; also `\boxed 5`)
//                        answer_tag     the last <answer>...</answer> (a \boxed inside it wins)
//                        gsm8k          the rest of the line after the last `#### `
//                        the_answer_is  the rest of the sentence after the last "the (final) answer is"
//                                       (case-insensitive, a trailing period stripped)
//   "rel_tol"          relative tolerance of the numeric comparison (default 1e-6)
//   "max_answer_chars" extracted answers longer than this are "unparsable" (default 1000)
//   "time_limit_ms"    budget of one comparison; past it the answer is "unparsable" (default 1000)
//
// Reward: component "math" with value 1 (correct) or 0; reasons "correct", "wrong",
// "no_answer" (nothing extracted) and "unparsable" (the extracted answer could not be read, or
// is too large or too deep to evaluate within the budget). `extracted` is the extracted answer,
// capped at 512 bytes. The reference is used whole, unless it contains a \boxed{} (then its
// last box) or a GSM8K "#### x" line (then x). An empty reference is a grpo::Error.
//
// Rules (math_lexer.h, math_answer.h, math_parse.h and math_compare.h give the details):
//   - Answers are read as: a number or expression; a list of solutions ("2, 3", "x=2 or x=3",
//     "\pm 2"); a set \{...\}; a tuple (a,b,...) or vector [a,b,c]; an interval with open or
//     closed ends, or a union of intervals (a union of sets is one set); a matrix
//     (pmatrix/bmatrix); an equation or inequality. A leading "x =" (one variable, f(x), or a
//     tuple of variables "(x, y) =") on either side is dropped; "x = 2+3 = 5" and "10/2 = 5" count
//     their last part; "x > 2", "2 < x \le 5" are read as intervals. An equation with one
//     constant side states that constant ("m+n = 7" matches 7) unless its other side is a
//     multiple of one term ("2x = 14" does not match 14).
//   - Numbers are exact: decimals are rationals (0.5 = 1/2) and 0.\overline{3} = 1/3. Two
//     integers must be identical (1000000007 != 1000000008 at any tolerance); other exact
//     numbers match when |a-b| < rel_tol * max(|a|,|b|), so 0.333 and 0.333333 are not 1/3 while
//     0.3333333 is (1/3 needs 7 significant digits at the default tolerance).
//   - Expressions are equal when GiNaC simplifies their difference to 0 (expand, normal), or
//     when they agree numerically within rel_tol (40 digits, checked against 80): constants at
//     one point, expressions with free symbols at 6 points (3 with every symbol positive, 3 with
//     mixed signs, so |x| != x and \sqrt{x^2} != x); every point where both evaluate must agree,
//     and at least 3 must. Expressions with symbols that differ by a nonzero constant are never
//     equal (x^{10^9} vs x^{10^9}+1).
//   - Percentages: x\% equals x and x/100 (so 50\% matches 50, 50\% and 0.5); a number without
//     % matches x\% the same way from the other side. Both with % compare the raw numbers.
//     Degrees work alike: x^\circ equals x and x*pi/180. Inside a function (\sin 30^\circ) a
//     degree is pi/180, and inside an expression a percent is 1/100.
//   - Lists of solutions and sets are unordered multisets (matched one to one); tuples, vectors,
//     intervals and matrices are ordered. A bare list matches a set (unordered) or a
//     parenthesised tuple (in order); a set never matches a tuple; a one-element set matches its
//     element. Two-element brackets matter: (a,b) is an open interval or pair, [a,b] a closed
//     interval, [a,b) half-open; beside +-\infty the bracket kind is ignored. Vectors of three or
//     more match whichever brackets.
//   - Thousands separators: 1{,}000 and 2,\!500 always; 1,000 and 1,000,000 only outside
//     brackets and only when every top-level comma is followed by exactly three digits and no
//     space (so "1,2" and "1, 000" are lists); "1 000" and "1\,000" (groups of three) too.
//   - Units in \text{}/\mathrm{} and common unit words (cm, dollars, hours, ...) are dropped,
//     with their power (\text{cm}^2); \text{ or }, "and", \lor separate solutions. 1.5e3 is
//     scientific notation (1500), as is 1.5\times10^{3}.
//   - `^` takes a whole number (2^10 = 1024); \frac12 and \sqrt2 follow LaTeX (one character).
//     3\frac{1}{2} is a mixed number (7/2). \log is the natural logarithm, \log_b x base b.
//     e is Euler's number, i the imaginary unit; variables are case-sensitive.
//   - Exact numbers are limited to 2^18 bits (about 78,900 digits): larger powers (checked
//     before GiNaC computes them), n! for n > 5000, binomial(n, k) for n > 10^5 (or k > 50 with
//     n symbolic) and nesting deeper than 200 make the answer "unparsable", unless it is
//     textually identical to the reference.
//   - Before any of that, answers that are equal as text (after dropping spaces, $, \left,
//     \right, \text{} wrappers and spacing commands) are correct; so are one-word answers equal
//     up to case ("Yes", \text{yes}) and multiple-choice letters "C" / "(C)" / \text{(C)}. A
//     reference that cannot be parsed is compared as text only.
//   - Not read (unparsable): \lim, \sum, \int, \dots, ratios "3:4", environments other than
//     matrices (pmatrix, bmatrix, Bmatrix, matrix, smallmatrix, array), Unicode other than
//     common math signs.
//
// Thread safety: score() may be called from many threads. GiNaC's reference counts and
// globals (Digits) are not thread-safe, so all GiNaC work in this process runs under one mutex
// (extraction and lexing run outside it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "rewards/checker.h"
#include "rewards/registry.h"

namespace grpo::rewards {

struct MathCheckerOptions {
  std::vector<std::string> extract = {"boxed", "answer_tag", "gsm8k", "the_answer_is"};
  double rel_tol = 1e-6;
  size_t max_answer_chars = 1000;
  int64_t time_limit_ms = 1000;
};

// Reads and checks the options above (throws grpo::Error on a bad value).
MathCheckerOptions math_checker_options(ConfigNode& options);

std::unique_ptr<RewardChecker> make_math_checker(const MathCheckerOptions& options);

// Registers "math".
void register_math_checkers(CheckerRegistry& registry);

}  // namespace grpo::rewards
