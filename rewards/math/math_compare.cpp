#include "rewards/math/math_compare.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <mutex>
#include <optional>

#include "rewards/math/math_answer.h"

namespace grpo::rewards::math {
namespace {

using GiNaC::ex;
using GiNaC::ex_to;
using GiNaC::is_a;
using GiNaC::numeric;

constexpr int kDigits = 40;
constexpr double kAbsFloor = 1e-25;
constexpr double kPrecisionCheck = 1e-25;  // 40- and 80-digit values must agree this well
constexpr double kMaxExactCost = 5000;
constexpr int kPoints = 6;  // with symbols: 3 all-positive, 3 mixed-sign

// NOTES: GiNaC reference-counts expressions without atomics and keeps globals (Digits, the
// flyweight small numbers), so every GiNaC object in this process is made, used and destroyed
// while this mutex is held.
std::mutex& ginac_mutex() {
  static std::mutex mutex;
  return mutex;
}

uint64_t fnv1a(std::string_view s, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h ^ (h >> 29);
}

int max_number_bits(const ex& e, int depth = 0) {
  if (is_a<numeric>(e)) return numeric_bits(ex_to<numeric>(e));
  int bits = 0;
  for (size_t k = 0; k < e.nops() && depth < 64; ++k) bits = std::max(bits, max_number_bits(e.op(k), depth + 1));
  return bits;
}

// A rough count of the terms expand() would make, in units of one small term; large means
// "don't try exact". Powers of sums count their multinomial terms, weighted by the size their
// coefficients grow to ((3^{217}x + y)^{720} has 721 terms of up to 250000 bits). expand()
// also splits a numeric part off a sum exponent (b^{x+n} = b^x b^n, and expands b^n), so that
// part counts like an integer exponent.
double expansion_cost(const ex& e, int depth = 0) {
  constexpr double kHuge = 1e12;
  if (depth > 64) return kHuge;
  if (is_a<numeric>(e) || is_a<GiNaC::symbol>(e) || is_a<GiNaC::constant>(e)) return 1;
  if (is_a<GiNaC::power>(e)) {
    const ex& b = e.op(0);
    const ex& p = e.op(1);
    double base = expansion_cost(b, depth + 1);
    double cost = is_a<numeric>(p) ? base : std::min(kHuge, base + expansion_cost(p, depth + 1));
    std::optional<numeric> n;  // the numeric exponent, or the numeric term of a sum exponent
    if (is_a<numeric>(p)) n = ex_to<numeric>(p);
    for (size_t k = 0; is_a<GiNaC::add>(p) && k < p.nops(); ++k)
      if (is_a<numeric>(p.op(k))) n = ex_to<numeric>(p.op(k));
    if (!n) return cost;
    double magnitude = exponent_magnitude(*n);
    double growth = power_growth_bits(b);
    if (std::isnan(growth) || (growth > 0 && !(magnitude * growth <= kMaxBits))) return kHuge;
    if (magnitude > 1e6) return kHuge;  // normal() can turn x^{10^{100}} into dense work
    if (!n->is_integer() || base <= 1) return cost;
    double log_terms = std::lgamma(magnitude + base) - std::lgamma(magnitude + 1) - std::lgamma(base);
    double words = 1 + magnitude * max_number_bits(b) / 64;
    return log_terms > 27 ? kHuge : std::min(kHuge, std::exp(log_terms) * words * std::max(1.0, cost / base));
  }
  // normal() may rewrite exp(n) as exp(1)^n and work with that power: no large numbers in a
  // function's arguments.
  if (is_a<GiNaC::function>(e) && max_number_bits(e) > 20) return kHuge;
  bool product = is_a<GiNaC::mul>(e);
  double cost = product ? 1 : 0;
  for (size_t k = 0; k < e.nops(); ++k) {
    double c = expansion_cost(e.op(k), depth + 1);
    cost = product ? cost * c : cost + c;
    if (cost > kHuge) return kHuge;
  }
  return is_a<GiNaC::add>(e) || product ? cost : cost + 1;
}

bool has_symbol(const ex& e) {
  if (is_a<GiNaC::symbol>(e)) return true;
  for (size_t k = 0; k < e.nops(); ++k)
    if (has_symbol(e.op(k))) return true;
  return false;
}

bool exactly_zero(const ex& d) {
  if (expansion_cost(d) > kMaxExactCost) return false;
  try {
    if (d.expand().is_zero()) return true;
    return GiNaC::normal(d).is_zero();
  } catch (...) {
    return false;
  }
}

class Comparer {
 public:
  Comparer(ParseContext& ctx, double rel_tol) : ctx_(ctx), rel_tol_(rel_tol), inf_(ctx.infinity()) { build_points(); }

