// Shared helpers of the tokenizer tests: where the fixtures and the real tokenizer files
// are, and loading a fixture's tokenizer (with its patch applied).
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "core/config.h"
#include "policy/tokenizer.h"

namespace grpo::test {

inline std::string fixtures_dir() { return std::string(GRPO_SOURCE_DIR) + "/tests/tokenizer/fixtures"; }
inline std::string shared_tokenizers_dir() { return GRPO_SHARED_TOKENIZERS; }
inline std::string byte_level_dir() { return std::string(GRPO_SOURCE_DIR) + "/configs/tokenizers/byte_level"; }

inline bool have_shared(const std::string& name) {
  return std::filesystem::exists(shared_tokenizers_dir() + "/" + name + "/tokenizer.json");
}

#define GRPO_SKIP_WITHOUT_SHARED(name)                                                                     \
  do {                                                                                                     \
    if (!::grpo::test::have_shared(name))                                                                  \
      GTEST_SKIP() << "real tokenizer files not found: " << ::grpo::test::shared_tokenizers_dir() << "/" \
                   << (name) << "/tokenizer.json (the shared/tokenizers folder beside the repository)";    \
  } while (0)

inline nlohmann::json load_fixture(const std::string& name) { return load_json_file(fixtures_dir() + "/" + name + ".json"); }

// Applies {"set": {dotted: value}, "append": {dotted: [values]}} as make_fixtures.py does.
inline void apply_patch(nlohmann::json& j, const nlohmann::json& patch) {
  if (patch.is_null()) return;
  auto locate = [&](const std::string& dotted) -> nlohmann::json& {
    nlohmann::json* node = &j;
    size_t start = 0;
    for (size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1)
      node = &(*node)[dotted.substr(start, dot - start)];
    return (*node)[dotted.substr(start)];
  };
  if (patch.contains("set"))
    for (auto it = patch["set"].begin(); it != patch["set"].end(); ++it) locate(it.key()) = it.value();
  if (patch.contains("append"))
    for (auto it = patch["append"].begin(); it != patch["append"].end(); ++it)
      for (const auto& v : it.value()) locate(it.key()).push_back(v);
}

// The parsed tokenizer.json named by a fixture's "tokenizer" entry.
inline nlohmann::json fixture_tokenizer_json(const nlohmann::json& which) {
  if (which.contains("inline")) return which["inline"];
  if (which.contains("shared"))
    return load_json_file(shared_tokenizers_dir() + "/" + which["shared"].get<std::string>() + "/tokenizer.json");
  return load_json_file(std::string(GRPO_SOURCE_DIR) + "/" + which["repo"].get<std::string>() + "/tokenizer.json");
}

}  // namespace grpo::test
