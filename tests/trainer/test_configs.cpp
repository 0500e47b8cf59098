// The run configs shipped in configs/ parse (strict keys, comments allowed), and the effective
// config written to RUN_DIR/config.json reads back to the same config. Paths that only exist
// after a run (the base model) or on a user's machine (a real model, a dataset) are pointed at
// stand-ins: a tiny model and a small JSONL written here.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "learner/train/train_config.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;

class ShippedConfigs : public ::testing::Test {
 protected:
  void SetUp() override {
    old_ = fs::current_path();
    fs::current_path(GRPO_SOURCE_DIR);  // configs name paths relative to the repository root
    tmp_ = fs::temp_directory_path() / ("grpo_configs_" + std::to_string(getpid()));
    fs::create_directories(tmp_);
    model_ = (tmp_ / "model").string();
    const std::string cmd =
        std::string(GRPO_BINARY) + " model init --arch qwen3 --preset tiny --out " + model_ + " > /dev/null 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    data_ = (tmp_ / "math.jsonl").string();
    std::ofstream(data_) << "{\"problem\": \"1 + 1?\", \"answer\": \"2\"}\n";
  }
  void TearDown() override {
    fs::current_path(old_);
    fs::remove_all(tmp_);
  }

  train::TrainConfig parse(const std::string& file, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json raw = load_json_file(file);
    edit(raw);
    ConfigNode root(raw, file);
    return train::parse_train_config(root);
  }

  fs::path old_, tmp_;
  std::string model_, data_;
};

TEST_F(ShippedConfigs, QuickstartAndCountdownParseAndRoundTrip) {
  for (const char* file : {"configs/quickstart.json", "configs/countdown-cpu.json"}) {
    SCOPED_TRACE(file);
    const train::TrainConfig c = parse(file, [&](nlohmann::json& j) { j["model"] = model_; });
    EXPECT_EQ(c.topology.kind, train::TopologyKind::local);
    EXPECT_EQ(c.topology.workers, 2);
    EXPECT_FALSE(c.base_sft.empty());
    EXPECT_TRUE(c.eval.enabled());
    // The base model's SFT config parses too.
    ConfigNode sft = ConfigNode::from_file(c.base_sft);
    EXPECT_TRUE(sft.has("init"));
    // Effective config -> parse -> the same effective config.
    const std::string once = train::train_config_json(c);
    ConfigNode again = ConfigNode::from_string(once, "effective");
    EXPECT_EQ(train::train_config_json(train::parse_train_config(again)), once);
  }
}

TEST_F(ShippedConfigs, GpuConfigWithCommentsParses) {
  const train::TrainConfig c = parse("configs/qwen3-moe-gpu.json", [&](nlohmann::json& j) {
    j["model"] = model_;
    j["data"]["path"] = data_;
    j["eval"]["data"]["path"] = data_;
  });
  EXPECT_EQ(c.rollout.group_size, 8);
  EXPECT_TRUE(c.rollout.return_routing);
  EXPECT_EQ(c.rollout.weight_dtype, "bf16");
  EXPECT_DOUBLE_EQ(c.learner.objective.beta, 0.001);
  EXPECT_DOUBLE_EQ(c.learner.objective.clip_high, 0.28);
  EXPECT_EQ(c.data.prompt_key, "problem");
  EXPECT_EQ(c.device, "cuda:0");
  EXPECT_EQ(c.dtype, "auto");  // bf16 on the GPU
}

TEST_F(ShippedConfigs, DtypeIsCheckedAndWritten) {
  auto with_dtype = [&](const nlohmann::json& dtype) {
    return parse("configs/quickstart.json", [&](nlohmann::json& j) {
      j["model"] = model_;
      if (!dtype.is_null()) j["dtype"] = dtype;
    });
  };
  EXPECT_EQ(with_dtype(nullptr).dtype, "auto");
  for (const char* name : {"auto", "f32", "bf16"}) {
    SCOPED_TRACE(name);
    const train::TrainConfig c = with_dtype(name);
    EXPECT_EQ(c.dtype, name);  // parsed as given; resolved against the device when the run starts
    // The effective config carries it and reads back to the same config.
    const std::string once = train::train_config_json(c);
    EXPECT_EQ(nlohmann::json::parse(once).at("dtype"), name);
    ConfigNode again = ConfigNode::from_string(once, "effective");
    EXPECT_EQ(train::parse_train_config(again).dtype, name);
  }
  for (const nlohmann::json& bad : {nlohmann::json("f16"), nlohmann::json("BF16"), nlohmann::json(32)}) {
    SCOPED_TRACE(bad.dump());
    try {
      with_dtype(bad);
      ADD_FAILURE() << "accepted dtype " << bad.dump();
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("\"dtype\""), std::string::npos) << e.message();
      if (bad.is_string()) {
        EXPECT_NE(e.message().find("expected one of auto, f32, bf16"), std::string::npos) << e.message();
      }
    }
  }
}

TEST_F(ShippedConfigs, CudaGraphsIsABoolWrittenBack) {
  auto with = [&](const nlohmann::json& v) {
    return parse("configs/quickstart.json", [&](nlohmann::json& j) {
      j["model"] = model_;
      if (!v.is_null()) j["cuda_graphs"] = v;
    });
  };
  EXPECT_TRUE(with(nullptr).cuda_graphs);
  for (bool on : {true, false}) {
    const train::TrainConfig c = with(on);
    EXPECT_EQ(c.cuda_graphs, on);
    const std::string once = train::train_config_json(c);
    EXPECT_EQ(nlohmann::json::parse(once).at("cuda_graphs"), on);
    ConfigNode again = ConfigNode::from_string(once, "effective");
    EXPECT_EQ(train::parse_train_config(again).cuda_graphs, on);
  }
  EXPECT_GRPO_ERROR(with("no"), "cuda_graphs");
}

TEST_F(ShippedConfigs, BadValuesNameTheirKey) {
  auto message = [&](const std::function<void(nlohmann::json&)>& edit) {
    try {
      parse("configs/quickstart.json", [&](nlohmann::json& j) {
        j["model"] = model_;
        edit(j);
      });
    } catch (const Error& e) {
      return e.message();
    }
    return std::string("(no error)");
  };
  EXPECT_NE(message([](nlohmann::json& j) { j["rollout"]["group_size"] = 0; }).find("rollout.group_size"), std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["topology"]["kind"] = "cluster"; }).find("topology.kind"), std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["topology"]["worker_kv_memory"] = "lots"; }).find("worker_kv_memory"),
            std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["objective"]["clip_low"] = 2; }).find("objective.clip_low"), std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["data"] = {{"path", "/nonexistent.jsonl"}}; }).find("/nonexistent.jsonl"),
            std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["model"] = "/nonexistent-model"; j.erase("base_sft"); }).find("config.json"),
            std::string::npos);
  EXPECT_NE(message([](nlohmann::json& j) { j["stepz"] = 3; }).find("stepz"), std::string::npos);
}

}  // namespace
}  // namespace grpo::test
