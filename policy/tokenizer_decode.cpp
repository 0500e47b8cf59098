// Decoding: the bytes each id stands for (from the file's decoder), whole-sequence decode
// with U+FFFD repair, and streaming decode that holds back unfinished UTF-8.
#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "policy/tokenizer_impl.h"
#include "policy/tokenizer_utf8.h"

namespace grpo {

namespace {

enum class DecodeStep { kByteLevel, kByteFallback, kFuse };

void read_decoder(const nlohmann::json& j, const std::string& field, std::vector<DecodeStep>& steps) {
  GRPO_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
             field << " must be an object with a string \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    GRPO_CHECK(j.contains("decoders") && j["decoders"].is_array(), field << ".decoders must be an array");
    for (size_t i = 0; i < j["decoders"].size(); ++i)
      read_decoder(j["decoders"][i], field + ".decoders[" + std::to_string(i) + "]", steps);
  } else if (type == "ByteLevel") {
    steps.push_back(DecodeStep::kByteLevel);
  } else if (type == "ByteFallback") {
    steps.push_back(DecodeStep::kByteFallback);
  } else if (type == "Fuse") {
    steps.push_back(DecodeStep::kFuse);  // tokens are concatenated anyway
  } else {
    GRPO_THROW(field << ".type \"" << type << "\" is not supported (supported: ByteLevel, ByteFallback, Fuse, Sequence)");
  }
}

// "<0xHH>" -> the byte, or -1.
int fallback_byte(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// ByteLevel: each character of the BPE alphabet back to its byte; other characters (added
// tokens' text) stay as they are.
void byte_level_decode(std::string_view token, std::string& out) {
  static const std::array<int16_t, 0x144> inverse = [] {
    std::array<int16_t, 0x144> inv;
    inv.fill(-1);
    const auto& alphabet = byte_level_alphabet();
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      inv[utf8::next(alphabet[size_t(b)], i)] = static_cast<int16_t>(b);
    }
    return inv;
  }();
  if (utf8::valid_prefix(token) != token.size()) {  // raw bytes from an earlier step
    out.append(token);
    return;
  }
  for (size_t i = 0; i < token.size();) {
    const size_t start = i;
    const uint32_t cp = utf8::next(token, i);
    if (cp < inverse.size() && inverse[cp] >= 0)
      out.push_back(static_cast<char>(inverse[cp]));
    else
      out.append(token.substr(start, i - start));
  }
}

}  // namespace

void Tokenizer::Impl::build_decoder(const nlohmann::json& decoder, const std::string& field) {
  std::vector<DecodeStep> steps;
  join_with_space = decoder.is_null();
  if (!join_with_space) read_decoder(decoder, field, steps);
  bytes.clear();
  bytes_offset.assign(tokens.size() + 1, 0);
  const bool has_fallback = std::find(steps.begin(), steps.end(), DecodeStep::kByteFallback) != steps.end();
  std::string cur, next;
  for (size_t id = 0; id < tokens.size(); ++id) {
    bytes_offset[id] = static_cast<uint32_t>(bytes.size());
    if (!(flags[id] & kValid)) continue;
    cur = tokens[id];
    for (DecodeStep step : steps) {
      if (step == DecodeStep::kByteFallback) {
        const int b = fallback_byte(cur);
        if (b >= 0) cur.assign(1, static_cast<char>(b));
      } else if (step == DecodeStep::kByteLevel) {
        next.clear();
        byte_level_decode(cur, next);
        cur.swap(next);
      }
    }
    bytes += cur;
    if (has_fallback && fallback_byte(tokens[id]) >= 0) flags[id] |= kByteFallback;
  }
  bytes_offset[tokens.size()] = static_cast<uint32_t>(bytes.size());
}

void Tokenizer::Impl::append_byte_group(std::string& out, std::string_view group) {
  if (utf8::valid_prefix(group) == group.size()) {
    out += group;
  } else {
    for (size_t i = 0; i < group.size(); ++i) out += "\xEF\xBF\xBD";
  }
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  std::string raw, group;
  bool first = true;
  for (TokenId id : ids) {
    GRPO_CHECK(impl_->valid(id), "decode: id " << id << " is not in the vocabulary (size " << vocab_size() << ")");
    if (skip_special && (impl_->flags[size_t(id)] & Impl::kSpecial)) continue;
    if (impl_->join_with_space && !first) raw.push_back(' ');
    first = false;
    if (impl_->byte_fallback(id)) {
      group += impl_->token_bytes(id);
      continue;
    }
    if (!group.empty()) {
      Impl::append_byte_group(raw, group);
      group.clear();
    }
    raw += impl_->token_bytes(id);
  }
  if (!group.empty()) Impl::append_byte_group(raw, group);
  std::string out;
  out.reserve(raw.size());
  utf8::append_lossy(out, raw);
  return out;
}

DecodeStream::DecodeStream(const Tokenizer& tokenizer, bool skip_special)
    : tokenizer_(&tokenizer), skip_special_(skip_special) {}

std::string DecodeStream::push(TokenId id) {
  const Tokenizer::Impl& impl = *tokenizer_->impl_;
  GRPO_CHECK(impl.valid(id), "decode: id " << id << " is not in the vocabulary (size " << tokenizer_->vocab_size() << ")");
  if (skip_special_ && (impl.flags[size_t(id)] & Tokenizer::Impl::kSpecial)) return {};
  if (impl.join_with_space && !first_) pending_.push_back(' ');  // (no decoder: no byte fallback)
  first_ = false;
  if (impl.byte_fallback(id)) {
    group_ += impl.token_bytes(id);
    return {};
  }
  if (!group_.empty()) {
    Tokenizer::Impl::append_byte_group(pending_, group_);
    group_.clear();
  }
  pending_ += impl.token_bytes(id);
  const size_t keep = utf8::incomplete_tail(pending_);
  std::string out;
  utf8::append_lossy(out, std::string_view(pending_).substr(0, pending_.size() - keep));
  pending_.erase(0, pending_.size() - keep);
  return out;
}

std::string DecodeStream::finish() {
  if (!group_.empty()) {
    Tokenizer::Impl::append_byte_group(pending_, group_);
    group_.clear();
  }
  std::string out;
  utf8::append_lossy(out, pending_);
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace grpo
