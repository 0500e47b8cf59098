#include "rewards/code/process_runner.h"

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/log.h"
#include "rewards/code/process_spawn.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace grpo::rewards {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxStatus = 64 << 10;
constexpr double kEscalateS = 1.0;  // after killing the tracked process, when the child is killed too
constexpr double kHardStopS = 5.0;  // after that, the longest we wait for the tree to go

int pidfd_open(pid_t pid) { return int(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int sig) { return int(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0)); }

std::string errno_text(const std::string& what, int err = errno) { return what + ": " + std::strerror(err); }

}  // namespace

struct ProcessRunner::Impl {
  struct Job {
    Build build;
    Done done;
  };
  struct Run;

  explicit Impl(size_t n) : max_parallel(n), busy(n, false) {}

  void pump();
  void launch(Job job, size_t slot);
  void finished(const std::shared_ptr<Run>& run);

  size_t max_parallel;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  std::thread thread;
  std::mutex mu;
  std::deque<Job> queue;                  // guarded by mu
  bool stopping = false;                  // guarded by mu
  std::vector<bool> busy;                 // I/O thread only
  std::set<std::shared_ptr<Run>> active;  // I/O thread only
};

// One child from fork to completion; lives on the I/O thread.
struct ProcessRunner::Impl::Run : std::enable_shared_from_this<Run> {
  Run(Impl& owner, size_t slot_, Done done_)
      : impl(owner),
        slot(slot_),
        done(std::move(done_)),
        out(owner.io),
        err(owner.io),
        status(owner.io),
        child(owner.io),
        tracked(owner.io),
        deadline(owner.io),
        grace(owner.io),
        escalate(owner.io),
        hard(owner.io) {}

  enum class Stream { out, err, status };

  void start(ProcessSpec spec);
  void read(Stream which);
  void watch_child();
  void on_child_exit();
  void track(const TrackedProcess& process);
  void kill_tree();
  void kill_child_group();
  void maybe_finish();
  void finish();

  Impl& impl;
  size_t slot;
  Done done;
  ProcessSpec spec;
  pid_t pid = -1;
  asio::posix::stream_descriptor out, err, status, child, tracked;
  asio::steady_timer deadline, grace, escalate, hard;
  std::vector<char> out_buf = std::vector<char>(64 << 10), err_buf = std::vector<char>(64 << 10),
                    status_buf = std::vector<char>(4 << 10);
  bool out_open = false, err_open = false, status_open = false;
  bool reaped = false, tracked_known = false, tracked_alive = false;
  bool kill_requested = false, escalation_armed = false, is_finished = false;
  ProcessOutcome outcome;
  Clock::time_point started_at = Clock::now();
};

