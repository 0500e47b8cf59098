// The tokenizer against Hugging Face `tokenizers` (fixtures written by
// tests/tokenizer/make_fixtures.py): every id of every case, every decode, and the round
// trip decode(encode(x)) == x after the file's normalizer.
#include <string>
#include <vector>

#include "policy/tokenizer.h"
#include "tests/policy/tokenizer_test_util.h"

namespace grpo {
namespace {

using nlohmann::json;

std::string show(const std::string& s) {
  return s.size() > 120 ? json(s.substr(0, 120)).dump(-1, ' ', false, json::error_handler_t::replace) + "..."
                        : json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

// Checks every case of `cases`; returns the number of cases checked.
size_t check_cases(const Tokenizer& tok, const json& cases, const std::string& label) {
  size_t n = 0;
  for (const json& c : cases) {
    const std::string name = label + "/" + c["name"].get<std::string>();
    const std::string text = c["text"].get<std::string>();
    const auto expected = c["ids"].get<std::vector<TokenId>>();
    const std::vector<TokenId> ids = tok.encode(text);
    EXPECT_EQ(ids, expected) << name << ": text " << show(text);
    const std::string decoded = tok.decode(expected);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>()) << name << ": decode of the reference ids";
    if (c["roundtrip"].get<bool>()) {
      EXPECT_EQ(tok.normalize(text), decoded) << name << ": decode(encode(x)) != normalized x";
    }
    // Streaming decode, one id at a time, gives the same text.
    DecodeStream stream(tok);
    std::string streamed;
    for (TokenId id : expected) streamed += stream.push(id);
    streamed += stream.finish();
    EXPECT_EQ(streamed, decoded) << name << ": streaming decode";
    ++n;
  }
  return n;
}

size_t check_decode_cases(const Tokenizer& tok, const json& cases, const std::string& label) {
  size_t n = 0;
  for (const json& c : cases) {
    const auto ids = c["ids"].get<std::vector<TokenId>>();
    const bool skip = c["skip_special"].get<bool>();
    const std::string expected = c["decoded"].get<std::string>();
    EXPECT_EQ(tok.decode(ids, skip), expected) << label << ": decode case " << n << " " << json(ids).dump();
    DecodeStream stream(tok, skip);
    std::string streamed;
    for (TokenId id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    EXPECT_EQ(streamed, expected) << label << ": streaming decode case " << n << " " << json(ids).dump();
    ++n;
  }
  return n;
}

void check_fixture(const std::string& fixture) {
  const json f = test::load_fixture(fixture);
  const json which = f["tokenizer"];
  Tokenizer tok = which.contains("shared")
                      ? Tokenizer::from_dir(test::shared_tokenizers_dir() + "/" + which["shared"].get<std::string>())
                      : Tokenizer::from_dir(std::string(GRPO_SOURCE_DIR) + "/" + which["repo"].get<std::string>());
  const size_t n = check_cases(tok, f["cases"], fixture);
  const size_t d = check_decode_cases(tok, f["decode_cases"], fixture);
  EXPECT_GT(n, 30u);
  std::printf("%s: %zu encode cases, %zu decode cases (HF tokenizers %s)\n", fixture.c_str(), n, d,
              f["hf_tokenizers_version"].get<std::string>().c_str());
}

TEST(TokenizerFixtures, Qwen3MatchesHuggingFace) {
  GRPO_SKIP_WITHOUT_SHARED("qwen3");
  check_fixture("qwen3");
}

TEST(TokenizerFixtures, DeepSeekV3MatchesHuggingFace) {
  GRPO_SKIP_WITHOUT_SHARED("deepseek_v3");
  check_fixture("deepseek_v3");
}

TEST(TokenizerFixtures, ByteLevelPresetMatchesHuggingFace) { check_fixture("byte_level"); }

// Patched copies of the Qwen3 file (Llama-3 regex with ignore_merges, GPT-2 ByteLevel regex
// with add_prefix_space, every Split behavior, NFD+NFKC, added-token rules) and an inline
// char-level BPE with byte fallback.
TEST(TokenizerFixtures, VariantsMatchHuggingFace) {
  GRPO_SKIP_WITHOUT_SHARED("qwen3");
  const json f = test::load_fixture("variants");
  const json base = test::fixture_tokenizer_json(json{{"shared", "qwen3"}});
  size_t n = 0;
  for (const json& v : f["variants"]) {
    const std::string name = v["name"].get<std::string>();
    json j = v["tokenizer"].contains("inline") ? v["tokenizer"]["inline"] : base;
    test::apply_patch(j, v["patch"]);
    Tokenizer tok = Tokenizer::from_json(j, "variant " + name);
    n += check_cases(tok, v["cases"], name);
    if (v.contains("decode_cases")) {
      EXPECT_GT(check_decode_cases(tok, v["decode_cases"], name), 0u);
    }
  }
  EXPECT_GT(n, 80u);
}

}  // namespace
}  // namespace grpo
