// SFT: the loss mask (only completion targets carry gradient), the loss against the fp64
// reference decoder, held-out loss falling on the arithmetic traces, resume equivalence
// (N + resume + N steps == 2N straight, bit for bit, metrics included), config errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/config.h"
#include "core/error.h"
#include "learner/checkpoint.h"
#include "learner/datasets.h"
#include "learner/sft.h"
#include "policy/tokenizer.h"
#include "tests/policy/model_test_util.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;

const std::string kTokenizer = std::string(GRPO_SOURCE_DIR) + "/configs/tokenizers/byte_level";

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("grpo_sft_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

SftConfig parse(const std::string& json) {
  ConfigNode root = ConfigNode::from_string(json, "sft.json");
  return parse_sft_config(root);
}

// A tiny qwen3 trained on arithmetic traces (levels 1-2, bytes as tokens).
std::string base_config(const fs::path& run, const std::string& data, int steps, int eval_every,
                        int eval_count = 24) {
  return R"({"init": {"arch": "qwen3", "preset": "tiny", "seed": 1, "tokenizer": ")" + kTokenizer +
         R"("}, "data": )" + data +
         R"(, "eval": {"data": {"name": "arithmetic", "seed": 3, "first_index": 10000, "count": )" +
         std::to_string(eval_count) + R"(,
                                "min_level": 1, "max_level": 2}, "every": )" +
         std::to_string(eval_every) + R"(},
            "prompt": {"format": "raw", "template": "{prompt}\n"},
            "max_seq_len": 160, "tokens_per_batch": 320, "steps": )" +
         std::to_string(steps) + R"(, "seed": 5, "device": "cpu",
            "optimizer": {"lr": 3e-3, "schedule": "cosine", "warmup_steps": 3, "total_steps": )" +
         std::to_string(steps) + R"(, "min_lr_ratio": 0.1, "weight_decay": 0.01},
            "run_dir": ")" + run.string() + R"("})";
}

const char* kArithmetic = R"({"name": "arithmetic", "seed": 3, "count": 400, "min_level": 1, "max_level": 2})";

TEST(SftPack, GradientOnlyOnCompletionTargets) {
  SftExample a{{10, 11, 12, 13, 14}, 2};  // prompt 10 11, completion 12 13, eos 14
  SftExample b{{20, 21, 22}, 1};
  const SftBatch batch = pack_sft_batch({&a, &b});
  EXPECT_EQ(batch.tokens, (std::vector<int32_t>{10, 11, 12, 13, 14, 20, 21, 22}));
  EXPECT_EQ(batch.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 0, 1, 2}));
  EXPECT_EQ(batch.cu_seqlens, (std::vector<int32_t>{0, 5, 8}));
  // Position t predicts token t + 1 of its own sequence; the last position has no target.
  for (int t : {0, 1, 2, 3}) EXPECT_EQ(batch.targets[size_t(t)], batch.tokens[size_t(t + 1)]);
  for (int t : {5, 6}) EXPECT_EQ(batch.targets[size_t(t)], batch.tokens[size_t(t + 1)]);
  // Loss targets: a's 12, 13, 14 (positions 1..3), b's 21, 22 (positions 5, 6): 5 tokens.
  EXPECT_EQ(batch.loss_tokens, 5);
  const float w = -1.0f / 5.0f;
  EXPECT_EQ(batch.dlogprob, (std::vector<float>{0, w, w, w, 0, w, w, 0}));
  // A prompt that fills the whole example leaves nothing to learn.
  SftExample c{{1, 2, 3}, 3};
  const SftBatch none = pack_sft_batch({&c});
  EXPECT_EQ(none.loss_tokens, 0);
  for (float d : none.dlogprob) EXPECT_EQ(d, 0.0f);
}

TEST(SftExample, PromptThenCompletionThenEosAndTruncation) {
  const Tokenizer tok = Tokenizer::from_dir(kTokenizer);
  PromptFormatOptions fo;
  fo.format = "raw";
  fo.template_text = "Q: {prompt}\nA:";
  const PromptFormat fmt = PromptFormat::create(fo, tok.special_tokens());
  const SftExample ex = make_sft_example(tok, fmt, "1+1", " 2", 100);
  const std::vector<TokenId> p = tok.encode("Q: 1+1\nA:"), c = tok.encode(" 2");
  ASSERT_EQ(ex.prompt_len, int64_t(p.size()));
  std::vector<int32_t> want(p.begin(), p.end());
  want.insert(want.end(), c.begin(), c.end());
  want.push_back(*tok.special_tokens().eos);
  EXPECT_EQ(ex.tokens, want);
  const SftExample cut = make_sft_example(tok, fmt, "1+1", " 2", 4);
  EXPECT_EQ(cut.tokens, std::vector<int32_t>(want.begin(), want.begin() + 4));
  EXPECT_EQ(cut.prompt_len, 4);
}

