// Checkpoints: save -> load into a fresh model and optimizer is bit-identical (weights,
// moments, step, RNG, cursor) and continues identically; the marker's sizes and CRC-32s
// against a bitwise CRC written here; tokenizer files copied; directories damaged after the
// save (marker removed, file truncated, byte flipped, file deleted, marker garbled, a .tmp
// left behind, newer format) are refused with the reason and the previous checkpoint is
// used; keep-last-K; bad inputs change nothing.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "core/error.h"
#include "learner/checkpoint.h"
#include "learner/optimizer.h"
#include "tests/policy/model_test_util.h"

namespace grpo::test {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Bitwise CRC-32 (reflected 0xEDB88320), the textbook loop.
uint32_t naive_crc32(const std::string& bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("grpo_ckpt_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

ModelLimits train_limits() {
  ModelLimits l;
  l.max_tokens = 16;
  l.max_seqs = 2;
  return l;
}

OptimizerConfig opt_config() {
  OptimizerConfig c;
  c.schedule.lr = 1e-2;
  c.schedule.warmup_steps = 2;
  c.weight_decay = 0.1;
  c.max_grad_norm = 1.0;
  return c;
}

void fill_grads(Model& model, uint64_t seed) {
  model.zero_grad();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.01);
  float* g = static_cast<float*>(model.grads().data);
  for (const ParamEntry& e : model.table().entries())
    for (int64_t i = 0; i < e.numel(); ++i) g[e.offset + i] = float(normal(rng));
}

// A model and its optimizer on the CPU; `steps` updates from seeded random grads.
struct Trainee {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  Model model;
  Optimizer opt;
  explicit Trainee(uint64_t seed, const std::string& arch = "qwen3_moe")
      : model(test_config(arch), *ops, train_limits()), opt(model, opt_config()) {
    randomize_weights(model, seed);
  }
  void train(int steps, uint64_t seed) {
    for (int i = 0; i < steps; ++i) {
      fill_grads(model, seed * 1000 + uint64_t(opt.step_count()));
      opt.step();
    }
  }
  std::string bytes(const Tensor& t) const { return std::string(static_cast<const char*>(t.data), t.nbytes()); }
  std::string params() const { return bytes(model.params()); }
};

TrainerState make_state(int64_t step) {
  TrainerState s;
  s.step = step;
  s.rng = {{"sampler.offset", 12345}, {"data.seed", 0xFFFFFFFFFFFFFFFFull}, {"dropout", 0}};
  s.cursor = R"({"epoch": 2, "order_seed": 9, "index": [3, 4]})";
  s.config = R"({"optimizer": {"lr": 0.01}, "model": "tiny"})";
  return s;
}

fs::path make_tokenizer_dir(const fs::path& root) {
  const fs::path dir = root / "tok";
  fs::create_directories(dir);
  write_file(dir / "tokenizer.json", R"({"model": {"type": "BPE"}})");
  write_file(dir / "tokenizer_config.json", R"({"eos_token": "<|im_end|>"})");
  write_file(dir / "special_tokens_map.json", "{}");
  write_file(dir / "chat_template.jinja", "{{ messages }}");
  write_file(dir / "README.md", "not a tokenizer file");
  return dir;
}

TEST(CrcReference, KnownValue) { EXPECT_EQ(naive_crc32("123456789"), 0xCBF43926u); }

TEST(Checkpoint, SaveLoadIsBitIdenticalAndContinuesIdentically) {
  const fs::path run = temp_dir("roundtrip");
  Trainee a(1);
  a.train(3, 7);
  CheckpointOptions o;
  o.tokenizer_dir = make_tokenizer_dir(run).string();
  const std::string path = save_checkpoint(run.string(), a.model, a.opt, make_state(3), o);
  EXPECT_EQ(fs::path(path), run / "checkpoints" / "step-3");

  // Layout: an HF directory with the tokenizer, the trainer state beside it, nothing temporary.
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "special_tokens_map.json", "chat_template.jinja", "trainer_state/state.json",
                        "trainer_state/optimizer.safetensors", "COMPLETE"})
    EXPECT_TRUE(fs::is_regular_file(fs::path(path) / f)) << f;
  EXPECT_FALSE(fs::exists(fs::path(path) / "README.md"));
  EXPECT_EQ(read_file(fs::path(path) / "tokenizer.json"), read_file(run / "tok" / "tokenizer.json"));
  EXPECT_EQ(read_file(fs::path(path) / "chat_template.jinja"), "{{ messages }}");
  for (const auto& e : fs::directory_iterator(run / "checkpoints")) EXPECT_EQ(e.path().filename(), "step-3");

