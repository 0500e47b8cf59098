// The "format" checker: does the completion have DeepSeek-R1's shape, one reasoning block in
// <think>...</think> followed by an answer? Reward 1 when it does, 0 with a reason when not.
//
// Default rule (options {}):
//   optional leading whitespace, "<think>", the reasoning (no nested or further think tags),
//   "</think>", then a non-empty answer (anything but whitespace).
//   When the prompt already ends with "<think>" (R1-distill chat templates open the block in
//   the generation prompt), the completion may start directly with the reasoning.
// {"answer_tag": true}: the answer must be exactly one "<answer>...</answer>" block with a
//   non-empty body, followed by nothing but whitespace.
// {"allow_empty_think": false}: the reasoning must contain more than whitespace.
// {"pattern": "REGEX"}: instead of the default rule, the completion must match this PCRE2
//   pattern (UTF-8, "." matches newlines, the whole completion unless {"full_match": false};
//   invalid UTF-8 in the completion is replaced by U+FFFD before matching).
//   A named group (?<answer>...) becomes the extracted answer. Matching is bounded (match and
//   depth limits); a pattern that hits them scores 0 with reason "pattern_limit".
//
// Reasons: "ok", "missing_think", "unclosed_think", "nested_think", "empty_think",
// "multiple_think", "empty_answer", "missing_answer_tag", "unclosed_answer", "nested_answer",
// "text_after_answer", "no_match", "pattern_limit".
// The result has one component, "format"; `extracted` is the answer text (capped at 4 kB).
#pragma once

#include <memory>
#include <string>

#include "rewards/checker.h"
#include "rewards/registry.h"

namespace grpo::rewards {

struct FormatOptions {
  bool answer_tag = false;        // require <answer>...</answer> after </think>
  bool allow_empty_think = true;  // accept "<think></think>" with nothing inside
  std::string pattern;            // PCRE2 pattern replacing the default rule; "" = default rule
  bool full_match = true;         // pattern must match the whole completion (else: anywhere)
};

// Throws grpo::Error for contradictory options or a pattern that does not compile (the
// message carries PCRE2's reason and the offset).
std::unique_ptr<RewardChecker> make_format_checker(const FormatOptions& options);

// Registers "format" (options as above, read strictly from the config).
void register_format_checker(CheckerRegistry& registry);

}  // namespace grpo::rewards
