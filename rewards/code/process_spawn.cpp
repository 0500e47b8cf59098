#include "rewards/code/process_spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

namespace grpo::rewards {
namespace {

constexpr int kErrorFd = kMaxChildFd;  // where the exec-error pipe sits in the child
constexpr int kHighFd = 64;            // scratch copies go at or above this

std::string errno_text(const std::string& what, int err = errno) { return what + ": " + std::strerror(err); }

// Everything the child needs, prepared before fork: after fork only async-signal-safe calls.
struct ChildPlan {
  const char* executable = nullptr;
  std::vector<char*> argv, envp;           // null-terminated
  std::vector<std::pair<int, int>> moves;  // (fd in the parent, fd in the child)
  int error_fd = -1;
  std::vector<std::pair<int, rlim_t>> limits;
  int64_t uid = -1, gid = -1;
  pid_t parent = 0;
};

enum ChildStage : int { kStageSignals = 1, kStageSetsid, kStageFds, kStageRlimit, kStageIds, kStagePrctl, kStageExec };

const char* stage_name(int stage) {
  switch (stage) {
    case kStageSignals:
      return "resetting signals";
    case kStageSetsid:
      return "setsid";
    case kStageFds:
      return "setting up descriptors";
    case kStageRlimit:
      return "setrlimit";
    case kStageIds:
      return "switching uid/gid";
    case kStagePrctl:
      return "prctl";
    case kStageExec:
      return "execve";
    default:
      return "child setup";
  }
}

[[noreturn]] void child_fail(int error_fd, int stage) {
  int report[2] = {stage, errno};
  ssize_t ignored = ::write(error_fd, report, sizeof report);
  (void)ignored;
  ::_exit(127);
}

// Runs in the forked child; never returns.
[[noreturn]] void child_main(const ChildPlan& plan) {
  int err = plan.error_fd;
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // SIGKILL/SIGSTOP fail: fine
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) child_fail(err, kStageSignals);
  if (::setsid() < 0) child_fail(err, kStageSetsid);

  // Copy every source above the target range first, so placing one never clobbers another.
  int copies[kMaxChildFd];
  size_t n_moves = plan.moves.size();
  for (size_t i = 0; i < n_moves; ++i) {
    copies[i] = ::fcntl(plan.moves[i].first, F_DUPFD, kHighFd);
    if (copies[i] < 0) child_fail(err, kStageFds);
  }
  int err_copy = ::fcntl(err, F_DUPFD_CLOEXEC, kHighFd);
  if (err_copy < 0) child_fail(err, kStageFds);
  err = err_copy;
  for (size_t i = 0; i < n_moves; ++i)
    if (::dup2(copies[i], plan.moves[i].second) < 0) child_fail(err, kStageFds);  // dup2 clears CLOEXEC
  if (::dup3(err_copy, kErrorFd, O_CLOEXEC) < 0) child_fail(err, kStageFds);
  err = kErrorFd;
  if (::syscall(SYS_close_range, unsigned(kErrorFd + 1), ~0U, 0) != 0) {
    struct rlimit nofile;
    rlim_t top = ::getrlimit(RLIMIT_NOFILE, &nofile) == 0 ? nofile.rlim_cur : 1024;
    for (rlim_t fd = kErrorFd + 1; fd < top; ++fd) ::close(int(fd));
  }
  // Targets we were not asked for (0..15 not in moves) are closed too.
  for (int fd = 0; fd < kMaxChildFd; ++fd) {
    bool wanted = false;
    for (size_t i = 0; i < n_moves; ++i) wanted = wanted || plan.moves[i].second == fd;
    if (!wanted) ::close(fd);
  }

  for (const auto& [resource, value] : plan.limits) {
    struct rlimit rl = {value, value};
    if (::setrlimit(resource, &rl) != 0) child_fail(err, kStageRlimit);
  }
  // Raw syscalls: glibc's wrappers would try to broadcast to threads that do not exist here.
  if (plan.gid >= 0) {
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(err, kStageIds);
    if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) child_fail(err, kStageIds);
  }
  if (plan.uid >= 0 && ::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) child_fail(err, kStageIds);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(err, kStagePrctl);
  // After the uid switch: a credential change clears the parent-death signal.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(err, kStagePrctl);
  if (::getppid() != plan.parent) ::_exit(127);  // the runner is already gone
  ::execve(plan.executable, plan.argv.data(), plan.envp.data());
  child_fail(err, kStageExec);
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

void Fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

bool make_pipe(Fd* read_end, Fd* write_end, std::string* error) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    *error = errno_text("pipe2");
    return false;
  }
  read_end->reset(p[0]);
  write_end->reset(p[1]);
  return true;
}

Fd make_sealed_memfd(const char* name, const std::string& data, std::string* error) {
  Fd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) {
    *error = errno_text("memfd_create");
    return Fd();
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = errno_text("memfd write");
      return Fd();
    }
    done += size_t(n);
  }
  if (::lseek(fd.get(), 0, SEEK_SET) != 0 ||
      ::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    *error = errno_text("memfd seal");
    return Fd();
  }
  return fd;
}

pid_t spawn_process(const SpawnPlan& spawn, std::string* error) {
  for (size_t i = 0; i < spawn.fds.size(); ++i) {
    int target = spawn.fds[i].second;
    bool repeated = false;
    for (size_t k = 0; k < i; ++k) repeated = repeated || spawn.fds[k].second == target;
    if (target < 0 || target >= kMaxChildFd || repeated) {
      *error = "child fd " + std::to_string(target) + " is out of range [0, 16) or used twice";
      return -1;
    }
  }
  if (spawn.argv.empty()) {
    *error = "empty argv";
    return -1;
  }
  Fd exec_r, exec_w;
  if (!make_pipe(&exec_r, &exec_w, error)) return -1;

  ChildPlan plan;
  plan.executable = spawn.executable.c_str();
  plan.argv = c_strings(spawn.argv);
  plan.envp = c_strings(spawn.env);
  plan.moves = spawn.fds;
  plan.error_fd = exec_w.get();
  const ResourceLimits& l = spawn.limits;
  if (l.cpu_seconds) plan.limits.push_back({RLIMIT_CPU, rlim_t(l.cpu_seconds)});
  if (l.address_space_bytes) plan.limits.push_back({RLIMIT_AS, rlim_t(l.address_space_bytes)});
  if (l.max_processes) plan.limits.push_back({RLIMIT_NPROC, rlim_t(l.max_processes)});
  if (l.file_size_bytes) plan.limits.push_back({RLIMIT_FSIZE, rlim_t(l.file_size_bytes)});
  if (l.open_files) plan.limits.push_back({RLIMIT_NOFILE, rlim_t(l.open_files)});
  plan.limits.push_back({RLIMIT_CORE, 0});
  plan.uid = spawn.uid;
  plan.gid = spawn.gid;
  plan.parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    *error = errno_text("fork");
    return -1;
  }
  if (pid == 0) child_main(plan);

  exec_w.reset();
  // The pipe closes on a successful execve or carries {stage, errno}: the child runs no
  // blocking code before that, so this read is short.
  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(exec_r.get(), report, sizeof report);
  } while (got < 0 && errno == EINTR);
  if (got != ssize_t(sizeof report)) return pid;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  *error = errno_text(std::string(stage_name(report[0])) + " failed for " + spawn.executable, report[1]);
  return -1;
}

}  // namespace grpo::rewards
