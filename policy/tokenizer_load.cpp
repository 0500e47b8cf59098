// Loading: tokenizer.json (model, added tokens, normalizer, pre-tokenizer, decoder) and
// tokenizer_config.json (BOS/EOS/PAD). Every rejection names the file and the field.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "policy/tokenizer_impl.h"

namespace grpo {

namespace {

using Json = nlohmann::json;

// Ids above this are certainly a broken file (the largest vocabularies have ~256k entries).
constexpr int64_t kMaxTokenId = int64_t(1) << 24;

bool get_bool(const Json& j, const char* key, const std::string& field, bool default_value) {
  if (!j.contains(key) || j[key].is_null()) return default_value;
  GRPO_CHECK(j[key].is_boolean(), field << "." << key << " must be true or false, got " << j[key].dump());
  return j[key].get<bool>();
}

TokenId get_id(const Json& v, const std::string& field) {
  GRPO_CHECK(v.is_number_integer(), field << " must be an integer id, got " << v.dump());
  const int64_t id = v.get<int64_t>();
  GRPO_CHECK(id >= 0 && id < kMaxTokenId, field << ": id " << id << " is out of range [0, " << kMaxTokenId << ")");
  return static_cast<TokenId>(id);
}

// Reads model.vocab into `vocab` and the dense id table.
void read_vocab(const Json& model, const std::string& field, VocabMap& vocab, std::vector<std::string>& tokens,
                std::vector<uint8_t>& flags) {
  GRPO_CHECK(model.contains("vocab"), field << ".vocab is missing");
  const Json& v = model["vocab"];
  GRPO_CHECK(v.is_object(), field << ".vocab must be an object of token -> id, got " << v.type_name());
  vocab.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    const TokenId id = get_id(it.value(), field + ".vocab[\"" + it.key() + "\"]");
    if (size_t(id) >= tokens.size()) {
      tokens.resize(size_t(id) + 1);
      flags.resize(size_t(id) + 1, 0);
    }
    GRPO_CHECK(!(flags[size_t(id)] & Tokenizer::Impl::kValid),
               field << ".vocab: duplicate id " << id << " (tokens \"" << tokens[size_t(id)] << "\" and \"" << it.key()
                     << "\")");
    tokens[size_t(id)] = it.key();
    flags[size_t(id)] = Tokenizer::Impl::kValid;
    vocab.emplace(it.key(), id);
  }
}

std::vector<std::pair<std::string, std::string>> read_merges(const Json& model, const std::string& field) {
  std::vector<std::pair<std::string, std::string>> merges;
  if (!model.contains("merges") || model["merges"].is_null()) return merges;
  const Json& m = model["merges"];
  GRPO_CHECK(m.is_array(), field << ".merges must be an array, got " << m.type_name());
  merges.reserve(m.size());
  for (size_t r = 0; r < m.size(); ++r) {
    const Json& e = m[r];
    if (e.is_string()) {
      // Legacy form "left right": tokens hold no spaces (ByteLevel writes Ġ).
      const std::string s = e.get<std::string>();
      const size_t sp = s.find(' ');
      GRPO_CHECK(sp != std::string::npos && sp > 0 && sp + 1 < s.size() && s.find(' ', sp + 1) == std::string::npos,
                 field << ".merges[" << r << "]: \"" << s << "\" is not two tokens separated by one space");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else {
      GRPO_CHECK(e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string(),
                 field << ".merges[" << r << "] must be [\"left\", \"right\"] or \"left right\", got " << e.dump());
      merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
    }
  }
  return merges;
}

void read_model(Tokenizer::Impl& impl, const Json& root, const std::string& src) {
  const std::string field = src + ": model";
  GRPO_CHECK(root.contains("model") && root["model"].is_object(), field << " is missing or not an object");
  const Json& model = root["model"];
  if (model.contains("type")) {
    GRPO_CHECK(model["type"].is_string(), field << ".type must be a string");
    const std::string type = model["type"].get<std::string>();
    GRPO_CHECK(type == "BPE", field << ".type \"" << type << "\" is not supported (only BPE)");
  } else {
    GRPO_CHECK(model.contains("merges"), field << ".type is missing (only BPE models are supported)");
  }
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    GRPO_CHECK(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0,
               field << ".dropout " << model["dropout"].dump() << " is not supported (BPE dropout is for training)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null()) {
      GRPO_CHECK(model[key].is_string() && model[key].get<std::string>().empty(),
                 field << "." << key << " " << model[key].dump() << " is not supported (byte-level BPE has none)");
    }
  }
  VocabMap vocab;
  read_vocab(model, field, vocab, impl.tokens, impl.flags);
  BpeModel::Options options;
  options.byte_level = impl.pre_tokenizer.byte_level();
  options.ignore_merges = get_bool(model, "ignore_merges", field, false);
  options.byte_fallback = get_bool(model, "byte_fallback", field, false);
  options.fuse_unk = get_bool(model, "fuse_unk", field, false);
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    GRPO_CHECK(model["unk_token"].is_string(), field << ".unk_token must be a string or null");
    const std::string unk = model["unk_token"].get<std::string>();
    const auto it = vocab.find(unk);
    GRPO_CHECK(it != vocab.end(), field << ".unk_token \"" << unk << "\" is not in model.vocab");
    options.unk = it->second;
  }
  const auto merges = read_merges(model, field);
  impl.model = BpeModel(std::move(vocab), merges, options, field + ".merges");
}

