// `grpo eval`'s library (learner/eval.h): the unbiased pass@k estimator against exact binomial
// ratios and brute force over k-subsets, majority voting with ties, the aggregation on
// hand-made results, an end-to-end run on a tiny random model with checkers whose outcome is
// known, the JSON fields, and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <unistd.h>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "learner/datasets.h"
#include "learner/eval.h"
#include "policy/model.h"
#include "rewards/registry.h"
#include "rollout/engine.h"
#include "tests/policy/model_test_util.h"

namespace grpo {
namespace {

namespace fs = std::filesystem;

// C(n, k) exactly (n <= 60 keeps every value within uint64).
uint64_t binom(int64_t n, int64_t k) {
  if (k < 0 || k > n) return 0;
  std::vector<uint64_t> row(size_t(n) + 1, 0);
  row[0] = 1;
  for (int64_t i = 1; i <= n; ++i)
    for (int64_t j = i; j >= 1; --j) row[size_t(j)] += row[size_t(j - 1)];
  return row[size_t(k)];
}

TEST(EvalPassAtK, MatchesExactBinomialRatio) {
  int cases = 0;
  for (int64_t n = 1; n <= 40; ++n)
    for (int64_t c = 0; c <= n; ++c)
      for (int64_t k = 1; k <= n; ++k) {
        // 1 - C(n-c, k) / C(n, k) with the ratio of two exact integers.
        const double want = 1.0 - double(binom(n - c, k)) / double(binom(n, k));
        ASSERT_NEAR(pass_at_k(n, c, k), want, 1e-12) << "n " << n << " c " << c << " k " << k;
        ++cases;
      }
  EXPECT_GT(cases, 10000);
}

TEST(EvalPassAtK, MatchesBruteForceOverSubsets) {
  // Samples 0..c-1 correct: the fraction of k-subsets of n holding at least one of them.
  for (int n = 1; n <= 12; ++n)
    for (int c = 0; c <= n; ++c)
      for (int k = 1; k <= n; ++k) {
        int64_t total = 0, hit = 0;
        for (uint32_t mask = 0; mask < (1u << n); ++mask) {
          if (__builtin_popcount(mask) != k) continue;
          ++total;
          hit += (mask & ((1u << c) - 1)) != 0;
        }
        ASSERT_NEAR(pass_at_k(n, c, k), double(hit) / double(total), 1e-12) << "n " << n << " c " << c << " k " << k;
      }
}

TEST(EvalPassAtK, LargeNStaysFiniteAndMatchesLogGamma) {
  // C(n, k) overflows doubles here; the product form does not.
  for (auto [n, c, k] : {std::tuple{2000, 3, 1024}, {2000, 1, 1}, {1500, 700, 512}, {1024, 0, 1024}}) {
    const double got = pass_at_k(n, c, k);
    const double log_ratio = std::lgamma(n - c + 1.0) - std::lgamma(n - c - k + 1.0) - std::lgamma(n + 1.0) +
                             std::lgamma(n - k + 1.0);
    const double want = n - c < k ? 1.0 : 1.0 - std::exp(log_ratio);
    EXPECT_TRUE(std::isfinite(got));
    EXPECT_NEAR(got, want, 1e-9) << n << " " << c << " " << k;
  }
  EXPECT_DOUBLE_EQ(pass_at_k(5, 0, 3), 0.0);
  EXPECT_DOUBLE_EQ(pass_at_k(5, 3, 3), 1.0);  // n - c < k: every 3-subset has a correct one
  EXPECT_DOUBLE_EQ(pass_at_k(8, 2, 1), 0.25);
}

TEST(EvalPassAtK, RejectsBadArguments) {
  EXPECT_THROW(pass_at_k(4, 1, 0), Error);
  EXPECT_THROW(pass_at_k(4, 1, 5), Error);
  EXPECT_THROW(pass_at_k(4, 5, 1), Error);
  EXPECT_THROW(pass_at_k(4, -1, 1), Error);
  EXPECT_THROW(pass_at_k(0, 0, 1), Error);
}

TEST(EvalMajority, VotesAndTies) {
  EXPECT_EQ(majority_index({"3", "5", "3"}), 0);
  EXPECT_EQ(majority_index({"5", "3", "3"}), 1);
  EXPECT_EQ(majority_index({"5", "3", "3", "5"}), 0);  // tie: the answer seen first
  EXPECT_EQ(majority_index({"", "b", "a", "a", "b"}), 1);
  EXPECT_EQ(majority_index({"", "7", "", "8", "8"}), 3);  // empty answers do not vote
  EXPECT_EQ(majority_index({"", ""}), -1);
  EXPECT_EQ(majority_index({}), -1);
  EXPECT_EQ(majority_index({"z", "a"}), 0);  // not the lexicographically smallest
}

EvalSample sample(const std::string& extracted, bool correct, int64_t tokens = 1) {
  EvalSample s;
  s.extracted = extracted;
  s.correct = correct;
  s.reward = correct ? 1.0 : 0.0;
  s.tokens = tokens;
  return s;
}

TEST(EvalMajority, FirstKSamplesOnly) {
  const std::vector<EvalSample> s = {sample("1", true), sample("2", false), sample("2", false), sample("", false)};
  EXPECT_TRUE(majority_correct(s, 1));
  EXPECT_TRUE(majority_correct(s, 2));   // tie 1:1, "1" came first
  EXPECT_FALSE(majority_correct(s, 3));  // "2" wins 2:1
  EXPECT_FALSE(majority_correct(s, 4));
  const std::vector<EvalSample> none = {sample("", true), sample("", true)};
  EXPECT_FALSE(majority_correct(none, 2));  // correct but no extracted answer: no vote
  EXPECT_THROW(majority_correct(s, 5), Error);
  EXPECT_THROW(majority_correct(s, 0), Error);
}

TEST(EvalSummary, HandMadeResults) {
  EvalResult r;
  EvalProblemResult a, b;
  a.id = "a";
  a.samples = {sample("4", true, 10), sample("5", false, 20), sample("5", false, 30), sample("6", false, 40)};
  a.num_correct = 1;
  b.id = "b";
  b.samples = {sample("", false, 1), sample("9", true, 1), sample("8", false, 1), sample("9", true, 1)};
  b.num_correct = 2;
  r.problems = {a, b};
  summarize_eval(r, 4);
  ASSERT_EQ(r.ks, (std::vector<int64_t>{1, 2, 4}));
  // a: c = 1 of 4: pass@1 1/4, pass@2 1 - C(3,2)/C(4,2) = 1/2, pass@4 1.
  // b: c = 2 of 4: pass@1 1/2, pass@2 1 - C(2,2)/C(4,2) = 5/6, pass@4 1.
  EXPECT_NEAR(r.pass_at_k[0], (0.25 + 0.5) / 2, 1e-15);
  EXPECT_NEAR(r.pass_at_k[1], (0.5 + 5.0 / 6.0) / 2, 1e-15);
  EXPECT_NEAR(r.pass_at_k[2], 1.0, 1e-15);
  // maj@1: a "4" correct, b no vote -> 1/2. maj@2: a tie "4"/"5" -> "4" correct; b "9" -> 1.
  // maj@4: a "5" wrong; b "9" (2 votes) correct -> 1/2.
  EXPECT_DOUBLE_EQ(r.maj_at_k[0], 0.5);
  EXPECT_DOUBLE_EQ(r.maj_at_k[1], 1.0);
  EXPECT_DOUBLE_EQ(r.maj_at_k[2], 0.5);
  EXPECT_DOUBLE_EQ(r.mean_length, (100.0 + 4.0) / 8.0);
  EXPECT_EQ(eval_ks(1), (std::vector<int64_t>{1}));
  EXPECT_EQ(eval_ks(7), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(eval_ks(16), (std::vector<int64_t>{1, 2, 4, 8, 16}));
}

// ---- end to end on a tiny random model

// reward = 1 when the completion's first byte equals the reference; extracted = that byte.
struct FirstByteChecker : rewards::RewardChecker {
  std::string name() const override { return "first_byte"; }
  rewards::ScoreResult score(const rewards::ScoreRequest& q) override {
    rewards::ScoreResult r;
    r.extracted = q.completion.substr(0, 1);
    r.reward = !r.extracted.empty() && r.extracted == q.reference;
    r.reason = r.reward > 0 ? "correct" : "wrong";
    return r;
  }
};
// A constant reward; extracted is the reference, so the majority answer is always "correct"
// exactly when the reward is.
struct ConstChecker : rewards::RewardChecker {
  ConstChecker(std::string n, double v) : name_(std::move(n)), value(v) {}
  std::string name() const override { return name_; }
  rewards::ScoreResult score(const rewards::ScoreRequest& q) override {
    rewards::ScoreResult r;
    r.reward = value;
    r.extracted = q.reference;
    r.reason = value > 0 ? "correct" : "wrong";
    return r;
  }
  std::string name_;
  double value;
};

struct Fixture {
  std::unique_ptr<Ops> ops = make_ops("cpu");
  rollout::EngineConfig ec;
  std::unique_ptr<Model> model;
  std::unique_ptr<rollout::Engine> engine;
  Tokenizer tok = Tokenizer::from_dir(std::string(GRPO_SOURCE_DIR) + "/configs/tokenizers/byte_level");
  PromptFormat format = PromptFormat::create({.format = "raw", .template_text = "{prompt}", .system = "", .generation_prefix = ""},
                                              tok.special_tokens());
  rewards::CheckerRegistry registry;

  Fixture() {
    ec.max_batch = 16;
    ec.max_prefill_tokens = 64;
    ec.block_size = 4;
    ec.kv_memory_bytes = int64_t(16) << 20;
    model = std::make_unique<Model>(test::test_config("qwen3"), *ops, rollout::engine_model_limits(ec));
    test::randomize_weights(*model, 5);
    engine = std::make_unique<rollout::Engine>(*model, ec, &tok);
    registry.add("first_byte", "test", [](ConfigNode&) { return std::make_unique<FirstByteChecker>(); });
    registry.add("always", "test", [](ConfigNode&) { return std::make_unique<ConstChecker>("always", 1.0); });
    registry.add("never", "test", [](ConfigNode&) { return std::make_unique<ConstChecker>("never", 0.0); });
    register_dataset_checkers(registry);
  }
};

std::vector<EvalProblem> problems(const std::string& checker) {
  return {{"p0", "Hello", "e", checker}, {"p1", "Count: 1 2 3", " ", checker}, {"p2", "abc", "a", checker}};
}

TEST(EvalEndToEnd, KnownOutcomesGiveExpectedPassAtK) {
  Fixture f;
  EvalOptions o;
  o.n = 4;
  o.max_tokens = 6;
  o.seed = 3;
  for (auto [checker, want] : {std::pair{"always", 1.0}, {"never", 0.0}}) {
    o.checker = checker;  // overrides the records' checker
    const EvalResult r = run_eval(*f.engine, f.tok, f.format, problems("first_byte"), f.registry, o);
    ASSERT_EQ(r.ks, (std::vector<int64_t>{1, 2, 4}));
    for (size_t j = 0; j < r.ks.size(); ++j) {
      EXPECT_DOUBLE_EQ(r.pass_at_k[j], want) << checker << " pass@" << r.ks[j];
      EXPECT_DOUBLE_EQ(r.maj_at_k[j], want) << checker << " maj@" << r.ks[j];
    }
    ASSERT_EQ(r.problems.size(), 3u);
    for (const EvalProblemResult& p : r.problems) {
      EXPECT_EQ(p.checker, checker);
      EXPECT_EQ(p.num_correct, want > 0 ? 4 : 0);
    }
  }
}

TEST(EvalEndToEnd, PassAtKFromTheSamplesTexts) {
  // A checker decided by the text: recount the correct samples from the returned texts and
  // recompute every metric here by brute force over subsets and by voting on first bytes.
  Fixture f;
  EvalOptions o;
  o.n = 8;
  o.max_tokens = 4;
  o.seed = 11;
  std::vector<EvalProblem> ps;
  // References: the first byte sample 0 of each prompt produced under this seed (found by a
  // first run), so some problems have 0 < c < n.
  for (int i = 0; i < 6; ++i) ps.push_back({std::to_string(i), "Q" + std::to_string(i) + ":", "?", "first_byte"});
  const EvalResult probe = run_eval(*f.engine, f.tok, f.format, ps, f.registry, o);
  for (size_t i = 0; i < ps.size(); ++i) ps[i].reference = probe.problems[i].samples[0].text.substr(0, 1);
  const EvalResult r = run_eval(*f.engine, f.tok, f.format, ps, f.registry, o);

  std::vector<double> pass(4, 0), maj(4, 0);
  double tokens = 0;
  int mixed = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    const EvalProblemResult& p = r.problems[i];
    ASSERT_EQ(p.samples.size(), 8u);
    std::vector<bool> ok;
    for (size_t s = 0; s < 8; ++s) {
      // Same seed, same samples (the probe run and this one).
      EXPECT_EQ(p.samples[s].text, probe.problems[i].samples[s].text);
      ok.push_back(!p.samples[s].text.empty() && p.samples[s].text.substr(0, 1) == ps[i].reference);
      EXPECT_EQ(p.samples[s].correct, ok.back());
      EXPECT_LE(p.samples[s].tokens, 4);
      tokens += double(p.samples[s].tokens);
    }
    int c = 0;
    for (bool b : ok) c += b;
    EXPECT_EQ(p.num_correct, c);
    mixed += c > 0 && c < 8;
    for (int j = 0, k = 1; k <= 8; ++j, k *= 2) {
      int64_t total = 0, hit = 0;
      for (uint32_t mask = 0; mask < 256; ++mask) {
        if (__builtin_popcount(mask) != k) continue;
        ++total;
        bool any = false;
        for (int s = 0; s < 8; ++s) any = any || ((mask >> s & 1) && ok[size_t(s)]);
        hit += any;
      }
      pass[size_t(j)] += double(hit) / double(total) / double(ps.size());
      // Vote on first bytes among samples 0..k-1 (ties: first seen).
      std::string best;
      int best_votes = 0;
      for (int s = 0; s < k; ++s) {
        const std::string a = p.samples[size_t(s)].text.substr(0, 1);
        if (a.empty()) continue;
        int votes = 0;
        for (int t = 0; t < k; ++t) votes += p.samples[size_t(t)].text.substr(0, 1) == a;
        if (votes > best_votes) best = a, best_votes = votes;
      }
      maj[size_t(j)] += (best_votes > 0 && best == ps[i].reference) / double(ps.size());
    }
  }
  EXPECT_GT(mixed, 0) << "no problem with some but not all samples correct: the test checks little";
  ASSERT_EQ(r.ks, (std::vector<int64_t>{1, 2, 4, 8}));
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_NEAR(r.pass_at_k[j], pass[j], 1e-12) << "pass@" << r.ks[j];
    EXPECT_NEAR(r.maj_at_k[j], maj[j], 1e-12) << "maj@" << r.ks[j];
  }
  EXPECT_NEAR(r.mean_length, tokens / 48.0, 1e-12);
}

TEST(EvalEndToEnd, BuiltInArithmeticCheckerOnARandomModel) {
  // A random byte model never writes "<answer>...</answer>": every sample is no_answer.
  Fixture f;
  const std::vector<EvalProblem> ps = load_eval_data("arithmetic:1:3");
  ASSERT_EQ(ps.size(), 3u);
  EvalOptions o;
  o.n = 2;
  o.max_tokens = 8;
  const EvalResult r = run_eval(*f.engine, f.tok, f.format, ps, f.registry, o);
  EXPECT_DOUBLE_EQ(r.pass_at_k[0], 0.0);
  EXPECT_DOUBLE_EQ(r.maj_at_k[1], 0.0);
  for (const EvalProblemResult& p : r.problems) {
    EXPECT_EQ(p.checker, "arithmetic");
    for (const EvalSample& s : p.samples) EXPECT_EQ(s.reason, "no_answer") << s.text;
  }
  // Greedy: every sample of a problem is the same completion.
  o.temperature = 0;
  o.n = 3;
  const EvalResult g = run_eval(*f.engine, f.tok, f.format, ps, f.registry, o);
  for (const EvalProblemResult& p : g.problems)
    for (const EvalSample& s : p.samples) EXPECT_EQ(s.text, p.samples[0].text);
}

TEST(EvalJson, Fields) {
  Fixture f;
  EvalOptions o;
  o.n = 2;
  o.max_tokens = 3;
  o.checker = "always";
  const EvalResult r = run_eval(*f.engine, f.tok, f.format, problems(""), f.registry, o);
  const nlohmann::json j = nlohmann::json::parse(eval_result_json(r));
  EXPECT_EQ(j["n"], 2);
  EXPECT_EQ(j["problems"], 3);
  EXPECT_EQ(j["samples"], 6);
  EXPECT_EQ(j["ks"], nlohmann::json::array({1, 2}));
  EXPECT_EQ(j["pass@k"]["1"], 1.0);
  EXPECT_EQ(j["pass@k"]["2"], 1.0);
  EXPECT_EQ(j["maj@k"]["2"], 1.0);
  EXPECT_DOUBLE_EQ(j["mean_length"].get<double>(), r.mean_length);
  ASSERT_EQ(j["per_problem"].size(), 3u);
  EXPECT_EQ(j["per_problem"][1]["id"], "p1");
  EXPECT_EQ(j["per_problem"][1]["num_correct"], 2);
  const nlohmann::json& s = j["per_problem"][1]["samples"][0];
  for (const char* key : {"tokens", "reward", "correct", "extracted", "reason", "finish", "text"})
    EXPECT_TRUE(s.contains(key)) << key;
  EXPECT_EQ(s["extracted"], " ");
  const std::string table = eval_result_table(r);
  EXPECT_NE(table.find("pass@k"), std::string::npos) << table;
  EXPECT_NE(table.find("maj@k"), std::string::npos) << table;
  EXPECT_NE(table.find("3 problems x 2 samples"), std::string::npos) << table;
}

// ---- errors

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.message().find('\n'), std::string::npos) << e.message();
    return e.message();
  }
  ADD_FAILURE() << "no error";
  return "";
}

