// Child processes of `grpo train` (the local topology's rollout workers and reward service):
// started with fork + exec, owned by the trainer, never outliving it.
//
//   ChildProcess worker({.name = "rollout worker 0",
//                        .argv = {self_executable(), "rollout", "serve", "--model", dir, "--listen", "127.0.0.1:0"},
//                        .log_path = run_dir + "/logs/rollout-0.log"});
//   std::string line = worker.wait_for_line("listening on ", 60);   // "listening on 127.0.0.1:41234"
//   ...
//   worker.terminate(10);   // SIGTERM, then SIGKILL after 10 s; reaped
//
// Lifetime rules (why no child outlives the run, whatever the exit path):
//  - The child asks the kernel for SIGKILL when its parent dies (PR_SET_PDEATHSIG), and checks
//    right after that the parent is still the one that forked it (else it exits at once), so a
//    trainer killed with SIGKILL takes its children with it. PR_SET_PDEATHSIG fires when the
//    *thread* that forked exits: start children only from a thread that lives as long as the
//    run (the trainer's main thread).
//  - The child runs in its own process group (setpgid), so a Ctrl-C on the terminal reaches the
//    trainer only; the trainer then stops its children itself, in order.
//  - The destructor terminates (SIGTERM, a short grace, SIGKILL) and reaps a child still running;
//    terminate_all_children() does the same for every live ChildProcess of this process (for
//    signal-driven exits; it is not async-signal-safe, call it from a normal thread).
//  - terminate() and terminate_all_children() signal the child's process group (the child and
//    whatever it started there), so a shell script's own children go with it.
//  - The child gets stdin, stdout and stderr only: every other descriptor of the trainer is
//    closed at exec. Its signal mask is cleared and every disposition reset to default.
//
// Output: the child's stdout is a pipe drained by a background thread, so the child never
// blocks on a full pipe. The thread appends everything to the log file and queues complete
// lines for wait_for_line() (lines not yet asked for are kept, the oldest dropped past 1 MiB;
// without a log file a line is gone once wait_for_line has passed it). The child's stderr goes
// straight to the log file (appended), or to the trainer's stderr when log_path is "". stdin
// is /dev/null. The log file's folder is created when missing.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace grpo::train {

struct ChildOptions {
  std::string name;               // for messages: "rollout worker 0", "reward service"
  std::vector<std::string> argv;  // argv[0] is the program path (not searched in PATH)
  std::string log_path = {};           // stderr (and stdout past wait_for_line) appended here; "" = inherit stderr
  std::vector<std::string> env = {};  // extra "KEY=VALUE" entries added to the inherited environment
};

class ChildProcess {
 public:
  // Starts the child. Throws grpo::Error naming the child when fork or pipe fails, or when the
  // program cannot be executed (the exec error is reported back through a close-on-exec pipe:
  // "rollout worker 0: cannot execute /path/grpo: No such file or directory").
  explicit ChildProcess(const ChildOptions& options);
  // terminate(2.0) when still running.
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Takes queued stdout lines until one starts with `prefix` and returns it (without the
  // newline; earlier lines are consumed). Throws grpo::Error naming the child when it exits
  // first ("... exited with status 1 before printing 'listening on ' (last lines of LOG):
  // ...") or when timeout_s passes (the child is left running; the caller decides).
  std::string wait_for_line(const std::string& prefix, double timeout_s);

  // Non-blocking: reaps the child if it has exited. False once it has exited.
  bool running();
  pid_t pid() const;
  const std::string& name() const;
  // Sends a signal to the child alone, not its group (ignored once the child has been reaped).
  void send_signal(int sig);
  // Blocks until the child exits or timeout_s passes (< 0: forever); true when it exited.
  bool wait(double timeout_s);
  // SIGTERM to the child's group, waits up to grace_s, then SIGKILL and waits; reaps.
  // Idempotent. Returns the exit description.
  std::string terminate(double grace_s);
  // "running", "exited with status N" or "killed by signal N (SIGKILL)".
  std::string describe_exit() const;
  // The raw wait status once exited (as from waitpid), -1 while running (and in the rare case
  // that code outside this class reaped the child, e.g. with SIGCHLD set to SIG_IGN).
  int exit_status() const;
  // The last `max_bytes` of the log file, from a line start when one is in reach ("" without
  // a log file or when it cannot be read), for error messages.
  std::string log_tail(size_t max_bytes = 2000) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Path of the running executable (/proc/self/exe resolved).
std::string self_executable();

// Terminates every ChildProcess of this process that is still running (SIGTERM to all first,
// then up to grace_s for all together, then SIGKILL). Thread-safe; ChildProcess objects
// started or destroyed meanwhile on other threads wait until it is done.
void terminate_all_children(double grace_s);

// For a process on its way out (Ctrl-C): from now on no ChildProcess can start (the
// constructor throws), then terminate_all_children(grace_s). Closes the race where a dead
// worker would be restarted while the run is being stopped.
void stop_all_children(double grace_s);

}  // namespace grpo::train
