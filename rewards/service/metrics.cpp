#include "rewards/service/metrics.h"

#include <cstdint>
#include <sstream>

namespace grpo::rewards {

namespace {

// Label values escape backslash, double quote and newline.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

}  // namespace

RewardMetrics::RewardMetrics() : bounds_{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300} {}

void RewardMetrics::record_request(const std::string& rpc, const std::string& code, double seconds) {
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

void RewardMetrics::record_item(const std::string& checker, double seconds, double reward, bool error) {
  std::lock_guard<std::mutex> lock(mutex_);
  Checker& c = checkers_[checker];
  ++c.items;
  if (error) ++c.errors;
  c.seconds += seconds;
  c.reward += reward;
}

void RewardMetrics::add_in_flight(int delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  in_flight_ += delta;
}

void RewardMetrics::add_queued(int delta) {
  std::lock_guard<std::mutex> lock(mutex_);
  queued_ += delta;
}

std::string RewardMetrics::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream os;
  os.precision(17);
  os << "# HELP grpo_reward_requests_total Reward service calls answered, by rpc and status code.\n"
     << "# TYPE grpo_reward_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    os << "grpo_reward_requests_total{rpc=\"" << label(key.first) << "\",code=\"" << label(key.second) << "\"} " << n << "\n";

  os << "# HELP grpo_reward_request_seconds Reward service call latency in seconds.\n"
     << "# TYPE grpo_reward_request_seconds histogram\n";
  for (const auto& [rpc, h] : latency_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bounds_.size(); ++i) {
      cumulative += h.buckets[i];
      os << "grpo_reward_request_seconds_bucket{rpc=\"" << label(rpc) << "\",le=\"" << bounds_[i] << "\"} " << cumulative << "\n";
    }
    os << "grpo_reward_request_seconds_bucket{rpc=\"" << label(rpc) << "\",le=\"+Inf\"} " << h.count << "\n"
       << "grpo_reward_request_seconds_sum{rpc=\"" << label(rpc) << "\"} " << h.sum << "\n"
       << "grpo_reward_request_seconds_count{rpc=\"" << label(rpc) << "\"} " << h.count << "\n";
  }

  os << "# HELP grpo_reward_requests_in_flight Score calls being worked on.\n"
     << "# TYPE grpo_reward_requests_in_flight gauge\n"
     << "grpo_reward_requests_in_flight " << in_flight_ << "\n"
     << "# HELP grpo_reward_queued_items Items waiting for a scoring thread.\n"
     << "# TYPE grpo_reward_queued_items gauge\n"
     << "grpo_reward_queued_items " << queued_ << "\n";

  auto per_checker = [&](const char* name, const char* type, const char* help, auto value) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n";
    for (const auto& [checker, c] : checkers_) os << name << "{checker=\"" << label(checker) << "\"} " << value(c) << "\n";
  };
  per_checker("grpo_reward_items_total", "counter", "Items scored, by checker or task.", [](const Checker& c) { return c.items; });
  per_checker("grpo_reward_item_errors_total", "counter", "Items whose scoring failed, by checker or task.",
              [](const Checker& c) { return c.errors; });
  per_checker("grpo_reward_item_seconds_sum", "counter", "Seconds spent scoring items, by checker or task.",
              [](const Checker& c) { return c.seconds; });
  per_checker("grpo_reward_reward_sum", "gauge", "Sum of the rewards given, by checker or task.",
              [](const Checker& c) { return c.reward; });
  return os.str();
}

}  // namespace grpo::rewards
