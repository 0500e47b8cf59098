#include "rollout/service/metrics.h"

#include <sstream>

namespace grpo::rollout {

namespace {

// Label values here are rpc names, status codes and finish reasons: plain words, no escaping.
void family(std::ostringstream& os, const char* name, const char* type, const char* help) {
  os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
}

template <class T>
void single(std::ostringstream& os, const char* name, const char* type, const char* help, T value) {
  family(os, name, type, help);
  os << name << " " << value << "\n";
}

}  // namespace

RolloutMetrics::RolloutMetrics() : bounds_{0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600} {
  for (const char* r : {"stop", "length", "abort"}) samples_[r] = 0;
}

void RolloutMetrics::record_request(const std::string& rpc, const std::string& code, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++requests_[{rpc, code}];
  Histogram& h = latency_[rpc];
  if (h.buckets.empty()) h.buckets.assign(bounds_.size(), 0);
  for (size_t i = 0; i < bounds_.size(); ++i)
    if (seconds <= bounds_[i]) {
      ++h.buckets[i];
      break;
    }
  ++h.count;
  h.sum += seconds;
}

void RolloutMetrics::record_group(const GroupResult& group) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++groups_;
  for (const Sample& s : group.samples) ++samples_[finish_reason_name(s.finish)];
}

void RolloutMetrics::record_weight_update(bool applied) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++(applied ? updates_applied_ : updates_rejected_);
}

void RolloutMetrics::add_generate_in_flight(int delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  generate_in_flight_ += delta;
}

std::string RolloutMetrics::render(const EngineStats& e) const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream os;
  os.precision(17);
  family(os, "grpo_rollout_requests_total", "counter", "Rollout service calls answered, by rpc and status code.");
  for (const auto& [key, n] : requests_)
    os << "grpo_rollout_requests_total{rpc=\"" << key.first << "\",code=\"" << key.second << "\"} " << n << "\n";
  family(os, "grpo_rollout_request_seconds", "histogram", "Rollout service call latency in seconds.");
  for (const auto& [rpc, h] : latency_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += h.buckets[i];
      os << "grpo_rollout_request_seconds_bucket{rpc=\"" << rpc << "\",le=\"" << bounds_[i] << "\"} " << cumulative << "\n";
    }
    os << "grpo_rollout_request_seconds_bucket{rpc=\"" << rpc << "\",le=\"+Inf\"} " << h.count << "\n"
       << "grpo_rollout_request_seconds_sum{rpc=\"" << rpc << "\"} " << h.sum << "\n"
       << "grpo_rollout_request_seconds_count{rpc=\"" << rpc << "\"} " << h.count << "\n";
  }
  single(os, "grpo_rollout_generate_calls_in_flight", "gauge", "Generate calls being served.", generate_in_flight_);
  single(os, "grpo_rollout_groups_total", "counter", "Groups delivered.", groups_);
  family(os, "grpo_rollout_samples_total", "counter", "Samples delivered, by finish reason.");
  for (const auto& [reason, n] : samples_) os << "grpo_rollout_samples_total{finish=\"" << reason << "\"} " << n << "\n";
  family(os, "grpo_rollout_weight_updates_total", "counter", "UpdateWeights calls, applied or rejected.");
  os << "grpo_rollout_weight_updates_total{result=\"applied\"} " << updates_applied_ << "\n"
     << "grpo_rollout_weight_updates_total{result=\"rejected\"} " << updates_rejected_ << "\n";

  single(os, "grpo_rollout_policy_version", "gauge", "Policy version serving.", e.version);
  single(os, "grpo_rollout_running_sequences", "gauge", "Sequences being decoded.", e.running);
  single(os, "grpo_rollout_waiting_sequences", "gauge", "Sequences waiting for a slot or KV memory.", e.waiting);
  single(os, "grpo_rollout_kv_blocks_used", "gauge", "KV cache blocks in use.", e.kv_blocks_used);
  single(os, "grpo_rollout_kv_blocks_total", "gauge", "KV cache blocks in all.", e.kv_blocks_total);
  single(os, "grpo_rollout_kv_blocks_saved_by_sharing_total", "counter",
         "Prompt KV blocks not allocated thanks to group prefix sharing.", e.kv_blocks_saved_by_sharing);
  single(os, "grpo_rollout_generated_tokens_total", "counter", "Tokens generated.", e.generated_tokens);
  single(os, "grpo_rollout_prefill_tokens_total", "counter", "Prompt tokens prefilled, recomputation included.",
         e.prefill_tokens);
  single(os, "grpo_rollout_preemptions_total", "counter", "Sequences preempted for KV memory.", e.preemptions);
  single(os, "grpo_rollout_engine_steps_total", "counter", "Engine steps run.", e.steps);
  single(os, "grpo_rollout_decode_graph_replays_total", "counter", "Decode steps replayed as CUDA graphs.",
         e.decode_graph_replays);
  single(os, "grpo_rollout_decode_steps_op_by_op_total", "counter",
         "Decode steps run op by op (graphs off, or the first step of each batch shape).", e.decode_steps_op_by_op);
  single(os, "grpo_rollout_decode_graph_failures_total", "counter",
         "Decode-step graph captures that failed (that shape then runs op by op).", e.decode_graph_failures);
  single(os, "grpo_rollout_tokens_per_second", "gauge", "Generated tokens per second over the last ~10 s.",
         e.tokens_per_s);
  return os.str();
}

}  // namespace grpo::rollout
