// Finding the final answer in a model's completion (math_checker.h lists the methods). Pure
// string work in linear time: brace matching is one pass over the text, so a completion full of
// unclosed \boxed{ costs no more than one scan.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards::math {

enum class ExtractMethod { kBoxed, kAnswerTag, kGsm8k, kTheAnswerIs };

// "boxed", "answer_tag", "gsm8k", "the_answer_is"; nullopt for anything else.
std::optional<ExtractMethod> extract_method_from_name(std::string_view name);
const char* extract_method_name(ExtractMethod method);

struct Extraction {
  std::string answer;  // trimmed, never empty
  ExtractMethod method = ExtractMethod::kBoxed;
};

// Tries `order` in turn; the first method that finds a non-empty answer wins.
std::optional<Extraction> extract_answer(std::string_view completion, const std::vector<ExtractMethod>& order);

// Each method alone.
std::optional<std::string> extract_boxed(std::string_view text);          // last \boxed{..} / \fbox{..}
std::optional<std::string> extract_answer_tag(std::string_view text);     // last <answer>..</answer>
std::optional<std::string> extract_gsm8k(std::string_view text);          // after the last "####"
std::optional<std::string> extract_the_answer_is(std::string_view text);  // "the answer is x."

// The answer inside a reference: its last \boxed{} if it has one, else the text after a GSM8K
// "####" if it has one, else the whole reference (trimmed).
std::string reference_answer(std::string_view reference);

}  // namespace grpo::rewards::math