void read_added_tokens(Tokenizer::Impl& impl, const Json& root, const std::string& src) {
  const std::string field = src + ": added_tokens";
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return;
  const Json& list = root["added_tokens"];
  GRPO_CHECK(list.is_array(), field << " must be an array");
  std::vector<int64_t> seen_at;  // added_tokens index per id, -1 if none
  // HF tokenizers does not read these ids: a token already known (added before, or in
  // model.vocab) takes that id and any other the next one after the model vocab and the
  // added tokens so far. A file
  // whose ids say otherwise would be tokenized differently by HF, so it is rejected.
  const int64_t model_size = int64_t(impl.model.vocab().size());
  int64_t max_added = -1;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string f = field + "[" + std::to_string(i) + "]";
    const Json& t = list[i];
    GRPO_CHECK(t.is_object(), f << " must be an object");
    GRPO_CHECK(t.contains("content") && t["content"].is_string() && !t["content"].get<std::string>().empty(),
               f << ".content must be a non-empty string");
    GRPO_CHECK(t.contains("id"), f << ".id is missing");
    AddedToken a;
    a.content = t["content"].get<std::string>();
    a.id = get_id(t["id"], f + ".id");
    a.special = get_bool(t, "special", f, false);
    a.normalized = get_bool(t, "normalized", f, !a.special);
    a.lstrip = get_bool(t, "lstrip", f, false);
    a.rstrip = get_bool(t, "rstrip", f, false);
    a.single_word = get_bool(t, "single_word", f, false);
    int64_t expected;
    if (auto it = impl.added_by_content.find(a.content); it != impl.added_by_content.end())
      expected = it->second;
    else if (auto it = impl.model.vocab().find(a.content); it != impl.model.vocab().end())
      expected = it->second;
    else if (max_added < 0)
      expected = model_size;
    else
      expected = max_added >= model_size || model_size == 0 ? max_added + 1 : model_size;
    GRPO_CHECK(a.id == expected, f << ".id " << a.id << " for \"" << a.content << "\" is not the id HF tokenizers gives it ("
                                   << expected << ": the model.vocab id of the same text, else the next free id)");
    max_added = std::max(max_added, expected);
    if (size_t(a.id) >= seen_at.size()) seen_at.resize(size_t(a.id) + 1, -1);
    GRPO_CHECK(seen_at[size_t(a.id)] < 0, f << ".id " << a.id << " repeats added_tokens[" << seen_at[size_t(a.id)]
                                           << "] (\"" << list[size_t(seen_at[size_t(a.id)])]["content"].get<std::string>()
                                           << "\")");
    seen_at[size_t(a.id)] = int64_t(i);
    if (size_t(a.id) >= impl.tokens.size()) {
      impl.tokens.resize(size_t(a.id) + 1);
      impl.flags.resize(size_t(a.id) + 1, 0);
    }
    // An added token names its id's text (HF looks added tokens up first when decoding); a
    // normalized one is kept, matched and decoded in its normalized form, as HF does.
    impl.added_by_content.emplace(a.content, a.id);
    if (a.normalized) {
      std::string buffer;
      a.content = std::string(impl.normalizer.apply(a.content, buffer));
      impl.added_by_content.emplace(a.content, a.id);
    }
    impl.tokens[size_t(a.id)] = a.content;
    impl.flags[size_t(a.id)] = Tokenizer::Impl::kValid | (a.special ? Tokenizer::Impl::kSpecial : 0);
    impl.added.push_back(std::move(a));
  }
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& a : impl.added) (a.normalized ? normalized : raw).push_back(a);
  impl.raw_matcher.build(raw);
  impl.normalized_matcher.build(normalized);
}

