// Math answers as GiNaC expressions: a recursive-descent parser over math_lexer.h tokens.
// Only for use under the GiNaC lock (math_compare.cpp); every GiNaC object made here must be
// destroyed under it too.
//
// Grammar (highest binding last):
//   expr     := ['+'|'-'|\pm|\mp] term { ('+'|'-'|\pm|\mp) term }
//   term     := unary { ('*'|'/'|implicit) unary }        implicit: 2x, 2\pi, x(y+1), \sqrt2\pi
//   unary    := ('-'|'+') unary | power
//   power    := postfix ['^' exponent]                    right-associative
//   exponent := '{' expr '}' | ['-'|'+'] postfix ['^' exponent]
//   postfix  := primary { '!' | '%' | degree }
//   primary  := number [\overline{digits}] [mixed \frac] ['_' base] | symbol ['_' sub]
//             | \pi | e | i | \infty | (expr) | [expr] | {expr} | {n \choose k} | |expr|
//             | \frac A B | \sqrt[n] A | \binom A B | function ['^' p] ['_' b] argument
// A number followed by another number is an error (no "2 3"); \frac, \sqrt and \binom take one
// character or command when their argument has no braces (\frac12 = 1/2).
//
// Size guards (checked before GiNaC computes anything exact): integers and rationals up to
// kMaxBits bits; a power b^p with numeric p only when |p| times the bits GiNaC would raise to
// it (b itself, the number in a product, the content of a sum, the base of a numeric power)
// stays under kMaxBits; n! for integers n <= 5000; binomial(n, k) for n <= 10^5 (k <= 50
// when n is symbolic); nesting up to kMaxDepth. Past any of them the parser throws MathError.
#pragma once

#include <ginac/ginac.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "rewards/math/math_lexer.h"

namespace grpo::rewards::math {

inline constexpr int kMaxBits = 1 << 18;
inline constexpr int kMaxDepth = 200;
inline constexpr int kMaxPlusMinus = 3;

// The wall-clock budget of one comparison; check() throws MathError once it is spent.
class Budget {
 public:
  explicit Budget(std::chrono::milliseconds limit) : deadline_(std::chrono::steady_clock::now() + limit) {}
  void check() const {
    if (std::chrono::steady_clock::now() > deadline_) throw MathError("time budget exceeded");
  }

 private:
  std::chrono::steady_clock::time_point deadline_;
};

// State shared by the parses of both answers of one comparison: symbols by name (GiNaC
// symbols compare by identity, so both sides must get the same object for "x"), and the
// stand-in symbols of \pm signs.
class ParseContext {
 public:
  explicit ParseContext(const Budget& budget) : budget_(budget) {}

  const GiNaC::symbol& symbol(const std::string& name);
  const GiNaC::symbol& infinity() { return symbol("\\infty"); }
  // A new sign symbol for one \pm (or \mp) occurrence; throws past kMaxPlusMinus.
  GiNaC::symbol new_sign();
  bool is_sign(const GiNaC::ex& e) const;
  const std::vector<GiNaC::symbol>& signs() const { return signs_; }
  // Every ordinary symbol seen so far (not the sign symbols), sorted by name.
  std::vector<std::pair<std::string, GiNaC::symbol>> named_symbols() const;
  const Budget& budget() const { return budget_; }

 private:
  const Budget& budget_;
  std::map<std::string, GiNaC::symbol> symbols_;
  std::vector<GiNaC::symbol> signs_;
};

// Parses tokens[begin, end) as one expression; the whole range must be consumed.
GiNaC::ex parse_expression(const std::vector<Token>& tokens, size_t begin, size_t end, ParseContext& ctx);

// Bits of the largest numerator or denominator of an exact (complex) rational; 0 for floats.
int numeric_bits(const GiNaC::numeric& n);
// |real part| of a numeric exponent; HUGE_VAL when it does not fit a double.
double exponent_magnitude(const GiNaC::numeric& p);
// NOTES: how many bits of exact numbers GiNaC computes per unit of exponent when it evaluates
// or expands base^n: a number's own size (2^n), the numeric factor of a product
// ((2x)^n = 2^n x^n), the content of a sum ((x/100 + 1)^n pulls out 100^-n), a numeric
// power's base times its exponent ((2^{1/2})^n = 2^{n/2}). 0, +-1 and +-i never grow; symbols
// and functions (|u| included, see checked_abs) stay symbolic. |n| times this must stay under
// kMaxBits.
double power_growth_bits(const GiNaC::ex& base);

// Guarded constructors, also used by the answer parser.
GiNaC::ex checked_power(const GiNaC::ex& base, const GiNaC::ex& exponent);
// |x|: the absolute value of a number, an opaque function of anything else (math_parse.cpp).
GiNaC::ex checked_abs(const GiNaC::ex& x);
// e.subs(m), rebuilt through the guarded constructors.
GiNaC::ex checked_subs(const GiNaC::ex& e, const GiNaC::exmap& m);
// Throws MathError when `e` is a number with more than kMaxBits bits in a numerator or denominator.
const GiNaC::ex& check_size(const GiNaC::ex& e);

}  // namespace grpo::rewards::math
