// `grpo tokenize --tokenizer DIR [--decode]`: text <-> ids with a tokenizer.json, JSON out.
//   echo -n "Hello" | grpo tokenize --tokenizer models/qwen3          {"ids":[9707],"n_tokens":1}
//   echo '[9707]'   | grpo tokenize --tokenizer models/qwen3 --decode {"text":"Hello"}
// --decode also reads the encoder's own output ({"ids": [...]}), so the two pipe together.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "policy/prompt_format.h"
#include "policy/tokenizer.h"

namespace grpo::cli {

namespace {

struct TokenizeArgs {
  std::string tokenizer;
  bool decode = false;
  bool skip_special = false;
  bool tokens = false;
  std::string text;
  bool have_text = false;
  std::string format;
  std::string template_text;
  std::string system;
};

std::string read_stdin() {
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  GRPO_CHECK(!std::cin.bad(), "tokenize: cannot read stdin");
  return s;
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

int run_tokenize(const TokenizeArgs& a) {
  const Tokenizer tok = Tokenizer::from_dir(a.tokenizer);
  if (a.decode) {
    const std::string input = a.have_text ? a.text : read_stdin();
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(input);
    } catch (const nlohmann::json::parse_error& e) {
      GRPO_THROW("--decode: the input is not JSON (expected a list of ids): " << e.what());
    }
    if (j.is_object() && j.contains("ids")) j = j["ids"];
    GRPO_CHECK(j.is_array(), "--decode: expected a JSON list of ids or {\"ids\": [...]}, got " << j.type_name());
    std::vector<TokenId> ids;
    ids.reserve(j.size());
    for (size_t i = 0; i < j.size(); ++i) {
      GRPO_CHECK(j[i].is_number_integer() && j[i].get<int64_t>() >= INT32_MIN && j[i].get<int64_t>() <= INT32_MAX,
                 "--decode: element " << i << " is not an integer id: " << j[i].dump());
      ids.push_back(static_cast<TokenId>(j[i].get<int64_t>()));
    }
    std::printf("%s\n", dump({{"text", tok.decode(ids, a.skip_special)}}).c_str());
    return 0;
  }
  const std::string text = a.have_text ? a.text : read_stdin();
  std::vector<TokenId> ids;
  if (!a.format.empty() || !a.template_text.empty()) {
    PromptFormatOptions o;
    o.format = a.template_text.empty() ? a.format : "raw";
    GRPO_CHECK(a.format.empty() || a.format == "raw" || a.template_text.empty(),
               "--template makes a raw format; it does not combine with --format " << a.format);
    o.template_text = a.template_text;
    o.system = a.system;
    ids = PromptFormat::create(o, tok.special_tokens()).encode(tok, text);
  } else {
    GRPO_CHECK(a.system.empty(), "--system needs --format (a chat format)");
    ids = tok.encode(text);
  }
  nlohmann::json out = {{"ids", ids}, {"n_tokens", ids.size()}};
  if (a.tokens) {
    nlohmann::json pieces = nlohmann::json::array();
    for (TokenId id : ids) pieces.push_back(tok.id_to_token(id));
    out["tokens"] = std::move(pieces);
  }
  std::printf("%s\n", dump(out).c_str());
  return 0;
}

}  // namespace

void add_tokenize_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Text <-> token ids with a tokenizer.json (JSON on stdout)");
  cmd->add_option("--tokenizer", args->tokenizer, "Folder with tokenizer.json (and tokenizer_config.json), or the file")
      ->required();
  cmd->add_flag("--decode", args->decode, "Read a JSON list of ids (or {\"ids\": [...]}) and print {\"text\": ...}");
  cmd->add_flag("--skip-special", args->skip_special, "With --decode: leave special tokens out");
  cmd->add_flag("--tokens", args->tokens, "Also print each id's token string");
  cmd->add_option("--text", args->text, "Use this text (or JSON with --decode) instead of stdin");
  cmd->add_option("--format", args->format,
                  "Render the text as a prompt first (BOS added where the tokenizer asks): raw (with --template), "
                  "r1_zero, chatml or deepseek_v3")
      ->check(CLI::IsMember({"raw", "r1_zero", "chatml", "deepseek_v3"}));
  cmd->add_option("--template", args->template_text, "Raw prompt template with {prompt} (implies --format raw)");
  cmd->add_option("--system", args->system, "System message for --format chatml / deepseek_v3");
  cmd->callback([&run, args, cmd] {
    args->have_text = cmd->count("--text") > 0;
    run = [args] { return run_tokenize(*args); };
  });
}

}  // namespace grpo::cli
