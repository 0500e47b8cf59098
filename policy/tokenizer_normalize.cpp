#include "policy/tokenizer_normalize.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/stringpiece.h>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace grpo {

namespace {

const icu::Normalizer2* icu_instance(TextNormalizer::Form form) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case TextNormalizer::Form::kNFC: n = icu::Normalizer2::getNFCInstance(status); break;
    case TextNormalizer::Form::kNFD: n = icu::Normalizer2::getNFDInstance(status); break;
    case TextNormalizer::Form::kNFKC: n = icu::Normalizer2::getNFKCInstance(status); break;
    case TextNormalizer::Form::kNFKD: n = icu::Normalizer2::getNFKDInstance(status); break;
  }
  GRPO_CHECK(U_SUCCESS(status) && n, "ICU: cannot load normalization data (" << u_errorName(status) << ")");
  return n;
}

// Text whose code points are all below U+0300 is already in NFC: none of them decomposes
// under canonical equivalence, has a non-zero combining class or composes with another one
// (every second element of a composition is U+0300 or above). Lead bytes below 0xCC encode
// exactly those. The other forms change some Latin-1 characters (U+00E9 under NFD, U+00A0
// under NFKC), so only pure ASCII is skipped for them.
bool trivially_normalized(std::string_view s, TextNormalizer::Form form) {
  const unsigned char limit = form == TextNormalizer::Form::kNFC ? 0xCC : 0x80;
  for (char c : s)
    if (static_cast<unsigned char>(c) >= limit) return false;
  return true;
}

}  // namespace

void TextNormalizer::add(const nlohmann::json& j, const std::string& field) {
  if (j.is_null()) return;
  GRPO_CHECK(j.is_object() && j.contains("type") && j["type"].is_string(),
             field << " must be an object with a string \"type\"");
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    GRPO_CHECK(j.contains("normalizers") && j["normalizers"].is_array(),
               field << ".normalizers must be an array");
    for (size_t i = 0; i < j["normalizers"].size(); ++i)
      add(j["normalizers"][i], field + ".normalizers[" + std::to_string(i) + "]");
    return;
  }
  Form form;
  if (type == "NFC") form = Form::kNFC;
  else if (type == "NFD") form = Form::kNFD;
  else if (type == "NFKC") form = Form::kNFKC;
  else if (type == "NFKD") form = Form::kNFKD;
  else
    GRPO_THROW(field << ".type \"" << type << "\" is not supported (supported: NFC, NFD, NFKC, NFKD, Sequence)");
  forms_.push_back(form);
  impl_.push_back(icu_instance(form));
}

TextNormalizer TextNormalizer::from_json(const nlohmann::json& j, const std::string& field) {
  TextNormalizer n;
  n.add(j, field);
  return n;
}

std::string_view TextNormalizer::apply(std::string_view in, std::string& buffer) const {
  std::string_view cur = in;
  std::string scratch;
  for (size_t k = 0; k < forms_.size(); ++k) {
    if (trivially_normalized(cur, forms_[k])) continue;
    const auto* n = static_cast<const icu::Normalizer2*>(impl_[k]);
    UErrorCode status = U_ZERO_ERROR;
    const icu::StringPiece piece(cur.data(), static_cast<int32_t>(cur.size()));
    if (n->isNormalizedUTF8(piece, status) && U_SUCCESS(status)) continue;
    status = U_ZERO_ERROR;
    scratch.clear();
    icu::StringByteSink<std::string> sink(&scratch, static_cast<int32_t>(cur.size() + cur.size() / 4 + 16));
    n->normalizeUTF8(0, piece, sink, nullptr, status);
    GRPO_CHECK(U_SUCCESS(status), "normalizer: ICU failed (" << u_errorName(status) << ")");
    buffer.swap(scratch);
    cur = buffer;
  }
  return cur;
}

}  // namespace grpo
