#include "policy/model_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/error.h"

namespace grpo {

namespace {

using json = nlohmann::json;

struct ArchInfo {
  ModelArch arch;
  const char* model_type;
  const char* architecture;
};

constexpr ArchInfo kArchs[] = {
    {ModelArch::llama, "llama", "LlamaForCausalLM"},
    {ModelArch::qwen2, "qwen2", "Qwen2ForCausalLM"},
    {ModelArch::qwen3, "qwen3", "Qwen3ForCausalLM"},
    {ModelArch::qwen2_moe, "qwen2_moe", "Qwen2MoeForCausalLM"},
    {ModelArch::qwen3_moe, "qwen3_moe", "Qwen3MoeForCausalLM"},
    {ModelArch::mixtral, "mixtral", "MixtralForCausalLM"},
    {ModelArch::olmoe, "olmoe", "OlmoeForCausalLM"},
};

const ArchInfo& arch_info(ModelArch a) {
  for (const ArchInfo& i : kArchs)
    if (i.arch == a) return i;
  GRPO_ASSERT(false);
}

bool is_qwen_family(ModelArch a) {
  return a == ModelArch::qwen2 || a == ModelArch::qwen3 || a == ModelArch::qwen2_moe || a == ModelArch::qwen3_moe;
}

// Typed readers over a JSON object: an absent key or null gives the default; a value of the
// wrong type is an error naming source and key.
class Reader {
 public:
  Reader(const json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  bool present(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  const json& at(const char* key) const { return j_.at(key); }
  std::string where(const char* key) const { return source_ + ": " + prefix_ + key; }

  int64_t get_int(const char* key, int64_t def) const {
    if (!present(key)) return def;
    const json& v = j_.at(key);
    if (v.is_number_integer()) return v.get<int64_t>();
    if (v.is_number_float()) {
      const double d = v.get<double>();
      GRPO_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15,
                 where(key) << " is " << v.dump() << ", expected an integer");
      return int64_t(d);
    }
    GRPO_THROW(where(key) << " is " << v.dump() << ", expected an integer");
  }
  double get_double(const char* key, double def) const {
    if (!present(key)) return def;
    const json& v = j_.at(key);
    GRPO_CHECK(v.is_number(), where(key) << " is " << v.dump() << ", expected a number");
    return v.get<double>();
  }
  bool get_bool(const char* key, bool def) const {
    if (!present(key)) return def;
    const json& v = j_.at(key);
    GRPO_CHECK(v.is_boolean(), where(key) << " is " << v.dump() << ", expected true or false");
    return v.get<bool>();
  }
  std::string get_string(const char* key, const std::string& def) const {
    if (!present(key)) return def;
    const json& v = j_.at(key);
    GRPO_CHECK(v.is_string(), where(key) << " is " << v.dump() << ", expected a string");
    return v.get<std::string>();
  }
  std::vector<int64_t> get_int_list(const char* key) const {
    std::vector<int64_t> out;
    if (!present(key)) return out;
    const json& v = j_.at(key);
    if (v.is_number_integer()) return {v.get<int64_t>()};
    GRPO_CHECK(v.is_array(), where(key) << " is " << v.dump() << ", expected an integer or a list of integers");
    for (const json& x : v) {
      GRPO_CHECK(x.is_number_integer(), where(key) << " holds " << x.dump() << ", expected integers");
      out.push_back(x.get<int64_t>());
    }
    return out;
  }

 private:
  const json& j_;
  std::string source_;
  std::string prefix_;
};

// Class defaults of each transformers configuration (configuration_<type>.py).
struct Defaults {
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads, max_pos;
  double eps, theta;
  int64_t num_experts, top_k, moe_intermediate, shared_intermediate;
  bool norm_topk;
  double aux_coef;
};

Defaults defaults_of(ModelArch a) {
  switch (a) {
    case ModelArch::llama: return {32000, 4096, 11008, 32, 32, 32, 2048, 1e-6, 10000, 0, 0, 0, 0, false, 0};
    case ModelArch::qwen2: return {151936, 4096, 22016, 32, 32, 32, 32768, 1e-6, 10000, 0, 0, 0, 0, false, 0};
    case ModelArch::qwen3: return {151936, 4096, 22016, 32, 32, 32, 32768, 1e-6, 10000, 0, 0, 0, 0, false, 0};
    case ModelArch::qwen2_moe:
      return {151936, 2048, 5632, 24, 16, 16, 32768, 1e-6, 10000, 60, 4, 1408, 5632, false, 0.001};
    case ModelArch::qwen3_moe:
      return {151936, 2048, 6144, 24, 32, 4, 32768, 1e-6, 10000, 128, 8, 768, 0, false, 0.001};
    case ModelArch::mixtral:
      return {32000, 4096, 14336, 32, 32, 8, 4096 * 32, 1e-5, 1e6, 8, 2, 14336, 0, true, 0.001};
    case ModelArch::olmoe: return {50304, 2048, 2048, 16, 16, 16, 4096, 1e-5, 10000, 64, 8, 2048, 0, false, 0.01};
  }
  GRPO_ASSERT(false);
}

// rope_scaling (transformers < 5) or rope_parameters (>= 5, which also holds rope_theta and
// partial_rotary_factor).
void read_rope(const Reader& r, const json& root, const std::string& source, ModelConfig& c, double default_theta) {
  RopeConfig& rope = c.rope;
  rope.theta = r.get_double("rope_theta", default_theta);
  rope.partial_rotary_factor = r.get_double("partial_rotary_factor", 1.0);
  const char* key = r.present("rope_scaling")      ? "rope_scaling"
                    : r.present("rope_parameters") ? "rope_parameters"
                                                   : nullptr;
  if (!key) return;
  const json& s = root.at(key);
  GRPO_CHECK(s.is_object(), source << ": " << key << " is " << s.dump() << ", expected an object or null");
  Reader sr(s, source, std::string(key) + ".");
  if (sr.present("rope_theta")) rope.theta = sr.get_double("rope_theta", rope.theta);
  if (sr.present("partial_rotary_factor"))
    rope.partial_rotary_factor = sr.get_double("partial_rotary_factor", rope.partial_rotary_factor);
  std::string type = sr.get_string("rope_type", sr.get_string("type", "default"));
  const char* type_key = sr.present("rope_type") ? "rope_type" : "type";
  static const char* kTypes[] = {"default", "linear", "llama3", "yarn"};
  GRPO_CHECK(std::find_if(std::begin(kTypes), std::end(kTypes), [&](const char* t) { return type == t; }) !=
                 std::end(kTypes),
             sr.where(type_key) << " \"" << type << "\" is not supported (supported: default, linear, llama3, yarn)");
  RopeScaling& sc = rope.scaling;
  sc.type = type;
  sc.factor = sr.get_double("factor", type == "yarn" ? 0.0 : 1.0);
  sc.low_freq_factor = sr.get_double("low_freq_factor", sc.low_freq_factor);
  sc.high_freq_factor = sr.get_double("high_freq_factor", sc.high_freq_factor);
  sc.original_max_position_embeddings = sr.get_int("original_max_position_embeddings", 0);
  sc.beta_fast = sr.get_double("beta_fast", sc.beta_fast);
  sc.beta_slow = sr.get_double("beta_slow", sc.beta_slow);
  sc.mscale = sr.get_double("mscale", 0.0);
  sc.mscale_all_dim = sr.get_double("mscale_all_dim", 0.0);
  sc.attention_factor = sr.get_double("attention_factor", 0.0);
  sc.truncate = sr.get_bool("truncate", true);
  if (type == "llama3") {
    GRPO_CHECK(sr.present("factor"), sr.where("factor") << " is required for rope type llama3");
  }
}

void reject_sliding_window(const Reader& r, const json& root, const ModelConfig& c) {
  if (is_qwen_family(c.arch)) {
    GRPO_CHECK(!r.get_bool("use_sliding_window", false),
               r.where("use_sliding_window") << " true is not supported (sliding-window attention is not implemented)");
    if (r.present("layer_types")) {
      const json& lt = root.at("layer_types");
      GRPO_CHECK(lt.is_array(), r.where("layer_types") << " is " << lt.dump() << ", expected a list");
      for (size_t i = 0; i < lt.size(); ++i)
        GRPO_CHECK(lt[i] == "full_attention", r.where("layer_types") << "[" << i << "] is " << lt[i].dump()
                                                                     << ", only \"full_attention\" is supported");
    }
  }
  if (c.arch == ModelArch::mixtral && r.present("sliding_window")) {
    const int64_t w = r.get_int("sliding_window", 0);
    GRPO_CHECK(w >= c.max_position_embeddings,
               r.where("sliding_window") << " " << w
                                         << " is not supported (sliding-window attention is not implemented; "
                                            "null or >= max_position_embeddings "
                                         << c.max_position_embeddings << " is)");
  }
}

}  // namespace

const std::vector<std::string>& supported_model_types() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> v;
    for (const ArchInfo& i : kArchs) v.emplace_back(i.model_type);
    return v;
  }();
  return types;
}

