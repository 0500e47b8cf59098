#include "core/config.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace grpo {

using Json = nlohmann::json;

struct ConfigNode::Impl {
  Json value;
  std::string source;
  std::string path;
  std::set<std::string, std::less<>> asked;
  std::map<std::string, std::unique_ptr<ConfigNode>, std::less<>> children;
};

ConfigNode::ConfigNode(const Json& value, std::string source, std::string path) : impl_(std::make_unique<Impl>()) {
  GRPO_CHECK(value.is_object(), source << ": " << (path.empty() ? std::string("the config") : "\"" + path + "\"")
                                       << " must be a JSON object, got " << value.type_name());
  impl_->value = value;
  impl_->source = std::move(source);
  impl_->path = std::move(path);
}
ConfigNode::~ConfigNode() = default;
ConfigNode::ConfigNode(ConfigNode&&) noexcept = default;
ConfigNode& ConfigNode::operator=(ConfigNode&&) noexcept = default;

ConfigNode ConfigNode::from_file(const std::string& file) { return ConfigNode(load_json_file(file), file); }

ConfigNode ConfigNode::from_string(const std::string& text, std::string source) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::parse_error& e) {
    GRPO_THROW(source << ": not valid JSON: " << e.what());
  }
  return ConfigNode(j, std::move(source));
}

const Json& ConfigNode::raw() const { return impl_->value; }

std::string ConfigNode::key_path(std::string_view key) const {
  return impl_->path.empty() ? std::string(key) : impl_->path + "." + std::string(key);
}

bool ConfigNode::has(std::string_view key) {
  impl_->asked.emplace(key);
  return impl_->value.contains(key);
}

