#include "learner/eval.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "learner/datasets.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;

// A whole decimal number in [lo, hi], or an error naming `what`.
int64_t parse_count(const std::string& text, const std::string& what, int64_t lo, int64_t hi) {
  size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  GRPO_CHECK(used == text.size() && !text.empty() && v >= lo && v <= hi,
             what << " must be a whole number in [" << lo << ", " << hi << "], got \"" << text << "\"");
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == sep)
      out.emplace_back();
    else
      out.back() += c;
  }
  return out;
}

}  // namespace

uint64_t mix_seed(uint64_t seed, uint64_t index) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::string completion_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (tok.is_valid(id)) known.push_back(id);
  return tok.decode(known, /*skip_special=*/true);
}

std::vector<EvalProblem> read_eval_jsonl(const std::string& path) { return read_eval_jsonl(path, {}); }

std::vector<EvalProblem> read_eval_jsonl(const std::string& path, const EvalFieldNames& f) {
  std::ifstream in(path);
  GRPO_CHECK(in, path << ": cannot open the file");
  std::vector<EvalProblem> out;
  std::string line;
  for (int64_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      GRPO_THROW(where << ": not valid JSON (" << e.what() << ")");
    }
    GRPO_CHECK(j.is_object(), where << ": expected a JSON object");
    EvalProblem p;
    GRPO_CHECK(j.contains(f.prompt) && j[f.prompt].is_string(), where << ": \"" << f.prompt << "\" must be a string");
    p.prompt = j[f.prompt].get<std::string>();
    GRPO_CHECK(j.contains(f.reference) && !j[f.reference].is_null(), where << ": \"" << f.reference << "\" is missing");
    p.reference = j[f.reference].is_string() ? j[f.reference].get<std::string>() : j[f.reference].dump();
    if (j.contains(f.checker)) {
      GRPO_CHECK(j[f.checker].is_string(), where << ": \"" << f.checker << "\" must be a string");
      p.checker = j[f.checker].get<std::string>();
    }
    if (!j.contains("id"))
      p.id = std::to_string(out.size());
    else if (j["id"].is_string())
      p.id = j["id"].get<std::string>();
    else if (j["id"].is_number_integer())
      p.id = j["id"].dump();
    else
      GRPO_THROW(where << ": \"id\" must be an integer or a string");
    out.push_back(std::move(p));
  }
  GRPO_CHECK(in.eof(), path << ": read error");
  return out;
}

std::vector<EvalProblem> load_eval_data(const std::string& spec) {
  const std::vector<std::string> parts = split(spec, ':');
  DatasetSpec ds;
  if (!spec.empty() && spec.front() == '{') {
    ConfigNode node = ConfigNode::from_string(spec, "--data");
    ds = parse_dataset_spec(node);
    node.finish();
  } else if (parts[0] == "arithmetic" && parts.size() == 3) {
    ds.name = "arithmetic";
    ds.min_level = ds.max_level = int(parse_count(parts[1], "--data arithmetic:LEVEL", 1, kArithmeticMaxLevel));
    ds.count = parse_count(parts[2], "--data arithmetic:LEVEL:COUNT", 1, 1000000);
  } else if (parts[0] == "countdown" && parts.size() == 2) {
    ds.name = "countdown";
    ds.count = parse_count(parts[1], "--data countdown:COUNT", 1, 1000000);
  } else {
    GRPO_CHECK(parts[0] != "arithmetic" && parts[0] != "countdown",
               "--data " << spec << ": expected arithmetic:LEVEL:COUNT or countdown:COUNT");
    return read_eval_jsonl(spec);
  }
  std::vector<EvalProblem> out;
  for (const DatasetRecord& r : generate_dataset(ds))
    out.push_back({std::to_string(r.id), r.prompt, r.reference, r.checker});
  return out;
}

