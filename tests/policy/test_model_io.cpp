// Checkpoints: save -> load round trips (f32 bit-exact, bf16 rounded, sharded == single file),
// HF init conventions, and the errors of checkpoints that do not match the config.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/dtype.h"
#include "policy/params.h"
#include "policy/safetensors.h"
#include "tests/policy/model_test_util.h"

namespace grpo::test {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};

std::string temp_dir(const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("grpo_model_io_" + std::to_string(::getpid()) + "_" + name))
                              .string();
  std::filesystem::remove_all(dir);
  return dir;
}

ModelLimits small_limits() {
  ModelLimits l;
  l.max_tokens = 16;
  l.max_seqs = 2;
  l.training = false;
  return l;
}

class ModelCheckpoint : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelCheckpoint, SaveLoadRoundTripIsBitExact) {
  const ModelConfig cfg = model_preset(GetParam(), "tiny");
  auto ops = make_cpu_ops();
  Model a(cfg, *ops, small_limits());
  a.init_weights(42);
  const std::string dir = temp_dir(GetParam());
  a.save(dir);
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors"));
  std::unique_ptr<Model> b = load_model(dir, *ops, small_limits());
  EXPECT_EQ(model_config_to_json_text(b->config()), model_config_to_json_text(cfg));
  ASSERT_EQ(a.table().size(), b->table().size());
  EXPECT_EQ(std::memcmp(a.params().data, b->params().data, a.params().nbytes()), 0);
  // Tied models write no lm_head.
  const SafetensorsCheckpoint ck = SafetensorsCheckpoint::open(dir);
  EXPECT_EQ(ck.has("lm_head.weight"), !cfg.tie_word_embeddings);
  EXPECT_EQ(int64_t(ck.names().size()), int64_t(a.table().entries().size()));
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, ModelCheckpoint, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(ModelCheckpointFormats, ShardedAndBf16) {
  const ModelConfig cfg = model_preset("qwen2_moe", "tiny");
  auto ops = make_cpu_ops();
  Model a(cfg, *ops, small_limits());
  a.init_weights(7);
  const std::string sharded = temp_dir("sharded"), bf16 = temp_dir("bf16");
  a.save(sharded, DType::f32, 200 * 1024);
  EXPECT_TRUE(std::filesystem::exists(sharded + "/model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(sharded + "/model.safetensors"));
  std::unique_ptr<Model> b = load_model(sharded, *ops, small_limits());
  EXPECT_EQ(std::memcmp(a.params().data, b->params().data, a.params().nbytes()), 0);

  a.save(bf16, DType::bf16);
  EXPECT_EQ(load_model_config(bf16).torch_dtype, "bfloat16");
  std::unique_ptr<Model> c = load_model(bf16, *ops, small_limits());
  const std::vector<float> pa = read_tensor(a.params()), pc = read_tensor(c->params());
  for (size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pc[i], bf16_to_f32(f32_to_bf16(pa[i]))) << i;
  std::filesystem::remove_all(sharded);
  std::filesystem::remove_all(bf16);
}

TEST(ModelCheckpointFormats, MismatchedCheckpointsAreErrorsNamingTheTensor) {
  auto ops = make_cpu_ops();
  const ModelConfig tiny = model_preset("qwen3", "tiny");
  Model a(tiny, *ops, small_limits());
  a.init_weights(1);
  const std::string dir = temp_dir("mismatch");
  a.save(dir);
  // A config with one more layer: the checkpoint lacks its tensors.
  ModelConfig deeper = tiny;
  deeper.num_hidden_layers += 1;
  Model d(deeper, *ops, small_limits());
  try {
    d.load(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.4."), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  // A config with one layer fewer: the checkpoint has unexpected tensors.
  ModelConfig shallower = tiny;
  shallower.num_hidden_layers -= 1;
  Model s(shallower, *ops, small_limits());
  try {
    s.load(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected tensor \"model.layers.3."), std::string::npos) << e.what();
  }
  // A different width: shapes disagree (the reader names the tensor and both shapes).
  ModelConfig wider = tiny;
  wider.intermediate_size *= 2;
  Model w(wider, *ops, small_limits());
  EXPECT_THROW(w.load(dir), Error);
  std::filesystem::remove_all(dir);
}

// HF _init_weights: norms one, biases zero, matrices ~ normal(0, initializer_range);
// deterministic in the seed.
TEST(ModelInit, HuggingFaceConventions) {
  ModelConfig cfg = model_preset("qwen2", "tiny");
  auto ops = make_cpu_ops();
  Model a(cfg, *ops, small_limits()), b(cfg, *ops, small_limits()), c(cfg, *ops, small_limits());
  a.init_weights(5);
  b.init_weights(5);
  c.init_weights(6);
  EXPECT_EQ(read_tensor(a.params()), read_tensor(b.params()));
  EXPECT_NE(read_tensor(a.params()), read_tensor(c.params()));
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  for (const ParamEntry& e : a.table().entries()) {
    const std::vector<float> v = read_tensor(a.param(e.name));
    for (float x : v) {
      if (e.kind == ParamKind::norm) {
        ASSERT_EQ(x, 1.0f) << e.name;
      } else if (e.kind == ParamKind::bias) {
        ASSERT_EQ(x, 0.0f) << e.name;
      } else {
        sum += x;
        sum2 += double(x) * x;
        ++n;
      }
    }
  }
  const double mean = sum / double(n), sd = std::sqrt(sum2 / double(n) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 5e-4);
  EXPECT_NEAR(sd, cfg.initializer_range, 0.02 * cfg.initializer_range);
}

}  // namespace
}  // namespace grpo::test