  bool equal(const Answer& a, const Answer& b) {
    ctx_.budget().check();
    Kind ka = a.kind, kb = b.kind;
    if (ka == Kind::kScalar && kb == Kind::kScalar) return scalar_equal(a, b);
    if (ka == Kind::kSet && kb == Kind::kScalar) return a.items.size() == 1 && equal(a.items[0], b);
    if (ka == Kind::kScalar && kb == Kind::kSet) return b.items.size() == 1 && equal(a, b.items[0]);
    bool a_unordered = ka == Kind::kList || ka == Kind::kSet;
    bool b_unordered = kb == Kind::kList || kb == Kind::kSet;
    if (a_unordered && b_unordered) return unordered_equal(a.items, b.items);
    if (ka == Kind::kList && kb == Kind::kTuple) return list_matches_tuple(a, b);
    if (ka == Kind::kTuple && kb == Kind::kList) return list_matches_tuple(b, a);
    if (ka == Kind::kRelation && kb == Kind::kScalar) return relation_states(a, b);
    if (ka == Kind::kScalar && kb == Kind::kRelation) return relation_states(b, a);
    if (ka != kb) return false;
    switch (ka) {
      case Kind::kTuple:
        return tuple_equal(a, b);
      case Kind::kUnion:
        return unordered_equal(a.items, b.items);
      case Kind::kMatrix:
        return a.rows == b.rows && a.cols == b.cols && ordered_equal(a.items, b.items);
      case Kind::kRelation:
        return relation_equal(a, b);
      default:
        return false;
    }
  }

 private:
  using Values = std::vector<std::optional<numeric>>;

  // NOTES: each point exists twice, as 40-digit and as 80-digit floats of the same rationals;
  // a value counts only when both precisions agree, which rejects evaluations that lost all
  // precision (sin(10^{50000}), catastrophic cancellation). Floats, not rationals, are
  // substituted so that x^{10^9} is never computed exactly.
  void build_points() {
    auto symbols = ctx_.named_symbols();
    if (symbols.empty()) {
      points_.emplace_back();
      precise_points_.emplace_back();
      return;
    }
    for (int k = 0; k < kPoints; ++k) {
      GiNaC::exmap point, precise;
      for (const auto& [name, sym] : symbols) {
        uint64_t h = fnv1a(name, static_cast<uint64_t>(k) + 1);
        long num = 3500 + static_cast<long>(h % 24000);  // |value| in [0.35, 2.75)
        bool negative = k == 3 || (k > 3 && ((h >> 40) & 1));
        ex value = numeric(negative ? -num : num, 10000);
        GiNaC::Digits = kDigits;
        point[sym] = value.evalf();
        GiNaC::Digits = 2 * kDigits;
        precise[sym] = value.evalf();
      }
      points_.push_back(std::move(point));
      precise_points_.push_back(std::move(precise));
    }
    GiNaC::Digits = kDigits;
  }

  size_t points_needed() const { return points_.size() == 1 ? 1 : 3; }

  // NOTES: whether CLN's floats can be trusted with `e` at `point`. CLN answers 0.0 for
  // sin/cos/tan of an argument far beyond the working precision (sin(10^{50000})), and a float's
  // binary exponent silently wraps past about 2^62 (1.5^{10^{20}} comes out as ~10^{9.5e17}).
  // So every power b^p needs |p ln|b|| <= 1e15 and every exp or trig argument |a| <= 1e15, or
  // the point is not evaluable. Checked on the tree before substituting, since subs() already
  // evaluates b^p once b is a float; children first, so each evaluation here is itself safe.
  static bool float_safe(const ex& e, const GiNaC::exmap& point) {
    for (size_t k = 0; k < e.nops(); ++k)
      if (!float_safe(e.op(k), point)) return false;
    const numeric limit(1e15);
    if (is_a<GiNaC::power>(e)) {
      ex b = e.op(0).subs(point).evalf(), p = e.op(1).subs(point).evalf();
      if (!is_a<numeric>(b) || !is_a<numeric>(p)) return false;
      numeric magnitude = GiNaC::abs(ex_to<numeric>(b));
      if (magnitude.is_zero()) return true;
      return GiNaC::abs(ex_to<numeric>(p)) * GiNaC::abs(GiNaC::log(magnitude)) <= limit;
    }
    if (is_a<GiNaC::function>(e)) {
      const std::string& name = ex_to<GiNaC::function>(e).get_name();
      if (name == "sin" || name == "cos" || name == "tan" || name == "exp") {
        ex arg = e.op(0).subs(point).evalf();
        return is_a<numeric>(arg) && GiNaC::abs(ex_to<numeric>(arg)) <= limit;
      }
    }
    return true;
  }

