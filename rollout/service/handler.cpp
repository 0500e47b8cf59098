#include "rollout/service/handler.h"

#include <chrono>

#include "core/error.h"
#include "core/log.h"

namespace grpo::rollout {

struct RolloutHandler::Generation {
  std::vector<uint64_t> engine_ids;
  std::atomic<size_t> remaining{0};
};

std::string RolloutHandler::completion_text(const std::vector<int32_t>& tokens) const {
  // A model's vocabulary is often padded past the tokenizer's; such ids have no text.
  std::vector<int32_t> known;
  known.reserve(tokens.size());
  for (int32_t id : tokens)
    if (tokenizer_->is_valid(id)) known.push_back(id);
  return tokenizer_->decode(known, /*skip_special=*/true);
}

RolloutHandler::RolloutHandler(Engine& engine, const Tokenizer* tokenizer, RolloutMetrics* metrics)
    : engine_(engine), tokenizer_(tokenizer), metrics_(metrics) {
  thread_ = std::thread([this] { loop(); });
}

RolloutHandler::~RolloutHandler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_cv_.notify_all();
  thread_.join();
  std::vector<uint64_t> ids;
  {
    std::lock_guard<std::mutex> lock(ids_mutex_);
    ids.assign(live_ids_.begin(), live_ids_.end());
  }
  for (uint64_t id : ids) engine_.cancel(id);
  try {
    engine_.run_until_idle();
  } catch (const std::exception& e) {
    GRPO_LOG(error, "rollout engine: stopping: " << e.what());
  }
}

void RolloutHandler::wake() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    woken_ = true;
  }
  wake_cv_.notify_all();
}

// The engine loop: step while there is work; otherwise sleep until a submit, cancel or update
// wakes it (the timeout only bounds how long a missed wake-up could stall).
void RolloutHandler::loop() {
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) return;
      woken_ = false;
    }
    bool worked = false;
    try {
      worked = engine_.step();
    } catch (const std::exception& e) {
      // A broken step is an engine bug; keep serving what can be served rather than die.
      GRPO_LOG(error, "rollout engine step failed: " << e.what());
    }
    if (worked) continue;
    std::unique_lock<std::mutex> lock(mutex_);
    wake_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return woken_ || stopping_; });
  }
}

std::shared_ptr<RolloutHandler::Generation> RolloutHandler::generate(std::vector<GeneratePrompt> prompts,
                                                                     OnGroup on_group) {
  std::vector<Request> requests(prompts.size());
  std::vector<uint64_t> seen;
  seen.reserve(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    GeneratePrompt& p = prompts[i];
    Request& r = requests[i];
    try {
      for (uint64_t id : seen) GRPO_CHECK(id != p.id, "the id is used by an earlier prompt of the batch");
      seen.push_back(p.id);
      if (!p.tokens.empty()) {
        GRPO_CHECK(p.text.empty(), "give token_ids or text, not both");
        r.prompt = std::move(p.tokens);
      } else {
        GRPO_CHECK(!p.text.empty(), "empty prompt (give token_ids or text)");
        GRPO_CHECK(tokenizer_, "text: this worker has no tokenizer (its model folder has no tokenizer.json): send token_ids");
        r.prompt = tokenizer_->encode(p.text);
        GRPO_CHECK(!r.prompt.empty(), "text: encodes to no tokens");
      }
      r.sampling = std::move(p.sampling);
      engine_.validate(r);
    } catch (const Error& e) {
      GRPO_THROW("prompts[" << i << "] (id " << p.id << "): " << e.message());
    }
  }

  auto generation = std::make_shared<Generation>();
  generation->remaining = requests.size();
  if (requests.empty()) return generation;
  in_flight_.fetch_add(1);
  if (metrics_) metrics_->add_generate_in_flight(1);
  auto deliver = std::make_shared<OnGroup>(std::move(on_group));
  for (size_t i = 0; i < requests.size(); ++i) {
    uint64_t engine_id = next_engine_id_.fetch_add(1);
    generation->engine_ids.push_back(engine_id);
    {
      std::lock_guard<std::mutex> lock(ids_mutex_);
      live_ids_.insert(engine_id);
    }
    requests[i].id = engine_id;
    uint64_t caller_id = prompts[i].id;
    try {
      engine_.submit(std::move(requests[i]), [this, deliver, caller_id, engine_id, generation](GroupResult result) {
        {
          std::lock_guard<std::mutex> lock(ids_mutex_);
          live_ids_.erase(engine_id);
        }
        DeliveredGroup out;
        out.group = std::move(result);
        out.group.id = caller_id;
        out.texts.resize(out.group.samples.size());
        if (tokenizer_)
          for (size_t s = 0; s < out.group.samples.size(); ++s) out.texts[s] = completion_text(out.group.samples[s].tokens);
        if (metrics_) metrics_->record_group(out.group);
        if (generation->remaining.fetch_sub(1) == 1) {
          in_flight_.fetch_sub(1);
          if (metrics_) metrics_->add_generate_in_flight(-1);
        }
        (*deliver)(std::move(out));
      });
    } catch (const Error& e) {
      {
        std::lock_guard<std::mutex> lock(ids_mutex_);
        live_ids_.erase(engine_id);
      }
      // Validated above, so only a change between validate and submit gets here: withdraw
      // what this batch already submitted.
      // Their groups still arrive (aborted); the caller ignores them after the error.
      for (size_t j = 0; j < i; ++j) engine_.cancel(generation->engine_ids[j]);
      size_t unsent = requests.size() - i;
      if (generation->remaining.fetch_sub(unsent) == unsent) {
        in_flight_.fetch_sub(1);
        if (metrics_) metrics_->add_generate_in_flight(-1);
      }
      wake();
      GRPO_THROW("prompts[" << i << "] (id " << prompts[i].id << "): " << e.message());
    }
  }
  wake();
  return generation;
}

void RolloutHandler::cancel(const Generation& generation) {
  for (uint64_t id : generation.engine_ids) engine_.cancel(id);
  wake();
}

std::shared_ptr<WeightStaging> RolloutHandler::begin_update() {
  bool expected = false;
  if (!update_busy_.compare_exchange_strong(expected, true)) return nullptr;
  try {
    auto staging = new WeightStaging(engine_.model(), engine_.version());
    return std::shared_ptr<WeightStaging>(staging, [this](WeightStaging* s) {
      delete s;
      update_busy_.store(false);
    });
  } catch (...) {
    update_busy_.store(false);
    throw;
  }
}

void RolloutHandler::apply_update(std::shared_ptr<WeightStaging> staging,
                                  std::function<void(const std::string& error)> done) {
  WeightStaging* s = staging.get();
  auto shared_done = std::make_shared<std::function<void(const std::string&)>>(std::move(done));
  // `staging` travels with the callbacks and is released (freeing the slot) after `done`.
  auto holder = std::make_shared<std::shared_ptr<WeightStaging>>(std::move(staging));
  engine_.request_weight_update(
      s->version(), s->abort_in_flight(), [s](Model& model) { s->apply(model); },
      [this, holder, shared_done](const std::string& error) {
        if (metrics_) metrics_->record_weight_update(error.empty());
        (*shared_done)(error);
        holder->reset();
      });
  wake();
}

}  // namespace grpo::rollout
