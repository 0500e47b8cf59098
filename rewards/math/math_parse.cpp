#include "rewards/math/math_parse.h"

#include <algorithm>
#include <cmath>
#include <optional>

namespace grpo::rewards::math {

using GiNaC::ex;
using GiNaC::ex_to;
using GiNaC::is_a;
using GiNaC::numeric;

const GiNaC::symbol& ParseContext::symbol(const std::string& name) {
  auto it = symbols_.find(name);
  if (it == symbols_.end()) it = symbols_.emplace(name, GiNaC::symbol(name)).first;
  return it->second;
}

GiNaC::symbol ParseContext::new_sign() {
  if (static_cast<int>(signs_.size()) >= kMaxPlusMinus) throw MathError("too many \\pm in one answer");
  signs_.emplace_back("\\pm" + std::to_string(signs_.size()));
  return signs_.back();
}

bool ParseContext::is_sign(const ex& e) const {
  return std::any_of(signs_.begin(), signs_.end(), [&](const GiNaC::symbol& s) { return e.is_equal(s); });
}

std::vector<std::pair<std::string, GiNaC::symbol>> ParseContext::named_symbols() const {
  return {symbols_.begin(), symbols_.end()};
}

int numeric_bits(const numeric& n) {
  if (!n.is_crational()) return 0;
  numeric re = n.real(), im = n.imag();
  return std::max({re.numer().int_length(), re.denom().int_length(), im.numer().int_length(), im.denom().int_length()});
}

double exponent_magnitude(const numeric& p) {
  numeric re = p.real();
  if (re.is_rational() && re.numer().int_length() - re.denom().int_length() > 1000) return HUGE_VAL;
  return std::fabs(re.to_double());
}

namespace {

double growth_bits(const ex& base, int depth) {
  if (depth > 32) return kMaxBits;
  if (is_a<numeric>(base)) {
    const numeric& b = ex_to<numeric>(base);
    if (b.is_zero() || (b.is_cinteger() && (b * b.conjugate()).is_equal(1))) return 0;
    return std::max(1, numeric_bits(b));
  }
  if (is_a<GiNaC::add>(base)) return growth_bits(base.integer_content(), depth + 1);
  if (is_a<GiNaC::mul>(base)) {
    double bits = 0;
    for (size_t k = 0; k < base.nops(); ++k) bits += growth_bits(base.op(k), depth + 1);
    return bits;
  }
  if (is_a<GiNaC::power>(base) && is_a<numeric>(base.op(1))) {
    double inner = growth_bits(base.op(0), depth + 1);  // (x^{10^{900}})^n grows nothing
    return inner == 0 ? 0 : inner * std::max(1.0, exponent_magnitude(ex_to<numeric>(base.op(1))));
  }
  return 0;
}

}  // namespace

double power_growth_bits(const ex& base) { return growth_bits(base, 0); }

namespace {

void check_number(const ex& e) {
  if (is_a<numeric>(e) && numeric_bits(ex_to<numeric>(e)) > kMaxBits) throw MathError("number too large");
}

ex checked_factorial(const ex& n) {
  if (!is_a<numeric>(n)) return GiNaC::factorial(n);
  const numeric& v = ex_to<numeric>(n);
  if (!v.is_integer() || v.is_negative()) throw MathError("factorial of a non-natural number");
  if (v > 5000) throw MathError("factorial too large");
  return GiNaC::factorial(n);
}

// GiNaC evaluates binomial(n, k) for numeric n and k, and expands it into a product of k
// factors for a numeric k and symbolic n: both sizes are capped first.
ex checked_binomial(const ex& n, const ex& k) {
  if (is_a<numeric>(n)) {
    const numeric& a = ex_to<numeric>(n);
    if (!a.is_integer() || a.is_negative() || a > 100000)
      throw MathError("binomial: n must be an integer in [0, 10^5]");
  }
  if (is_a<numeric>(k)) {
    const numeric& b = ex_to<numeric>(k);
    if (!b.is_integer()) throw MathError("binomial: k must be an integer");
    if (!is_a<numeric>(n) && GiNaC::abs(b) > 50) throw MathError("binomial: k too large for a symbolic n");
    if (GiNaC::abs(b) > 100000) throw MathError("binomial: k too large");
  }
  return GiNaC::binomial(n, k);
}

// NOTES: |u| is our own GiNaC function, not GiNaC's abs(): abs() evaluation asks for real and
// imaginary parts, which expands powers (the real part of x^{30000} is a 30000-term binomial
// sum) and comes back through abs(u)^n even when held. grpo_abs evaluates only for numbers
// (exact or float) and is otherwise opaque to GiNaC (normal() treats it like a symbol).
DECLARE_FUNCTION_1P(grpo_abs)

ex grpo_abs_eval(const ex& x) {
  if (is_a<numeric>(x)) return GiNaC::abs(ex_to<numeric>(x));
  return grpo_abs(x).hold();
}

REGISTER_FUNCTION(grpo_abs, eval_func(grpo_abs_eval).evalf_func(grpo_abs_eval))

bool is_pure_integer(const Token& t) {
  return t.kind == Tok::kNum && t.exp10 == 0 && t.text.find('.') == std::string::npos;
}

numeric ten_power(int64_t k) {
  if (std::llabs(k) > kMaxBits / 4) throw MathError("power of ten too large");
  return numeric(10).power(numeric(static_cast<long>(k)));
}

numeric integer_from_digits(std::string digits) {
  size_t nz = digits.find_first_not_of('0');
  digits = nz == std::string::npos ? "0" : digits.substr(nz);
  return numeric(digits.c_str());
}

numeric number_value(const Token& t) {
  size_t dot = t.text.find('.');
  std::string int_part = dot == std::string::npos ? t.text : t.text.substr(0, dot);
  std::string frac = dot == std::string::npos ? "" : t.text.substr(dot + 1);
  numeric v = integer_from_digits(int_part + frac);
  if (!frac.empty()) v = v / ten_power(static_cast<int64_t>(frac.size()));
  if (t.exp10) v = v * ten_power(t.exp10);
  return v;
}

class ExprParser {
 public:
  ExprParser(const std::vector<Token>& tokens, size_t begin, size_t end, ParseContext& ctx)
      : toks_(tokens.begin() + static_cast<std::ptrdiff_t>(begin), tokens.begin() + static_cast<std::ptrdiff_t>(end)),
        ctx_(ctx) {}

