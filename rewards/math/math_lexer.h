// Math answers as tokens: the first stage of the math checker (math_checker.h). Pure string
// work, no GiNaC, so it runs outside the GiNaC lock.
//
// The lexer already makes the decisions that need the raw text: thousands separators
// (1,000 / 1{,}000 / 1 000), scientific notation (1.5e3), `^\circ` as a degree mark, \left and
// \right and spacing dropped, \text{...}/\mathrm{...} read as a separator ("or", "and"), a
// degree or percent word, a single letter, re-lexed math, or a unit that is dropped, and plain
// words split into function names, unit words (dropped) and single-letter symbols.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math {

// Every way an answer cannot be graded (bad syntax, too large, too deep, over the time budget)
// is this exception inside the math checker; the checker turns it into "unparsable".
class MathError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Tok {
  kNum,       // text: digits with an optional '.' and fraction ("12", "0.5", "3."); exp10: e-notation
  kSym,       // a variable: one letter ("x"), or a Greek letter ("\\alpha")
  kFunc,      // text: sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log exp
  kCmd,       // text: frac sqrt binom choose overline, or an unknown command (a parse error later)
  kOp,        // text: one of + - * / ^ _ ( ) [ ] { } , ; ! | & ' : . and any other ASCII symbol
  kRel,       // text: = < > <= >= !=
  kIn,        // \in
  kSetOpen,   // \{ or \lbrace
  kSetClose,  // \} or \rbrace
  kSep,       // "or", "and", \text{ or }, \lor, \land
  kPercent,   // \% or % or "percent"
  kDegree,    // ^\circ, ^{\circ}, \circ, \degree, "degrees"
  kPm,        // \pm
  kMp,        // \mp
  kCup,       // \cup
  kPi,        // \pi
  kInfty,     // \infty
  kEmptySet,  // \emptyset, \varnothing
  kMatBegin,  // \begin{pmatrix} (also bmatrix, Bmatrix, matrix, smallmatrix, array)
  kMatEnd,    // \end{pmatrix}
  kRowSep,    // \\ (a matrix row break)
};

struct Token {
  Tok kind = Tok::kOp;
  std::string text;
  int64_t exp10 = 0;          // kNum: the number is text * 10^exp10
  bool space_before = false;  // whitespace (or a spacing command) came right before
};

// Lexes one answer. Throws MathError for text it cannot read (unknown non-ASCII, unbalanced
// \text{ braces, more than `max_tokens` tokens).
std::vector<Token> lex_math(std::string_view answer, size_t max_tokens = 4096);

// The answer's text with formatting that never changes its meaning removed: whitespace, '$',
// \left/\right, spacing commands, \displaystyle, \text{}-like wrappers (their content is kept),
// \dfrac/\tfrac spelled \frac, and a trailing period. Two answers with equal canonical text are
// equal without parsing.
std::string canonical_text(std::string_view answer);

// Whether the top-level commas of `answer` (outside (), [] and \{\}) are all thousands
// separators: each follows a group of 1-3 digits (or a previous group of three) and is followed
// by exactly three digits and then no digit. False when there is no top-level comma.
bool commas_are_thousands(std::string_view answer);

std::string token_debug_string(const std::vector<Token>& tokens);

}  // namespace grpo::rewards::math
