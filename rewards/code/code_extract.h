// Extraction of the answer's code from a completion: the last closed fenced Markdown block in
// the wanted language (see rewards/code/code_checker.h for the exact rules).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace grpo::rewards {

struct CodeExtractOptions {
  std::vector<std::string> tags;  // accepted info-string words, lower case ("python", "py", ...)
  bool bare_fence = true;         // fall back to the last block without an info string
};

// The fence tags accepted for a language ("python" -> python, py, python3). Throws
// grpo::Error for a language without support.
std::vector<std::string> code_fence_tags(const std::string& language);

// The code of the chosen block (without the fences), or nothing when no block qualifies.
std::optional<std::string> extract_code_block(std::string_view completion, const CodeExtractOptions& options);

}  // namespace grpo::rewards
