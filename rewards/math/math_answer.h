// The shape of an answer: a value, a list of solutions, a set, a tuple, an interval, a union,
// a matrix or a relation, each holding GiNaC expressions (math_parse.h). Only for use under the
// GiNaC lock (math_compare.cpp).
//
// Reading rules, applied to the whole answer and again inside every bracket:
//   - top-level ',' ';' "or" "and" \text{ or } separate a List of solutions; empty parts are
//     skipped, and lists inside lists (x=2, x=\pm 3) are flattened.
//   - A \cup B \cup ... is a Union of its parts; a union of sets is the one merged Set.
//   - "v = A", "A = v" and "v \in A" with v a bare variable (x, x_1, \theta, f(x)) or a tuple
//     of them ((x, y) = (1, 2)) read as A;
//     with several '=' (x = 2+3 = 5) the last part counts, as it does in a chain of '=' without
//     letters (10/2 = 5). "x > a", "x \le a", "a < x \le b" (a, b not bare variables) read as
//     intervals. Any other (in)equation is a Relation.
//   - \{a, b\} is a Set (\{\} and \emptyset the empty set); (a, b, ...) and [a, b, ...] with a
//     top-level comma are Tuples that remember their brackets (two elements: an interval);
//     \begin{pmatrix} ... \end{pmatrix} is a Matrix; {...} is a plain group.
//   - Anything else is a Scalar; a trailing \% or degree mark is kept as its Marker. A scalar
//     with \pm becomes the List of its sign choices (2 \pm 1 -> 1, 3).
#pragma once

#include <ginac/ginac.h>

#include <string>
#include <vector>

#include "rewards/math/math_lexer.h"
#include "rewards/math/math_parse.h"

namespace grpo::rewards::math {

enum class Kind { kScalar, kList, kSet, kTuple, kUnion, kMatrix, kRelation };
enum class Marker { kNone, kPercent, kDegree };

struct Answer {
  Kind kind = Kind::kScalar;
  GiNaC::ex value;                // kScalar
  Marker marker = Marker::kNone;  // kScalar
  std::vector<Answer> items;      // kList, kSet, kTuple (elements), kUnion (parts), kMatrix (cells, row-major)
  char open = 0, close = 0;       // kTuple: '(' or '[' and ')' or ']'
  size_t rows = 0, cols = 0;      // kMatrix
  std::string op;                 // kRelation: "=", "!=", "<", "<=", ">", ">="
  GiNaC::ex lhs, rhs;             // kRelation

  std::string debug_string() const;
};

// Reads tokens (all of them) as an answer; throws MathError when they are not one.
Answer parse_answer(const std::vector<Token>& tokens, ParseContext& ctx);

}  // namespace grpo::rewards::math
