// The "arithmetic" and "countdown" reward checkers (rules in datasets.h).
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/error.h"
#include "learner/datasets.h"

namespace grpo {
namespace {

using rewards::RewardChecker;
using rewards::RewardComponent;
using rewards::ScoreRequest;
using rewards::ScoreResult;

constexpr size_t kMaxExtractedBytes = 512;
constexpr int kMaxDepth = 100;
constexpr size_t kMaxReferenceNumbers = 64;

std::string_view trim(std::string_view s) {
  const char* ws = " \t\n\r\f\v";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string cap(std::string_view s) {
  if (s.size() <= kMaxExtractedBytes) return std::string(s);
  size_t n = kMaxExtractedBytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // keep UTF-8 whole
  return std::string(s.substr(0, n)) + "...";
}

// The trimmed text between the last "</answer>" and the last "<answer>" before it; nullopt
// when there is no such pair or it holds only whitespace.
std::optional<std::string_view> answer_tag(std::string_view text) {
  const size_t close = text.rfind("</answer>");
  if (close == std::string_view::npos) return std::nullopt;
  const size_t open = text.rfind("<answer>", close);
  if (open == std::string_view::npos) return std::nullopt;
  std::string_view inside = trim(text.substr(open + 8, close - open - 8));
  if (inside.empty()) return std::nullopt;
  return inside;
}

// "[+-]digits" as a canonical string ("+007" -> "7", "-0" -> "0"), of any length.
std::optional<std::string> canonical_integer(std::string_view s) {
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  s.remove_prefix(std::min(s.find_first_not_of('0'), s.size() - 1));
  std::string out(negative && s != "0" ? "-" : "");
  out.append(s);
  return out;
}

ScoreResult finish(ScoreResult& result, const char* component, double value, const char* reason) {
  result.reward = value;
  result.reason = reason;
  result.components.push_back(RewardComponent{component, value, 1.0, reason});
  return result;
}

class ArithmeticChecker : public RewardChecker {
 public:
  std::string name() const override { return "arithmetic"; }

  ScoreResult score(const ScoreRequest& request) override {
    std::optional<std::string> reference = canonical_integer(trim(request.reference));
    GRPO_CHECK(reference.has_value(), "arithmetic checker: request " << request.id << ": reference \""
                                                                     << cap(request.reference)
                                                                     << "\" is not an integer");
    ScoreResult result;
    result.id = request.id;
    std::optional<std::string_view> answer = answer_tag(request.completion);
    if (!answer) return finish(result, "arithmetic", 0, "no_answer");
    result.extracted = cap(*answer);
    std::optional<std::string> got = canonical_integer(*answer);
    if (!got) return finish(result, "arithmetic", 0, "unparsable");
    return *got == *reference ? finish(result, "arithmetic", 1, "correct") : finish(result, "arithmetic", 0, "wrong");
  }
};

// Exact rationals over int64 (den > 0, lowest terms); products go through __int128 and a
// result that does not fit is an overflow.
struct Rational {
  int64_t num = 0, den = 1;
};

enum class EvalStatus { ok, division_by_zero, overflow };

__int128 gcd128(__int128 a, __int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

EvalStatus make_rational(__int128 num, __int128 den, Rational& out) {
  if (den == 0) return EvalStatus::division_by_zero;
  if (den < 0) num = -num, den = -den;
  const __int128 g = gcd128(num, den);
  if (g > 1) num /= g, den /= g;
  if (num > INT64_MAX || num < -INT64_MAX || den > INT64_MAX) return EvalStatus::overflow;
  out = Rational{int64_t(num), int64_t(den)};
  return EvalStatus::ok;
}

// The operands are at most 2^63 in size, so each product and the sums below fit in __int128.
EvalStatus evaluate(const Expression& e, int32_t i, Rational& out) {
  const ExprNode& n = e.nodes[i];
  if (n.op == 0) return make_rational(n.value, 1, out);
  Rational a, b;
  if (EvalStatus s = evaluate(e, n.left, a); s != EvalStatus::ok) return s;
  if (n.op == 'n') return make_rational(-__int128(a.num), a.den, out);
  if (EvalStatus s = evaluate(e, n.right, b); s != EvalStatus::ok) return s;
  const __int128 an = a.num, ad = a.den, bn = b.num, bd = b.den;
  switch (n.op) {
    case '+': return make_rational(an * bd + bn * ad, ad * bd, out);
    case '-': return make_rational(an * bd - bn * ad, ad * bd, out);
    case '*': return make_rational(an * bn, ad * bd, out);
    case '/': return make_rational(an * bd, ad * bn, out);
  }
  GRPO_ASSERT(false);
}

struct CountdownReference {
  std::vector<int64_t> numbers;  // sorted
  int64_t target = 0;
};

CountdownReference parse_reference(const ScoreRequest& request) {
  const std::string source = "countdown checker: request " + std::to_string(request.id) + ": reference";
  ConfigNode node = ConfigNode::from_string(request.reference, source);
  GRPO_CHECK(node.raw().is_object(), source << " must be a JSON object {\"numbers\": [...], \"target\": N}, got "
                                            << node.raw().type_name());
  CountdownReference ref;
  ref.numbers = node.require<std::vector<int64_t>>("numbers");
  ref.target = node.require<int64_t>("target");
  node.finish();
  GRPO_CHECK(!ref.numbers.empty() && ref.numbers.size() <= kMaxReferenceNumbers,
             source << ": \"numbers\" must hold 1 to " << kMaxReferenceNumbers << " numbers, got "
                    << ref.numbers.size());
  for (int64_t v : ref.numbers) GRPO_CHECK(v >= 0, source << ": \"numbers\" must be >= 0, got " << v);
  std::sort(ref.numbers.begin(), ref.numbers.end());
  return ref;
}

class CountdownChecker : public RewardChecker {
 public:
  explicit CountdownChecker(size_t max_answer_chars) : max_answer_chars_(max_answer_chars) {}
  std::string name() const override { return "countdown"; }

  ScoreResult score(const ScoreRequest& request) override {
    const CountdownReference ref = parse_reference(request);
    ScoreResult result;
    result.id = request.id;
    std::optional<std::string_view> answer = answer_tag(request.completion);
    if (!answer) return finish(result, "countdown", 0, "no_answer");
    result.extracted = cap(*answer);
    if (answer->size() > max_answer_chars_) return finish(result, "countdown", 0, "unparsable");
    ExprParse parsed = parse_expression(*answer, kMaxDepth);
    if (parsed.error != ExprError::none) return finish(result, "countdown", 0, "unparsable");
    // Numbers before value: a right value from the wrong numbers is not a solution. This also
    // bounds the evaluation below to a tree with as many numbers as the reference.
    std::vector<int64_t> used = parsed.expr.numbers();
    std::sort(used.begin(), used.end());
    if (used != ref.numbers) return finish(result, "countdown", 0, "wrong_numbers");
    Rational value;
    switch (evaluate(parsed.expr, parsed.expr.root, value)) {
      case EvalStatus::division_by_zero: return finish(result, "countdown", 0, "division_by_zero");
      case EvalStatus::overflow: return finish(result, "countdown", 0, "overflow");
      case EvalStatus::ok: break;
    }
    const bool correct = value.den == 1 && value.num == ref.target;
    return finish(result, "countdown", correct ? 1 : 0, correct ? "correct" : "wrong");
  }

 private:
  size_t max_answer_chars_;
};

}  // namespace

std::unique_ptr<RewardChecker> make_arithmetic_checker() { return std::make_unique<ArithmeticChecker>(); }

std::unique_ptr<RewardChecker> make_countdown_checker(size_t max_answer_chars) {
  GRPO_CHECK(max_answer_chars >= 1 && max_answer_chars <= 100000,
             "countdown checker: max_answer_chars must be in [1, 100000], got " << max_answer_chars);
  return std::make_unique<CountdownChecker>(max_answer_chars);
}

void register_dataset_checkers(rewards::CheckerRegistry& registry) {
  registry.add("arithmetic", "integer in the last <answer></answer>, compared exactly with the reference integer",
               [](ConfigNode&) { return make_arithmetic_checker(); });
  registry.add("countdown",
               "equation in the last <answer></answer>: each reference number once, + - * / ( ), exact value = "
               "target; reference {\"numbers\": [...], \"target\": N}",
               [](ConfigNode& options) {
                 const int64_t max_chars = options.get<int64_t>("max_answer_chars", 1000);
                 GRPO_CHECK(max_chars >= 1 && max_chars <= 100000, options.key_path("max_answer_chars")
                                                                       << " must be in [1, 100000], got " << max_chars);
                 return make_countdown_checker(size_t(max_chars));
               });
}

}  // namespace grpo
