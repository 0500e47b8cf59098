// Prompt formats: chat renderings equal the models' own Jinja chat templates (fixture made by
// make_fixtures.py), raw templates, BOS handling, stop ids and config errors.
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "policy/prompt_format.h"
#include "tests/policy/tokenizer_test_util.h"

namespace grpo {
namespace {

using nlohmann::json;

PromptFormatOptions opts(std::string format, std::string template_text = "", std::string system = "",
                         std::string generation_prefix = "") {
  PromptFormatOptions o;
  o.format = std::move(format);
  o.template_text = std::move(template_text);
  o.system = std::move(system);
  o.generation_prefix = std::move(generation_prefix);
  return o;
}

void check_chat_templates(const std::string& name) {
  const Tokenizer tok = Tokenizer::from_dir(test::shared_tokenizers_dir() + "/" + name);
  const json f = test::load_fixture("prompt_formats")["formats"][name];
  PromptFormatOptions o;
  o.format = f["format"].get<std::string>();
  const PromptFormat fmt = PromptFormat::create(o, tok.special_tokens());
  int checked = 0;
  for (const json& c : f["cases"]) {
    if (!c["modelled"].get<bool>()) continue;
    std::vector<ChatMessage> messages;
    for (const json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    EXPECT_EQ(fmt.render_chat(messages, c["add_generation_prompt"].get<bool>()), c["text"].get<std::string>())
        << name << "/" << c["name"].get<std::string>();
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(PromptFormat, ChatMLMatchesQwen3Template) {
  GRPO_SKIP_WITHOUT_SHARED("qwen3");
  check_chat_templates("qwen3");
}

TEST(PromptFormat, DeepSeekV3MatchesItsTemplate) {
  GRPO_SKIP_WITHOUT_SHARED("deepseek_v3");
  check_chat_templates("deepseek_v3");
}

TEST(PromptFormat, R1ZeroAndRaw) {
  const SpecialTokens none;
  const PromptFormat r1 = PromptFormat::create(opts("r1_zero"), none);
  const std::string text = r1.render("What is 2+3?");
  EXPECT_TRUE(text.starts_with("A conversation between User and Assistant."));
  EXPECT_TRUE(text.ends_with("User: What is 2+3?. Assistant:")) << text;
  const PromptFormat raw =
      PromptFormat::create(opts("raw", "Q: {prompt}\nA ({prompt}):", "", " <think>"),
                           none);
  EXPECT_EQ(raw.render("x{prompt}y"), "Q: x{prompt}y\nA (x{prompt}y): <think>");
  const PromptFormat chat = PromptFormat::create(opts("chatml", "", "Be brief.", "<think>\n"), none);
  EXPECT_EQ(chat.render("hi"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n");
}

TEST(PromptFormat, Errors) {
  const SpecialTokens none;
  EXPECT_THROW(PromptFormat::create(opts("raw", "no placeholder"), none), Error);
  EXPECT_THROW(PromptFormat::create(opts("alpaca"), none), Error);
  EXPECT_THROW(PromptFormat::create(opts("chatml", "{prompt}"), none), Error);
  EXPECT_THROW(PromptFormat::create(opts("r1_zero", "", "sys"), none), Error);
  const PromptFormat raw = PromptFormat::create(opts("r1_zero"), none);
  const std::vector<ChatMessage> two = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(raw.render_chat(two, true), Error);
  const PromptFormat chat = PromptFormat::create(opts("chatml"), none);
  const std::vector<ChatMessage> bad = {{"tool", "a"}};
  EXPECT_THROW(chat.render_chat(bad, true), Error);
  // From a run config: the format is one of the names; unknown keys are the config's business.
  ConfigNode node = ConfigNode::from_string(R"({"format": "chatm"})", "run.json");
  try {
    PromptFormat::from_config(node, none);
    ADD_FAILURE() << "accepted an unknown format name";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("format"), std::string::npos) << e.message();
  }
  ConfigNode ok = ConfigNode::from_string(R"({"format": "raw", "template": "{prompt} ="})", "run.json");
  EXPECT_EQ(PromptFormat::from_config(ok, none).render("1+1"), "1+1 =");
  ok.finish();
}

TEST(PromptFormat, EncodeAddsBosOnceAndStopIds) {
  GRPO_SKIP_WITHOUT_SHARED("deepseek_v3");
  const Tokenizer ds = Tokenizer::from_dir(test::shared_tokenizers_dir() + "/deepseek_v3");
  ASSERT_TRUE(ds.special_tokens().add_bos);
  const TokenId bos = *ds.special_tokens().bos;
  const PromptFormat chat = PromptFormat::create(opts("deepseek_v3"), ds.special_tokens());
  std::vector<TokenId> ids = chat.encode(ds, "2+2?");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], bos);
  EXPECT_NE(ids[1], bos);  // written by the template, not added twice
  EXPECT_EQ(ids.back(), *ds.token_to_id("<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>"));
  const PromptFormat r1 = PromptFormat::create(opts("r1_zero"), ds.special_tokens());
  ids = r1.encode(ds, "2+2?");
  EXPECT_EQ(ids[0], bos);  // add_bos_token
  EXPECT_EQ(chat.stop_ids(ds), std::vector<TokenId>{*ds.special_tokens().eos});
  const Tokenizer bl = Tokenizer::from_dir(test::byte_level_dir());
  const PromptFormat chatml = PromptFormat::create(opts("chatml"), bl.special_tokens());
  EXPECT_EQ(chatml.stop_ids(bl), (std::vector<TokenId>{258, 256}));
  EXPECT_EQ(chatml.encode(bl, "hi").front(), 257);  // no BOS for this tokenizer
}

}  // namespace
}  // namespace grpo