// bos_token etc.: a string, null, or {"content": "...", ...} (an AddedToken object).
void read_special(const Tokenizer::Impl& impl, const Json& config, const char* key, const std::string& src,
                  std::optional<TokenId>& id, std::string& text) {
  if (!config.contains(key) || config[key].is_null()) return;
  const Json& v = config[key];
  if (v.is_string()) {
    text = v.get<std::string>();
  } else {
    GRPO_CHECK(v.is_object() && v.contains("content") && v["content"].is_string(),
               src << ": " << key << " must be a string, null or an object with \"content\", got " << v.dump());
    text = v["content"].get<std::string>();
  }
  if (auto it = impl.added_by_content.find(text); it != impl.added_by_content.end()) {
    id = it->second;
  } else if (auto jt = impl.model.vocab().find(text); jt != impl.model.vocab().end()) {
    id = jt->second;
  } else {
    GRPO_THROW(src << ": " << key << " \"" << text << "\" is not a token of the tokenizer");
  }
}

}  // namespace

Tokenizer Tokenizer::from_json(const Json& root, const std::string& source, const Json* config,
                               const std::string& config_source) {
  GRPO_CHECK(root.is_object(), source << ": must be a JSON object, got " << root.type_name());
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  impl->normalizer = TextNormalizer::from_json(root.contains("normalizer") ? root["normalizer"] : Json(),
                                               source + ": normalizer");
  impl->pre_tokenizer = PreTokenizer::from_json(root.contains("pre_tokenizer") ? root["pre_tokenizer"] : Json(),
                                                source + ": pre_tokenizer");
  read_model(*impl, root, source);
  read_added_tokens(*impl, root, source);
  impl->build_decoder(root.contains("decoder") ? root["decoder"] : Json(), source + ": decoder");
  if (config) {
    GRPO_CHECK(config->is_object(), config_source << ": must be a JSON object");
    SpecialTokens& s = impl->specials;
    read_special(*impl, *config, "bos_token", config_source, s.bos, s.bos_text);
    read_special(*impl, *config, "eos_token", config_source, s.eos, s.eos_text);
    read_special(*impl, *config, "pad_token", config_source, s.pad, s.pad_text);
    auto flag = [&](const char* key) {
      if (!config->contains(key) || (*config)[key].is_null()) return false;
      GRPO_CHECK((*config)[key].is_boolean(), config_source << ": " << key << " must be true or false");
      return (*config)[key].get<bool>();
    };
    s.add_bos = flag("add_bos_token");
    s.add_eos = flag("add_eos_token");
    GRPO_CHECK(!s.add_bos || s.bos, config_source << ": add_bos_token is true but bos_token is not set");
    GRPO_CHECK(!s.add_eos || s.eos, config_source << ": add_eos_token is true but eos_token is not set");
  }
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  fs::path json_path = dir;
  std::error_code ec;
  if (fs::is_directory(json_path, ec)) json_path /= "tokenizer.json";
  GRPO_CHECK(fs::exists(json_path, ec), json_path.string() << ": no such file (expected a tokenizer.json or a folder with one)");
  const Json root = load_json_file(json_path.string());
  const fs::path config_path = json_path.parent_path() / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    const Json config = load_json_file(config_path.string());
    return from_json(root, json_path.string(), &config, config_path.string());
  }
  return from_json(root, json_path.string());
}

}  // namespace grpo
