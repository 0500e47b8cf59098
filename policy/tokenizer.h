// Byte-level BPE tokenizer read directly from a Hugging Face `tokenizer.json`
// (Qwen2/Qwen3, DeepSeek-V3/R1, Llama-3 families), plus `tokenizer_config.json`.
//
//   Tokenizer tok = Tokenizer::from_dir("models/qwen3");        // tokenizer.json (+ _config)
//   std::vector<TokenId> ids = tok.encode("Hello, 世界");       // add_special_tokens=False
//   std::string text = tok.decode(ids);                           // == tok.normalize(input)
//
// Encoding follows HF `tokenizers` exactly (tests compare id for id against it):
//   1. added tokens with normalized=false are matched in the raw text (leftmost-longest);
//   2. each remaining piece is normalized (NFC/NFD/NFKC/NFKD via ICU) and added tokens with
//      normalized=true are matched in it;
//   3. the pre-tokenizer splits each piece (`Split` with the file's regex, run by PCRE2 JIT;
//      `ByteLevel` maps bytes to the BPE alphabet);
//   4. each pre-token word is merged by BPE rank (results cached per word, bounded).
// Special tokens written in the text are matched (as HF does with split_special_tokens=False).
//
// Supported tokenizer.json components (anything else is rejected, naming the field):
//   normalizer:    null, NFC, NFD, NFKC, NFKD, Sequence of these
//   pre_tokenizer: null, Split (Regex or String pattern, every behavior, invert), ByteLevel
//                  (add_prefix_space, use_regex; it must come last), Sequence of these
//   model:         BPE (merges as "a b" or ["a","b"], ignore_merges, byte_fallback, unk_token,
//                  fuse_unk; no dropout, no continuing_subword_prefix / end_of_word_suffix)
//   decoder:       null (tokens joined by spaces), ByteLevel, ByteFallback, Fuse, Sequence
//   post_processor, truncation, padding: read by HF only when add_special_tokens=True or when
//                  batching; ignored here (BOS/EOS come from tokenizer_config.json).
// Thread safety: a Tokenizer is immutable after loading except for its internal BPE cache,
// which is locked; encode/decode may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace grpo {

using TokenId = int32_t;

// BOS/EOS/PAD from tokenizer_config.json (each may be absent).
struct SpecialTokens {
  std::optional<TokenId> bos, eos, pad;
  std::string bos_text, eos_text, pad_text;  // "" when absent
  bool add_bos = false;                      // add_bos_token
  bool add_eos = false;                      // add_eos_token
};

class Tokenizer {
 public:
  // `dir` holds tokenizer.json and optionally tokenizer_config.json. A path to a .json file
  // is read as the tokenizer.json itself (its folder is searched for tokenizer_config.json).
  static Tokenizer from_dir(const std::string& dir);
  // A parsed tokenizer.json; `source` names it in error messages. `config` is the parsed
  // tokenizer_config.json or null.
  static Tokenizer from_json(const nlohmann::json& tokenizer_json, const std::string& source,
                             const nlohmann::json* config = nullptr, const std::string& config_source = "");

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids (no BOS/EOS added). Throws grpo::Error if `text` is not valid UTF-8.
  std::vector<TokenId> encode(std::string_view text) const;
  void encode_append(std::string_view text, std::vector<TokenId>& out) const;
  // Encodes each text on `n_threads` threads (0: hardware concurrency).
  std::vector<std::vector<TokenId>> encode_batch(std::span<const std::string> texts, int n_threads = 0) const;

  // Ids -> text. Invalid ids throw grpo::Error. Bytes that are not valid UTF-8 become U+FFFD
  // (one per maximal invalid subsequence, as Rust's from_utf8_lossy / HF decode).
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const;
  // The bytes the decoder gives for one id (may be a partial UTF-8 sequence).
  std::string_view token_bytes(TokenId id) const;

  // What decode(encode(text)) gives back: the normalizer applied between added tokens.
  std::string normalize(std::string_view text) const;

  // One past the largest id (model vocab and added tokens).
  int64_t vocab_size() const;
  bool is_valid(TokenId id) const;
  bool is_special(TokenId id) const;  // an added token marked "special"
  std::optional<TokenId> token_to_id(std::string_view token) const;
  const std::string& id_to_token(TokenId id) const;  // throws for invalid ids
  const SpecialTokens& special_tokens() const;

  // The regex of every Split pre-tokenizer, in order, literal strings quoted \Q...\E (the
  // bench's raw PCRE2 peer uses them).
  std::vector<std::string> split_patterns() const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class DecodeStream;
};

// Streaming decode: feed ids one at a time as they are sampled; each push returns the text
// that is now complete. Bytes of a UTF-8 sequence that is not finished yet are held back
// (never emitted as U+FFFD) until the next id completes it or finish() is called; so is a run
// of <0xHH> byte-fallback tokens, which HF decodes as a whole. The concatenated output equals
// Tokenizer::decode of the same ids.
class DecodeStream {
 public:
  explicit DecodeStream(const Tokenizer& tokenizer, bool skip_special = false);
  std::string push(TokenId id);  // throws grpo::Error for invalid ids
  std::string finish();          // flushes held-back bytes (as U+FFFD) and resets
  size_t held_back() const { return pending_.size() + group_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;  // bytes of an unfinished UTF-8 sequence
  std::string group_;    // bytes of an unfinished run of <0xHH> tokens (ByteFallback decoder)
};

}  // namespace grpo
