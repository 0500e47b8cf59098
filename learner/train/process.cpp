// Child processes of `grpo train` (process.h): fork + exec with only async-signal-safe calls in
// the child, a reader thread per child for its stdout, and a registry of live children for
// terminate_all_children().
//
// Locking: a child's mutex guards its wait status and its queue of stdout lines. The child is
// reaped (waitpid) only under that mutex and signalled only under it while not yet reaped, so a
// signal never reaches a recycled pid. The registry mutex is taken before a child's mutex,
// never after.
#include "learner/train/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <system_error>
#include <thread>

#include "core/error.h"
#include "core/log.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

extern char** environ;

namespace grpo::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Queued stdout lines (not yet taken by wait_for_line) are capped: the oldest are dropped.
constexpr size_t kMaxQueuedBytes = size_t(1) << 20;
// A line longer than this is cut (its start, which holds any prefix, is kept).
constexpr size_t kMaxLineBytes = size_t(64) << 10;
// Once the child has exited, how long wait_for_line gives the reader to reach the end of the
// pipe (a grandchild may hold it open forever).
constexpr auto kDrainAfterExit = std::chrono::milliseconds(500);
// When the reader is told to stop, at most this much more is read from the pipe.
constexpr size_t kMaxDrainBytes = size_t(16) << 20;

std::string errno_text(int err) { return std::strerror(err); }

// An owned file descriptor (closed on scope exit, so a throwing constructor leaks none).
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Deadline `seconds` from now; time_point::max() for negative (forever) or absurdly large values.
Clock::time_point deadline_after(double seconds) {
  if (seconds < 0 || seconds > 1e9) return Clock::time_point::max();
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string describe_status(bool reaped, int status) {
  if (!reaped) return "running";
  if (status == -1) return "exited (status unknown: reaped outside grpo::train::ChildProcess)";
  std::ostringstream os;
  if (WIFEXITED(status)) {
    os << "exited with status " << WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = ::sigabbrev_np(sig);
    os << "killed by signal " << sig;
    if (abbrev) os << " (SIG" << abbrev << ")";
  } else {
    os << "ended with wait status " << status;
  }
  return os.str();
}

void write_all(int fd, const char* data, size_t n, bool* failed) {
  while (n > 0 && !*failed) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *failed = true;
      return;
    }
    data += w;
    n -= size_t(w);
  }
}

// ---- the forked child ---------------------------------------------------------------------

enum ChildStage : int { kStageSignals = 1, kStageProcessGroup, kStageParentDeath, kStageDescriptors, kStageExec };

const char* stage_text(int stage) {
  switch (stage) {
    case kStageSignals: return "resetting signals";
    case kStageProcessGroup: return "setpgid";
    case kStageParentDeath: return "prctl(PR_SET_PDEATHSIG)";
    case kStageDescriptors: return "setting up stdin/stdout/stderr";
    default: return "child setup";
  }
}

// Everything the child needs, prepared before fork.
struct ChildPlan {
  const char* program = nullptr;
  char* const* argv = nullptr;  // null-terminated
  char* const* envp = nullptr;  // null-terminated
  int stdin_fd = -1;            // /dev/null
  int stdout_fd = -1;           // write end of the stdout pipe
  int stderr_fd = -1;           // the log file, or -1 to keep the inherited stderr
  int error_fd = -1;            // close-on-exec pipe: {stage, errno} when a step fails
  pid_t parent = 0;
};

[[noreturn]] void child_fail(int error_fd, int stage) {
  const int report[2] = {stage, errno};
  const ssize_t ignored = ::write(error_fd, report, sizeof report);
  (void)ignored;
  ::_exit(127);
}