  ex parse_all() {
    if (toks_.empty()) throw MathError("empty expression");
    ex e = expr();
    if (pos_ != toks_.size()) fail("unexpected token");
    return e;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(ExprParser& p) : parser(p) {
      if (++parser.depth_ > kMaxDepth) throw MathError("answer nested too deeply");
    }
    ~DepthGuard() { --parser.depth_; }
    ExprParser& parser;
  };

  [[noreturn]] void fail(const std::string& what) const {
    std::string where = pos_ < toks_.size() ? " at '" + toks_[pos_].text + "'" : " at the end";
    throw MathError(what + where);
  }

  const Token* peek(size_t k = 0) const { return pos_ + k < toks_.size() ? &toks_[pos_ + k] : nullptr; }
  bool at_op(std::string_view op, size_t k = 0) const {
    const Token* t = peek(k);
    return t && t->kind == Tok::kOp && t->text == op;
  }
  bool at_kind(Tok kind) const { return peek() && peek()->kind == kind; }
  bool at_cmd(std::string_view name) const { return at_kind(Tok::kCmd) && peek()->text == name; }
  void expect_op(std::string_view op) {
    if (!at_op(op)) fail("expected '" + std::string(op) + "'");
    ++pos_;
  }

  // Whether `t` can start a factor multiplied without an operator ("2x", "x(y)", "2\sqrt3").
  bool starts_implicit(const Token& t) const {
    switch (t.kind) {
      case Tok::kSym:
      case Tok::kFunc:
      case Tok::kPi:
      case Tok::kInfty:
      case Tok::kCmd:
        return t.text != "choose";
      case Tok::kOp:
        return t.text == "(" || t.text == "[" || t.text == "{" || (t.text == "|" && abs_depth_ == 0);
      default:
        return false;
    }
  }

  std::optional<ex> take_additive_op() {
    const Token* t = peek();
    if (!t) return std::nullopt;
    if (t->kind == Tok::kOp && (t->text == "+" || t->text == "-")) {
      ++pos_;
      return ex(t->text == "+" ? 1 : -1);
    }
    if (t->kind == Tok::kPm || t->kind == Tok::kMp) {
      bool minus = t->kind == Tok::kMp;
      ++pos_;
      ex s = ctx_.new_sign();
      return minus ? -s : s;
    }
    return std::nullopt;
  }

  ex expr() {
    DepthGuard guard(*this);
    ex sign = 1;
    if (auto s = take_additive_op()) sign = *s;
    ex result = check_size(sign * term());
    while (auto s = take_additive_op()) result = check_size(result + *s * term());
    return result;
  }