  // A fresh model (other weights) and optimizer.
  Trainee b(99);
  ASSERT_NE(a.params(), b.params());
  std::string loaded;
  const TrainerState st = resume_from_run_dir(run.string(), b.model, b.opt, &loaded);
  EXPECT_EQ(loaded, path);
  EXPECT_EQ(b.params(), a.params());
  EXPECT_EQ(b.bytes(b.opt.m()), a.bytes(a.opt.m()));
  EXPECT_EQ(b.bytes(b.opt.v()), a.bytes(a.opt.v()));
  EXPECT_EQ(b.opt.step_count(), 3);
  EXPECT_EQ(st.step, 3);
  EXPECT_EQ(st.rng, make_state(3).rng);
  EXPECT_EQ(Json::parse(st.cursor), Json::parse(make_state(3).cursor));
  EXPECT_EQ(Json::parse(st.config), Json::parse(make_state(3).config));

  // Both go on the same way: 3 + 2 steps equal whether or not the run went through disk.
  a.train(2, 8);
  b.train(2, 8);
  EXPECT_EQ(b.params(), a.params());
  EXPECT_EQ(b.bytes(b.opt.m()), a.bytes(a.opt.m()));

  // transformers-style loading of the model directory alone works too.
  std::unique_ptr<Model> hf = load_model(path, *a.ops, train_limits());
  EXPECT_EQ(hf->table().size(), a.model.table().size());
  fs::remove_all(run);
}

TEST(Checkpoint, MarkerListsSizesAndCrc32OfEveryFile) {
  const fs::path run = temp_dir("marker");
  Trainee a(1);
  a.train(1, 1);
  const fs::path dir = save_checkpoint(run.string(), a.model, a.opt, make_state(1));
  const Json marker = Json::parse(read_file(dir / "COMPLETE"));
  EXPECT_EQ(marker["format_version"], kCheckpointFormatVersion);
  EXPECT_EQ(marker["step"], 1);
  std::vector<std::string> listed;
  for (const Json& f : marker["files"]) {
    const std::string rel = f["path"];
    listed.push_back(rel);
    const std::string bytes = read_file(dir / rel);
    EXPECT_EQ(f["bytes"].get<uint64_t>(), bytes.size()) << rel;
    EXPECT_EQ(f["crc32"].get<uint32_t>(), naive_crc32(bytes)) << rel;
  }
  // Every file but the marker itself.
  std::vector<std::string> on_disk;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().filename() != "COMPLETE")
      on_disk.push_back(fs::relative(e.path(), dir).generic_string());
  std::sort(on_disk.begin(), on_disk.end());
  EXPECT_EQ(listed, on_disk);
  fs::remove_all(run);
}

// Damage done to step-2 after it was saved, and the words its refusal must contain.
struct Damage {
  const char* name;
  void (*apply)(const fs::path& step2, const fs::path& ckdir);
  const char* reason;
};

const Damage kDamages[] = {
    {"marker_removed", [](const fs::path& d, const fs::path&) { fs::remove(d / "COMPLETE"); }, "no COMPLETE marker"},
    {"weights_truncated",
     [](const fs::path& d, const fs::path&) {
       fs::resize_file(d / "model.safetensors", fs::file_size(d / "model.safetensors") / 2);
     },
     "truncated"},
    {"moments_byte_flipped",
     [](const fs::path& d, const fs::path&) {
       std::string s = read_file(d / "trainer_state/optimizer.safetensors");
       s[s.size() - 3] ^= 0x10;
       write_file(d / "trainer_state/optimizer.safetensors", s);
     },
     "CRC-32"},
    {"state_deleted", [](const fs::path& d, const fs::path&) { fs::remove(d / "trainer_state/state.json"); },
     "trainer_state/state.json is missing"},
    {"marker_garbled", [](const fs::path& d, const fs::path&) { write_file(d / "COMPLETE", "{\"files\": [tru"); },
     "COMPLETE marker is unreadable"},
    {"newer_format",
     [](const fs::path& d, const fs::path&) {
       Json m = Json::parse(read_file(d / "COMPLETE"));
       m["format_version"] = kCheckpointFormatVersion + 1;
       write_file(d / "COMPLETE", m.dump());
     },
     "newer than this build"},
    {"marker_of_another_step",
     [](const fs::path& d, const fs::path&) {
       Json m = Json::parse(read_file(d / "COMPLETE"));
       m["step"] = 5;
       write_file(d / "COMPLETE", m.dump());
     },
     "another step"},
    // A crash mid-write: the save never renamed its directory; step-2 is not there at all.
    {"tmp_left_behind",
     [](const fs::path& d, const fs::path& ckdir) {
       fs::rename(d, ckdir / ".tmp-step-2-4242");
       fs::remove(ckdir / ".tmp-step-2-4242" / "COMPLETE");
     },
     "interrupted save"},
};