// Runs in the forked child: only async-signal-safe calls (the parent has threads). Never returns.
[[noreturn]] void child_main(const ChildPlan& plan) {
  int err = plan.error_fd;
  // A parent that blocks or ignores signals must not pass that on: dispositions to default
  // (SIGKILL/SIGSTOP and libc's internal signals refuse; that is fine), mask cleared.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) child_fail(err, kStageSignals);

  if (::setpgid(0, 0) != 0) child_fail(err, kStageProcessGroup);
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(err, kStageParentDeath);
  // The parent may have died between fork and prctl: then no signal will ever come.
  if (::getppid() != plan.parent) ::_exit(127);

  // Copies above 2 first (the originals may themselves be 0..2 when the parent had closed its
  // standard descriptors), then into place; dup2 clears close-on-exec on the targets.
  const int moved_err = ::fcntl(err, F_DUPFD_CLOEXEC, 3);
  if (moved_err < 0) child_fail(err, kStageDescriptors);
  err = moved_err;
  const int in = ::fcntl(plan.stdin_fd, F_DUPFD_CLOEXEC, 3);
  const int out = ::fcntl(plan.stdout_fd, F_DUPFD_CLOEXEC, 3);
  const int log = plan.stderr_fd >= 0 ? ::fcntl(plan.stderr_fd, F_DUPFD_CLOEXEC, 3) : -1;
  if (in < 0 || out < 0 || (plan.stderr_fd >= 0 && log < 0)) child_fail(err, kStageDescriptors);
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0) child_fail(err, kStageDescriptors);
  if (log >= 0 && ::dup2(log, 2) < 0) child_fail(err, kStageDescriptors);
  // Nothing else the parent holds (sockets, other children's pipes) reaches the program.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    struct rlimit nofile;
    rlim_t top = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : 1024;
    top = std::min<rlim_t>(top, 1 << 16);
    for (rlim_t fd = 3; fd < top; ++fd) {
      const int flags = ::fcntl(int(fd), F_GETFD);
      if (flags >= 0 && !(flags & FD_CLOEXEC)) ::fcntl(int(fd), F_SETFD, flags | FD_CLOEXEC);
    }
  }

  ::execve(plan.program, plan.argv, plan.envp);
  child_fail(err, kStageExec);
}