namespace {

template <class T>
struct TypeInfo;
template <> struct TypeInfo<bool> { static constexpr const char* name = "a boolean"; static bool ok(const Json& j) { return j.is_boolean(); } };
template <> struct TypeInfo<int> { static constexpr const char* name = "an integer"; static bool ok(const Json& j) { return j.is_number_integer(); } };
template <> struct TypeInfo<int64_t> { static constexpr const char* name = "an integer"; static bool ok(const Json& j) { return j.is_number_integer(); } };
template <> struct TypeInfo<uint64_t> { static constexpr const char* name = "a non-negative integer"; static bool ok(const Json& j) { return j.is_number_unsigned() || (j.is_number_integer() && j.get<int64_t>() >= 0); } };
template <> struct TypeInfo<double> { static constexpr const char* name = "a number"; static bool ok(const Json& j) { return j.is_number(); } };
template <> struct TypeInfo<float> { static constexpr const char* name = "a number"; static bool ok(const Json& j) { return j.is_number(); } };
template <> struct TypeInfo<std::string> { static constexpr const char* name = "a string"; static bool ok(const Json& j) { return j.is_string(); } };
template <> struct TypeInfo<std::vector<int64_t>> {
  static constexpr const char* name = "a list of integers";
  static bool ok(const Json& j) { return j.is_array() && std::all_of(j.begin(), j.end(), [](const Json& e) { return e.is_number_integer(); }); }
};
template <> struct TypeInfo<std::vector<double>> {
  static constexpr const char* name = "a list of numbers";
  static bool ok(const Json& j) { return j.is_array() && std::all_of(j.begin(), j.end(), [](const Json& e) { return e.is_number(); }); }
};
template <> struct TypeInfo<std::vector<std::string>> {
  static constexpr const char* name = "a list of strings";
  static bool ok(const Json& j) { return j.is_array() && std::all_of(j.begin(), j.end(), [](const Json& e) { return e.is_string(); }); }
};

std::string short_dump(const Json& j) {
  std::string s = j.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

}  // namespace

template <class T>
T ConfigNode::get(std::string_view key, const T& default_value) {
  impl_->asked.emplace(key);
  auto it = impl_->value.find(key);
  if (it == impl_->value.end()) return default_value;
  GRPO_CHECK(TypeInfo<T>::ok(*it), impl_->source << ": \"" << key_path(key) << "\" must be " << TypeInfo<T>::name
                                                  << ", got " << it->type_name() << " " << short_dump(*it));
  return it->template get<T>();
}

template <class T>
T ConfigNode::require(std::string_view key) {
  impl_->asked.emplace(key);
  GRPO_CHECK(impl_->value.contains(key), impl_->source << ": missing required key \"" << key_path(key) << "\"");
  return get<T>(key, T{});
}

#define GRPO_CONFIG_INSTANTIATE(T)                                   \
  template T ConfigNode::get<T>(std::string_view, const T&);         \
  template T ConfigNode::require<T>(std::string_view);
GRPO_CONFIG_INSTANTIATE(bool)
GRPO_CONFIG_INSTANTIATE(int)
GRPO_CONFIG_INSTANTIATE(int64_t)
GRPO_CONFIG_INSTANTIATE(uint64_t)
GRPO_CONFIG_INSTANTIATE(double)
GRPO_CONFIG_INSTANTIATE(float)
GRPO_CONFIG_INSTANTIATE(std::string)
GRPO_CONFIG_INSTANTIATE(std::vector<int64_t>)
GRPO_CONFIG_INSTANTIATE(std::vector<double>)
GRPO_CONFIG_INSTANTIATE(std::vector<std::string>)
#undef GRPO_CONFIG_INSTANTIATE

std::string ConfigNode::get_choice(std::string_view key, std::string_view default_value,
                                   std::initializer_list<std::string_view> choices) {
  std::string v = get<std::string>(key, std::string(default_value));
  for (auto c : choices)
    if (v == c) return v;
  std::ostringstream os;
  std::vector<std::string> names;
  for (auto c : choices) {
    os << (names.empty() ? "" : ", ") << c;
    names.emplace_back(c);
  }
  std::string hint = closest_match(v, names);
  GRPO_THROW(impl_->source << ": \"" << key_path(key) << "\" is \"" << v << "\", expected one of " << os.str()
                           << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
}

ConfigNode& ConfigNode::child(std::string_view key) {
  impl_->asked.emplace(key);
  auto found = impl_->children.find(key);
  if (found != impl_->children.end()) return *found->second;
  auto it = impl_->value.find(key);
  Json sub = Json::object();
  if (it != impl_->value.end()) {
    GRPO_CHECK(it->is_object(), impl_->source << ": \"" << key_path(key) << "\" must be an object, got "
                                              << it->type_name() << " " << short_dump(*it));
    sub = *it;
  }
  auto node = std::make_unique<ConfigNode>(sub, impl_->source, key_path(key));
  ConfigNode& ref = *node;
  impl_->children.emplace(std::string(key), std::move(node));
  return ref;
}

void ConfigNode::finish() const {
  std::vector<std::string> known(impl_->asked.begin(), impl_->asked.end());
  for (auto it = impl_->value.begin(); it != impl_->value.end(); ++it) {
    if (impl_->asked.count(it.key())) continue;
    std::string hint = closest_match(it.key(), known);
    GRPO_THROW(impl_->source << ": unknown key \"" << key_path(it.key()) << "\""
                             << (hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
  }
  for (const auto& [name, node] : impl_->children) node->finish();
}

Json load_json_file(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  GRPO_CHECK(in.good(), file << ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return Json::parse(ss.str(), nullptr, true, /*ignore_comments=*/true);
  } catch (const Json::parse_error& e) {
    GRPO_THROW(file << ": not valid JSON (byte " << e.byte << "): " << e.what());
  }
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest_match(std::string_view key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& c : candidates) {
    size_t d = edit_distance(key, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  // Accept up to a third of the longer name's length (at least 2 edits) as a plausible typo.
  size_t limit = std::max<size_t>(2, std::max(key.size(), best.size()) / 3);
  return best_d <= limit ? best : std::string();
}

}  // namespace grpo