  ex term() {
    ex result = unary();
    for (;;) {
      const Token* t = peek();
      if (!t) break;
      if (t->kind == Tok::kOp && t->text == "*") {
        ++pos_;
        result = result * unary();
      } else if (t->kind == Tok::kOp && t->text == "/") {
        ++pos_;
        ex d = unary();
        if (d.is_zero()) throw MathError("division by zero");
        result = result / d;
      } else if (starts_implicit(*t)) {
        result = result * power();
      } else {
        break;
      }
      check_size(result);
    }
    return result;
  }

  ex unary() {
    DepthGuard guard(*this);
    if (at_op("-")) {
      ++pos_;
      return -unary();
    }
    if (at_op("+")) {
      ++pos_;
      return unary();
    }
    return power();
  }

  ex power() {
    ex base = postfix(primary());
    if (!at_op("^")) return base;
    ++pos_;
    return postfix(checked_power(base, exponent()));
  }

  ex exponent() {
    DepthGuard guard(*this);
    if (at_op("{")) {
      ++pos_;
      ex e = expr();
      expect_op("}");
      return e;
    }
    if (at_op("-")) {
      ++pos_;
      return -exponent();
    }
    if (at_op("+")) {
      ++pos_;
      return exponent();
    }
    ex b = primary();
    if (!at_op("^")) return b;
    ++pos_;
    return checked_power(b, exponent());
  }

  ex postfix(ex e) {
    for (;;) {
      if (at_op("!")) {
        ++pos_;
        e = checked_factorial(e);
      } else if (at_kind(Tok::kPercent)) {
        ++pos_;
        e = e / 100;
      } else if (at_kind(Tok::kDegree)) {
        ++pos_;
        e = e * GiNaC::Pi / 180;
      } else {
        return e;
      }
    }
  }

  // The text of a subscript: x_1, x_{12}, a_{n+1} -> "1", "12", "n+1".
  std::string subscript_text() {
    std::string out;
    if (at_op("{")) {
      ++pos_;
      int depth = 1;
      while (pos_ < toks_.size()) {
        const Token& t = toks_[pos_++];
        if (t.kind == Tok::kOp && t.text == "{") ++depth;
        if (t.kind == Tok::kOp && t.text == "}" && --depth == 0) return out;
        out += t.text.empty() ? "?" : t.text;
      }
      fail("unbalanced subscript");
    }
    const Token* t = peek();
    if (!t || (t->kind != Tok::kNum && t->kind != Tok::kSym)) fail("bad subscript");
    ++pos_;
    return t->text;
  }

  ex primary() {
    DepthGuard guard(*this);
    ctx_.budget().check();
    const Token* t = peek();
    if (!t) fail("expression expected");
    switch (t->kind) {
      case Tok::kNum:
        return number_primary();
      case Tok::kSym: {
        ++pos_;
        std::string name = t->text;
        if (at_op("_")) {
          ++pos_;
          return ctx_.symbol(name + "_" + subscript_text());
        }
        if (name == "e") return GiNaC::exp(ex(1));
        if (name == "i") return GiNaC::I;
        return ctx_.symbol(name);
      }
      case Tok::kPi:
        ++pos_;
        return GiNaC::Pi;
      case Tok::kInfty:
        ++pos_;
        return ctx_.infinity();
      case Tok::kFunc:
        return function_primary();
      case Tok::kCmd:
        return command_primary();
      case Tok::kOp:
        break;
      default:
        fail("unexpected token");
    }
    std::string op = t->text;
    if (op == "(" || op == "[") {
      ++pos_;
      ex e = expr();
      expect_op(op == "(" ? ")" : "]");
      return e;
    }
    if (op == "{") {
      ++pos_;
      ex e = expr();
      if (at_cmd("choose")) {
        ++pos_;
        ex k = expr();
        e = checked_binomial(e, k);
      }
      expect_op("}");
      return e;
    }
    if (op == "|" && abs_depth_ == 0) {
      ++pos_;
      ++abs_depth_;
      ex e = expr();
      --abs_depth_;
      expect_op("|");
      return checked_abs(e);
    }
    fail("unexpected token");
  }