ModelArch model_arch_from_type(const std::string& model_type) {
  for (const ArchInfo& i : kArchs)
    if (model_type == i.model_type) return i.arch;
  std::string names;
  for (const ArchInfo& i : kArchs) names += std::string(names.empty() ? "" : ", ") + i.model_type;
  GRPO_THROW("model_type \"" << model_type << "\" is not supported (supported: " << names << ")");
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (num_experts <= 0) return false;
  if (arch == ModelArch::qwen2_moe || arch == ModelArch::qwen3_moe) {
    if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
    return decoder_sparse_step > 0 && (layer + 1) % decoder_sparse_step == 0;
  }
  return true;
}

int64_t ModelConfig::num_moe_layers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < num_hidden_layers; ++l) n += is_moe_layer(l) ? 1 : 0;
  return n;
}

std::string ModelConfig::architecture_name() const { return arch_info(arch).architecture; }

void ModelConfig::validate() const {
  GRPO_CHECK(model_arch_from_type(model_type) == arch, "model config: model_type \"" << model_type
                                                                                      << "\" disagrees with its arch");
  auto positive = [](const char* name, int64_t v) {
    GRPO_CHECK(v > 0, "model config: " << name << " is " << v << ", expected > 0");
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position_embeddings);
  GRPO_CHECK(num_attention_heads % num_key_value_heads == 0,
             "model config: num_attention_heads " << num_attention_heads << " is not a multiple of num_key_value_heads "
                                                  << num_key_value_heads);
  GRPO_CHECK(head_dim % 2 == 0, "model config: head_dim " << head_dim << " must be even (RoPE rotates pairs)");
  GRPO_CHECK(rms_norm_eps > 0 && std::isfinite(rms_norm_eps),
             "model config: rms_norm_eps is " << rms_norm_eps << ", expected > 0");
  GRPO_CHECK(initializer_range >= 0 && std::isfinite(initializer_range),
             "model config: initializer_range is " << initializer_range << ", expected >= 0");
  GRPO_CHECK(decoder_sparse_step > 0,
             "model config: decoder_sparse_step is " << decoder_sparse_step << ", expected > 0");
  GRPO_CHECK(rope.head_dim == head_dim, "model config: rope head_dim " << rope.head_dim << " != head_dim " << head_dim);
  if (arch == ModelArch::olmoe) {
    GRPO_CHECK(head_dim * num_attention_heads == hidden_size,
               "model config: olmoe needs head_dim * num_attention_heads == hidden_size (q_norm has hidden_size "
               "weights), got head_dim "
                   << head_dim << " * " << num_attention_heads << " != " << hidden_size);
  }
  bool any_dense = false;
  for (int64_t l = 0; l < num_hidden_layers; ++l) any_dense |= !is_moe_layer(l);
  if (any_dense) positive("intermediate_size", intermediate_size);
  if (arch == ModelArch::qwen2_moe || arch == ModelArch::qwen3_moe || arch == ModelArch::mixtral ||
      arch == ModelArch::olmoe) {
    const bool needs_experts = arch == ModelArch::mixtral || arch == ModelArch::olmoe;
    if (needs_experts) positive(arch == ModelArch::mixtral ? "num_local_experts" : "num_experts", num_experts);
    GRPO_CHECK(num_experts >= 0, "model config: num_experts is " << num_experts << ", expected >= 0");
    if (num_experts > 0) {
      GRPO_CHECK(num_experts_per_tok >= 1 && num_experts_per_tok <= num_experts,
                 "model config: num_experts_per_tok is " << num_experts_per_tok << ", expected 1 to num_experts "
                                                         << num_experts);
      positive(arch == ModelArch::mixtral || arch == ModelArch::olmoe ? "intermediate_size" : "moe_intermediate_size",
               moe_intermediate_size);
      GRPO_CHECK(shared_expert_intermediate_size >= 0, "model config: shared_expert_intermediate_size is "
                                                           << shared_expert_intermediate_size << ", expected >= 0");
    }
    for (int64_t l : mlp_only_layers)
      GRPO_CHECK(l >= 0 && l < num_hidden_layers,
                 "model config: mlp_only_layers holds " << l << ", outside [0, " << num_hidden_layers << ")");
  } else {
    GRPO_CHECK(num_experts == 0, "model config: " << model_type << " is dense but num_experts is " << num_experts);
  }
  if (pad_token_id)
    GRPO_CHECK(*pad_token_id >= 0 && *pad_token_id < vocab_size,
               "model config: pad_token_id " << *pad_token_id << " is outside the vocabulary [0, " << vocab_size
                                             << ")");
  // The rope fields: rope_tables names any bad value.
  (void)rope_tables(rope);
}