struct TempFile {
  std::string path = (fs::temp_directory_path() / ("grpo_eval_" + std::to_string(getpid()) + ".jsonl")).string();
  explicit TempFile(const std::string& text) { std::ofstream(path) << text; }
  ~TempFile() { fs::remove(path); }
};

TEST(EvalData, ReadsJsonl) {
  TempFile t(
      "{\"id\": 4, \"checker\": \"arithmetic\", \"prompt\": \"Compute 1 + 1.\", \"reference\": \"2\", \"level\": 1}\n"
      "\n"
      "{\"prompt\": \"p\", \"reference\": {\"numbers\": [1, 2], \"target\": 3}, \"extra\": true}\n");
  const std::vector<EvalProblem> ps = load_eval_data(t.path);
  ASSERT_EQ(ps.size(), 2u);
  EXPECT_EQ(ps[0].id, "4");
  EXPECT_EQ(ps[0].checker, "arithmetic");
  EXPECT_EQ(ps[0].reference, "2");
  EXPECT_EQ(ps[1].id, "1");
  EXPECT_EQ(ps[1].checker, "");
  EXPECT_EQ(nlohmann::json::parse(ps[1].reference), nlohmann::json::parse("{\"numbers\": [1, 2], \"target\": 3}"));
  // The built-in specs are the generator's items.
  DatasetSpec ds;
  ds.name = "countdown";
  ds.count = 4;
  const std::vector<DatasetRecord> want = generate_dataset(ds);
  const std::vector<EvalProblem> got = load_eval_data("countdown:4");
  ASSERT_EQ(got.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].prompt, want[i].prompt);
    EXPECT_EQ(got[i].reference, want[i].reference);
    EXPECT_EQ(got[i].checker, "countdown");
  }
}