double pass_at_k(int64_t n, int64_t c, int64_t k) {
  GRPO_CHECK(n >= 1 && k >= 1 && k <= n && c >= 0 && c <= n,
             "pass@k needs 1 <= k <= n and 0 <= c <= n, got n " << n << ", c " << c << ", k " << k);
  if (n - c < k) return 1.0;  // every k-subset holds a correct sample
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (i - k) / i: factors in (0, 1), no overflow.
  double none = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) none *= 1.0 - double(k) / double(i);
  return 1.0 - none;
}

int64_t majority_index(const std::vector<std::string>& answers) {
  std::map<std::string, std::pair<int64_t, int64_t>> votes;  // answer -> (count, first index)
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].empty()) continue;
    auto [it, fresh] = votes.try_emplace(answers[i], 0, int64_t(i));
    ++it->second.first;
  }
  int64_t best = -1, best_count = 0;
  for (const auto& [answer, v] : votes)
    if (v.first > best_count || (v.first == best_count && v.second < best)) best = v.second, best_count = v.first;
  return best;
}

bool majority_correct(const std::vector<EvalSample>& samples, int64_t k) {
  GRPO_CHECK(k >= 1 && k <= int64_t(samples.size()), "maj@k needs 1 <= k <= " << samples.size() << ", got " << k);
  std::vector<std::string> answers;
  for (int64_t i = 0; i < k; ++i) answers.push_back(samples[i].extracted);
  const int64_t m = majority_index(answers);
  return m >= 0 && samples[m].correct;
}

std::vector<int64_t> eval_ks(int64_t n) {
  std::vector<int64_t> ks;
  for (int64_t k = 1; k <= n; k *= 2) ks.push_back(k);
  return ks;
}

void summarize_eval(EvalResult& r, int64_t n) {
  r.n = n;
  r.ks = eval_ks(n);
  r.pass_at_k.assign(r.ks.size(), 0.0);
  r.maj_at_k.assign(r.ks.size(), 0.0);
  r.mean_length = 0;
  int64_t samples = 0;
  for (const EvalProblemResult& p : r.problems) {
    GRPO_CHECK(int64_t(p.samples.size()) == n, "problem " << p.id << ": " << p.samples.size() << " samples, expected " << n);
    for (size_t j = 0; j < r.ks.size(); ++j) {
      r.pass_at_k[j] += pass_at_k(n, p.num_correct, r.ks[j]);
      r.maj_at_k[j] += majority_correct(p.samples, r.ks[j]) ? 1.0 : 0.0;
    }
    for (const EvalSample& s : p.samples) r.mean_length += double(s.tokens);
    samples += n;
  }
  const double P = std::max<double>(1.0, double(r.problems.size()));
  for (double& v : r.pass_at_k) v /= P;
  for (double& v : r.maj_at_k) v /= P;
  r.mean_length /= std::max<double>(1.0, double(samples));
}

