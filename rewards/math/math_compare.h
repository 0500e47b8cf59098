// Deciding whether a predicted final answer equals the reference answer (math_checker.h has
// the user-facing rules). Thread-safe: all GiNaC work happens under one process-wide mutex.
//
// Scalars a, b (GiNaC expressions):
//   1. identical expressions are equal;
//   2. two exact rationals: two integers must be identical (1000000007 != 1000000008 whatever
//      the tolerance); otherwise |a-b| < rel_tol * max(|a|,|b|) (0.3333333 = 1/3, 0.333 != 1/3);
//   3. with free symbols, a - b simplifying to a nonzero number makes them different
//      (x^{10^9} vs x^{10^9} + 1, whatever the tolerance);
//   4. both are evaluated (40 and 80 digits; a value counts when the two agree and no power
//      or exp/trig argument is beyond what floats hold) at the comparison's points: one for constants,
//      6 when symbols occur (3 with every symbol positive, 3 with mixed signs; each symbol's
//      values depend only on its name). A point where both evaluate and |a-b| is at least
//      rel_tol * max(|a|,|b|) and at least 1e-25 makes them different;
//   5. exact simplification: expand(a-b) == 0 or normal(a-b) == 0 (skipped when an estimate
//      of the expansion passes 5000 terms);
//   6. otherwise equal when they agreed at every point where both evaluate and those were at
//      least 1 (constants) or 3 (with symbols).
// Percent and degree marks give a second reading (math_checker.h). Containers: lists and sets
// are matched unordered (one-to-one), tuples/matrices in order; relations are equal when
// their sides' differences have a constant ratio (positive for inequalities).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::rewards::math {

struct CompareOptions {
  double rel_tol = 1e-6;
  size_t max_answer_chars = 1000;
  int64_t time_limit_ms = 1000;
};

enum class Verdict { kEqual, kNotEqual, kUnparsable };

const char* verdict_name(Verdict v);  // "equal", "not_equal", "unparsable"

// `reference` and `predicted` are final answers (already extracted). kUnparsable when the
// predicted answer cannot be read, is too large, or its comparison runs past the time limit.
// A reference that cannot be read is compared as text only (kEqual or kNotEqual).
Verdict compare_answers(std::string_view reference, std::string_view predicted, const CompareOptions& options = {});

// How an answer was read ("tuple(1, 2)", "list{2, 3}", ...) or "error: ..." (for tests and
// debugging).
std::string describe_answer(std::string_view answer);

}  // namespace grpo::rewards::math
