// The `normalizer` of a tokenizer.json: Unicode normalization forms through ICU.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace grpo {

class TextNormalizer {
 public:
  enum class Form { kNFC, kNFD, kNFKC, kNFKD };

  TextNormalizer() = default;
  // `j` is the "normalizer" value (null, one normalizer or a Sequence); `field` names it.
  static TextNormalizer from_json(const nlohmann::json& j, const std::string& field);

  bool is_identity() const { return forms_.empty(); }
  // Normalizes `in` (valid UTF-8). Returns a view of `in` itself when nothing changes, else
  // a view of `buffer`, which it overwrites.
  std::string_view apply(std::string_view in, std::string& buffer) const;

 private:
  void add(const nlohmann::json& j, const std::string& field);
  std::vector<Form> forms_;
  std::vector<const void*> impl_;  // icu::Normalizer2 instances, owned by ICU
};

}  // namespace grpo
