// Internals of Tokenizer shared by its translation units (loading, encoding, decoding).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/tokenizer.h"
#include "policy/tokenizer_added.h"
#include "policy/tokenizer_bpe.h"
#include "policy/tokenizer_normalize.h"
#include "policy/tokenizer_pretokenize.h"

namespace grpo {

struct Tokenizer::Impl {
  std::string source;  // the tokenizer.json path, for messages

  TextNormalizer normalizer;
  PreTokenizer pre_tokenizer;
  BpeModel model;
  std::vector<AddedToken> added;
  AddedTokenMatcher raw_matcher;         // added tokens with normalized=false
  AddedTokenMatcher normalized_matcher;  // added tokens with normalized=true
  VocabMap added_by_content;

  // Per id (dense up to the largest id): token string, flags, decoded bytes.
  // kByteFallback: a <0xHH> token under a ByteFallback decoder. HF decodes each run of them
  // as one group: its bytes if they are valid UTF-8, else one U+FFFD per byte.
  static constexpr uint8_t kValid = 1, kSpecial = 2, kByteFallback = 4;
  std::vector<std::string> tokens;
  std::vector<uint8_t> flags;
  std::vector<uint32_t> bytes_offset;  // token i's bytes: bytes[bytes_offset[i] .. bytes_offset[i+1])
  std::string bytes;
  bool join_with_space = false;  // no decoder: HF joins the tokens with spaces

  SpecialTokens specials;

  bool valid(TokenId id) const { return id >= 0 && size_t(id) < flags.size() && (flags[size_t(id)] & kValid); }
  std::string_view token_bytes(TokenId id) const {
    return std::string_view(bytes).substr(bytes_offset[size_t(id)], bytes_offset[size_t(id) + 1] - bytes_offset[size_t(id)]);
  }

  bool byte_fallback(TokenId id) const { return flags[size_t(id)] & kByteFallback; }
  // A finished run of byte-fallback bytes, appended to `out` as HF decodes it.
  static void append_byte_group(std::string& out, std::string_view group);

  void encode_append(std::string_view text, std::vector<TokenId>& out) const;
  // Fills bytes/bytes_offset/join_with_space from the "decoder" value (tokenizer_decode.cpp).
  void build_decoder(const nlohmann::json& decoder, const std::string& field);
};

}  // namespace grpo