  // Mixed numbers: an integer right before \frac{int}{int} (3\frac{1}{2} = 7/2).
  bool mixed_fraction_follows(numeric& a, numeric& b) {
    if (!at_cmd("frac")) return false;
    size_t p = pos_ + 1, offset = 0;
    auto read = [&](numeric& out) {
      if (p >= toks_.size()) return false;
      const Token& t = toks_[p];
      if (offset == 0 && t.kind == Tok::kOp && t.text == "{") {
        if (p + 2 < toks_.size() && is_pure_integer(toks_[p + 1]) && toks_[p + 2].kind == Tok::kOp &&
            toks_[p + 2].text == "}") {
          out = integer_from_digits(toks_[p + 1].text);
          p += 3;
          return true;
        }
        return false;
      }
      if (!is_pure_integer(t)) return false;
      out = numeric(t.text[offset] - '0');
      if (++offset == t.text.size()) {
        ++p;
        offset = 0;
      }
      return true;
    };
    if (read(a) && read(b) && offset == 0 && !b.is_zero()) {
      pos_ = p;
      return true;
    }
    return false;
  }

  ex number_primary() {
    Token t = toks_[pos_++];
    numeric v = number_value(t);
    if (t.exp10 == 0 && t.text.find('.') != std::string::npos && at_cmd("overline")) {
      ++pos_;
      std::string rep;
      if (at_op("{") && peek(1) && is_pure_integer(*peek(1)) && at_op("}", 2)) {
        rep = peek(1)->text;
        pos_ += 3;
      } else if (peek() && is_pure_integer(*peek())) {
        rep = split_first_digit();
      } else {
        fail("\\overline needs digits");
      }
      size_t k = t.text.size() - t.text.find('.') - 1;
      v = v + integer_from_digits(rep) /
                  ((ten_power(static_cast<int64_t>(rep.size())) - 1) * ten_power(static_cast<int64_t>(k)));
    } else if (is_pure_integer(t)) {
      numeric a, b;
      if (mixed_fraction_follows(a, b)) v = v + a / b;
    }
    if (at_op("_")) {  // a number in another base, 1011_2: compared as written
      ++pos_;
      return ctx_.symbol("#" + t.text + "_" + subscript_text());
    }
    return v;
  }

  // Takes the first digit of the number token at pos_ (\frac12), leaving the rest in place.
  std::string split_first_digit() {
    Token& t = toks_[pos_];
    std::string first = t.text.substr(0, 1);
    if (t.text.size() == 1) {
      if (t.exp10 != 0) fail("bad short argument");
      ++pos_;
    } else {
      t.text.erase(0, 1);
      if (t.text[0] == '.') fail("bad short argument");
      t.space_before = false;
    }
    return first;
  }

  // The argument of \frac, \sqrt, \binom, \log_b: a braced group or one character/command.
  ex group_or_short_arg() {
    DepthGuard guard(*this);
    const Token* t = peek();
    if (!t) fail("argument expected");
    if (t->kind == Tok::kOp && t->text == "{") {
      ++pos_;
      ex e = expr();
      expect_op("}");
      return e;
    }
    if (t->kind == Tok::kNum) {
      if (t->text.size() == 1) {
        ++pos_;
        return number_value(*t);
      }
      return integer_from_digits(split_first_digit());
    }
    if (t->kind == Tok::kSym || t->kind == Tok::kPi || t->kind == Tok::kInfty || t->kind == Tok::kCmd) return primary();
    fail("argument expected");
  }

  ex command_primary() {
    std::string name = peek()->text;
    ++pos_;
    if (name == "frac") {
      ex a = group_or_short_arg();
      ex b = group_or_short_arg();
      if (b.is_zero()) throw MathError("division by zero");
      return check_size(a / b);
    }
    if (name == "sqrt") {
      if (at_op("[")) {
        ++pos_;
        ex n = expr();
        expect_op("]");
        ex arg = group_or_short_arg();
        if (n.is_zero()) throw MathError("zeroth root");
        return checked_power(arg, 1 / n);
      }
      return checked_power(group_or_short_arg(), numeric(1, 2));
    }
    if (name == "binom") {
      ex n = group_or_short_arg();
      ex k = group_or_short_arg();
      return checked_binomial(n, k);
    }
    --pos_;
    fail("unsupported command \\" + name);
  }

  ex function_primary() {
    std::string name = peek()->text;
    ++pos_;
    std::optional<ex> pw, log_base;
    bool inverse = false;
    for (int k = 0; k < 2; ++k) {
      if (at_op("^") && !pw && !inverse) {
        ++pos_;
        ex p = exponent();
        if (p.is_equal(-1) && (name == "sin" || name == "cos" || name == "tan"))
          inverse = true;
        else
          pw = p;
      } else if (at_op("_") && name == "log" && !log_base) {
        ++pos_;
        log_base = group_or_short_arg();
      }
    }
    ex value = apply_function(name, inverse, function_argument());
    if (log_base) {
      ex d = GiNaC::log(*log_base);
      if (d.is_zero()) throw MathError("logarithm to base 1");
      value = value / d;
    }
    if (pw) value = checked_power(value, *pw);
    return value;
  }

