// The trainer's two services behind one interface each, so the three topologies run the same
// loop (trainer.cpp):
//   colocated  the generation engine and the checkers in this process;
//   remote     RolloutPool over `grpo rollout serve` addresses, RewardClient to a reward service
//              (or the checkers in process when no reward address is given);
//   local      like remote, over children this process starts on loopback (port 0), owns and
//              restarts (rollout workers) when they die.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "learner/train/train_config.h"
#include "rewards/service/batch.h"
#include "rollout/service/client.h"

namespace grpo {
class Model;
class Ops;
class Tokenizer;
}  // namespace grpo

namespace grpo::train {

class RolloutBackend {
 public:
  virtual ~RolloutBackend() = default;
  // Every prompt's group exactly once, to on_group on the calling thread as they complete.
  virtual void generate(const std::vector<rollout::PromptRequest>& prompts,
                        const std::function<void(rollout::RemoteGroup)>& on_group) = 0;
  // The policy's weights to every worker; they serve `version` afterwards.
  virtual void update_weights(const Model& policy, int64_t version) = 0;
  // Between steps: restart dead local workers (they get the policy's weights as `version`).
  virtual void maintain(const Model& policy, int64_t version) { (void)policy, (void)version; }
  virtual int64_t retried_groups() const { return 0; }
  virtual int64_t restarts() const { return 0; }
  virtual std::string describe() const = 0;
};

// Thrown by a RewardBackend when the service kept failing after every retry.
class RewardServiceFailed : public Error {
 public:
  using Error::Error;
};

class RewardBackend {
 public:
  virtual ~RewardBackend() = default;
  // One result per item, in order. Throws RewardServiceFailed after the retries.
  virtual std::vector<rewards::ScoredItem> score(const std::vector<rewards::ScoreItem>& items) = 0;
  virtual std::string describe() const = 0;
};

// Built from the config; `policy_dir` is the model the workers load at start.
struct Backends {
  std::unique_ptr<RolloutBackend> rollout;
  std::unique_ptr<RewardBackend> reward;
};

struct BackendContext {
  const TrainConfig* config = nullptr;
  std::string executable;  // `grpo` for local children
  std::string run_dir;     // logs/ for the children's stderr
  Ops* ops = nullptr;      // colocated: the trainer's backend
  DType dtype = DType::f32;  // colocated: the engine model's storage (config.dtype resolved on ops)
  const Tokenizer* tokenizer = nullptr;
  bool quiet = false;
};

Backends make_backends(const BackendContext& ctx);

// The trainer's rollout client options (deadline, message caps, token) from the config.
rollout::RolloutClientOptions rollout_client_options(const TrainConfig& c);

}  // namespace grpo::train
