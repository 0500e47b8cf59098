// Prompt formats: how a dataset prompt becomes the text (and ids) the policy continues.
//
//   "raw"          a template string with {prompt} (every occurrence is replaced)
//   "r1_zero"      raw with the DeepSeek-R1-Zero template (R1 paper, table 1)
//   "chatml"       Qwen's ChatML: <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n
//   "deepseek_v3"  DeepSeek-V3/R1 chat: {bos}{system}<｜User｜>...<｜Assistant｜>
// Selected by name in a run config:
//   "prompt": {"format": "chatml", "system": "You are a helpful assistant.",
//              "generation_prefix": "<think>\n"}
//   "prompt": {"format": "raw", "template": "Question: {prompt}\nAnswer:"}
// The chat formats render what the models' own chat templates render for system, user and
// assistant messages (checked against the Jinja templates in tests); tool calls and Qwen3's
// rewriting of past reasoning are not modelled (full Jinja is out of scope).
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "policy/tokenizer.h"

namespace grpo {

class ConfigNode;

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct PromptFormatOptions {
  std::string format = "chatml";  // raw | r1_zero | chatml | deepseek_v3
  std::string template_text;      // raw: contains {prompt}
  std::string system;             // chat formats: system message ("" for none)
  std::string generation_prefix;  // appended after the assistant header, e.g. "<think>\n"
};

class PromptFormat {
 public:
  enum class Kind { kRaw, kChatML, kDeepSeekV3 };

  // `specials` supplies the BOS text (DeepSeek-V3) and the stop ids.
  static PromptFormat create(const PromptFormatOptions& options, const SpecialTokens& specials);
  // Reads {"format", "template", "system", "generation_prefix"} from a config object.
  static PromptFormat from_config(ConfigNode& node, const SpecialTokens& specials);
  static const char* r1_zero_template();
  static std::vector<std::string> names();

  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }

  // The text for generation: one user turn holding `prompt`, then the assistant header.
  std::string render(std::string_view prompt) const;
  // A conversation; with `add_generation_prompt` the assistant header follows. Raw formats
  // take a single user message.
  std::string render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  // render(prompt) encoded; BOS first when the tokenizer asks for it (add_bos_token) and the
  // format has not written it already.
  std::vector<TokenId> encode(const Tokenizer& tokenizer, std::string_view prompt) const;
  // Ids that end a completion: the end-of-turn token of the chat format and EOS.
  std::vector<TokenId> stop_ids(const Tokenizer& tokenizer) const;

 private:
  Kind kind_ = Kind::kChatML;
  std::string name_;
  std::string template_;
  std::string system_;
  std::string generation_prefix_;
  std::string bos_text_;
};

}  // namespace grpo