void ProcessRunner::Impl::Run::start(ProcessSpec spec_in) {
  spec = std::move(spec_in);
  std::string error;
  auto fail = [&](const std::string& message) {
    outcome.error = message;
    reaped = true;
    finish();
  };

  Fd out_r, out_w, err_r, err_w, status_r, status_w;
  if (!make_pipe(&out_r, &out_w, &error) || !make_pipe(&err_r, &err_w, &error) ||
      (spec.status_fd >= 0 && !make_pipe(&status_r, &status_w, &error)))
    return fail("process runner: " + error);
  Fd stdin_fd = make_sealed_memfd("grpo-stdin", spec.stdin_data, &error);
  if (!stdin_fd) return fail("process runner: " + error);
  std::vector<Fd> data_fds;
  for (const auto& [fd, data] : spec.data_fds) {
    data_fds.push_back(make_sealed_memfd("grpo-data", data, &error));
    if (!data_fds.back()) return fail("process runner: " + error);
  }

  SpawnPlan plan;
  plan.executable = spec.executable;
  plan.argv = spec.argv;
  plan.env = spec.env;
  plan.fds = {{stdin_fd.get(), 0}, {out_w.get(), 1}, {err_w.get(), 2}};
  for (size_t i = 0; i < spec.data_fds.size(); ++i) plan.fds.push_back({data_fds[i].get(), spec.data_fds[i].first});
  if (spec.status_fd >= 0) plan.fds.push_back({status_w.get(), spec.status_fd});
  plan.limits = spec.limits;
  plan.uid = spec.uid;
  plan.gid = spec.gid;

  started_at = Clock::now();
  pid = spawn_process(plan, &error);
  if (pid < 0) return fail("process runner: " + error);
  // The child holds its own copies now.
  out_w.reset();
  err_w.reset();
  status_w.reset();
  stdin_fd.reset();
  data_fds.clear();
  outcome.started = true;

  int pidfd = pidfd_open(pid);
  if (pidfd < 0) {
    int e = errno;
    ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return fail(errno_text("process runner: pidfd_open (Linux >= 5.3 is needed)", e));
  }
  // From here the child runs: any failure must still kill and reap it.
  boost::system::error_code assign_error;
  // Hands an owned descriptor to Asio; it stays owned (and is closed) if that fails.
  auto hand_over = [&](asio::posix::stream_descriptor& sd, Fd& fd) {
    if (assign_error) return;
    sd.assign(fd.get(), assign_error);
    if (!assign_error) fd.release();
  };
  Fd pidfd_owned(pidfd);
  hand_over(child, pidfd_owned);
  hand_over(out, out_r);
  hand_over(err, err_r);
  if (spec.status_fd >= 0) hand_over(status, status_r);
  if (assign_error) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    outcome.started = false;
    return fail("process runner: registering descriptors: " + assign_error.message());
  }
  out_open = err_open = true;
  status_open = spec.status_fd >= 0;
  read(Stream::out);
  read(Stream::err);
  if (status_open) read(Stream::status);
  watch_child();

  auto self = shared_from_this();
  deadline.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.timeout_s)));
  deadline.async_wait([this, self](const boost::system::error_code& ec) {
    if (ec || is_finished || reaped) return;
    outcome.timed_out = true;
    kill_tree();
  });
}

void ProcessRunner::Impl::Run::read(Stream which) {
  asio::posix::stream_descriptor& sd = which == Stream::out ? out : which == Stream::err ? err : status;
  std::vector<char>& buf = which == Stream::out ? out_buf : which == Stream::err ? err_buf : status_buf;
  auto self = shared_from_this();
  sd.async_read_some(asio::buffer(buf), [this, self, which, &sd, &buf](const boost::system::error_code& ec, size_t n) {
    if (is_finished) return;
    bool& open = which == Stream::out ? out_open : which == Stream::err ? err_open : status_open;
    std::string& sink = which == Stream::out   ? outcome.stdout_data
                        : which == Stream::err ? outcome.stderr_data
                                               : outcome.status_data;
    size_t cap = which == Stream::out ? spec.max_stdout : which == Stream::err ? spec.max_stderr : kMaxStatus;
    if (n > 0) {
      size_t room = cap - std::min(cap, sink.size());
      sink.append(buf.data(), std::min(n, room));
      if (n > room && which != Stream::status) {
        // Over the cap: stop reading and take the whole tree down.
        outcome.output_exceeded = true;
        kill_tree();
        boost::system::error_code ignored;
        sd.close(ignored);
        open = false;
        maybe_finish();
        return;
      }
      if (which == Stream::status && !tracked_known && spec.find_tracked) {
        TrackedProcess process = spec.find_tracked(sink);
        if (process.pid > 0) track(process);
      }
    }
    if (ec) {  // EOF (every writer gone) or an error
      boost::system::error_code ignored;
      sd.close(ignored);
      open = false;
      maybe_finish();
      return;
    }
    read(which);
  });
}