// The inherited environment with `extra` ("KEY=VALUE") added; extra wins over inherited keys.
std::vector<std::string> merged_environment(const std::vector<std::string>& extra) {
  auto key_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> keys;
  for (const std::string& e : extra) keys.push_back(key_of(e));
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string entry(*e);
    if (std::find(keys.begin(), keys.end(), key_of(entry)) == keys.end()) out.push_back(std::move(entry));
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// ---- state of one child ---------------------------------------------------------------------

// ChildProcess::Impl's body, outside the class so that the registry may name it.
struct ChildState {
  ChildOptions options;
  std::string label;  // options.name, or argv[0] when no name was given
  pid_t pid = -1;
  int out_fd = -1;   // read end of the child's stdout pipe, non-blocking
  int log_fd = -1;   // the log file (O_APPEND), -1 without one
  int wake_r = -1;   // the reader drains the pipe and stops once wake_w is written
  int wake_w = -1;
  std::thread reader;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool reaped = false;            // waitpid returned the child: its pid must not be signalled
  int status = -1;                // raw wait status once reaped; -1 if someone else reaped it
  std::deque<std::string> lines;  // complete stdout lines not yet taken by wait_for_line
  size_t queued_bytes = 0;
  std::string partial;          // stdout text after the last newline
  bool stdout_closed = false;   // the reader has stopped (end of the pipe, or told to)

  ~ChildState() {
    for (int fd : {out_fd, log_fd, wake_r, wake_w})
      if (fd >= 0) ::close(fd);
  }

  // Reaps the child if it has exited (waitpid WNOHANG). Call with `mu` held. True once reaped.
  bool reap_locked() {
    if (reaped) return true;
    for (;;) {
      int st = 0;
      const pid_t r = ::waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        reaped = true;
        status = st;
        return true;
      }
      if (r == 0) return false;
      if (errno == EINTR) continue;
      // ECHILD: reaped elsewhere (SIGCHLD set to SIG_IGN, or a waitpid(-1) in other code).
      reaped = true;
      status = -1;
      return true;
    }
  }

  // Signals the child's process group (the child and what it started in its group). Call with
  // `mu` held; nothing is sent once the child is reaped.
  void signal_group_locked(int sig) {
    if (reaped) return;
    if (::kill(-pid, sig) != 0 && errno == ESRCH) ::kill(pid, sig);  // it left its group
  }

  // Polls until the child is reaped or `deadline` passes; true when reaped.
  bool wait_until(Clock::time_point deadline) {
    auto nap = std::chrono::milliseconds(1);
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (reap_locked()) return true;
      }
      const auto now = Clock::now();
      if (now >= deadline) return false;
      std::this_thread::sleep_for(std::min<Clock::duration>(nap, deadline - now));
      nap = std::min(nap * 2, std::chrono::milliseconds(20));
    }
  }

  std::string terminate(double grace_s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (reap_locked()) return describe_status(reaped, status);
      signal_group_locked(SIGTERM);
    }
    if (!wait_until(deadline_after(grace_s))) {
      {
        std::lock_guard<std::mutex> lock(mu);
        signal_group_locked(SIGKILL);
      }
      wait_until(Clock::time_point::max());
    }
    std::lock_guard<std::mutex> lock(mu);
    return describe_status(reaped, status);
  }

  // Appends what was read to the log and splits it into lines for wait_for_line.
  void deliver(const char* data, size_t n, bool* log_failed) {
    if (log_fd >= 0 && !*log_failed) {
      write_all(log_fd, data, n, log_failed);
      if (*log_failed)
        GRPO_LOG(warn, label << ": cannot append its stdout to " << options.log_path << " (" << errno_text(errno)
                             << "); its further stdout is not logged");
    }
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < n;) {
      const char* nl = static_cast<const char*>(std::memchr(data + i, '\n', n - i));
      const size_t end = nl ? size_t(nl - data) : n;
      if (partial.size() < kMaxLineBytes) partial.append(data + i, std::min(end - i, kMaxLineBytes - partial.size()));
      if (!nl) break;
      push_line_locked();
      i = end + 1;
    }
    cv.notify_all();
  }

  void push_line_locked() {
    if (!partial.empty() && partial.back() == '\r') partial.pop_back();
    queued_bytes += partial.size();
    lines.push_back(std::move(partial));
    partial.clear();
    while (queued_bytes > kMaxQueuedBytes && !lines.empty()) {
      queued_bytes -= lines.front().size();
      lines.pop_front();
    }
  }

  // The reader thread: copies the child's stdout into the log and the line queue until the
  // pipe ends, or until told to stop (then it reads what is left, up to kMaxDrainBytes).
  void read_loop() {
    std::vector<char> buf(size_t(64) << 10);
    bool log_failed = false, stopping = false, ended = false;
    size_t drained = 0;
    while (!ended) {
      if (!stopping) {
        pollfd fds[2] = {{out_fd, POLLIN, 0}, {wake_r, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
          if (errno == EINTR) continue;
          break;
        }
        stopping = fds[1].revents != 0;
      }
      for (;;) {
        const ssize_t n = ::read(out_fd, buf.data(), buf.size());
        if (n > 0) {
          deliver(buf.data(), size_t(n), &log_failed);
          if (stopping && (drained += size_t(n)) >= kMaxDrainBytes) ended = true;
          if (ended) break;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        ended = true;  // end of the pipe, or a read error
        break;
      }
      if (stopping) ended = true;
    }
    std::lock_guard<std::mutex> lock(mu);
    if (!partial.empty()) push_line_locked();
    stdout_closed = true;
    cv.notify_all();
  }

  std::string log_tail(size_t max_bytes) const {
    if (options.log_path.empty() || max_bytes == 0) return "";
    UniqueFd fd(::open(options.log_path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0) return "";
    const off_t size = st.st_size;
    const off_t from = size > off_t(max_bytes) ? size - off_t(max_bytes) : 0;
    std::string text(size_t(size - from), '\0');
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = ::pread(fd.get(), text.data() + got, text.size() - got, from + off_t(got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += size_t(n);
    }
    text.resize(got);
    if (from > 0) {  // start at a line boundary when one is in reach
      const size_t nl = text.find('\n');
      if (nl != std::string::npos && nl + 1 < text.size()) text.erase(0, nl + 1);
    }
    return text;
  }

  // " (last lines of FILE):\n<tail>" for error messages; "" without a log or when it is empty.
  std::string log_excerpt() const {
    std::string tail = log_tail(2000);
    while (!tail.empty() && (tail.back() == '\n' || tail.back() == ' ')) tail.pop_back();
    if (tail.empty()) return "";
    return " (last lines of " + options.log_path + "):\n" + tail;
  }
};

// ---- registry of live children -------------------------------------------------------------

struct Registry {
  std::mutex mu;
  std::vector<ChildState*> children;
  bool closed = false;  // stop_all_children() was called: no new children
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: children may outlive static destruction
  return *r;
}

// False (and not registered) once stop_all_children() has run.
bool register_child(ChildState* c) {
  std::lock_guard<std::mutex> lock(registry().mu);
  if (registry().closed) return false;
  registry().children.push_back(c);
  return true;
}

bool registry_closed() {
  std::lock_guard<std::mutex> lock(registry().mu);
  return registry().closed;
}

void unregister_child(ChildState* c) {
  std::lock_guard<std::mutex> lock(registry().mu);
  auto& v = registry().children;
  v.erase(std::remove(v.begin(), v.end(), c), v.end());
}

}  // namespace

struct ChildProcess::Impl : ChildState {};

// ---- ChildProcess --------------------------------------------------------------------------

ChildProcess::ChildProcess(const ChildOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& c = *impl_;
  c.options = options;
  c.label = !options.name.empty() ? options.name : !options.argv.empty() ? options.argv[0] : "child process";
  GRPO_CHECK(!options.argv.empty() && !options.argv[0].empty(), c.label << ": no program to run (argv is empty)");
  GRPO_CHECK(!registry_closed(), c.label << ": not started, the process is stopping its children");
  for (const std::string& e : options.env)
    GRPO_CHECK(e.find('=') != std::string::npos && e[0] != '=',
               c.label << ": environment entry '" << e << "' is not KEY=VALUE");

  // Everything the child uses is built before fork.
  const std::vector<std::string> env = merged_environment(options.env);
  const std::vector<char*> argv = c_strings(options.argv), envp = c_strings(env);

  UniqueFd log_fd;
  if (!options.log_path.empty()) {
    const fs::path dir = fs::path(options.log_path).parent_path();
    std::error_code ec;
    if (!dir.empty()) fs::create_directories(dir, ec);
    GRPO_CHECK(!ec, c.label << ": cannot create the log folder " << dir.string() << " (" << ec.message() << ")");
    log_fd.reset(::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    GRPO_CHECK(log_fd.get() >= 0,
               c.label << ": cannot open the log file " << options.log_path << " (" << errno_text(errno) << ")");
  }
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  GRPO_CHECK(devnull.get() >= 0, c.label << ": cannot open /dev/null (" << errno_text(errno) << ")");
  int p[2];
  GRPO_CHECK(::pipe2(p, O_CLOEXEC) == 0, c.label << ": cannot create the stdout pipe (" << errno_text(errno) << ")");
  UniqueFd out_r(p[0]), out_w(p[1]);
  GRPO_CHECK(::pipe2(p, O_CLOEXEC) == 0, c.label << ": cannot create the exec-error pipe (" << errno_text(errno) << ")");
  UniqueFd err_r(p[0]), err_w(p[1]);
  GRPO_CHECK(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0, c.label << ": cannot create a pipe (" << errno_text(errno) << ")");
  UniqueFd wake_r(p[0]), wake_w(p[1]);

  ChildPlan plan;
  plan.program = options.argv[0].c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.stdin_fd = devnull.get();
  plan.stdout_fd = out_w.get();
  plan.stderr_fd = log_fd.get();
  plan.error_fd = err_w.get();
  plan.parent = ::getpid();

  const pid_t pid = ::fork();
  GRPO_CHECK(pid >= 0, c.label << ": cannot fork to start " << options.argv[0] << " (" << errno_text(errno) << ")");
  if (pid == 0) child_main(plan);

  out_w.reset();
  devnull.reset();
  err_w.reset();
  // The error pipe closes when execve succeeds, or carries {stage, errno} first: the child
  // runs nothing that blocks before that, so this read is short.
  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(err_r.get(), report, sizeof report);
  } while (got < 0 && errno == EINTR);
  if (got != 0) {  // a failure report (or a broken pipe read): the child is gone or going
    int st = 0;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    if (got != ssize_t(sizeof report))
      GRPO_THROW(c.label << ": starting " << options.argv[0] << " failed (" << describe_status(true, st) << ")");
    if (report[0] == kStageExec)
      GRPO_THROW(c.label << ": cannot execute " << options.argv[0] << ": " << errno_text(report[1]));
    GRPO_THROW(c.label << ": cannot start " << options.argv[0] << ": " << stage_text(report[0]) << " failed ("
                       << errno_text(report[1]) << ")");
  }
  c.pid = pid;

  const int flags = ::fcntl(out_r.get(), F_GETFL);
  if (flags < 0 || ::fcntl(out_r.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    const int err = errno;
    c.terminate(0);
    GRPO_THROW(c.label << ": cannot make its stdout pipe non-blocking (" << errno_text(err) << ")");
  }
  c.out_fd = out_r.release();
  c.log_fd = log_fd.release();
  c.wake_r = wake_r.release();
  c.wake_w = wake_w.release();
  if (!register_child(&c)) {
    c.terminate(0);
    GRPO_THROW(c.label << ": stopped at once, the process is stopping its children");
  }
  try {
    c.reader = std::thread([&c] { c.read_loop(); });
  } catch (const std::exception& e) {
    unregister_child(&c);
    c.terminate(0);
    GRPO_THROW(c.label << ": cannot start the thread that reads its stdout (" << e.what() << ")");
  }
}

ChildProcess::~ChildProcess() {
  if (!impl_) return;
  Impl& c = *impl_;
  unregister_child(&c);  // waits for a terminate_all_children() in progress
  try {
    c.terminate(2.0);
  } catch (const std::exception& e) {
    GRPO_LOG(error, c.label << ": stopping it failed: " << e.what());
  }
  if (c.reader.joinable()) {
    const char byte = 1;
    ssize_t w;
    do {
      w = ::write(c.wake_w, &byte, 1);
    } while (w < 0 && errno == EINTR);
    c.reader.join();
  }
}

std::string ChildProcess::wait_for_line(const std::string& prefix, double timeout_s) {
  Impl& c = *impl_;
  GRPO_CHECK(std::isfinite(timeout_s) && timeout_s >= 0,
             c.label << ": wait_for_line timeout must be >= 0 seconds, got " << timeout_s);
  const auto deadline = deadline_after(timeout_s);
  Clock::time_point exit_seen{};
  bool exited = false;
  std::unique_lock<std::mutex> lock(c.mu);
  for (;;) {
    while (!c.lines.empty()) {
      std::string line = std::move(c.lines.front());
      c.lines.pop_front();
      c.queued_bytes -= line.size();
      if (line.starts_with(prefix)) return line;
    }
    const auto now = Clock::now();
    if (c.reap_locked()) {
      if (!exited) exit_seen = now;
      exited = true;
      // Its last words may still be in the pipe: give the reader a moment to deliver them.
      if (c.stdout_closed || now - exit_seen >= kDrainAfterExit) {
        const std::string how = describe_status(c.reaped, c.status);
        lock.unlock();
        GRPO_THROW(c.label << " " << how << " before printing '" << prefix << "'" << c.log_excerpt());
      }
    } else if (now >= deadline) {
      const bool closed = c.stdout_closed;
      lock.unlock();
      GRPO_THROW(c.label << ": no line starting with '" << prefix << "' within " << timeout_s << " s (pid " << c.pid
                         << " still running" << (closed ? ", its stdout closed" : "") << ")" << c.log_excerpt());
    }
    // Woken by new output; the timed wake-up notices an exit (a pipe held open by a grandchild
    // never ends) and the deadline.
    const auto next = now + std::chrono::milliseconds(20);
    c.cv.wait_until(lock, exited ? next : std::min(deadline, next));
  }
}

bool ChildProcess::running() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return !impl_->reap_locked();
}

pid_t ChildProcess::pid() const { return impl_->pid; }

const std::string& ChildProcess::name() const { return impl_->label; }

void ChildProcess::send_signal(int sig) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->reap_locked()) return;
  GRPO_CHECK(::kill(impl_->pid, sig) == 0,
             impl_->label << ": cannot send signal " << sig << " to pid " << impl_->pid << " (" << errno_text(errno)
                          << ")");
}

