// Bad tokenizer files and bad inputs are rejected with one line naming the field at fault.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "policy/tokenizer.h"
#include "tests/policy/tokenizer_test_util.h"

namespace grpo {
namespace {

using nlohmann::json;

json preset() { return load_json_file(test::byte_level_dir() + "/tokenizer.json"); }

// Loading `j` must throw a one-line grpo::Error whose message contains every one of `parts`.
void expect_rejected(const json& j, const std::vector<std::string>& parts, const json* config = nullptr) {
  try {
    Tokenizer::from_json(j, "tokenizer.json", config, "tokenizer_config.json");
    ADD_FAILURE() << "accepted, expected an error naming " << parts.front();
  } catch (const Error& e) {
    const std::string msg = e.message();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "\"" << p << "\" not in: " << msg;
  }
}

TEST(TokenizerErrors, NotJson) {
  const auto dir = std::filesystem::temp_directory_path() / ("grpo_tok_not_json_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"type\": \"BPE\",";
  try {
    Tokenizer::from_dir(dir.string());
    ADD_FAILURE() << "a truncated tokenizer.json was accepted";
  } catch (const Error& e) {
    const std::string msg = e.message();
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("JSON"), std::string::npos) << msg;
  }
  std::filesystem::remove_all(dir);
  EXPECT_THROW(Tokenizer::from_json(json::array(), "tokenizer.json"), Error);
}

TEST(TokenizerErrors, MissingFolder) {
  try {
    Tokenizer::from_dir("/nonexistent/tokenizer/folder");
    ADD_FAILURE() << "accepted a missing folder";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("/nonexistent/tokenizer/folder"), std::string::npos) << e.message();
  }
}

TEST(TokenizerErrors, UnsupportedModelType) {
  json j = preset();
  j["model"]["type"] = "Unigram";
  expect_rejected(j, {"model.type", "Unigram"});
  j.erase("model");
  expect_rejected(j, {"model"});
}

TEST(TokenizerErrors, UnsupportedModelOptions) {
  json j = preset();
  j["model"]["dropout"] = 0.1;
  expect_rejected(j, {"model.dropout"});
  j = preset();
  j["model"]["continuing_subword_prefix"] = "##";
  expect_rejected(j, {"model.continuing_subword_prefix"});
  j = preset();
  j["model"]["unk_token"] = "<unk>";
  expect_rejected(j, {"model.unk_token", "<unk>"});
}

TEST(TokenizerErrors, UnsupportedPreTokenizer) {
  json j = preset();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}};
  expect_rejected(j, {"pre_tokenizer.type", "Metaspace"});
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"},
                                                        {"pattern", {{"Regex", "\\s+"}}},
                                                        {"behavior", "Isolated"},
                                                        {"invert", false}},
                                                       {{"type", "Digits"}, {"individual_digits", true}}})}};
  expect_rejected(j, {"pre_tokenizer.pretokenizers[1].type", "Digits"});
}

TEST(TokenizerErrors, BadSplit) {
  json split = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}, {"invert", false}};
  json j = preset();
  j["pre_tokenizer"] = split;
  expect_rejected(j, {"pre_tokenizer.pattern", "does not compile"});
  split["pattern"] = {{"Regex", "\\s+"}};
  split["behavior"] = "Sideways";
  j["pre_tokenizer"] = split;
  expect_rejected(j, {"pre_tokenizer.behavior", "Sideways"});
  // ByteLevel must be the last step.
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({preset()["pre_tokenizer"], {{"type", "Split"},
                                                                                   {"pattern", {{"Regex", "x"}}},
                                                                                   {"behavior", "Isolated"}}})}};
  expect_rejected(j, {"pre_tokenizer.pretokenizers[1]", "ByteLevel must come last"});
}

TEST(TokenizerErrors, UnsupportedNormalizerAndDecoder) {
  json j = preset();
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_rejected(j, {"normalizer.type", "Lowercase"});
  j = preset();
  j["decoder"] = {{"type", "Sequence"}, {"decoders", json::array({{{"type", "Metaspace"}}})}};
  expect_rejected(j, {"decoder.decoders[0].type", "Metaspace"});
}

TEST(TokenizerErrors, MergeNamingAnUnknownToken) {
  json j = preset();
  j["model"]["merges"] = json::array({"a b"});  // "ab" is not in the vocab
  expect_rejected(j, {"model.merges[0]", "\"ab\""});
  j["model"]["merges"] = json::array({json::array({"a", "NOT_A_TOKEN"})});
  expect_rejected(j, {"model.merges[0]", "NOT_A_TOKEN"});
  j["model"]["merges"] = json::array({"a b c"});
  expect_rejected(j, {"model.merges[0]", "two tokens"});
}

TEST(TokenizerErrors, DuplicateIdsInVocab) {
  json j = preset();
  j["model"]["vocab"]["ab"] = 97;  // the id of "a"
  expect_rejected(j, {"model.vocab", "duplicate id 97", "\"ab\""});
  j = preset();
  j["model"]["vocab"]["zz"] = -4;
  expect_rejected(j, {"model.vocab[\"zz\"]", "-4"});
}

TEST(TokenizerErrors, AddedTokens) {
  json j = preset();
  j["added_tokens"][1]["id"] = 300;  // HF would give it 257
  expect_rejected(j, {"added_tokens[1].id", "300", "257"});
  j = preset();
  j["added_tokens"].push_back(j["added_tokens"][0]);  // the same token twice: same id
  expect_rejected(j, {"added_tokens[3].id", "repeats added_tokens[0]"});
  j = preset();
  j["added_tokens"][0]["content"] = "";
  expect_rejected(j, {"added_tokens[0].content"});
}

TEST(TokenizerErrors, TokenizerConfig) {
  const json j = preset();
  json config = {{"eos_token", "<|no_such_token|>"}};
  expect_rejected(j, {"tokenizer_config.json", "eos_token", "<|no_such_token|>"}, &config);
  config = {{"add_bos_token", true}, {"bos_token", nullptr}};
  expect_rejected(j, {"tokenizer_config.json", "add_bos_token"}, &config);
  config = {{"pad_token", 5}};
  expect_rejected(j, {"tokenizer_config.json", "pad_token"}, &config);
  config = {{"bos_token", {{"__type", "AddedToken"}, {"content", "<|im_start|>"}}}, {"eos_token", "<|im_end|>"}};
  const Tokenizer tok = Tokenizer::from_json(j, "tokenizer.json", &config, "tokenizer_config.json");
  EXPECT_EQ(tok.special_tokens().bos, 257);
  EXPECT_EQ(tok.special_tokens().eos, 258);
  EXPECT_FALSE(tok.special_tokens().pad.has_value());
}

TEST(TokenizerErrors, BadInputs) {
  const Tokenizer tok = Tokenizer::from_dir(test::byte_level_dir());
  EXPECT_THROW(tok.encode("ok \xC3"), Error);          // truncated UTF-8
  EXPECT_THROW(tok.encode("\xED\xA0\x80"), Error);     // a surrogate
  EXPECT_THROW(tok.decode(std::vector<TokenId>{1, 259}), Error);
  EXPECT_THROW(tok.decode(std::vector<TokenId>{-1}), Error);
  EXPECT_THROW(tok.id_to_token(100000), Error);
  DecodeStream stream(tok);
  EXPECT_THROW(stream.push(259), Error);
  try {
    tok.decode(std::vector<TokenId>{7, 4000});
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("id 4000"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace grpo
