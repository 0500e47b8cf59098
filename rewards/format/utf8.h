// UTF-8 repair for model output: detokenized text need not be valid UTF-8 (a sampled byte
// token can split a character), but PCRE2 patterns and proto3 strings want it valid.
#pragma once

#include <string>
#include <string_view>

namespace grpo::rewards {

// True when `text` is valid UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view text);

// `text` with every byte that does not start a valid sequence replaced by U+FFFD.
std::string valid_utf8(std::string_view text);

}  // namespace grpo::rewards