void ProcessRunner::Impl::Run::watch_child() {
  auto self = shared_from_this();
  child.async_wait(asio::posix::stream_descriptor::wait_read, [this, self](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    int st = 0;
    struct rusage usage;
    std::memset(&usage, 0, sizeof usage);
    pid_t r = ::wait4(pid, &st, WNOHANG, &usage);
    if (r == 0) return watch_child();  // not yet (spurious wake-up)
    reaped = true;
    boost::system::error_code ignored;
    child.close(ignored);
    if (r == pid) {
      outcome.exited = true;
      if (WIFEXITED(st)) outcome.exit_code = WEXITSTATUS(st);
      if (WIFSIGNALED(st)) outcome.term_signal = WTERMSIG(st);
      auto secs = [](const timeval& tv) { return double(tv.tv_sec) + 1e-6 * double(tv.tv_usec); };
      outcome.cpu_seconds = secs(usage.ru_utime) + secs(usage.ru_stime);
    } else if (outcome.error.empty()) {
      outcome.error = errno_text("process runner: waitpid");
    }
    if (!is_finished) on_child_exit();
  });
}

void ProcessRunner::Impl::Run::on_child_exit() {
  deadline.cancel();
  maybe_finish();
  if (is_finished) return;
  // Whatever the child left behind (its sandbox's other processes, pipe holders) gets a short
  // grace period to finish, then is killed.
  auto self = shared_from_this();
  grace.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(spec.grace_s)));
  grace.async_wait([this, self](const boost::system::error_code& ec) {
    if (ec || is_finished) return;
    kill_tree();
  });
}

void ProcessRunner::Impl::Run::track(const TrackedProcess& process) {
  tracked_known = true;
  int fd = pidfd_open(process.pid);
  if (fd < 0) return;  // already gone
  if (process.pid_ns_inode != 0) {
    // The pid could in theory have been recycled: only trust it in the expected namespace.
    char path[64], link[64];
    std::snprintf(path, sizeof path, "/proc/%d/ns/pid", int(process.pid));
    ssize_t n = ::readlink(path, link, sizeof link - 1);
    if (n > 0) {
      link[n] = 0;
      std::string expected = "pid:[" + std::to_string(process.pid_ns_inode) + "]";
      if (expected != link) {
        ::close(fd);
        return;
      }
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 0) {  // exited (or error): nothing left to wait for
      ::close(fd);
      return;
    }
  }
  boost::system::error_code assign_error;
  tracked.assign(fd, assign_error);
  if (assign_error) {
    ::close(fd);
    return;
  }
  tracked_alive = true;
  if (kill_requested) pidfd_send_signal(fd, SIGKILL);
  auto self = shared_from_this();
  tracked.async_wait(asio::posix::stream_descriptor::wait_read, [this, self](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || is_finished) return;
    tracked_alive = false;
    boost::system::error_code ignored;
    tracked.close(ignored);
    maybe_finish();
  });
}

void ProcessRunner::Impl::Run::kill_tree() {
  kill_requested = true;
  if (tracked_alive) {
    // Preferred: the tracked process (the namespace's init) dies, the kernel kills the rest of
    // its namespace, and the child, its parent, reaps it and exits, so no zombie is orphaned.
    pidfd_send_signal(tracked.native_handle(), SIGKILL);
  } else {
    kill_child_group();
  }
  if (escalation_armed) return;
  escalation_armed = true;
  auto self = shared_from_this();
  escalate.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kEscalateS)));
  escalate.async_wait([this, self](const boost::system::error_code& ec) {
    if (ec || is_finished) return;
    kill_child_group();  // the child did not go by itself
    hard.expires_after(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kHardStopS)));
    hard.async_wait([this, self](const boost::system::error_code& ec2) {
      if (ec2 || is_finished) return;
      GRPO_LOG(warn, "process runner: pid " << pid << " and its tree still not gone " << kEscalateS + kHardStopS
                                            << " s after SIGKILL; giving up waiting");
      if (outcome.error.empty()) outcome.error = "process tree did not exit after SIGKILL";
      finish();
    });
  });
}

void ProcessRunner::Impl::Run::kill_child_group() {
  if (reaped || pid <= 0) return;  // a reaped pid (and its group id) may belong to someone else now
  ::kill(-pid, SIGKILL);           // its process group (the child called setsid)
  ::kill(pid, SIGKILL);
  if (tracked_alive) pidfd_send_signal(tracked.native_handle(), SIGKILL);
}