ModelConfig model_config_from_json_text(const std::string& text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    GRPO_THROW(source << ": not valid JSON (" << e.what() << ")");
  }
  GRPO_CHECK(root.is_object(), source << ": expected a JSON object");
  const Reader r(root, source);
  GRPO_CHECK(r.present("model_type"), source << ": model_type is missing");
  ModelConfig c;
  c.model_type = r.get_string("model_type", "");
  try {
    c.arch = model_arch_from_type(c.model_type);
  } catch (const Error& e) {
    GRPO_THROW(source << ": " << e.message());
  }
  const Defaults d = defaults_of(c.arch);

  const std::string act = r.get_string("hidden_act", "silu");
  GRPO_CHECK(act == "silu", r.where("hidden_act") << " \"" << act << "\" is not supported (supported: silu)");
  const double dropout = r.get_double("attention_dropout", 0.0);
  GRPO_CHECK(dropout == 0.0, r.where("attention_dropout") << " " << dropout
                                                          << " is not supported (dropout is not implemented; use 0)");

  c.vocab_size = r.get_int("vocab_size", d.vocab);
  c.hidden_size = r.get_int("hidden_size", d.hidden);
  c.intermediate_size = r.get_int("intermediate_size", d.intermediate);
  c.num_hidden_layers = r.get_int("num_hidden_layers", d.layers);
  c.num_attention_heads = r.get_int("num_attention_heads", d.heads);
  // transformers: None means num_attention_heads, except qwen3_moe/mixtral class defaults.
  const bool kv_default = c.arch == ModelArch::qwen3_moe || c.arch == ModelArch::mixtral;
  c.num_key_value_heads = r.get_int("num_key_value_heads", kv_default ? d.kv_heads : c.num_attention_heads);
  GRPO_CHECK(c.num_attention_heads > 0, r.where("num_attention_heads") << " is " << c.num_attention_heads
                                                                       << ", expected > 0");
  c.head_dim = r.get_int("head_dim", c.arch == ModelArch::qwen3 ? 128 : c.hidden_size / c.num_attention_heads);
  if (!r.present("head_dim") && c.arch != ModelArch::qwen3)
    GRPO_CHECK(c.hidden_size % c.num_attention_heads == 0,
               source << ": hidden_size " << c.hidden_size << " is not a multiple of num_attention_heads "
                      << c.num_attention_heads << " and head_dim is not given");
  c.max_position_embeddings = r.get_int("max_position_embeddings", d.max_pos);
  c.rms_norm_eps = r.get_double("rms_norm_eps", d.eps);
  c.initializer_range = r.get_double("initializer_range", 0.02);
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);

  read_rope(r, root, source, c, d.theta);
  c.rope.head_dim = c.head_dim;
  c.rope.max_position_embeddings = c.max_position_embeddings;
  c.rope.layout = RopeLayout::half;
  reject_sliding_window(r, root, c);

  switch (c.arch) {
    case ModelArch::llama:
      c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
      c.mlp_bias = r.get_bool("mlp_bias", false);
      break;
    case ModelArch::qwen2:
      c.qkv_bias = true;
      break;
    case ModelArch::qwen3:
    case ModelArch::qwen3_moe:
      c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
      c.qk_norm = QkNorm::per_head;
      break;
    case ModelArch::qwen2_moe:
      c.qkv_bias = r.get_bool("qkv_bias", true);
      break;
    case ModelArch::mixtral: {
      const double jitter = r.get_double("router_jitter_noise", 0.0);
      GRPO_CHECK(jitter == 0.0, r.where("router_jitter_noise") << " " << jitter
                                                               << " is not supported (router noise is not implemented; "
                                                                  "use 0)");
      break;
    }
    case ModelArch::olmoe:
      c.qkv_bias = c.o_bias = r.get_bool("attention_bias", false);
      c.qk_norm = QkNorm::full;
      GRPO_CHECK(!r.present("clip_qkv"), r.where("clip_qkv") << " " << r.at("clip_qkv").dump()
                                                              << " is not supported (q/k/v clipping is not "
                                                                 "implemented; use null)");
      break;
  }

  if (c.arch == ModelArch::qwen2_moe || c.arch == ModelArch::qwen3_moe) {
    // transformers 5 maps qwen3_moe's num_experts to num_local_experts; accept either key.
    c.num_experts = r.get_int("num_experts", r.get_int("num_local_experts", d.num_experts));
    c.num_experts_per_tok = r.get_int("num_experts_per_tok", d.top_k);
    c.moe_intermediate_size = r.get_int("moe_intermediate_size", d.moe_intermediate);
    c.decoder_sparse_step = r.get_int("decoder_sparse_step", 1);
    c.mlp_only_layers = r.get_int_list("mlp_only_layers");
    c.norm_topk_prob = r.get_bool("norm_topk_prob", false);
    if (c.arch == ModelArch::qwen2_moe)
      c.shared_expert_intermediate_size = r.get_int("shared_expert_intermediate_size", d.shared_intermediate);
  } else if (c.arch == ModelArch::mixtral || c.arch == ModelArch::olmoe) {
    c.num_experts = c.arch == ModelArch::mixtral ? r.get_int("num_local_experts", d.num_experts)
                                                 : r.get_int("num_experts", d.num_experts);
    c.num_experts_per_tok = r.get_int("num_experts_per_tok", d.top_k);
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = c.arch == ModelArch::mixtral ? true : r.get_bool("norm_topk_prob", false);
  }
  if (c.is_moe() || c.arch == ModelArch::qwen2_moe || c.arch == ModelArch::qwen3_moe) {
    c.output_router_logits = r.get_bool("output_router_logits", false);
    c.router_aux_loss_coef = r.get_double("router_aux_loss_coef", d.aux_coef);
  }

  if (r.present("bos_token_id")) c.bos_token_id = r.get_int("bos_token_id", 0);
  c.eos_token_ids = r.get_int_list("eos_token_id");
  if (r.present("pad_token_id")) c.pad_token_id = r.get_int("pad_token_id", 0);
  c.torch_dtype = r.get_string("torch_dtype", r.get_string("dtype", "float32"));

  try {
    c.validate();
  } catch (const Error& e) {
    GRPO_THROW(source << ": " << e.message());
  }
  return c;
}