class CheckpointDamage : public ::testing::TestWithParam<Damage> {};

TEST_P(CheckpointDamage, IsRefusedAndThePreviousOneIsUsed) {
  const Damage& dmg = GetParam();
  const fs::path run = temp_dir(std::string("damage_") + dmg.name);
  const fs::path ckdir = run / "checkpoints";
  Trainee a(1);
  a.train(1, 1);
  save_checkpoint(run.string(), a.model, a.opt, make_state(1));
  const std::string params1 = a.params(), m1 = a.bytes(a.opt.m());
  a.train(1, 2);
  save_checkpoint(run.string(), a.model, a.opt, make_state(2));
  dmg.apply(ckdir / "step-2", ckdir);

  const CheckpointScan scan = find_latest_checkpoint(run.string());
  EXPECT_EQ(fs::path(scan.path), ckdir / "step-1");
  EXPECT_EQ(scan.step, 1);
  ASSERT_EQ(scan.skipped.size(), 1u);
  EXPECT_NE(scan.skipped[0].find(dmg.reason), std::string::npos) << scan.skipped[0];

  Trainee b(99);
  const std::string before = b.params();
  if (fs::exists(ckdir / "step-2")) {
    // Loading the damaged one directly is refused with the reason, and changes nothing.
    try {
      load_checkpoint((ckdir / "step-2").string(), b.model, b.opt);
      ADD_FAILURE() << "damaged checkpoint loaded";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find("step-2"), std::string::npos) << e.message();
      EXPECT_NE(e.message().find(dmg.reason), std::string::npos) << e.message();
    }
    EXPECT_EQ(b.params(), before);
    EXPECT_EQ(b.opt.step_count(), 0);
  }
  const TrainerState st = resume_from_run_dir(run.string(), b.model, b.opt);
  EXPECT_EQ(st.step, 1);
  EXPECT_EQ(b.params(), params1);
  EXPECT_EQ(b.bytes(b.opt.m()), m1);
  EXPECT_EQ(b.opt.step_count(), 1);

  // The next save cleans up a leftover .tmp and the run goes on.
  save_checkpoint(run.string(), b.model, b.opt, make_state(3));
  for (const auto& e : fs::directory_iterator(ckdir))
    EXPECT_NE(e.path().filename().string().rfind(".tmp", 0), 0u) << e.path();
  EXPECT_EQ(find_latest_checkpoint(run.string()).step, 3);
  fs::remove_all(run);
}

INSTANTIATE_TEST_SUITE_P(Damages, CheckpointDamage, ::testing::ValuesIn(kDamages),
                         [](const ::testing::TestParamInfo<Damage>& i) { return std::string(i.param.name); });

TEST(Checkpoint, KeepsTheLastK) {
  const fs::path run = temp_dir("keep");
  Trainee a(1);
  CheckpointOptions o;
  o.keep_last = 2;
  for (int64_t step = 1; step <= 4; ++step) {
    a.train(1, uint64_t(step));
    save_checkpoint(run.string(), a.model, a.opt, make_state(step), o);
  }
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run / "checkpoints")) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step-3", "step-4"}));

  // An incomplete newest one does not count towards K: step-4 loses its marker, step-5 is
  // saved, and step-3 (complete) stays with it.
  fs::remove(run / "checkpoints" / "step-4" / "COMPLETE");
  a.train(1, 5);
  save_checkpoint(run.string(), a.model, a.opt, make_state(5), o);
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-3"));
  EXPECT_TRUE(fs::exists(run / "checkpoints" / "step-5"));

  // keep_last 0 keeps everything.
  o.keep_last = 0;
  for (int64_t step = 6; step <= 8; ++step) save_checkpoint(run.string(), a.model, a.opt, make_state(step), o);
  for (int64_t step : {3, 5, 6, 7, 8}) EXPECT_TRUE(fs::exists(run / "checkpoints" / ("step-" + std::to_string(step))));
  fs::remove_all(run);
}

