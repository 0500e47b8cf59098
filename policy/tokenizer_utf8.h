// UTF-8 helpers for the tokenizer: validation, code point iteration, lossy repair and the
// length of an unfinished sequence at the end of a buffer (for streaming decode).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace grpo::utf8 {

// Length of the longest valid UTF-8 prefix of `s` (== s.size() when all of it is valid).
// Valid means well-formed per Unicode: no overlongs, no surrogates, nothing above U+10FFFF.
size_t valid_prefix(std::string_view s);

// Appends `s` to `out`, replacing each maximal invalid subsequence with U+FFFD (the
// "substitution of maximal subparts" rule that Rust's String::from_utf8_lossy follows).
void append_lossy(std::string& out, std::string_view s);

// The number of bytes at the end of `s` that are a proper prefix of a valid sequence (a
// sequence that more bytes could still complete): 0..3.
size_t incomplete_tail(std::string_view s);

// Decodes the code point at s[i] (which must start a valid sequence) and advances i.
inline uint32_t next(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    uint32_t cp = ((b0 & 0x1Fu) << 6) | (static_cast<unsigned char>(s[i + 1]) & 0x3Fu);
    i += 2;
    return cp;
  }
  if (b0 < 0xF0) {
    uint32_t cp = ((b0 & 0x0Fu) << 12) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 6) |
                  (static_cast<unsigned char>(s[i + 2]) & 0x3Fu);
    i += 3;
    return cp;
  }
  uint32_t cp = ((b0 & 0x07u) << 18) | ((static_cast<unsigned char>(s[i + 1]) & 0x3Fu) << 12) |
                ((static_cast<unsigned char>(s[i + 2]) & 0x3Fu) << 6) | (static_cast<unsigned char>(s[i + 3]) & 0x3Fu);
  i += 4;
  return cp;
}

// Length in bytes of the sequence that starts with lead byte `b0` (1 for invalid leads).
inline size_t sequence_length(unsigned char b0) {
  if (b0 < 0xC0) return 1;
  if (b0 < 0xE0) return 2;
  if (b0 < 0xF0) return 3;
  return b0 < 0xF8 ? 4 : 1;
}

void append(std::string& out, uint32_t cp);

}  // namespace grpo::utf8