ModelConfig load_model_config(const std::string& path) {
  std::string file = path;
  if (std::filesystem::is_directory(path)) file = (std::filesystem::path(path) / "config.json").string();
  std::ifstream in(file, std::ios::binary);
  GRPO_CHECK(in.good(), file << ": cannot open model config");
  std::stringstream ss;
  ss << in.rdbuf();
  return model_config_from_json_text(ss.str(), file);
}

std::string model_config_to_json_text(const ModelConfig& c) {
  json j = json::object();
  j["architectures"] = json::array({c.architecture_name()});
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["initializer_range"] = c.initializer_range;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["rope_theta"] = c.rope.theta;
  if (c.rope.partial_rotary_factor != 1.0) j["partial_rotary_factor"] = c.rope.partial_rotary_factor;
  const RopeScaling& s = c.rope.scaling;
  if (s.type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    json rs = {{"rope_type", s.type}, {"factor", s.factor}};
    if (s.type == "llama3") {
      rs["low_freq_factor"] = s.low_freq_factor;
      rs["high_freq_factor"] = s.high_freq_factor;
    }
    if (s.type == "yarn") {
      rs["beta_fast"] = s.beta_fast;
      rs["beta_slow"] = s.beta_slow;
      if (s.mscale != 0) rs["mscale"] = s.mscale;
      if (s.mscale_all_dim != 0) rs["mscale_all_dim"] = s.mscale_all_dim;
      if (s.attention_factor != 0) rs["attention_factor"] = s.attention_factor;
      if (!s.truncate) rs["truncate"] = false;
    }
    if (s.original_max_position_embeddings > 0)
      rs["original_max_position_embeddings"] = s.original_max_position_embeddings;
    j["rope_scaling"] = rs;
  }
  j["attention_dropout"] = 0.0;
  switch (c.arch) {
    case ModelArch::llama:
      j["attention_bias"] = c.qkv_bias;
      j["mlp_bias"] = c.mlp_bias;
      break;
    case ModelArch::qwen2:
      j["use_sliding_window"] = false;
      break;
    case ModelArch::qwen3:
      j["attention_bias"] = c.qkv_bias;
      j["use_sliding_window"] = false;
      break;
    case ModelArch::qwen2_moe:
    case ModelArch::qwen3_moe:
      if (c.arch == ModelArch::qwen2_moe) {
        j["qkv_bias"] = c.qkv_bias;
        j["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
      } else {
        j["attention_bias"] = c.qkv_bias;
      }
      j["use_sliding_window"] = false;
      j["num_experts"] = c.num_experts;
      j["num_experts_per_tok"] = c.num_experts_per_tok;
      j["moe_intermediate_size"] = c.moe_intermediate_size;
      j["decoder_sparse_step"] = c.decoder_sparse_step;
      j["mlp_only_layers"] = c.mlp_only_layers;
      j["norm_topk_prob"] = c.norm_topk_prob;
      break;
    case ModelArch::mixtral:
      j["num_local_experts"] = c.num_experts;
      j["num_experts_per_tok"] = c.num_experts_per_tok;
      j["router_jitter_noise"] = 0.0;
      j["sliding_window"] = nullptr;
      break;
    case ModelArch::olmoe:
      j["attention_bias"] = c.qkv_bias;
      j["clip_qkv"] = nullptr;
      j["num_experts"] = c.num_experts;
      j["num_experts_per_tok"] = c.num_experts_per_tok;
      j["norm_topk_prob"] = c.norm_topk_prob;
      break;
  }
  if (c.arch == ModelArch::mixtral || c.arch == ModelArch::olmoe) j["intermediate_size"] = c.moe_intermediate_size;
  if (c.arch == ModelArch::qwen2_moe || c.arch == ModelArch::qwen3_moe || c.arch == ModelArch::mixtral ||
      c.arch == ModelArch::olmoe) {
    j["output_router_logits"] = c.output_router_logits;
    j["router_aux_loss_coef"] = c.router_aux_loss_coef;
  }
  j["bos_token_id"] = c.bos_token_id ? json(*c.bos_token_id) : json(nullptr);
  if (c.eos_token_ids.empty())
    j["eos_token_id"] = nullptr;
  else if (c.eos_token_ids.size() == 1)
    j["eos_token_id"] = c.eos_token_ids[0];
  else
    j["eos_token_id"] = c.eos_token_ids;
  j["pad_token_id"] = c.pad_token_id ? json(*c.pad_token_id) : json(nullptr);
  j["torch_dtype"] = c.torch_dtype;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

void save_model_config(const ModelConfig& cfg, const std::string& dir) {
  std::filesystem::create_directories(dir);
  const std::string file = (std::filesystem::path(dir) / "config.json").string();
  const std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    GRPO_CHECK(out.good(), tmp << ": cannot open for writing");
    out << model_config_to_json_text(cfg);
    out.flush();
    GRPO_CHECK(out.good(), tmp << ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, file, ec);
  GRPO_CHECK(!ec, file << ": cannot rename " << tmp << " (" << ec.message() << ")");
}

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = {"tiny", "small"};
  return names;
}

ModelConfig model_preset(const std::string& arch_name, const std::string& preset) {
  const ModelArch arch = model_arch_from_type(arch_name);
  const bool tiny = preset == "tiny";
  GRPO_CHECK(tiny || preset == "small", "model preset \"" << preset << "\" is unknown (presets: tiny, small)");
  const bool moe = arch == ModelArch::qwen2_moe || arch == ModelArch::qwen3_moe || arch == ModelArch::mixtral ||
                   arch == ModelArch::olmoe;
  ModelConfig c;
  c.model_type = arch_name;
  c.arch = arch;
  // tiny: byte-level vocabulary (256 bytes + the byte tokenizer's 3 specials, padded to 272).
  c.vocab_size = tiny ? 272 : 32000;
  c.hidden_size = tiny ? 64 : 512;
  c.num_attention_heads = tiny ? 4 : 8;
  c.num_key_value_heads = tiny ? 2 : 4;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.num_hidden_layers = tiny ? (moe ? 2 : 4) : (moe ? 6 : 8);
  c.intermediate_size = tiny ? 128 : 1408;
  c.max_position_embeddings = tiny ? 1024 : 4096;
  c.rms_norm_eps = 1e-6;
  c.initializer_range = 0.02;
  c.rope.theta = 1e6;
  c.bos_token_id = 256;
  c.eos_token_ids = {256, 258};
  switch (arch) {
    case ModelArch::llama:
      // Llama 3.x: llama3 RoPE scaling, untied embeddings, eps 1e-5.
      c.rms_norm_eps = 1e-5;
      c.rope.theta = 500000;
      c.rope.scaling.type = "llama3";
      c.rope.scaling.factor = 8;
      c.rope.scaling.low_freq_factor = 1;
      c.rope.scaling.high_freq_factor = 4;
      c.rope.scaling.original_max_position_embeddings = tiny ? 64 : 1024;
      break;
    case ModelArch::qwen2:
      c.qkv_bias = true;
      c.tie_word_embeddings = true;
      break;
    case ModelArch::qwen3:
      c.qk_norm = QkNorm::per_head;
      c.tie_word_embeddings = true;
      c.head_dim = tiny ? 32 : 128;  // Qwen3's head_dim differs from hidden_size / heads
      break;
    case ModelArch::qwen2_moe:
      c.qkv_bias = true;
      c.shared_expert_intermediate_size = tiny ? 64 : 1024;
      break;
    case ModelArch::qwen3_moe:
      c.qk_norm = QkNorm::per_head;
      c.head_dim = tiny ? 32 : 64;
      c.norm_topk_prob = true;
      break;
    case ModelArch::mixtral:
      c.rms_norm_eps = 1e-5;
      c.norm_topk_prob = true;
      break;
    case ModelArch::olmoe:
      c.qk_norm = QkNorm::full;
      c.rms_norm_eps = 1e-5;
      c.rope.theta = 10000;
      break;
  }
  if (moe) {
    c.num_experts = 8;
    c.num_experts_per_tok = 2;
    c.moe_intermediate_size = tiny ? 64 : 384;
    c.router_aux_loss_coef = arch == ModelArch::olmoe ? 0.01 : 0.001;
    if (arch == ModelArch::mixtral || arch == ModelArch::olmoe) c.intermediate_size = c.moe_intermediate_size;
    if (!tiny) c.tie_word_embeddings = true;
  }
  if (!tiny && arch == ModelArch::llama) c.tie_word_embeddings = true;  // as Llama 3.2 1B/3B
  c.rope.head_dim = c.head_dim;
  c.rope.max_position_embeddings = c.max_position_embeddings;
  c.validate();
  return c;
}

}  // namespace grpo