  ex function_argument() {
    DepthGuard guard(*this);
    for (std::string_view open : {"(", "{", "["}) {
      if (at_op(open)) {
        ++pos_;
        ex e = expr();
        expect_op(open == "(" ? ")" : open == "{" ? "}" : "]");
        return e;
      }
    }
    ex e = unary();  // \sin 2x, \ln x^2, \sin -x: a product of factors up to the next function
    while (peek() && starts_implicit(*peek()) && peek()->kind != Tok::kFunc) e = check_size(e * power());
    return e;
  }

  static ex apply_function(const std::string& name, bool inverse, const ex& x) {
    if (name == "sin") return inverse ? GiNaC::asin(x) : GiNaC::sin(x);
    if (name == "cos") return inverse ? GiNaC::acos(x) : GiNaC::cos(x);
    if (name == "tan") return inverse ? GiNaC::atan(x) : GiNaC::tan(x);
    if (name == "cot") return 1 / GiNaC::tan(x);
    if (name == "sec") return 1 / GiNaC::cos(x);
    if (name == "csc") return 1 / GiNaC::sin(x);
    if (name == "arcsin") return GiNaC::asin(x);
    if (name == "arccos") return GiNaC::acos(x);
    if (name == "arctan") return GiNaC::atan(x);
    if (name == "sinh") return GiNaC::sinh(x);
    if (name == "cosh") return GiNaC::cosh(x);
    if (name == "tanh") return GiNaC::tanh(x);
    if (name == "ln" || name == "log") return GiNaC::log(x);
    if (name == "exp") return GiNaC::exp(x);
    throw MathError("unknown function " + name);
  }

  std::vector<Token> toks_;
  ParseContext& ctx_;
  size_t pos_ = 0;
  int depth_ = 0;
  int abs_depth_ = 0;
};

}  // namespace

const ex& check_size(const ex& e) {
  check_number(e);
  if (GiNaC::is_a<GiNaC::mul>(e) || GiNaC::is_a<GiNaC::add>(e)) {
    for (size_t k = 0; k < e.nops(); ++k) check_number(e.op(k));
  }
  return e;
}

ex checked_power(const ex& base, const ex& exponent) {
  if (is_a<numeric>(exponent)) {
    const numeric& p = ex_to<numeric>(exponent);
    double magnitude = exponent_magnitude(p);
    if (is_a<numeric>(base)) {
      const numeric& b = ex_to<numeric>(base);
      if (b.is_zero() && p.real().is_negative()) throw MathError("division by zero");
    }
    double bits = power_growth_bits(base);
    if (std::isnan(bits) || (bits > 0 && !(magnitude * bits <= kMaxBits))) throw MathError("power too large");
  }
  ex result = GiNaC::pow(base, exponent);
  return check_size(result);
}

ex checked_abs(const ex& x) { return grpo_abs(x); }

namespace {

// Rebuilds an expression bottom-up through the guarded constructors, so that substituting
// (the signs of \pm, for one) never makes GiNaC compute an unchecked power, factorial or
// binomial: (898.58)^{(18 \pm 5)!} becomes 898.58^{23!}, which checked_power refuses.
class GuardedSubs : public GiNaC::map_function {
 public:
  explicit GuardedSubs(const GiNaC::exmap& m) : map_(m) {}

  ex operator()(const ex& e) override {
    if (is_a<GiNaC::symbol>(e)) {
      auto it = map_.find(e);
      return it == map_.end() ? e : it->second;
    }
    if (is_a<GiNaC::power>(e)) return checked_power((*this)(e.op(0)), (*this)(e.op(1)));
    if (is_a<GiNaC::function>(e)) {
      const std::string& name = ex_to<GiNaC::function>(e).get_name();
      if (name == "factorial") return checked_factorial((*this)(e.op(0)));
      if (name == "binomial") return checked_binomial((*this)(e.op(0)), (*this)(e.op(1)));
      if (name == "grpo_abs") return checked_abs((*this)(e.op(0)));
    }
    return check_size(e.map(*this));
  }

 private:
  const GiNaC::exmap& map_;
};

}  // namespace

ex checked_subs(const ex& e, const GiNaC::exmap& m) {
  GuardedSubs subs(m);
  return subs(e);
}

ex parse_expression(const std::vector<Token>& tokens, size_t begin, size_t end, ParseContext& ctx) {
  return ExprParser(tokens, begin, end, ctx).parse_all();
}

}  // namespace grpo::rewards::math
