// Strict JSON configs over nlohmann/json.
//
//   ConfigNode root = ConfigNode::from_file("run.json");
//   int64_t steps = root.get<int64_t>("steps", 100);           // typed default
//   std::string model = root.require<std::string>("model");     // must be present
//   ConfigNode& opt = root.child("optimizer");
//   double lr = opt.get<double>("lr", 1e-6);
//   std::string sched = opt.get_choice("schedule", "constant", {"constant", "cosine"});
//   root.finish();   // any key never asked for is an error:
//   // run.json: unknown key "optimizer.lerning_rate" (did you mean "lr"?)
//
// Wrong types name the key path and what was expected. Every question asked marks the key
// as known, so finish() can suggest the closest known key.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace grpo {

class ConfigNode {
 public:
  // `source` names the file (or flag) in messages; `path` is the dotted prefix of keys.
  ConfigNode(const nlohmann::json& value, std::string source, std::string path = "");
  ~ConfigNode();
  ConfigNode(ConfigNode&&) noexcept;
  ConfigNode& operator=(ConfigNode&&) noexcept;

  static ConfigNode from_file(const std::string& file);
  static ConfigNode from_string(const std::string& text, std::string source);

  bool has(std::string_view key);
  template <class T>
  T get(std::string_view key, const T& default_value);
  template <class T>
  T require(std::string_view key);
  // A string that must be one of `choices`.
  std::string get_choice(std::string_view key, std::string_view default_value,
                         std::initializer_list<std::string_view> choices);
  // A nested object (an empty one when absent); checked by this node's finish().
  ConfigNode& child(std::string_view key);

  // Throws grpo::Error for the first key (here or in any child) that was never asked for.
  void finish() const;

  const nlohmann::json& raw() const;
  std::string key_path(std::string_view key) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads and parses a JSON file; errors name the file and the parse position. Files may carry
// comments (// to the end of the line, /* ... */), which are ignored: run configs document
// themselves (configs/qwen3-moe-gpu.json).
nlohmann::json load_json_file(const std::string& file);

// Levenshtein distance and the closest candidate within a sensible distance ("" if none).
size_t edit_distance(std::string_view a, std::string_view b);
std::string closest_match(std::string_view key, const std::vector<std::string>& candidates);

}  // namespace grpo