  static std::optional<numeric> evaluate(const ex& e, const GiNaC::exmap& point, int digits) {
    GiNaC::Digits = digits;
    try {
      if (!float_safe(e, point)) {
        GiNaC::Digits = kDigits;
        return std::nullopt;
      }
      ex r = e.subs(point).evalf();
      GiNaC::Digits = kDigits;
      if (is_a<numeric>(r)) return ex_to<numeric>(r);
    } catch (...) {
      GiNaC::Digits = kDigits;
    }
    return std::nullopt;
  }

  const Values& values(const ex& e) {
    auto it = cache_.find(e);
    if (it != cache_.end()) return it->second;
    Values v;
    for (size_t k = 0; k < points_.size(); ++k) {
      ctx_.budget().check();
      std::optional<numeric> value = evaluate(e, points_[k], kDigits);
      std::optional<numeric> precise = value ? evaluate(e, precise_points_[k], 2 * kDigits) : std::nullopt;
      bool consistent = precise && GiNaC::abs(*value - *precise) <=
                                       numeric(kPrecisionCheck) * std::max(GiNaC::abs(*precise), numeric(1));
      v.push_back(consistent ? value : std::nullopt);
    }
    return cache_.emplace(e, std::move(v)).first->second;
  }

  bool close(const numeric& x, const numeric& y) const {
    numeric d = GiNaC::abs(x - y);
    numeric m = std::max(GiNaC::abs(x), GiNaC::abs(y));
    return d < numeric(rel_tol_) * m || d < numeric(kAbsFloor);
  }

  // Rule 2 of math_compare.h for two exact rationals; nullopt when not both are.
  std::optional<bool> rational_rule(const ex& a, const ex& b) const {
    if (!is_a<numeric>(a) || !is_a<numeric>(b)) return std::nullopt;
    const numeric& x = ex_to<numeric>(a);
    const numeric& y = ex_to<numeric>(b);
    if (!x.is_crational() || !y.is_crational()) return std::nullopt;
    if (x.is_equal(y)) return true;
    if (x.is_cinteger() && y.is_cinteger()) return false;
    return GiNaC::abs(x - y) < numeric(rel_tol_) * std::max(GiNaC::abs(x), GiNaC::abs(y));
  }

  bool expr_equal(const ex& a, const ex& b) {
    if (a.is_equal(b)) return true;
    if (auto r = rational_rule(a, b)) return *r;
    if (has_symbol(a) || has_symbol(b)) {  // functions that differ by a constant: x^n vs x^n + 1
      ex d = a - b;
      if (is_a<numeric>(d) && !d.is_zero()) return false;
    }
    const Values& va = values(a);
    const Values& vb = values(b);
    size_t valid = 0;
    for (size_t k = 0; k < points_.size(); ++k) {
      if (!va[k] || !vb[k]) continue;
      if (!close(*va[k], *vb[k])) return false;
      ++valid;
    }
    if (exactly_zero(a - b)) return true;
    return valid >= points_needed();
  }

  std::vector<ex> readings(const Answer& x) const {
    std::vector<ex> r{x.value};
    if (x.marker == Marker::kPercent) r.push_back(x.value / 100);
    if (x.marker == Marker::kDegree) r.push_back(x.value * GiNaC::Pi / 180);
    return r;
  }

  bool scalar_equal(const Answer& a, const Answer& b) {
    if (a.marker == b.marker) return expr_equal(a.value, b.value);
    for (const ex& x : readings(a))
      for (const ex& y : readings(b))
        if (expr_equal(x, y)) return true;
    return false;
  }

