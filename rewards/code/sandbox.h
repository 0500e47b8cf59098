// A bubblewrap sandbox for untrusted Python programs.
//
// Each program runs as `bwrap <flags> -- python3 -s -B /tmp/main.py` (no user site-packages, no
// bytecode files) where the flags give it:
//   namespaces   --unshare-all --unshare-user (user, PID, network, IPC, UTS, mount, cgroup),
//                --disable-userns (no nested user namespaces), --uid/--gid 65534 inside,
//                --hostname sandbox; the network namespace holds only its own loopback, so no
//                host address (127.0.0.1 included) is reachable
//   processes    --as-pid-1: python is the PID namespace's init, so when it exits (or is
//                killed) the kernel kills every other process of the sandbox, and bwrap, its
//                parent and our child, reaps it: nothing is orphaned to the host's init, whose
//                reaping may be slow and whose zombies would count against the process limit;
//                --die-with-parent, --new-session (no TIOCSTI to our terminal), --cap-drop ALL,
//                PR_SET_NO_NEW_PRIVS
//   filesystem   a fresh root that is remounted read-only; /usr bound read-only; /bin, /sbin,
//                /lib, /lib64, /lib32, /libx32 recreated as on the host (symlinks into /usr on
//                merged-/usr systems, read-only binds otherwise); /etc/ld.so.cache read-only if
//                present and nothing else of /etc; a fresh /proc; a minimal read-only /dev;
//                /tmp a fresh size-capped tmpfs, the only writable place and the working
//                directory, holding the program as /tmp/main.py. No host path other than
//                these is visible (no checkout, /work, /root, $HOME, /etc/shadow).
//   environment  cleared; PATH=/usr/bin:/bin, HOME=/tmp, LANG=C.UTF-8, PYTHONHASHSEED=0,
//                PYTHONIOENCODING=utf-8, PYTHONDONTWRITEBYTECODE=1
// and, set on bwrap before exec (so every process inside inherits them), rlimits on CPU
// seconds (timeout rounded up + 1), address space, file size, open files and core dumps (0).
//
// RLIMIT_NPROC counts processes per *host* uid and is not enforced for root, so:
//   - running as root, each running sandbox gets its own host uid (uid_base + a per-process
//     offset + slot) that bwrap runs as; the program is that uid on the host (no host file is
//     its own; root's processes and files are out of its reach even in theory) and the limit
//     counts exactly that sandbox's processes;
//   - running as another user, the limit is set inside the sandbox by /usr/bin/prlimit
//     (util-linux) just before python starts; the kernel then counts processes per user
//     namespace, so it also holds per sandbox.
//
// A wall-clock deadline kills the whole tree (SIGKILL through a pidfd to the namespace's init,
// which takes the namespace down; bwrap's process group too if it does not exit within 1 s);
// stdout and stderr are read asynchronously and capped, and going over a cap kills the tree at
// once. A result is delivered only after every process of the sandbox is gone. Because python
// is the namespace's init, it ignores signals it has no handler for when they come from inside
// the sandbox or from the kernel (SIGTERM to itself, SIGXCPU), and orphans of its children stay
// zombies until it exits; the CPU limit still ends it with SIGKILL, which only the kernel or
// the runner can send it (a SIGKILL exit with the CPU time at the limit is reported as a
// timeout).
//
// The constructor runs a self-test (`print('sandbox-ok')` in a full sandbox). If it fails
// (no bwrap, the kernel refuses user namespaces, ...) the sandbox is unavailable and refuses
// to run anything; there is no unsandboxed fallback. Needs bubblewrap >= 0.8 and Linux >= 5.3.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace grpo::rewards {

class ProcessRunner;

struct SandboxLimits {
  double timeout_s = 5;          // wall clock per run
  int64_t memory_mb = 512;       // RLIMIT_AS
  int64_t max_processes = 32;    // RLIMIT_NPROC (see above)
  int64_t max_output_kb = 1024;  // cap on stdout and on stderr, each
  int64_t max_file_mb = 16;      // RLIMIT_FSIZE
  int64_t tmp_mb = 64;           // size of the /tmp tmpfs
  int64_t max_open_files = 64;   // RLIMIT_NOFILE
};

struct SandboxConfig {
  std::string bwrap = "/usr/bin/bwrap";
  std::string python = "/usr/bin/python3";  // must live under /usr
  SandboxLimits limits;
  size_t max_parallel = 2;
  uint32_t uid_base = 1000000000;  // root only: host uids used are uid_base .. uid_base + 2^26
};

// One program to run. Zero timeout/memory mean the configured defaults.
struct SandboxJob {
  std::string program;  // Python source, becomes /tmp/main.py
  std::string stdin_data;
  double timeout_s = 0;
  int64_t memory_mb = 0;
};

enum class SandboxStatus {
  exited,         // the program ran and exited (exit_code; 128 + N when signal N ended it)
  timeout,        // the wall-clock deadline killed it, or the CPU-time limit did (cpu_limit)
  output_limit,   // stdout or stderr went over the cap and it was killed
  sandbox_error,  // the sandbox could not run it (see `error`)
};

struct SandboxResult {
  SandboxStatus status = SandboxStatus::sandbox_error;
  int exit_code = -1;
  std::string stdout_data;
  std::string stderr_data;
  std::string error;       // sandbox_error: why
  bool cpu_limit = false;  // timeout: the CPU-time limit (not the wall clock) ended it
  double seconds = 0;      // wall clock
  double cpu_seconds = 0;  // CPU time of the program and the processes it waited for
};

const char* sandbox_status_name(SandboxStatus status);

class Sandbox {
 public:
  // Validates the config (throws grpo::Error for bad values) and runs the self-test.
  explicit Sandbox(SandboxConfig config);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  bool available() const { return available_; }
  const std::string& unavailable_reason() const { return unavailable_reason_; }
  const SandboxConfig& config() const { return config_; }

  // Thread-safe. `done` runs on the sandbox's I/O thread (keep it short). When unavailable,
  // `done` is called at once with a sandbox_error.
  void run_async(SandboxJob job, std::function<void(SandboxResult)> done);
  // Runs and waits.
  SandboxResult run(SandboxJob job);

 private:
  SandboxConfig config_;
  bool available_ = false;
  std::string unavailable_reason_;
  bool as_root_ = false;
  uint32_t uid_offset_ = 0;  // this sandbox's first host uid is uid_base + uid_offset_
  std::unique_ptr<ProcessRunner> runner_;
};

}  // namespace grpo::rewards