TEST(EvalData, ErrorsNameTheLine) {
  EXPECT_NE(error_of([] { load_eval_data("/nonexistent/eval.jsonl"); }).find("/nonexistent/eval.jsonl"),
            std::string::npos);
  {
    TempFile t("{\"prompt\": \"a\", \"reference\": \"1\"}\n{\"prompt\": \"b\", \"reference\": \n");
    EXPECT_NE(error_of([&] { read_eval_jsonl(t.path); }).find(t.path + ":2: not valid JSON"), std::string::npos);
  }
  {
    TempFile t("\n{\"reference\": \"1\"}\n");
    EXPECT_NE(error_of([&] { read_eval_jsonl(t.path); }).find(t.path + ":2: \"prompt\""), std::string::npos);
  }
  {
    TempFile t("{\"prompt\": \"a\"}\n");
    EXPECT_NE(error_of([&] { read_eval_jsonl(t.path); }).find(t.path + ":1: \"reference\""), std::string::npos);
  }
  {
    TempFile t("{\"prompt\": \"a\", \"reference\": \"1\", \"checker\": 3}\n");
    EXPECT_NE(error_of([&] { read_eval_jsonl(t.path); }).find(t.path + ":1: \"checker\""), std::string::npos);
  }
  {
    TempFile t("[1, 2]\n");
    EXPECT_NE(error_of([&] { read_eval_jsonl(t.path); }).find(t.path + ":1: expected a JSON object"), std::string::npos);
  }
  EXPECT_NE(error_of([] { load_eval_data("arithmetic:9:3"); }).find("LEVEL"), std::string::npos);
  EXPECT_NE(error_of([] { load_eval_data("countdown:x"); }).find("COUNT"), std::string::npos);
  EXPECT_NE(error_of([] { load_eval_data("arithmetic:3"); }).find("arithmetic:LEVEL:COUNT"), std::string::npos);
}

TEST(EvalRun, Errors) {
  Fixture f;
  EvalOptions o;
  o.max_tokens = 2;
  o.n = 0;
  EXPECT_NE(error_of([&] { run_eval(*f.engine, f.tok, f.format, problems("always"), f.registry, o); }).find("--n"),
            std::string::npos);
  o.n = 1;
  EXPECT_NE(error_of([&] { run_eval(*f.engine, f.tok, f.format, problems("nope"), f.registry, o); }).find("nope"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_eval(*f.engine, f.tok, f.format, problems(""), f.registry, o); }).find("checker"),
            std::string::npos);
  EXPECT_NE(error_of([&] { run_eval(*f.engine, f.tok, f.format, {}, f.registry, o); }).find("no problems"),
            std::string::npos);
  // The engine still serves after the errors.
  const EvalResult r = run_eval(*f.engine, f.tok, f.format, problems("always"), f.registry, o);
  EXPECT_DOUBLE_EQ(r.pass_at_k[0], 1.0);
}

}  // namespace
}  // namespace grpo
