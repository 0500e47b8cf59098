// Runs child processes under resource limits without blocking: Boost.Asio watches each
// child's stdout/stderr/status pipes, its exit (a pidfd) and its deadline on one I/O thread,
// so many children run at once while callers only wait for their own results.
//
// A child is started by fork + execve with, in the child before exec: a new session (its own
// process group), the signal mask and dispositions reset, stdin from a sealed memfd, every
// inherited descriptor closed except the ones asked for, rlimits set, optionally a switch to
// another uid/gid (root only), PR_SET_NO_NEW_PRIVS, and SIGKILL as parent-death signal.
//
// The whole process tree is killed on the wall-clock deadline, on output over the cap, or when
// the runner is destroyed: SIGKILL through a pidfd to a "tracked" process (bwrap's
// PID-namespace init, whose death takes the namespace down and which its parent, our child,
// then reaps), or to the child's process group when no process is tracked or the child is
// still there 1 s later. A run completes only when the child is reaped, its pipes are at EOF and the
// tracked process is gone, so nothing it started is left running when the result arrives.
//
// Linux >= 5.3 (pidfd_open).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace grpo::rewards {

// Limits applied with setrlimit in the child before exec (soft = hard); 0 leaves one as is.
struct ResourceLimits {
  uint64_t cpu_seconds = 0;          // RLIMIT_CPU
  uint64_t address_space_bytes = 0;  // RLIMIT_AS
  uint64_t max_processes = 0;        // RLIMIT_NPROC (counted per uid: see rewards/code/sandbox.h)
  uint64_t file_size_bytes = 0;      // RLIMIT_FSIZE
  uint64_t open_files = 0;           // RLIMIT_NOFILE
};

// A process the runner may wait for besides the child (and kill with the tree).
struct TrackedProcess {
  pid_t pid = 0;              // host pid; 0 = none (yet)
  uint64_t pid_ns_inode = 0;  // when non-zero, the pid is only trusted if it lives in this
                              // PID namespace (guards against pid reuse)
};

struct ProcessSpec {
  std::string executable;         // absolute path, exec'd as is
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // "KEY=VALUE", the whole environment
  std::string stdin_data;         // fed through a sealed memfd (never blocks)
  // Extra read-only data descriptors: (fd number in the child, contents), each a sealed memfd.
  std::vector<std::pair<int, std::string>> data_fds;
  int status_fd = -1;  // fd number in the child of a pipe read into `status_data`
  // Child fd numbers (stdin/stdout/stderr, data_fds, status_fd) must be below 16.
  ResourceLimits limits;
  int64_t uid = -1;  // setresuid/setresgid/setgroups({}) before exec; -1 = keep
  int64_t gid = -1;
  double timeout_s = 5;         // wall clock from fork to kill
  size_t max_stdout = 1 << 20;  // bytes; more kills the tree (output_exceeded)
  size_t max_stderr = 64 << 10;
  double grace_s = 1.0;  // after the child exits, how long the rest may linger
                         // before it is killed
  // Looks at the status data read so far and names the process to track, if any.
  std::function<TrackedProcess(std::string_view status)> find_tracked;
};

struct ProcessOutcome {
  bool started = false;  // false: pipes, memfds, fork or exec failed; see `error`
  std::string error;
  bool exited = false;           // reaped with a status
  int exit_code = -1;            // when it exited normally
  int term_signal = 0;           // when a signal ended it
  bool timed_out = false;        // the deadline killed it
  bool output_exceeded = false;  // stdout or stderr went over the cap and it was killed
  std::string stdout_data;       // at most max_stdout bytes
  std::string stderr_data;       // at most max_stderr bytes
  std::string status_data;       // at most 64 KiB
  double seconds = 0;            // wall clock, fork to completion
  double cpu_seconds = 0;        // user + system CPU of the child and of the descendants it reaped
};

class ProcessRunner {
 public:
  using Build = std::function<ProcessSpec(size_t slot)>;
  using Done = std::function<void(ProcessOutcome)>;

  // At most `max_parallel` children run at once; each gets a distinct slot in
  // [0, max_parallel) for as long as it runs (`build` is called with it just before the fork).
  explicit ProcessRunner(size_t max_parallel);
  // Kills whatever still runs, fails what is queued, joins the I/O thread.
  ~ProcessRunner();
  ProcessRunner(const ProcessRunner&) = delete;
  ProcessRunner& operator=(const ProcessRunner&) = delete;

  // Thread-safe. `done` runs on the I/O thread: keep it short. A `build` that throws fails
  // that run (`error` holds the message).
  void submit(Build build, Done done);
  // Submits and waits. Must not be called from a `done` callback.
  ProcessOutcome run(Build build);

  size_t max_parallel() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace grpo::rewards