EvalResult run_eval(rollout::Engine& engine, const Tokenizer& tokenizer, const PromptFormat& format,
                    const std::vector<EvalProblem>& problems, const rewards::CheckerRegistry& registry,
                    const EvalOptions& o) {
  GRPO_CHECK(o.n >= 1, "--n must be >= 1, got " << o.n);
  GRPO_CHECK(!problems.empty(), "eval: the dataset has no problems");
  // One checker per name, made before generating so configuration mistakes fail at once.
  std::map<std::string, std::unique_ptr<rewards::RewardChecker>> checkers;
  std::vector<rewards::RewardChecker*> checker_of;
  for (const EvalProblem& p : problems) {
    const std::string name = o.checker.empty() ? p.checker : o.checker;
    GRPO_CHECK(!name.empty(), "problem " << p.id << " names no \"checker\" and no --checker was given");
    auto it = checkers.find(name);
    if (it == checkers.end()) {
      ConfigNode none(nlohmann::json::object(), "checker " + name);
      it = checkers.emplace(name, registry.create(name, none)).first;
    }
    checker_of.push_back(it->second.get());
  }

  std::vector<rollout::Request> requests;
  const std::vector<TokenId> stop = format.stop_ids(tokenizer);
  for (size_t i = 0; i < problems.size(); ++i) {
    rollout::Request r;
    r.id = i;
    r.prompt = format.encode(tokenizer, problems[i].prompt);
    GRPO_CHECK(!r.prompt.empty(), "problem " << problems[i].id << ": the prompt encodes to no tokens");
    r.sampling.temperature = o.temperature;
    r.sampling.top_p = o.top_p;
    r.sampling.max_new_tokens = o.max_tokens;
    r.sampling.n = o.n;
    r.sampling.seed = mix_seed(o.seed, i);
    r.sampling.stop_token_ids = stop;
    engine.validate(r);
    requests.push_back(std::move(r));
  }
  const std::vector<rollout::GroupResult> groups = engine.generate(std::move(requests));
  GRPO_ASSERT(groups.size() == problems.size());

  EvalResult result;
  for (size_t i = 0; i < problems.size(); ++i) {
    EvalProblemResult pr;
    pr.id = problems[i].id;
    pr.checker = checker_of[i]->name();
    GRPO_ASSERT(int64_t(groups[i].samples.size()) == o.n);
    for (const rollout::Sample& s : groups[i].samples) {
      EvalSample es;
      es.tokens = int64_t(s.tokens.size());
      es.finish = rollout::finish_reason_name(s.finish);
      const std::string text = completion_text(tokenizer, s.tokens);
      const rewards::ScoreResult score = checker_of[i]->score({problems[i].prompt, text, problems[i].reference, i});
      es.reward = score.reward;
      es.correct = score.reward >= o.correct_threshold;
      es.extracted = score.extracted;
      es.reason = score.reason;
      if (o.keep_text) es.text = text;
      pr.num_correct += es.correct;
      pr.samples.push_back(std::move(es));
    }
    result.problems.push_back(std::move(pr));
  }
  summarize_eval(result, o.n);
  return result;
}

std::string eval_result_json(const EvalResult& r) {
  Json j;
  j["n"] = r.n;
  j["problems"] = r.problems.size();
  j["samples"] = int64_t(r.problems.size()) * r.n;
  j["ks"] = r.ks;
  Json pass = Json::object(), maj = Json::object();
  for (size_t i = 0; i < r.ks.size(); ++i) {
    pass[std::to_string(r.ks[i])] = r.pass_at_k[i];
    maj[std::to_string(r.ks[i])] = r.maj_at_k[i];
  }
  j["pass@k"] = pass;
  j["maj@k"] = maj;
  j["mean_length"] = r.mean_length;
  Json per = Json::array();
  for (const EvalProblemResult& p : r.problems) {
    Json jp;
    jp["id"] = p.id;
    jp["checker"] = p.checker;
    jp["num_correct"] = p.num_correct;
    Json samples = Json::array();
    for (const EvalSample& s : p.samples)
      samples.push_back({{"tokens", s.tokens}, {"reward", s.reward}, {"correct", s.correct}, {"extracted", s.extracted},
                         {"reason", s.reason}, {"finish", s.finish}, {"text", s.text}});
    jp["samples"] = samples;
    per.push_back(jp);
  }
  j["per_problem"] = per;
  // A completion may hold invalid UTF-8: replace rather than throw.
  return j.dump(2, ' ', false, Json::error_handler_t::replace);
}

std::string eval_result_table(const EvalResult& r) {
  std::ostringstream os;
  char buf[64];
  os << r.problems.size() << " problems x " << r.n << " samples, mean length ";
  std::snprintf(buf, sizeof buf, "%.1f", r.mean_length);
  os << buf << " tokens\n";
  os << "metric ";
  for (int64_t k : r.ks) {
    std::snprintf(buf, sizeof buf, " %8s", ("k=" + std::to_string(k)).c_str());
    os << buf;
  }
  os << "\n";
  for (const auto& [label, values] : {std::pair{"pass@k", &r.pass_at_k}, std::pair{"maj@k ", &r.maj_at_k}}) {
    os << label << " ";
    for (double v : *values) {
      std::snprintf(buf, sizeof buf, " %8.4f", v);
      os << buf;
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace grpo