// The loss is -mean log p over completion targets: against the fp64 reference; changing a
// completion token changes it; changing a prompt token changes it only through the context
// (the mask stays the same, and the reference still agrees).
TEST(SftLoss, MatchesReferenceOnCompletionTokensOnly) {
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 32;
  limits.max_seqs = 4;
  Model model(test_config("qwen3"), *ops, limits);
  randomize_weights(model, 7);
  const RefWeights w = ref_weights(model);
  auto ref_loss = [&](const SftBatch& b) {
    RefInput in{b.tokens, b.targets, b.positions, b.cu_seqlens};
    const RefOutput out = ref_forward(model.config(), w, in);
    double sum = 0;
    int n = 0;
    for (size_t t = 0; t < b.tokens.size(); ++t)
      if (b.dlogprob[t] != 0.0f) sum -= out.logprob[t], ++n;
    return sum / n;
  };
  SftExample a{{5, 40, 41, 42, 43, 44, 45}, 3};
  SftExample b{{6, 50, 51, 52, 53}, 2};
  const SftBatch base = pack_sft_batch({&a, &b});
  const double l0 = sft_batch_loss(model, base, false);
  EXPECT_NEAR(l0, ref_loss(base), 1e-4 * std::abs(l0));

  SftExample a2 = a;
  a2.tokens[4] = 99;  // a completion token
  const SftBatch comp = pack_sft_batch({&a2, &b});
  const double l1 = sft_batch_loss(model, comp, false);
  EXPECT_GT(std::abs(l1 - l0), 1e-3);
  EXPECT_NEAR(l1, ref_loss(comp), 1e-4 * std::abs(l1));

  SftExample a3 = a;
  a3.tokens[1] = 99;  // a prompt token (not a target: position 0's target is masked)
  const SftBatch prompt = pack_sft_batch({&a3, &b});
  EXPECT_EQ(prompt.dlogprob, base.dlogprob);
  const double l2 = sft_batch_loss(model, prompt, false);
  EXPECT_NEAR(l2, ref_loss(prompt), 1e-4 * std::abs(l2));

  // The gradient path: forward+backward gives the same loss and nonzero grads.
  model.zero_grad();
  EXPECT_EQ(sft_batch_loss(model, base, true), l0);
  double g2 = 0;
  for (float g : read_tensor(model.grads())) g2 += double(g) * g;
  EXPECT_GT(g2, 0.0);
}

TEST(SftTrainer, ArithmeticTracesLowerHeldOutLoss) {
  const fs::path run = temp_dir("learn");
  SftTrainer trainer(parse(base_config(run, kArithmetic, 20, 0)), true);
  trainer.start();
  const double before = trainer.eval_loss();
  const SftStepMetrics last = trainer.train();
  ASSERT_TRUE(last.has_eval);
  EXPECT_EQ(trainer.step(), 20);
  EXPECT_LT(last.eval_loss, 0.7 * before) << "held-out loss " << before << " -> " << last.eval_loss;
  // A final checkpoint, the effective config (parses back to the same JSON) and 40 metric lines.
  EXPECT_EQ(verify_checkpoint((run / "checkpoints" / "step-20").string()), "");
  const std::string effective = read_text(run / "config.json");
  EXPECT_EQ(sft_config_json(parse(effective)) + "\n", effective);
  std::ifstream m(run / "metrics.jsonl");
  int lines = 0;
  for (std::string l; std::getline(m, l);) ++lines;
  EXPECT_EQ(lines, 20);
  // A fresh start on a run_dir with a checkpoint is refused.
  EXPECT_THROW(trainer.start(), Error);
  fs::remove_all(run);
}

