#include "rewards/service/handler.h"

#include <future>
#include <sstream>

#include "core/error.h"
#include "rewards/service/client.h"

namespace grpo::rewards {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return "OK";
    case StatusCode::invalid_argument: return "INVALID_ARGUMENT";
    case StatusCode::unauthenticated: return "UNAUTHENTICATED";
    case StatusCode::resource_exhausted: return "RESOURCE_EXHAUSTED";
    case StatusCode::deadline_exceeded: return "DEADLINE_EXCEEDED";
    case StatusCode::cancelled: return "CANCELLED";
    case StatusCode::unavailable: return "UNAVAILABLE";
    case StatusCode::internal: return "INTERNAL";
  }
  return "UNKNOWN";
}

struct RewardHandler::CallState {
  std::vector<ScoreItem> items;
  std::vector<std::shared_ptr<RewardChecker>> checkers;  // [items]
  std::vector<std::string> checker_names;                 // [items], resolved ("" -> default)
  std::vector<ScoredItem> results;                        // [items]
  Call call;
  Done done;
  std::atomic<size_t> remaining{0};
  std::atomic<bool> failed{false};
  std::mutex mutex;
  Status status;  // the first failure; guarded by mutex

  void fail(StatusCode code, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex);
    if (status.ok()) status = Status{code, message};
    failed.store(true);
  }
};

RewardHandler::RewardHandler(RewardSet& rewards, const HandlerOptions& options, RewardMetrics* metrics)
    : rewards_(rewards), options_(options), metrics_(metrics) {
  GRPO_CHECK(options.threads >= 0, "reward handler: threads must be >= 0, got " << options.threads);
  GRPO_CHECK(options.max_concurrency >= 1, "reward handler: max_concurrency must be >= 1, got " << options.max_concurrency);
  int n = options.threads > 0 ? options.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

RewardHandler::~RewardHandler() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void RewardHandler::enqueue(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  if (metrics_) metrics_->add_queued(1);
  wake_.notify_one();
}

void RewardHandler::worker_loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and all queued work is done
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    if (metrics_) metrics_->add_queued(-1);
    task();
  }
}

void RewardHandler::score(std::vector<ScoreItem> items, Call call, Done done) {
  if (in_flight_.fetch_add(1) >= options_.max_concurrency) {
    in_flight_.fetch_sub(1);
    std::ostringstream os;
    os << "reward service busy: " << options_.max_concurrency << " Score calls in flight (--max-concurrency); retry later";
    done(Status{StatusCode::resource_exhausted, os.str()}, {});
    return;
  }
  if (metrics_) metrics_->add_in_flight(1);

  auto state = std::make_shared<CallState>();
  state->items = std::move(items);
  state->call = std::move(call);
  state->done = std::move(done);
  size_t n = state->items.size();
  state->checkers.resize(n);
  state->checker_names.resize(n);
  state->results.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const ScoreItem& item = state->items[i];
    state->checker_names[i] = item.checker.empty() ? rewards_.default_checker() : item.checker;
    try {
      state->checkers[i] = rewards_.get(item.checker);
    } catch (const std::exception& e) {
      const auto* error = dynamic_cast<const Error*>(&e);
      std::ostringstream os;
      os << "item " << i << " (id " << item.request.id << "): " << (error ? error->message() : std::string(e.what()));
      state->fail(StatusCode::invalid_argument, os.str());
      finish(state);
      return;
    }
  }
  if (n == 0) {
    finish(state);
    return;
  }
  state->remaining.store(n);
  for (size_t i = 0; i < n; ++i)
    enqueue([this, state, i] {
      run_item(state, i);
      if (state->remaining.fetch_sub(1) == 1) finish(state);
    });
}

void RewardHandler::run_item(const std::shared_ptr<CallState>& state, size_t index) {
  if (state->failed.load()) return;
  if (state->call.cancelled && state->call.cancelled->load()) {
    state->fail(StatusCode::cancelled, "the call was cancelled");
    return;
  }
  if (Clock::now() >= state->call.deadline) {
    std::ostringstream os;
    os << "deadline passed before item " << index << " of " << state->items.size() << " was scored";
    state->fail(StatusCode::deadline_exceeded, os.str());
    return;
  }
  const ScoreItem& item = state->items[index];
  const std::string& checker_name = state->checker_names[index];
  auto start = Clock::now();
  bool error = false;
  auto where = [&] {
    std::ostringstream os;
    os << "item " << index << " (id " << item.request.id << ", checker \"" << checker_name << "\"): ";
    return os.str();
  };
  try {
    ScoredItem& out = state->results[index];
    out.result = state->checkers[index]->score(item.request);
    out.result.id = item.request.id;
    out.elapsed_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  } catch (const RewardClientError& e) {
    error = true;
    state->fail(e.code() == "DEADLINE_EXCEEDED" ? StatusCode::deadline_exceeded : StatusCode::unavailable,
                where() + e.message());
  } catch (const Error& e) {
    error = true;
    state->fail(StatusCode::invalid_argument, where() + e.message());
  } catch (const std::exception& e) {
    error = true;
    state->fail(StatusCode::internal, where() + "internal error: " + e.what());
  }
  if (metrics_) {
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    metrics_->record_item(checker_name, seconds, error ? 0.0 : state->results[index].result.reward, error);
  }
}

void RewardHandler::finish(const std::shared_ptr<CallState>& state) {
  Status status;
  {
    std::lock_guard<std::mutex> lock(state->mutex);
    status = state->status;
  }
  std::vector<ScoredItem> results;
  if (status.ok()) results = std::move(state->results);
  in_flight_.fetch_sub(1);
  if (metrics_) metrics_->add_in_flight(-1);
  Done done = std::move(state->done);
  done(std::move(status), std::move(results));
}

Status RewardHandler::score_sync(std::vector<ScoreItem> items, std::vector<ScoredItem>* results, Call call) {
  std::promise<std::pair<Status, std::vector<ScoredItem>>> promise;
  auto future = promise.get_future();
  score(std::move(items), std::move(call), [&promise](Status status, std::vector<ScoredItem> out) {
    promise.set_value({std::move(status), std::move(out)});
  });
  auto [status, out] = future.get();
  if (results) *results = std::move(out);
  return status;
}

}  // namespace grpo::rewards
