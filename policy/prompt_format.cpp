#include "policy/prompt_format.h"

#include <algorithm>

#include "core/config.h"
#include "core/error.h"

namespace grpo {

namespace {

constexpr std::string_view kPlaceholder = "{prompt}";
constexpr const char* kImStart = "<|im_start|>";
constexpr const char* kImEnd = "<|im_end|>";
constexpr const char* kDsUser = "<\xEF\xBD\x9CUser\xEF\xBD\x9C>";            // <｜User｜>
constexpr const char* kDsAssistant = "<\xEF\xBD\x9C" "Assistant\xEF\xBD\x9C>";  // <｜Assistant｜>
constexpr const char* kDsEos = "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>";  // <｜end▁of▁sentence｜>

void check_role(const ChatMessage& m, size_t i) {
  GRPO_CHECK(m.role == "system" || m.role == "user" || m.role == "assistant",
             "prompt format: messages[" << i << "].role \"" << m.role << "\" is not system, user or assistant");
}

}  // namespace

const char* PromptFormat::r1_zero_template() {
  return "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
         "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
         "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
         "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>. "
         "User: {prompt}. Assistant:";
}

std::vector<std::string> PromptFormat::names() { return {"raw", "r1_zero", "chatml", "deepseek_v3"}; }

PromptFormat PromptFormat::create(const PromptFormatOptions& options, const SpecialTokens& specials) {
  PromptFormat f;
  f.name_ = options.format;
  f.system_ = options.system;
  f.generation_prefix_ = options.generation_prefix;
  f.bos_text_ = specials.bos_text;
  if (options.format == "raw" || options.format == "r1_zero") {
    f.kind_ = Kind::kRaw;
    f.template_ = options.format == "r1_zero" ? std::string(r1_zero_template()) : options.template_text;
    GRPO_CHECK(options.format == "raw" || options.template_text.empty(),
               "prompt format r1_zero: \"template\" is fixed (use format \"raw\" for your own)");
    GRPO_CHECK(f.template_.find(kPlaceholder) != std::string::npos,
               "prompt format raw: \"template\" must contain {prompt}");
    GRPO_CHECK(options.system.empty(), "prompt format " << options.format << ": \"system\" applies to chat formats only");
  } else if (options.format == "chatml") {
    f.kind_ = Kind::kChatML;
  } else if (options.format == "deepseek_v3") {
    f.kind_ = Kind::kDeepSeekV3;
  } else {
    GRPO_THROW("prompt format \"" << options.format << "\" is unknown (expected raw, r1_zero, chatml or deepseek_v3)");
  }
  if (f.kind_ != Kind::kRaw)
    GRPO_CHECK(options.template_text.empty(), "prompt format " << options.format << ": \"template\" applies to raw only");
  return f;
}

PromptFormat PromptFormat::from_config(ConfigNode& node, const SpecialTokens& specials) {
  PromptFormatOptions o;
  o.format = node.get_choice("format", "chatml", {"raw", "r1_zero", "chatml", "deepseek_v3"});
  o.template_text = node.get<std::string>("template", "");
  o.system = node.get<std::string>("system", "");
  o.generation_prefix = node.get<std::string>("generation_prefix", "");
  try {
    return create(o, specials);
  } catch (const Error& e) {
    GRPO_THROW(node.key_path("format") << ": " << e.message());
  }
}

std::string PromptFormat::render(std::string_view prompt) const {
  const ChatMessage user{"user", std::string(prompt)};
  return render_chat(std::span<const ChatMessage>(&user, 1), true);
}

std::string PromptFormat::render_chat(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) check_role(messages[i], i);
  switch (kind_) {
    case Kind::kRaw: {
      GRPO_CHECK(messages.size() == 1 && messages[0].role == "user",
                 "prompt format " << name_ << ": takes exactly one user message, got " << messages.size() << " messages");
      const std::string& prompt = messages[0].content;
      for (size_t at = 0;;) {
        const size_t p = template_.find(kPlaceholder, at);
        out.append(template_, at, p == std::string::npos ? std::string::npos : p - at);
        if (p == std::string::npos) break;
        out += prompt;
        at = p + kPlaceholder.size();
      }
      if (add_generation_prompt) out += generation_prefix_;
      return out;
    }
    case Kind::kChatML: {
      const bool has_system = !messages.empty() && messages[0].role == "system";
      if (!has_system && !system_.empty()) out.append(kImStart).append("system\n").append(system_).append(kImEnd).append("\n");
      for (const ChatMessage& m : messages)
        out.append(kImStart).append(m.role).append("\n").append(m.content).append(kImEnd).append("\n");
      if (add_generation_prompt) out.append(kImStart).append("assistant\n").append(generation_prefix_);
      return out;
    }
    case Kind::kDeepSeekV3: {
      // System messages are gathered (joined by blank lines) right after BOS.
      out += bos_text_;
      std::string system;
      bool any_system = false;
      for (const ChatMessage& m : messages)
        if (m.role == "system") {
          if (any_system) system += "\n\n";
          system += m.content;
          any_system = true;
        }
      out += any_system ? system : system_;
      for (const ChatMessage& m : messages) {
        if (m.role == "user") out.append(kDsUser).append(m.content);
        else if (m.role == "assistant") out.append(kDsAssistant).append(m.content).append(kDsEos);
      }
      if (add_generation_prompt) out.append(kDsAssistant).append(generation_prefix_);
      return out;
    }
  }
  GRPO_ASSERT(false);
}

std::vector<TokenId> PromptFormat::encode(const Tokenizer& tokenizer, std::string_view prompt) const {
  const std::string text = render(prompt);
  const SpecialTokens& s = tokenizer.special_tokens();
  std::vector<TokenId> ids;
  if (s.add_bos && s.bos && !(!s.bos_text.empty() && text.starts_with(s.bos_text))) ids.push_back(*s.bos);
  tokenizer.encode_append(text, ids);
  return ids;
}

std::vector<TokenId> PromptFormat::stop_ids(const Tokenizer& tokenizer) const {
  std::vector<TokenId> ids;
  auto add = [&](std::string_view token) {
    if (auto id = tokenizer.token_to_id(token)) {
      for (TokenId have : ids)
        if (have == *id) return;
      ids.push_back(*id);
    }
  };
  if (kind_ == Kind::kChatML) add(kImEnd);
  if (kind_ == Kind::kDeepSeekV3) add(kDsEos);
  if (const auto& eos = tokenizer.special_tokens().eos)
    if (std::find(ids.begin(), ids.end(), *eos) == ids.end()) ids.push_back(*eos);
  return ids;
}

}  // namespace grpo
