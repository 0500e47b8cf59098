// Encoding (added tokens -> normalizer -> pre-tokenizer -> BPE) and the lookup tables.
#include "policy/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>

#include "core/error.h"
#include "policy/tokenizer_impl.h"
#include "policy/tokenizer_utf8.h"

namespace grpo {

namespace {

// Buffers reused by every encode call on this thread: no allocation per word or token once
// they have grown to the size of the text.
struct EncodeScratch {
  std::vector<AddedTokenMatcher::Segment> raw_segments, normalized_segments;
  std::string normalized;
  std::vector<std::string_view> words;
  PreTokenizeScratch pre;
  BpeScratch bpe;
};

EncodeScratch& thread_scratch() {
  thread_local EncodeScratch scratch;
  return scratch;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

void Tokenizer::Impl::encode_append(std::string_view text, std::vector<TokenId>& out) const {
  const size_t valid = utf8::valid_prefix(text);
  GRPO_CHECK(valid == text.size(), "tokenizer: the text is not valid UTF-8 (byte " << valid << " of " << text.size() << ")");
  GRPO_CHECK(text.size() < (size_t(1) << 32), "tokenizer: texts of 4 GiB or more are not supported");
  EncodeScratch& s = thread_scratch();
  s.raw_segments.clear();
  raw_matcher.split(text, s.raw_segments);
  for (const AddedTokenMatcher::Segment& raw : s.raw_segments) {
    if (raw.id >= 0) {
      out.push_back(raw.id);
      continue;
    }
    // Normalize the text between raw-matched tokens, then look for normalized added tokens.
    const std::string_view piece = normalizer.apply(text.substr(raw.begin, raw.end - raw.begin), s.normalized);
    s.normalized_segments.clear();
    normalized_matcher.split(piece, s.normalized_segments);
    for (const AddedTokenMatcher::Segment& seg : s.normalized_segments) {
      if (seg.id >= 0) {
        out.push_back(seg.id);
        continue;
      }
      s.words.clear();
      pre_tokenizer.split(piece.substr(seg.begin, seg.end - seg.begin), s.words, s.pre);
      for (std::string_view word : s.words) model.encode_word(word, out, s.bpe);
    }
  }
}

std::vector<TokenId> Tokenizer::encode(std::string_view text) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 4);
  impl_->encode_append(text, out);
  return out;
}

void Tokenizer::encode_append(std::string_view text, std::vector<TokenId>& out) const {
  impl_->encode_append(text, out);
}

std::vector<std::vector<TokenId>> Tokenizer::encode_batch(std::span<const std::string> texts, int n_threads) const {
  std::vector<std::vector<TokenId>> out(texts.size());
  size_t threads = n_threads > 0 ? size_t(n_threads) : std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, texts.size());
  if (threads <= 1) {
    for (size_t i = 0; i < texts.size(); ++i) out[i] = encode(texts[i]);
    return out;
  }
  std::atomic<size_t> next{0};
  std::exception_ptr error;
  std::atomic<bool> failed{false};
  auto work = [&] {
    try {
      for (size_t i = next++; i < texts.size() && !failed; i = next++) out[i] = encode(texts[i]);
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  if (error) std::rethrow_exception(error);
  return out;
}

std::string Tokenizer::normalize(std::string_view text) const {
  const size_t valid = utf8::valid_prefix(text);
  GRPO_CHECK(valid == text.size(), "tokenizer: the text is not valid UTF-8 (byte " << valid << " of " << text.size() << ")");
  std::vector<AddedTokenMatcher::Segment> segments;
  impl_->raw_matcher.split(text, segments);
  std::string out, buffer;
  for (const auto& seg : segments) {
    const std::string_view piece = text.substr(seg.begin, seg.end - seg.begin);
    if (seg.id >= 0)
      out += piece;
    else
      out += impl_->normalizer.apply(piece, buffer);
  }
  return out;
}

int64_t Tokenizer::vocab_size() const { return int64_t(impl_->flags.size()); }
bool Tokenizer::is_valid(TokenId id) const { return impl_->valid(id); }
bool Tokenizer::is_special(TokenId id) const { return impl_->valid(id) && (impl_->flags[size_t(id)] & Impl::kSpecial); }

std::optional<TokenId> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) return it->second;
  if (auto it = impl_->model.vocab().find(token); it != impl_->model.vocab().end()) return it->second;
  return std::nullopt;
}

const std::string& Tokenizer::id_to_token(TokenId id) const {
  GRPO_CHECK(impl_->valid(id), "tokenizer: id " << id << " is not in the vocabulary (size " << vocab_size() << ")");
  return impl_->tokens[size_t(id)];
}

std::string_view Tokenizer::token_bytes(TokenId id) const {
  GRPO_CHECK(impl_->valid(id), "tokenizer: id " << id << " is not in the vocabulary (size " << vocab_size() << ")");
  return impl_->token_bytes(id);
}

const SpecialTokens& Tokenizer::special_tokens() const { return impl_->specials; }

std::vector<std::string> Tokenizer::split_patterns() const { return impl_->pre_tokenizer.split_patterns(); }

}  // namespace grpo
