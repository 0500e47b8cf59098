// The engine's internal state, shared by engine.cpp (the public API: validation, submission,
// weight updates, stats) and engine_step.cpp (the scheduler: one step()).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "policy/kv_cache.h"
#include "rollout/engine.h"

namespace grpo::rollout {

struct Group;

// One KV sequence the scheduler runs: a sample of a group, or (prefix sharing) the group's
// shared prompt, which is prefilled once, gives every sample its first token, and is forked
// into each sample as it is admitted.
struct Seq {
  enum class State : uint8_t {
    pending,  // a sample whose shared prompt is not prefilled yet (not queued)
    waiting,  // queued for admission (nothing cached)
    prefill,  // admitted; prompt (or prompt + generated, when recomputing) being cached
    decode,   // admitted; one token per step
    parked,   // the shared prompt, prefilled, kept for the samples still waiting
    done,     // finished (samples) or released (the shared prompt)
  };
  Group* group = nullptr;
  int64_t sample = -1;  // sample index; -1 for the shared prompt
  State state = State::pending;
  int64_t kv = -1;         // cache sequence while admitted, else -1
  uint64_t admitted = 0;   // admission order: preemption takes the most recent first
  uint64_t sampled_step = 0;  // the step that last drew a token for it (1-based)

  // Samples only.
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  FinishReason finish = FinishReason::length;
  std::vector<int32_t> routing;  // [rows, num_moe_layers, K] by position, rows fed so far
  std::optional<DecodeStream> text_stream;  // with stop strings: the completion decoded so far
  std::string text;

  bool is_prompt() const { return sample < 0; }
};

struct Group {
  Request req;
  std::function<void(GroupResult)> done;
  uint64_t submitted = 0;        // submission order (cancel applies to earlier submissions)
  int64_t version = -1;          // the policy version, fixed when the group is first admitted
  int64_t unfinished = 0;        // samples not finished
  std::unique_ptr<Seq> prompt;   // prefix sharing: the shared prompt while it is alive
  std::vector<std::unique_ptr<Seq>> samples;
  std::vector<int32_t> prompt_routing;  // [P, num_moe_layers, K] recorded by the shared prompt

  bool started() const { return version >= 0; }
};

struct WeightUpdate {
  int64_t version = 0;
  bool abort_in_flight = false;
  std::function<void(Model&)> apply;
  std::function<void(const std::string&)> applied;
};

struct Engine::Impl {
  Impl(Model& m, const EngineConfig& c, const Tokenizer* t);

  Model& model;
  Ops& ops;
  const EngineConfig cfg;
  const Tokenizer* tokenizer;
  int64_t max_len = 0;       // prompt + completion cap
  int64_t vocab = 0;
  int64_t num_moe = 0, top_k = 0;  // routing rows are num_moe * top_k i32
  std::unique_ptr<KvCache> cache;

  // ---- engine-loop state (step() only) ----
  std::list<std::unique_ptr<Group>> groups;  // not yet delivered, in submission order
  std::deque<Seq*> waiting;                  // admission queue, front first
  std::vector<Seq*> active;                  // admitted (prefill, decode, parked), admission order
  uint64_t admissions = 0;
  // Device scratch (grown on demand).
  Buffer tokens_buf, logits_buf, gather_buf, sampled_buf, routing_buf;
  std::deque<std::pair<std::chrono::steady_clock::time_point, int64_t>> rate;  // (time, generated)

  // ---- shared with other threads (under mu) ----
  mutable std::mutex mu;
  std::vector<std::unique_ptr<Group>> incoming;
  std::vector<std::pair<uint64_t, uint64_t>> cancels;  // (request id, submissions before the call)
  std::deque<WeightUpdate> updates;
  uint64_t submissions = 0;
  int64_t version = 0;
  EngineStats stats;

  EngineStats loop_stats;  // the loop's counters, copied to `stats` after each step
  uint64_t steps_run = 0;

  // engine_step.cpp
  struct Fed {  // tokens of one sequence in a prefill / decode call
    Seq* seq;
    int64_t pos, n;  // positions [pos, pos + n)
  };
  bool step();
  bool take_incoming();
  bool process_cancels();
  bool process_updates();
  bool any_started_unfinished() const;
  bool admit();
  bool try_admit(Seq* s, int64_t budget);
  int64_t running() const;
  int64_t decode_blocks_needed() const;
  int64_t promised_blocks() const;
  int64_t spare_blocks() const;
  void preempt(Seq* s);
  bool make_room();
  bool prefill();
  bool decode();
  bool deliver();
  void update_stats();
  void abort_group(Group& g);
  void finish(Seq* s, FinishReason r);
  void release_prompt(Group& g);
  void remove_active(Seq* s);
  void append(Seq* s, int32_t token, float logprob);
  SamplingParams sampling_params(const Seq& s) const;
  int64_t context_token(const Seq& s, int64_t pos) const;
  void sample_rows(Tensor logits, const std::vector<SamplingParams>& params, std::vector<int32_t>& tokens,
                   std::vector<float>& logprobs);
  Tensor upload_tokens(const std::vector<int32_t>& host);
  Tensor logits_rows(Buffer& buf, int64_t rows);
  Tensor routing_for(const std::vector<Fed>& fed, int64_t T);
  void record_routing(const std::vector<Fed>& fed, int64_t T);
};

}  // namespace grpo::rollout
