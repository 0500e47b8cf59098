// RolloutPool (client.h): groups spread by load over several workers, retried on failure.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <list>
#include <optional>
#include <thread>
#include <unordered_map>

#include "rollout/service/client.h"

namespace grpo::rollout {

namespace {

using Clock = std::chrono::steady_clock;

// A worker-side failure (gone, reset, overloaded, too slow): its groups may succeed elsewhere.
// Anything else (a bad request, bad credentials) would fail on every worker.
bool retryable(const std::string& code) {
  return code == "UNAVAILABLE" || code == "DEADLINE_EXCEEDED" || code == "UNKNOWN" || code == "ABORTED" ||
         code == "CANCELLED" || code == "INTERNAL";
}

}  // namespace

struct RolloutPool::Impl {
  struct Worker {
    std::unique_ptr<RolloutClient> client;
    int64_t outstanding = 0;
    bool down = false;
    Clock::time_point down_until;
    std::string last_error;
  };
  RolloutPoolOptions options;
  std::vector<Worker> workers;
  mutable std::mutex mutex;  // workers' load and health
  std::atomic<int64_t> retried{0};

  // The live worker with the fewest outstanding groups and room under the cap; -1 if none.
  // Reserves `want` (or fewer) groups on it; *take receives how many.
  int pick(int64_t pending, int64_t* take) {
    std::lock_guard<std::mutex> lock(mutex);
    int best = -1;
    int64_t live = 0;
    for (size_t i = 0; i < workers.size(); ++i) {
      Worker& w = workers[i];
      if (w.down && Clock::now() >= w.down_until) w.down = false;  // worth another try
      if (w.down) continue;
      ++live;
      if (options.max_outstanding_per_worker > 0 && w.outstanding >= options.max_outstanding_per_worker) continue;
      if (best < 0 || w.outstanding < workers[best].outstanding) best = int(i);
    }
    if (best < 0) return -1;
    // An even share of what is pending, so one call does not take everything from the others.
    int64_t share = (pending + live - 1) / live;
    int64_t n = std::min({pending, options.max_groups_per_call, share});
    if (options.max_outstanding_per_worker > 0)
      n = std::min(n, options.max_outstanding_per_worker - workers[best].outstanding);
    workers[best].outstanding += n;
    *take = n;
    return best;
  }

  void release(size_t worker, int64_t groups) {
    std::lock_guard<std::mutex> lock(mutex);
    workers[worker].outstanding -= groups;
  }

  void mark_down(size_t worker, const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex);
    Worker& w = workers[worker];
    w.down = true;
    w.down_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.down_for_s));
    w.last_error = error;
  }
};

RolloutPool::RolloutPool(const std::vector<std::string>& addresses, const RolloutPoolOptions& options)
    : impl_(std::make_unique<Impl>()) {
  GRPO_CHECK(!addresses.empty(), "rollout pool: no worker addresses");
  GRPO_CHECK(options.max_groups_per_call >= 1, "rollout pool: \"max_groups_per_call\" must be at least 1");
  GRPO_CHECK(options.max_outstanding_per_worker >= 0, "rollout pool: \"max_outstanding_per_worker\" must be >= 0");
  GRPO_CHECK(options.max_attempts >= 1, "rollout pool: \"max_attempts\" must be at least 1");
  impl_->options = options;
  for (const std::string& address : addresses) {
    RolloutClientOptions o = options.client;
    o.address = address;
    impl_->workers.emplace_back().client = std::make_unique<RolloutClient>(o);
  }
}

RolloutPool::~RolloutPool() = default;

size_t RolloutPool::size() const { return impl_->workers.size(); }
RolloutClient& RolloutPool::client(size_t i) { return *impl_->workers.at(i).client; }
int64_t RolloutPool::retried_groups() const { return impl_->retried.load(); }

std::vector<PoolWorkerState> RolloutPool::workers() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::vector<PoolWorkerState> out;
  for (const Impl::Worker& w : impl_->workers)
    out.push_back({w.client->address(), w.outstanding, w.down && Clock::now() < w.down_until, w.last_error});
  return out;
}