void ProcessRunner::Impl::Run::maybe_finish() {
  if (!is_finished && reaped && !out_open && !err_open && !status_open && !tracked_alive) finish();
}

void ProcessRunner::Impl::Run::finish() {
  if (is_finished) return;
  is_finished = true;
  outcome.seconds = std::chrono::duration<double>(Clock::now() - started_at).count();
  deadline.cancel();
  grace.cancel();
  escalate.cancel();
  hard.cancel();
  boost::system::error_code ignored;
  out.close(ignored);
  err.close(ignored);
  status.close(ignored);
  tracked.close(ignored);
  // A child not reaped yet (only after the hard stop) keeps its watch so it is reaped later.
  if (reaped) child.close(ignored);
  impl.finished(shared_from_this());
}

void ProcessRunner::Impl::pump() {
  for (;;) {
    Job job;
    size_t slot = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (queue.empty()) return;
      auto free_slot = std::find(busy.begin(), busy.end(), false);
      if (free_slot == busy.end()) return;
      slot = size_t(free_slot - busy.begin());
      job = std::move(queue.front());
      queue.pop_front();
    }
    launch(std::move(job), slot);
  }
}

void ProcessRunner::Impl::launch(Job job, size_t slot) {
  busy[slot] = true;
  auto run = std::make_shared<Run>(*this, slot, std::move(job.done));
  active.insert(run);
  ProcessSpec spec;
  try {
    spec = job.build(slot);
  } catch (const std::exception& e) {
    run->outcome.error = e.what();
    run->reaped = true;
    run->finish();
    return;
  }
  run->start(std::move(spec));
}

void ProcessRunner::Impl::finished(const std::shared_ptr<Run>& run) {
  busy[run->slot] = false;
  active.erase(run);
  Done done = std::move(run->done);
  try {
    if (done) done(std::move(run->outcome));
  } catch (const std::exception& e) {
    GRPO_LOG(error, "process runner: a completion callback threw: " << e.what());
  }
  asio::post(io, [this] { pump(); });
}

ProcessRunner::ProcessRunner(size_t max_parallel) {
  GRPO_CHECK(max_parallel >= 1, "process runner: max_parallel must be at least 1");
  impl_ = std::make_shared<Impl>(max_parallel);
  Impl* impl = impl_.get();
  impl_->thread = std::thread([impl] { impl->io.run(); });
}

ProcessRunner::~ProcessRunner() {
  std::deque<Impl::Job> dropped;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    dropped.swap(impl_->queue);
  }
  for (Impl::Job& job : dropped) {
    ProcessOutcome outcome;
    outcome.error = "process runner: shutting down";
    if (job.done) job.done(std::move(outcome));
  }
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] {
    std::vector<std::shared_ptr<Impl::Run>> running(impl->active.begin(), impl->active.end());
    for (auto& run : running) run->kill_tree();
  });
  impl_->work.reset();
  impl_->thread.join();
}

void ProcessRunner::submit(Build build, Done done) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    if (!impl_->stopping) {
      impl_->queue.push_back({std::move(build), std::move(done)});
      done = nullptr;
    }
  }
  if (done) {
    ProcessOutcome outcome;
    outcome.error = "process runner: shutting down";
    done(std::move(outcome));
    return;
  }
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] { impl->pump(); });
}

ProcessOutcome ProcessRunner::run(Build build) {
  GRPO_ASSERT(std::this_thread::get_id() != impl_->thread.get_id());
  auto promise = std::make_shared<std::promise<ProcessOutcome>>();
  std::future<ProcessOutcome> result = promise->get_future();
  submit(std::move(build), [promise](ProcessOutcome outcome) { promise->set_value(std::move(outcome)); });
  return result.get();
}

size_t ProcessRunner::max_parallel() const { return impl_->max_parallel; }

}  // namespace grpo::rewards
