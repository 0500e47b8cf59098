// The run config of `grpo train` (strict JSON: unknown keys are errors naming their path).
//
//   {"model": "runs/base",                 HF model directory (tokenizer files in it)
//    "base_sft": "configs/x-base.json",    optional: when "model" does not exist yet, it is made
//                                          first by `grpo sft` with this config (the "base
//                                          model" step); its newest checkpoint is copied to "model"
//    "data": {"name": "arithmetic", ...}   a built-in dataset spec (learner/datasets.h), or
//            {"path": "train.jsonl", "prompt_key": "prompt", "reference_key": "reference",
//             "checker_key": "checker"}    a JSONL file with field names mapped
//    "eval": {"data": <as data>, "every": 0, "n": 1, "temperature": 1.0, "max_new_tokens": 0,
//             "before": true, "exclude_from_training": true},
//                                          held-out pass@k before training, every N steps, at the
//                                          end; training prompts equal to an eval prompt are dropped
//    "prompt": {"format": "chatml", "template": "", "system": "", "generation_prefix": ""},
//    "rollout": {"prompts_per_step": 16, "group_size": 8, "max_new_tokens": 256,
//                "temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
//                "stop": ["</answer>"], "return_routing": false, "weight_dtype": "f32"},
//    "dynamic_sampling": {"enabled": false, "max_rounds": 4},
//    "reward": {"checker": "math", "config": "", "plugins": [], "correct_threshold": 1.0,
//               "retries": 3, "backoff_s": 1.0, "timeout_s": 120},
//    "objective": {...},                   learner/objective.h (clip_low, beta, ...)
//    "learner": {"mu": 1, "num_mini_batches": 1, "micro_batch_tokens": 4096,
//                "replay_routing": true, "aux_loss_coef": 0.0},
//    "optimizer": {...},                   learner/optimizer.h
//    "topology": {"kind": "local" | "remote" | "colocated",
//                 "workers": 2, "worker_max_batch": 64, "worker_kv_memory": "256M",
//                 "worker_device": "", "worker_threads": 0,
//                 "rollout_addresses": [], "reward_address": "", "token_file": "",
//                 "start_timeout_s": 120, "generate_timeout_s": 600, "max_worker_restarts": 3},
//    "steps": 100, "seed": 0, "run_dir": "runs/grpo", "save_every": 0, "keep_last": 2,
//    "samples_per_step": 4, "checkpoint_on_interrupt": true, "device": "auto", "dtype": "auto",
//    "cuda_graphs": true, "threads": 0}
//
// dtype is the storage of every model the run builds (policy, reference, eval model, the
// colocated engine's model, local workers via --dtype): "auto" (bf16 on CUDA, f32 on the CPU),
// "f32" or "bf16" (kernels/backend.h resolve_dtype; bf16 on the CPU is an error at start).
// cuda_graphs: every generation engine of the run (local workers, the colocated engine, the
// eval engine) decodes through CUDA graphs on CUDA (Model::decode_step); false: op by op
// (local workers get --eager). No effect on the CPU.
//
// Paths are relative to the working directory. train_config_json() writes the effective config
// (every default filled in) that parse_train_config() reads back: RUN_DIR/config.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "learner/grpo_step.h"
#include "learner/optimizer.h"
#include "policy/prompt_format.h"

namespace grpo {

class ConfigNode;

namespace train {

// Where the prompts come from: a built-in dataset (spec_json) or a JSONL file.
struct TrainData {
  std::string spec_json;  // a datasets.h spec, as JSON text; "" when path is used
  std::string path;
  std::string prompt_key = "prompt", reference_key = "reference", checker_key = "checker";
};

struct EvalConfig {
  TrainData data;         // empty (no spec, no path): no eval
  int64_t every = 0;      // also every N steps (0: before and after only)
  int64_t n = 1;          // samples per problem
  float temperature = 1.0f;
  int64_t max_new_tokens = 0;  // 0: the rollout's
  bool before = true;     // evaluate the starting model (step 0)
  bool exclude_from_training = true;  // drop training problems whose prompt is an eval prompt
  bool enabled() const { return !data.spec_json.empty() || !data.path.empty(); }
};

struct RolloutConfig {
  int64_t prompts_per_step = 16;
  int64_t group_size = 8;
  int64_t max_new_tokens = 256;
  float temperature = 1.0f, top_p = 1.0f, min_p = 0.0f;
  int64_t top_k = 0;
  std::vector<std::string> stop;  // stop strings; the tokenizer's eos always stops
  bool return_routing = false;    // MoE: record routing for the learner's replay
  std::string weight_dtype = "f32";  // weights sent to workers: f32 | bf16
};

struct DynamicSamplingConfig {
  bool enabled = false;
  int64_t max_rounds = 4;  // generation rounds per step at most (the first included)
};

struct RewardConfig {
  std::string checker;           // for records that name none ("" = the service's default)
  std::string config;            // reward config file (rewards/combine.h), "" = none
  std::vector<std::string> plugins;
  double correct_threshold = 1.0;  // accuracy counts rewards >= this
  int64_t retries = 3;             // tries after the first failure, with back-off
  double backoff_s = 1.0;          // first back-off; doubles each retry
  double timeout_s = 120;          // per Score call
};

enum class TopologyKind { local, remote, colocated };
const char* name_of(TopologyKind kind);

struct TopologyConfig {
  TopologyKind kind = TopologyKind::local;
  int64_t workers = 2;              // local: rollout worker processes
  int64_t worker_max_batch = 64;
  int64_t worker_kv_memory = int64_t(256) << 20;
  std::string worker_device;        // "" = the run's device; "{i}" / "{i+1}" become the worker's index
  int64_t worker_threads = 0;       // OMP_NUM_THREADS of each local worker (0: inherit)
  std::vector<std::string> rollout_addresses;  // remote
  std::string reward_address;       // remote ("" with remote: the reward checkers run in process)
  std::string token_file;           // remote: bearer token for both services
  double start_timeout_s = 120;     // local: seconds a child gets to print its address
  double generate_timeout_s = 600;  // deadline of one Generate call
  int64_t max_worker_restarts = 3;  // local: restarts of each worker before it stays down
};

struct TrainConfig {
  std::string model;
  std::string base_sft;
  TrainData data;
  EvalConfig eval;
  PromptFormatOptions prompt;
  RolloutConfig rollout;
  DynamicSamplingConfig dynamic_sampling;
  RewardConfig reward;
  GrpoStepOptions learner;  // objective inside
  OptimizerConfig optimizer;
  TopologyConfig topology;
  int64_t steps = 100;
  uint64_t seed = 0;
  std::string run_dir = "runs/grpo";
  int64_t save_every = 0;
  int64_t keep_last = 2;
  int64_t samples_per_step = 4;
  bool checkpoint_on_interrupt = true;
  std::string device = "auto";
  std::string dtype = "auto";  // model storage: auto | f32 | bf16 (resolved against the device)
  bool cuda_graphs = true;     // engines decode through CUDA graphs on CUDA
  int64_t threads = 0;  // OpenMP threads of the trainer process (0: default)
};

// Reads and checks the whole config (finishes the node). Does not touch the file system
// beyond checking that named files exist (model may be absent when base_sft is given).
TrainConfig parse_train_config(ConfigNode& root);
// The effective config (two-space indented JSON) that parse_train_config reads back.
std::string train_config_json(const TrainConfig& c);
// The objective options as the JSON object parse_objective_options reads.
std::string objective_options_json(const ObjectiveOptions& o);

}  // namespace train
}  // namespace grpo