TEST(SftTrainer, ExcludeDropsExamplesWhosePromptIsListed) {
  // With epochs = 1 and no step count, total_steps counts the batches of the examples kept.
  const fs::path run = temp_dir("exclude");
  auto with_exclude = [&](const std::string& exclude) {
    nlohmann::json j = nlohmann::json::parse(base_config(run, kArithmetic, 0, 0));
    j["steps"] = 0;
    j["optimizer"] = {{"lr", 1e-3}};
    if (!exclude.empty()) j["exclude"] = nlohmann::json::parse(exclude);
    return parse(j.dump());
  };
  const int64_t all = SftTrainer(with_exclude(""), true).total_steps();
  // The first 100 items of the same dataset: their prompts go (and any later item repeating one).
  const int64_t fewer =
      SftTrainer(with_exclude(R"({"name": "arithmetic", "seed": 3, "count": 100, "min_level": 1, "max_level": 2})"), true)
          .total_steps();
  EXPECT_LT(fewer, all);
  EXPECT_GT(fewer, 0);
  // Everything excluded: a clear error, not an empty run.
  try {
    SftTrainer t(with_exclude(kArithmetic), true);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("exclude"), std::string::npos) << e.message();
  }
  // The effective config keeps the exclusion.
  EXPECT_NE(sft_config_json(with_exclude(kArithmetic)).find("\"exclude\""), std::string::npos);
  fs::remove_all(run);
}

TEST(SftTrainer, ResumeIsBitIdentical) {
  const fs::path root = temp_dir("resume");
  // JSONL data this time (an epoch is 10 examples, 3 or 4 batches: the run crosses epochs).
  std::vector<DatasetRecord> recs;
  for (uint64_t i = 0; i < 10; ++i) {
    const ArithmeticItem it = arithmetic_item(3, i, 1 + int(i % 2));
    recs.push_back({i, "arithmetic", it.prompt, std::to_string(it.answer), arithmetic_trace(it.expression), it.level});
  }
  const fs::path data = root / "train.jsonl";
  write_dataset_jsonl(data.string(), recs);
  const std::string json_data = "\"" + data.string() + "\"";

  SftTrainer straight(parse(base_config(root / "a", json_data, 6, 2, 6)), true);
  straight.start();
  straight.train();
  {
    SftTrainer first(parse(base_config(root / "b", json_data, 6, 2, 6)), true);
    first.start();
    first.train(2);  // mid-epoch: the cursor's index matters
    EXPECT_EQ(first.step(), 2);
  }
  // Metrics a crashed run wrote after its checkpoint are dropped on resume.
  std::ofstream(root / "b" / "metrics.jsonl", std::ios::app) << R"({"step": 3, "loss": 1})" << "\n";
  SftTrainer second(parse(base_config(root / "b", json_data, 6, 2, 6)), true);
  second.resume();
  EXPECT_EQ(second.step(), 2);
  second.train();
  EXPECT_EQ(second.step(), 6);
  EXPECT_NE(read_text(root / "a" / "metrics.jsonl").find("\"epoch\":1"), std::string::npos);
  const Tensor pa = straight.model().params(), pb = second.model().params();
  ASSERT_EQ(pa.nbytes(), pb.nbytes());
  EXPECT_EQ(std::memcmp(pa.data, pb.data, pa.nbytes()), 0) << "weights differ after resume";
  EXPECT_EQ(read_text(root / "a" / "metrics.jsonl"), read_text(root / "b" / "metrics.jsonl"));
  EXPECT_NE(read_text(root / "a" / "metrics.jsonl").find("eval_loss"), std::string::npos);
  fs::remove_all(root);
}

TEST(SftConfig, ErrorsAreOneLineNamingTheField) {
  const fs::path run = temp_dir("config");
  auto message = [&](const std::string& json) {
    try {
      parse(json);
    } catch (const Error& e) {
      EXPECT_EQ(e.message().find('\n'), std::string::npos) << e.message();
      return e.message();
    }
    return std::string("no error");
  };
  const std::string good = base_config(run, kArithmetic, 4, 0);
  EXPECT_NO_THROW(parse(good));
  auto with = [&](const std::string& extra) { return good.substr(0, good.size() - 1) + ", " + extra + "}"; };
  EXPECT_NE(message(with(R"("epoch": 2)")).find("\"epoch\" (did you mean \"epochs\"?)"), std::string::npos)
      << message(with(R"("epoch": 2)"));
  const std::string no_data = R"({"init": {"arch": "qwen3", "tokenizer": ")" + kTokenizer + R"("}})";
  EXPECT_NE(message(no_data).find("data is required"), std::string::npos) << message(no_data);
  std::string missing_file = R"({"init": {"arch": "qwen3", "tokenizer": ")" + kTokenizer +
                             R"("}, "data": "/nonexistent/train.jsonl"})";
  EXPECT_NE(message(missing_file).find("data: no such file /nonexistent/train.jsonl"), std::string::npos)
      << message(missing_file);
  EXPECT_NE(message(R"({"data": "x"})").find("exactly one of \"model\""), std::string::npos);
  EXPECT_NE(message(with(R"("tokens_per_batch": 10)")).find("tokens_per_batch"), std::string::npos);
  fs::remove_all(run);
}

}  // namespace
}  // namespace grpo::test
