// Starting one child process for rewards/code/process_runner.h: fork, then in the child only
// async-signal-safe calls until execve (the parent may have many threads):
//   signal dispositions reset to default and the mask cleared; setsid() (a new session and
//   process group); the asked-for descriptors placed at their numbers and every other one
//   closed; rlimits set (soft = hard, core dumps 0); optionally setgroups({}) + setresgid +
//   setresuid to another uid/gid; PR_SET_NO_NEW_PRIVS; SIGKILL as parent-death signal (set
//   after the uid switch, which would clear it); execve.
// A failure at any step comes back through a close-on-exec pipe as {step, errno}, so the
// parent knows whether the exec happened.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rewards/code/process_runner.h"

namespace grpo::rewards {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// A close-on-exec pipe; false (and `error`) on failure.
bool make_pipe(Fd* read_end, Fd* write_end, std::string* error);

// A close-on-exec memfd holding `data`, positioned at 0 and sealed against any change
// (a stdin that never blocks the writer and that the child cannot alter).
Fd make_sealed_memfd(const char* name, const std::string& data, std::string* error);

// Child descriptor numbers must be below this.
constexpr int kMaxChildFd = 16;

struct SpawnPlan {
  std::string executable;                // absolute path
  std::vector<std::string> argv, env;    // argv[0] included; env as "KEY=VALUE"
  std::vector<std::pair<int, int>> fds;  // (descriptor here, its number in the child, < 16)
  ResourceLimits limits;
  int64_t uid = -1, gid = -1;  // -1: keep ours
};

// Forks and execs `plan`. Returns the child's pid once execve succeeded, or -1 with `error`
// set (the child, if one was forked, is reaped: nothing is left running).
pid_t spawn_process(const SpawnPlan& plan, std::string* error);

}  // namespace grpo::rewards
