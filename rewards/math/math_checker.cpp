#include "rewards/math/math_checker.h"

#include <sstream>

#include "core/error.h"
#include "rewards/math/math_compare.h"
#include "rewards/math/math_extract.h"

namespace grpo::rewards {
namespace {

constexpr size_t kMaxExtractedBytes = 512;

std::string cap_utf8(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // don't split a UTF-8 character
  return s.substr(0, n) + "...";
}

class MathChecker : public RewardChecker {
 public:
  explicit MathChecker(const MathCheckerOptions& options) {
    for (const std::string& name : options.extract) order_.push_back(*math::extract_method_from_name(name));
    compare_.rel_tol = options.rel_tol;
    compare_.max_answer_chars = options.max_answer_chars;
    compare_.time_limit_ms = options.time_limit_ms;
  }

  std::string name() const override { return "math"; }

  ScoreResult score(const ScoreRequest& request) override {
    std::string reference = math::reference_answer(request.reference);
    GRPO_CHECK(!reference.empty(), "math checker: request " << request.id << " has an empty reference answer");
    ScoreResult result;
    result.id = request.id;
    std::optional<math::Extraction> extraction = math::extract_answer(request.completion, order_);
    if (!extraction) return finish(result, 0, "no_answer");
    result.extracted = cap_utf8(extraction->answer, kMaxExtractedBytes);
    switch (math::compare_answers(reference, extraction->answer, compare_)) {
      case math::Verdict::kEqual:
        return finish(result, 1, "correct");
      case math::Verdict::kNotEqual:
        return finish(result, 0, "wrong");
      case math::Verdict::kUnparsable:
        return finish(result, 0, "unparsable");
    }
    return finish(result, 0, "unparsable");
  }

 private:
  static ScoreResult finish(ScoreResult& result, double value, const char* reason) {
    result.reward = value;
    result.reason = reason;
    result.components.push_back(RewardComponent{"math", value, 1.0, reason});
    return result;
  }

  std::vector<math::ExtractMethod> order_;
  math::CompareOptions compare_;
};

}  // namespace

MathCheckerOptions math_checker_options(ConfigNode& options) {
  MathCheckerOptions o;
  o.extract = options.get<std::vector<std::string>>("extract", o.extract);
  GRPO_CHECK(!o.extract.empty(), options.key_path("extract") << ": needs at least one extraction method");
  for (const std::string& name : o.extract) {
    GRPO_CHECK(math::extract_method_from_name(name).has_value(),
               options.key_path("extract") << ": unknown extraction method \"" << name
                                           << "\" (known: boxed, answer_tag, gsm8k, the_answer_is)");
  }
  o.rel_tol = options.get<double>("rel_tol", o.rel_tol);
  GRPO_CHECK(o.rel_tol >= 0 && o.rel_tol < 1, options.key_path("rel_tol") << " must be in [0, 1), got " << o.rel_tol);
  int64_t max_chars = options.get<int64_t>("max_answer_chars", static_cast<int64_t>(o.max_answer_chars));
  GRPO_CHECK(max_chars >= 1 && max_chars <= 100000, options.key_path("max_answer_chars")
                                                        << " must be in [1, 100000], got " << max_chars);
  o.max_answer_chars = static_cast<size_t>(max_chars);
  o.time_limit_ms = options.get<int64_t>("time_limit_ms", o.time_limit_ms);
  GRPO_CHECK(o.time_limit_ms >= 1 && o.time_limit_ms <= 600000,
             options.key_path("time_limit_ms") << " must be in [1, 600000], got " << o.time_limit_ms);
  return o;
}

std::unique_ptr<RewardChecker> make_math_checker(const MathCheckerOptions& options) {
  return std::make_unique<MathChecker>(options);
}

void register_math_checkers(CheckerRegistry& registry) {
  registry.add("math",
               "final answer (\\boxed{}, <answer>, ####, \"the answer is\") compared with the reference by "
               "GiNaC: exact simplification, then numeric evaluation at rel_tol",
               [](ConfigNode& options) { return make_math_checker(math_checker_options(options)); });
}

}  // namespace grpo::rewards