  bool ordered_equal(const std::vector<Answer>& a, const std::vector<Answer>& b) {
    if (a.size() != b.size()) return false;
    for (size_t k = 0; k < a.size(); ++k)
      if (!equal(a[k], b[k])) return false;
    return true;
  }

  bool unordered_equal(const std::vector<Answer>& a, const std::vector<Answer>& b) {
    if (a.size() != b.size()) return false;
    std::vector<bool> used(b.size(), false);
    for (const Answer& x : a) {
      bool found = false;
      for (size_t j = 0; j < b.size() && !found; ++j) {
        if (!used[j] && equal(x, b[j])) used[j] = found = true;
      }
      if (!found) return false;
    }
    return true;
  }

  // A bare list "1, 2" matches a parenthesised tuple, or a vector of three or more, in order.
  bool list_matches_tuple(const Answer& list, const Answer& tuple) {
    bool parens = tuple.open == '(' && tuple.close == ')';
    return (parens || tuple.items.size() >= 3) && ordered_equal(list.items, tuple.items);
  }

  bool infinite(const Answer& x) const {
    return x.kind == Kind::kScalar && (x.value.is_equal(inf_) || x.value.is_equal(-inf_));
  }

  bool tuple_equal(const Answer& a, const Answer& b) {
    if (a.items.size() != b.items.size()) return false;
    if (a.items.size() == 2) {  // an interval: the brackets matter, except beside an infinity
      bool left = a.open == b.open || (infinite(a.items[0]) && infinite(b.items[0]));
      bool right = a.close == b.close || (infinite(a.items[1]) && infinite(b.items[1]));
      if (!left || !right) return false;
    }
    return ordered_equal(a.items, b.items);
  }

  // "m + n = 7" states the value 7: an equation with one constant side matches that constant,
  // unless the other side is a multiple of one term ("2x = 14" is an equation left unsolved).
  bool relation_states(const Answer& relation, const Answer& value) {
    if (relation.op != "=") return false;
    bool lhs_symbolic = has_symbol(relation.lhs), rhs_symbolic = has_symbol(relation.rhs);
    if (lhs_symbolic == rhs_symbolic) return false;
    const ex& named = lhs_symbolic ? relation.lhs : relation.rhs;
    if (is_a<GiNaC::mul>(named) && named.nops() == 2 && (is_a<numeric>(named.op(0)) || is_a<numeric>(named.op(1))))
      return false;
    Answer side;
    side.value = lhs_symbolic ? relation.rhs : relation.lhs;
    return scalar_equal(side, value);
  }

  // "lhs op rhs" as (op in {=, !=, <, <=}, d) with d = lhs - rhs for = and !=, and
  // d = rhs - lhs (the positive side) for < and <=.
  static std::pair<std::string, ex> normalized(const Answer& r) {
    if (r.op == ">") return {"<", r.lhs - r.rhs};
    if (r.op == ">=") return {"<=", r.lhs - r.rhs};
    if (r.op == "<" || r.op == "<=") return {r.op, r.rhs - r.lhs};
    return {r.op, r.lhs - r.rhs};
  }

  bool relation_equal(const Answer& a, const Answer& b) {
    auto [op_a, da] = normalized(a);
    auto [op_b, db] = normalized(b);
    if (op_a != op_b) return false;
    bool positive = op_a == "<" || op_a == "<=";
    if (expr_equal(da, db)) return true;
    if (expansion_cost(da) + expansion_cost(db) <= kMaxExactCost) {
      try {
        ex r = GiNaC::normal(da / db);
        if (is_a<numeric>(r) && !r.is_zero()) {
          const numeric& v = ex_to<numeric>(r);
          return !positive || (v.is_real() && v.is_positive());
        }
      } catch (...) {
      }
    }
    const Values& va = values(da);
    const Values& vb = values(db);
    std::optional<numeric> ratio;
    size_t valid = 0;
    for (size_t k = 0; k < points_.size(); ++k) {
      if (!va[k] || !vb[k] || GiNaC::abs(*vb[k]) < numeric(kAbsFloor)) continue;
      numeric r = *va[k] / *vb[k];
      if (!ratio) ratio = r;
      if (!close(*ratio, r)) return false;
      ++valid;
    }
    if (!ratio || valid < points_needed() || GiNaC::abs(*ratio) < numeric(kAbsFloor)) return false;
    return !positive || (ratio->real().is_positive() && GiNaC::abs(ratio->imag()) < numeric(kAbsFloor));
  }