TEST(Checkpoint, SavingAStepAgainReplacesIt) {
  const fs::path run = temp_dir("resave");
  Trainee a(1);
  a.train(1, 1);
  save_checkpoint(run.string(), a.model, a.opt, make_state(4));
  a.train(1, 2);
  save_checkpoint(run.string(), a.model, a.opt, make_state(4));
  Trainee b(99);
  resume_from_run_dir(run.string(), b.model, b.opt);
  EXPECT_EQ(b.params(), a.params());
  EXPECT_EQ(b.opt.step_count(), 2);
  fs::remove_all(run);
}

TEST(Checkpoint, NoCheckpointIsAClearErrorOnResume) {
  const fs::path run = temp_dir("empty");
  Trainee b(1);
  EXPECT_TRUE(find_latest_checkpoint(run.string()).path.empty());
  try {
    resume_from_run_dir(run.string(), b.model, b.opt);
    ADD_FAILURE() << "resumed from nothing";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find(run.string()), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("no complete checkpoint"), std::string::npos) << e.message();
  }
  // Only a broken one: the error says why it was skipped.
  Trainee a(2);
  save_checkpoint(run.string(), a.model, a.opt, make_state(1));
  fs::remove(run / "checkpoints" / "step-1" / "COMPLETE");
  const std::string before = b.params();
  try {
    resume_from_run_dir(run.string(), b.model, b.opt);
    ADD_FAILURE() << "resumed from an incomplete checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("step-1: no COMPLETE marker"), std::string::npos) << e.message();
  }
  EXPECT_EQ(b.params(), before);
  fs::remove_all(run);
}

TEST(Checkpoint, BadInputsChangeNothing) {
  const fs::path run = temp_dir("bad");
  Trainee a(1), other(2);
  a.train(1, 1);
  save_checkpoint(run.string(), a.model, a.opt, make_state(1));
  auto expect_error = [&](auto&& fn, const std::string& words) {
    try {
      fn();
      ADD_FAILURE() << "accepted; expected an error with: " << words;
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(words), std::string::npos) << e.message();
    }
  };
  TrainerState s = make_state(2);
  s.cursor = "{not json";
  expect_error([&] { save_checkpoint(run.string(), a.model, a.opt, s); }, "cursor");
  s = make_state(2);
  s.config = "";
  expect_error([&] { save_checkpoint(run.string(), a.model, a.opt, s); }, "config");
  CheckpointOptions o;
  o.tokenizer_dir = (run / "no_such_dir").string();
  expect_error([&] { save_checkpoint(run.string(), a.model, a.opt, make_state(2), o); }, "tokenizer_dir");
  expect_error([&] { save_checkpoint(run.string(), a.model, other.opt, make_state(2)); }, "another model");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run / "checkpoints")) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, std::vector<std::string>{"step-1"});

  // A checkpoint of another architecture is refused before anything is written.
  Trainee llama(3, "llama");
  const std::string before = llama.params();
  expect_error([&] { load_checkpoint((run / "checkpoints" / "step-1").string(), llama.model, llama.opt); }, "step-1");
  EXPECT_EQ(llama.params(), before);
  // Same shapes, different config value: refused too (a resume would compute something else).
  ModelConfig cfg = test_config("qwen3_moe");
  cfg.rope.theta *= 2;
  Model shifted(cfg, *a.ops, train_limits());
  Optimizer shifted_opt(shifted, opt_config());
  expect_error([&] { load_checkpoint((run / "checkpoints" / "step-1").string(), shifted, shifted_opt); }, "rope_theta");
  fs::remove_all(run);
}

}  // namespace
}  // namespace grpo::test