bool ChildProcess::wait(double timeout_s) {
  GRPO_CHECK(!std::isnan(timeout_s), impl_->label << ": wait timeout is NaN");
  return impl_->wait_until(deadline_after(timeout_s));
}

std::string ChildProcess::terminate(double grace_s) {
  GRPO_CHECK(std::isfinite(grace_s) && grace_s >= 0,
             impl_->label << ": terminate grace must be >= 0 seconds, got " << grace_s);
  return impl_->terminate(grace_s);
}

std::string ChildProcess::describe_exit() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return describe_status(impl_->reaped, impl_->status);
}

int ChildProcess::exit_status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->reaped ? impl_->status : -1;
}

std::string ChildProcess::log_tail(size_t max_bytes) const { return impl_->log_tail(max_bytes); }

std::string self_executable() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  GRPO_CHECK(!ec, "cannot resolve the running executable from /proc/self/exe (" << ec.message() << ")");
  return exe.string();
}

void terminate_all_children(double grace_s) {
  GRPO_CHECK(std::isfinite(grace_s) && grace_s >= 0,
             "terminate_all_children: grace must be >= 0 seconds, got " << grace_s);
  // Held throughout: a ChildProcess destroyed meanwhile waits here instead of freeing its state.
  std::lock_guard<std::mutex> reg_lock(registry().mu);
  const std::vector<ChildState*>& children = registry().children;
  auto signal_all = [&](int sig) {
    for (ChildState* c : children) {
      std::lock_guard<std::mutex> lock(c->mu);
      if (!c->reap_locked()) c->signal_group_locked(sig);
    }
  };
  auto wait_all = [&](Clock::time_point deadline) {
    for (ChildState* c : children)
      if (!c->wait_until(deadline)) return false;
    return true;
  };
  signal_all(SIGTERM);
  if (!wait_all(deadline_after(grace_s))) {
    signal_all(SIGKILL);
    wait_all(Clock::time_point::max());
  }
}

void stop_all_children(double grace_s) {
  {
    std::lock_guard<std::mutex> lock(registry().mu);
    registry().closed = true;
  }
  terminate_all_children(grace_s);
}

}  // namespace grpo::train