  ParseContext& ctx_;
  double rel_tol_;
  ex inf_;
  std::vector<GiNaC::exmap> points_, precise_points_;
  std::map<ex, Values, GiNaC::ex_is_less> cache_;
};

// A multiple-choice letter written as "C" or "(C)" (canonical text of \text{(C)} too).
std::optional<char> choice_letter(const std::string& s) {
  if (s.size() == 1 && std::isupper(static_cast<unsigned char>(s[0]))) return s[0];
  if (s.size() == 3 && s[0] == '(' && s[2] == ')' && std::isupper(static_cast<unsigned char>(s[1]))) return s[1];
  return std::nullopt;
}

// Answers that are one word ("Yes", "\\text{monday}") compare without case.
bool same_words(const std::string& a, const std::string& b) {
  auto word = [](const std::string& s) {
    return s.size() >= 2 &&
           std::all_of(s.begin(), s.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
  };
  if (!word(a) || !word(b) || a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (std::tolower(static_cast<unsigned char>(a[k])) != std::tolower(static_cast<unsigned char>(b[k]))) return false;
  return true;
}

}  // namespace

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kEqual:
      return "equal";
    case Verdict::kNotEqual:
      return "not_equal";
    case Verdict::kUnparsable:
      return "unparsable";
  }
  return "?";
}

Verdict compare_answers(std::string_view reference, std::string_view predicted, const CompareOptions& options) {
  if (predicted.size() > options.max_answer_chars) return Verdict::kUnparsable;
  std::string canonical = canonical_text(predicted);
  std::string canonical_reference = canonical_text(reference);
  if (!canonical.empty() && canonical == canonical_reference) return Verdict::kEqual;
  if (same_words(canonical, canonical_reference)) return Verdict::kEqual;
  std::optional<char> choice = choice_letter(canonical_reference);
  if (choice && choice_letter(canonical))
    return choice == choice_letter(canonical) ? Verdict::kEqual : Verdict::kNotEqual;

  std::vector<Token> gold_tokens, pred_tokens;
  bool gold_readable = reference.size() <= 16 * options.max_answer_chars;
  try {
    if (gold_readable) gold_tokens = lex_math(reference, 16 * options.max_answer_chars);
  } catch (const std::exception&) {
    gold_readable = false;
  }
  try {
    pred_tokens = lex_math(predicted, options.max_answer_chars);
  } catch (const std::exception&) {
    return Verdict::kUnparsable;
  }
  if (pred_tokens.empty()) return Verdict::kUnparsable;

  std::lock_guard<std::mutex> lock(ginac_mutex());
  try {
    GiNaC::Digits = kDigits;
    Budget budget{std::chrono::milliseconds(options.time_limit_ms)};
    ParseContext ctx(budget);
    std::optional<Answer> gold;
    if (gold_readable) {
      try {
        gold = parse_answer(gold_tokens, ctx);
      } catch (...) {
        gold.reset();
      }
    }
    Answer pred = parse_answer(pred_tokens, ctx);
    if (!gold) return Verdict::kNotEqual;
    Comparer comparer(ctx, options.rel_tol);
    return comparer.equal(*gold, pred) ? Verdict::kEqual : Verdict::kNotEqual;
  } catch (...) {  // MathError, GiNaC's pole_error, CLN's exceptions, bad_alloc
    return Verdict::kUnparsable;
  }
}

std::string describe_answer(std::string_view answer) {
  try {
    std::vector<Token> tokens = lex_math(answer);
    std::lock_guard<std::mutex> lock(ginac_mutex());
    try {
      GiNaC::Digits = kDigits;
      Budget budget{std::chrono::milliseconds(1000)};
      ParseContext ctx(budget);
      std::string text = parse_answer(tokens, ctx).debug_string();
      return text.size() > 300 ? text.substr(0, 300) + "..." : text;
    } catch (const std::exception& e) {
      return std::string("error: ") + e.what();
    } catch (...) {
      return "error: unknown";
    }
  } catch (const std::exception& e) {
    return std::string("error: ") + e.what();
  }
}

}  // namespace grpo::rewards::math