void RolloutPool::generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group) {
  std::unordered_map<uint64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i)
    GRPO_CHECK(index.emplace(prompts[i].id, i).second, "rollout pool: prompt id " << prompts[i].id << " is used twice");

  // One Generate call on its own thread. Everything below is guarded by `mutex`.
  struct Call {
    size_t worker = 0;
    std::vector<size_t> prompts;  // indices
    size_t delivered = 0;
    bool finished = false;
    std::optional<RolloutClientError> error;
    GenerateCancel cancel;
    std::thread thread;
  };
  std::mutex mutex;
  std::condition_variable changed;
  std::list<Call> calls;
  std::deque<size_t> pending;
  for (size_t i = 0; i < prompts.size(); ++i) pending.push_back(i);
  std::vector<int> attempts(prompts.size(), 0);
  std::vector<bool> done(prompts.size(), false);
  std::deque<RemoteGroup> ready;
  size_t delivered_total = 0;

  auto run_call = [&](Call& call) {
    std::vector<PromptRequest> batch;
    for (size_t i : call.prompts) batch.push_back(prompts[i]);
    std::optional<RolloutClientError> error;
    try {
      impl_->workers[call.worker].client->generate(
          batch,
          [&](RemoteGroup g) {
            impl_->release(call.worker, 1);
            std::lock_guard<std::mutex> lock(mutex);
            size_t i = index.at(g.result.id);
            done[i] = true;
            ++call.delivered;
            ready.push_back(std::move(g));
            changed.notify_all();
          },
          &call.cancel);
    } catch (const RolloutClientError& e) {
      error = e;
    } catch (const std::exception& e) {
      error = RolloutClientError("INTERNAL", e.what());
    }
    std::lock_guard<std::mutex> lock(mutex);
    call.error = std::move(error);
    call.finished = true;
    changed.notify_all();
  };

  // Stops every call still running (their groups are dropped) and waits for their threads.
  auto stop_all = [&] {
    {
      std::lock_guard<std::mutex> lock(mutex);
      for (Call& c : calls) c.cancel.cancel();
    }
    for (Call& c : calls)
      if (c.thread.joinable()) c.thread.join();
    for (Call& c : calls) impl_->release(c.worker, int64_t(c.prompts.size() - c.delivered));
    calls.clear();
  };

  try {
    std::unique_lock<std::mutex> lock(mutex);
    while (delivered_total < prompts.size()) {
      // Dispatch what is pending to the least loaded workers.
      while (!pending.empty()) {
        int64_t take = 0;
        int w = impl_->pick(int64_t(pending.size()), &take);
        if (w < 0) break;
        Call& call = calls.emplace_back();
        call.worker = size_t(w);
        for (int64_t k = 0; k < take; ++k) {
          call.prompts.push_back(pending.front());
          ++attempts[pending.front()];
          pending.pop_front();
        }
        call.thread = std::thread(run_call, std::ref(call));
      }
      if (!pending.empty() && calls.empty()) {
        std::string why;
        for (const PoolWorkerState& w : workers()) why += (why.empty() ? "" : "; ") + w.address + ": " + w.last_error;
        throw RolloutClientError("UNAVAILABLE", "rollout pool: every worker is down (" + why + ")");
      }
      changed.wait(lock, [&] {
        if (!ready.empty()) return true;
        for (const Call& c : calls)
          if (c.finished) return true;
        return false;
      });
      // Hand over finished groups, outside the lock (on_group may take its time).
      while (!ready.empty()) {
        RemoteGroup g = std::move(ready.front());
        ready.pop_front();
        ++delivered_total;
        lock.unlock();
        on_group(std::move(g));
        lock.lock();
      }
      // Retire finished calls; a failed worker's unfinished groups go back to the queue.
      for (auto it = calls.begin(); it != calls.end();) {
        if (!it->finished) {
          ++it;
          continue;
        }
        Call& c = *it;
        lock.unlock();
        c.thread.join();
        lock.lock();
        std::vector<size_t> unfinished;
        for (size_t i : c.prompts)
          if (!done[i]) unfinished.push_back(i);
        impl_->release(c.worker, int64_t(unfinished.size()));
        const size_t worker = c.worker;
        std::optional<RolloutClientError> error = std::move(c.error);
        it = calls.erase(it);
        if (error) {
          if (!retryable(error->code())) throw *error;
          impl_->mark_down(worker, error->message());
          for (size_t i : unfinished) {
            if (attempts[i] >= impl_->options.max_attempts)
              throw RolloutClientError(error->code(), "rollout pool: prompt id " + std::to_string(prompts[i].id) +
                                                          " failed " + std::to_string(attempts[i]) +
                                                          " times; last: " + error->message());
            pending.push_front(i);
          }
          impl_->retried += int64_t(unfinished.size());
        } else if (!unfinished.empty()) {
          throw RolloutClientError("INTERNAL", "rollout pool: a call ended without all its groups");
        }
      }
    }
  } catch (...) {
    stop_all();
    throw;
  }
  stop_all();
}

std::vector<RemoteGroup> RolloutPool::generate(const std::vector<PromptRequest>& prompts) {
  std::unordered_map<uint64_t, size_t> index;
  for (size_t i = 0; i < prompts.size(); ++i) index[prompts[i].id] = i;
  std::vector<RemoteGroup> out(prompts.size());
  generate(prompts, [&](RemoteGroup g) {
    size_t i = index.at(g.result.id);
    out[i] = std::move(g);
  });
  return out;
}

}  // namespace grpo::rollout
