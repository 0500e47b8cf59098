// Decoding: UTF-8 repair as Rust's from_utf8_lossy, streaming that holds back unfinished
// sequences, skip_special, and the byte-level preset.
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "policy/tokenizer.h"
#include "policy/tokenizer_utf8.h"
#include "tests/policy/tokenizer_test_util.h"

namespace grpo {
namespace {

std::string lossy(std::string_view s) {
  std::string out;
  utf8::append_lossy(out, s);
  return out;
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(lossy("abc"), "abc");
  EXPECT_EQ(lossy("\x80"), r);
  EXPECT_EQ(lossy("\xE4\xBD"), r);                       // truncated: one replacement
  EXPECT_EQ(lossy("\xE4\xBD" "A"), r + "A");
  EXPECT_EQ(lossy("\xC0\xAF"), r + r);                   // overlong lead: each byte
  EXPECT_EQ(lossy("\xED\xA0\x80"), r + r + r);           // surrogate
  EXPECT_EQ(lossy("\xF0\x9F\x98"), r);                   // truncated 4-byte sequence
  EXPECT_EQ(lossy("\xF4\x90\x80\x80"), r + r + r + r);   // above U+10FFFF
  EXPECT_EQ(lossy("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
}

TEST(Utf8, IncompleteTail) {
  EXPECT_EQ(utf8::incomplete_tail(""), 0u);
  EXPECT_EQ(utf8::incomplete_tail("a"), 0u);
  EXPECT_EQ(utf8::incomplete_tail("a\xF0"), 1u);
  EXPECT_EQ(utf8::incomplete_tail("a\xF0\x9F"), 2u);
  EXPECT_EQ(utf8::incomplete_tail("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(utf8::incomplete_tail("a\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(utf8::incomplete_tail("a\xF0\x80"), 0u);  // can never complete: not held back
  EXPECT_EQ(utf8::incomplete_tail("\x80\x80"), 0u);
  EXPECT_EQ(utf8::valid_prefix("abc\xE4\xBD\xA0x\xFF"), 7u);
}

TEST(DecodeStream, HoldsBackUnfinishedUtf8) {
  const Tokenizer tok = Tokenizer::from_dir(test::byte_level_dir());  // ids == bytes
  const std::string emoji = "\xF0\x9F\x8E\x89";                     // U+1F389
  DecodeStream stream(tok);
  EXPECT_EQ(stream.push('a'), "a");
  EXPECT_EQ(stream.push(0xF0), "");
  EXPECT_EQ(stream.held_back(), 1u);
  EXPECT_EQ(stream.push(0x9F), "");
  EXPECT_EQ(stream.push(0x8E), "");
  EXPECT_EQ(stream.push(0x89), emoji);
  EXPECT_EQ(stream.held_back(), 0u);
  // An invalid byte is emitted as U+FFFD at once; an unfinished tail is flushed by finish().
  EXPECT_EQ(stream.push(0x80), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.push(0xE4), "");
  EXPECT_EQ(stream.push('b'), "\xEF\xBF\xBD" "b");
  EXPECT_EQ(stream.push(0xE4), "");
  EXPECT_EQ(stream.finish(), "\xEF\xBF\xBD");
  // Special tokens: kept, or dropped with skip_special.
  EXPECT_EQ(stream.push(258), "<|im_end|>");
  DecodeStream skipping(tok, true);
  EXPECT_EQ(skipping.push(258), "");
  EXPECT_EQ(skipping.push('x'), "x");
}

TEST(DecodeStream, RandomBytesMatchWholeDecode) {
  const Tokenizer tok = Tokenizer::from_dir(test::byte_level_dir());
  std::mt19937 rng(123);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<TokenId> ids(size_t(rng() % 24));
    for (TokenId& id : ids) {
      // Mostly valid UTF-8 pieces, some random bytes.
      const uint32_t r = rng() % 10;
      id = r < 4 ? TokenId(0x61 + rng() % 26) : r < 9 ? TokenId(0x80 + rng() % 0x78) : TokenId(256 + rng() % 3);
    }
    DecodeStream stream(tok);
    std::string streamed;
    for (TokenId id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_EQ(utf8::valid_prefix(piece), piece.size());
      streamed += piece;
    }
    streamed += stream.finish();
    EXPECT_EQ(streamed, tok.decode(ids));
  }
}

TEST(ByteLevelPreset, IdsAreBytes) {
  const Tokenizer tok = Tokenizer::from_dir(test::byte_level_dir());
  EXPECT_EQ(tok.vocab_size(), 259);
  const std::string text = "h\xC3\xA9<|im_start|>\r\n\xE4\xBD\xA0 <|endoftext|>";
  const std::vector<TokenId> ids = tok.encode(text);
  const std::vector<TokenId> expected = {'h', 0xC3, 0xA9, 257, '\r', '\n', 0xE4, 0xBD, 0xA0, ' ', 256};
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "h\xC3\xA9\r\n\xE4\xBD\xA0 ");
  EXPECT_TRUE(tok.is_special(256));
  EXPECT_FALSE(tok.is_special(65));
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), 258);
  EXPECT_EQ(tok.token_to_id("\xC4\xA0"), 32);  // "Ġ" is the space byte
  EXPECT_EQ(tok.special_tokens().eos, 256);
  EXPECT_EQ(tok.special_tokens().pad, 256);
  EXPECT_FALSE(tok.special_tokens().bos.has_value());
  for (int b = 0; b < 256; ++b) EXPECT_EQ(tok.token_bytes(b), std::string(1, char(b)));
}

}  // namespace
}  // namespace grpo
