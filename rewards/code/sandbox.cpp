#include "rewards/code/sandbox.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "rewards/code/process_runner.h"

namespace grpo::rewards {
namespace {

using Json = nlohmann::json;

// Host uids handed to sandboxes when running as root: uid_base + (pid % 65536) * 1024 + k,
// with k unique among the sandboxes of this process (the pid term keeps two grpo processes on
// one host apart, with high probability).
constexpr uint32_t kUidsPerProcess = 1024;
constexpr uint64_t kUidProcessSlots = 65536;
std::mutex g_uid_mu;
std::vector<bool> g_uid_used(kUidsPerProcess, false);

uint32_t reserve_uid_block(size_t n) {
  std::lock_guard<std::mutex> lock(g_uid_mu);
  for (size_t start = 0; start + n <= kUidsPerProcess; ++start) {
    size_t k = 0;
    while (k < n && !g_uid_used[start + k]) ++k;
    if (k == n) {
      for (k = 0; k < n; ++k) g_uid_used[start + k] = true;
      return uint32_t(start);
    }
  }
  GRPO_THROW("code sandbox: more than " << kUidsPerProcess << " sandboxes running in one process");
}

void release_uid_block(uint32_t start, size_t n) {
  std::lock_guard<std::mutex> lock(g_uid_mu);
  for (size_t k = 0; k < n; ++k) g_uid_used[start + k] = false;
}

// bwrap --json-status-fd writes one JSON object per line: first {"child-pid": N, "pid-namespace":
// INODE, ...} (N is the namespace's init, with --as-pid-1 the program itself, as a host pid), at
// the end {"exit-code": N} when the program ran and exited.
std::vector<Json> status_lines(std::string_view status) {
  std::vector<Json> out;
  size_t pos = 0;
  for (;;) {
    size_t nl = status.find('\n', pos);
    if (nl == std::string_view::npos) break;
    Json j = Json::parse(status.substr(pos, nl - pos), nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) out.push_back(std::move(j));
    pos = nl + 1;
  }
  return out;
}

TrackedProcess find_namespace_init(std::string_view status) {
  for (const Json& j : status_lines(status)) {
    auto pid = j.find("child-pid");
    if (pid == j.end() || !pid->is_number_integer()) continue;
    TrackedProcess process;
    process.pid = pid_t(pid->get<int64_t>());
    auto ns = j.find("pid-namespace");
    if (ns != j.end() && ns->is_number_integer()) process.pid_ns_inode = ns->get<uint64_t>();
    return process;
  }
  return {};
}

std::optional<int> program_exit_code(std::string_view status) {
  for (const Json& j : status_lines(status)) {
    auto code = j.find("exit-code");
    if (code != j.end() && code->is_number_integer()) return int(code->get<int64_t>());
  }
  return std::nullopt;
}

bool is_executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string trimmed(std::string_view s, size_t max_chars = 400) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.remove_suffix(1);
  if (s.size() > max_chars) return "..." + std::string(s.substr(s.size() - max_chars));
  return std::string(s);
}

// The read-only view of the host: /usr, the top-level links into it, the loader cache.
void add_host_view(std::vector<std::string>* args) {
  auto add = [&](std::initializer_list<const char*> words) {
    for (const char* w : words) args->push_back(w);
  };
  add({"--ro-bind", "/usr", "/usr"});
  for (const char* dir : {"/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"}) {
    struct stat st;
    if (::lstat(dir, &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = ::readlink(dir, target, sizeof target - 1);
      if (n <= 0) continue;
      target[n] = 0;
      args->insert(args->end(), {"--symlink", target, dir});
    } else if (S_ISDIR(st.st_mode)) {
      args->insert(args->end(), {"--ro-bind", dir, dir});
    }
  }
  add({"--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"});
}

SandboxResult to_result(ProcessOutcome outcome, double cpu_limit_s) {
  SandboxResult r;
  r.seconds = outcome.seconds;
  r.cpu_seconds = outcome.cpu_seconds;
  r.stdout_data = std::move(outcome.stdout_data);
  r.stderr_data = std::move(outcome.stderr_data);
  if (!outcome.started) {
    r.status = SandboxStatus::sandbox_error;
    r.error = outcome.error;
    return r;
  }
  if (!outcome.error.empty()) GRPO_LOG(warn, "code sandbox: " << outcome.error);
  if (outcome.output_exceeded) {
    r.status = SandboxStatus::output_limit;
  } else if (outcome.timed_out) {
    r.status = SandboxStatus::timeout;
  } else if (std::optional<int> code = program_exit_code(outcome.status_data)) {
    r.status = SandboxStatus::exited;
    r.exit_code = *code;
    // The program is its namespace's init: nothing inside can SIGKILL it, so a SIGKILL (or
    // SIGXCPU) exit with the CPU time at the limit is the CPU limit's doing.
    if ((*code == 128 + SIGKILL || *code == 128 + SIGXCPU) && outcome.cpu_seconds >= cpu_limit_s - 0.1) {
      r.status = SandboxStatus::timeout;
      r.cpu_limit = true;
    }
  } else {
    // bwrap ended without the program having run (a setup failure): its message is on stderr.
    r.status = SandboxStatus::sandbox_error;
    std::string why = trimmed(r.stderr_data);
    r.error = "bwrap exited with " +
              (outcome.term_signal ? "signal " + std::to_string(outcome.term_signal)
                                   : "status " + std::to_string(outcome.exit_code)) +
              (why.empty() ? std::string(" and no message") : ": " + why);
  }
  return r;
}

}  // namespace

const char* sandbox_status_name(SandboxStatus status) {
  switch (status) {
    case SandboxStatus::exited:
      return "exited";
    case SandboxStatus::timeout:
      return "timeout";
    case SandboxStatus::output_limit:
      return "output_limit";
    case SandboxStatus::sandbox_error:
      return "sandbox_error";
  }
  return "?";
}

Sandbox::Sandbox(SandboxConfig config) : config_(std::move(config)) {
  const SandboxLimits& l = config_.limits;
  GRPO_CHECK(l.timeout_s > 0 && l.timeout_s <= 3600,
             "code sandbox: timeout_s must be in (0, 3600], got " << l.timeout_s);
  GRPO_CHECK(l.memory_mb >= 16, "code sandbox: memory_mb must be at least 16, got " << l.memory_mb);
  GRPO_CHECK(l.max_processes >= 4,
             "code sandbox: max_processes must be at least 4 (bwrap itself needs 3), got " << l.max_processes);
  GRPO_CHECK(l.max_output_kb >= 1, "code sandbox: max_output_kb must be at least 1, got " << l.max_output_kb);
  GRPO_CHECK(l.max_file_mb >= 1, "code sandbox: max_file_mb must be at least 1, got " << l.max_file_mb);
  GRPO_CHECK(l.tmp_mb >= 1, "code sandbox: tmp_mb must be at least 1, got " << l.tmp_mb);
  GRPO_CHECK(l.max_open_files >= 16, "code sandbox: max_open_files must be at least 16, got " << l.max_open_files);
  GRPO_CHECK(config_.max_parallel >= 1 && config_.max_parallel <= 256,
             "code sandbox: max_parallel must be in [1, 256], got " << config_.max_parallel);
  GRPO_CHECK(config_.python.rfind("/usr/", 0) == 0 && config_.python.find("/../") == std::string::npos,
             "code sandbox: python must be an absolute path under /usr (the only host directory bound into the "
             "sandbox), got \""
                 << config_.python << "\"");
  GRPO_CHECK(
      config_.uid_base >= 65536 && uint64_t(config_.uid_base) + kUidProcessSlots * kUidsPerProcess < 4294967294ull,
      "code sandbox: uid_base must be in [65536, " << (4294967294ull - kUidProcessSlots * kUidsPerProcess) << "), got "
                                                   << config_.uid_base);

  as_root_ = ::geteuid() == 0;
  if (as_root_) uid_offset_ = reserve_uid_block(config_.max_parallel);
  runner_ = std::make_unique<ProcessRunner>(config_.max_parallel);

  if (!is_executable(config_.bwrap)) {
    unavailable_reason_ =
        "bubblewrap not found or not executable at " + config_.bwrap + " (install the bubblewrap package)";
  } else if (!as_root_ && !is_executable("/usr/bin/prlimit")) {
    unavailable_reason_ = "running as a non-root user needs /usr/bin/prlimit (util-linux) to limit processes";
  } else if (!is_executable(config_.python)) {
    unavailable_reason_ = "python interpreter not found at " + config_.python;
  } else {
    available_ = true;  // for the self-test
    SandboxJob probe;
    probe.program = "print('sandbox-ok')\n";
    probe.timeout_s = std::max(30.0, l.timeout_s);
    SandboxResult r = run(probe);
    if (r.status != SandboxStatus::exited || r.exit_code != 0 || r.stdout_data != "sandbox-ok\n") {
      available_ = false;
      std::string detail = !r.error.empty() ? r.error : trimmed(r.stderr_data);
      unavailable_reason_ = std::string("bwrap self-test failed (") + sandbox_status_name(r.status) +
                            (r.status == SandboxStatus::exited ? ", exit code " + std::to_string(r.exit_code) : "") +
                            "): " + (detail.empty() ? "no message" : detail);
    }
  }
  if (!available_) GRPO_LOG(error, "code sandbox unavailable, code will not be run: " << unavailable_reason_);
}

Sandbox::~Sandbox() {
  runner_.reset();  // kills and waits for whatever still runs
  if (as_root_) release_uid_block(uid_offset_, config_.max_parallel);
}

void Sandbox::run_async(SandboxJob job, std::function<void(SandboxResult)> done) {
  if (!available_) {
    SandboxResult r;
    r.error = "sandbox unavailable: " + unavailable_reason_;
    done(std::move(r));
    return;
  }
  const SandboxLimits& limits = config_.limits;
  double timeout_s = job.timeout_s > 0 ? job.timeout_s : limits.timeout_s;
  int64_t memory_mb = job.memory_mb > 0 ? job.memory_mb : limits.memory_mb;
  uint64_t cpu_limit_s = uint64_t(std::ceil(timeout_s)) + 1;
  auto shared_job = std::make_shared<SandboxJob>(std::move(job));
  ProcessRunner::Build build = [this, shared_job, timeout_s, memory_mb, cpu_limit_s](size_t slot) {
    const SandboxLimits& l = config_.limits;
    const SandboxJob& j = *shared_job;

    ProcessSpec spec;
    spec.executable = config_.bwrap;
    std::vector<std::string>& a = spec.argv;
    a = {config_.bwrap,
         "--unshare-all",
         "--unshare-user",
         "--disable-userns",
         "--as-pid-1",
         "--die-with-parent",
         "--new-session",
         "--cap-drop",
         "ALL",
         "--uid",
         "65534",
         "--gid",
         "65534",
         "--hostname",
         "sandbox"};
    add_host_view(&a);
    a.insert(a.end(), {"--proc",
                       "/proc",
                       "--dev",
                       "/dev",
                       "--remount-ro",
                       "/dev",
                       "--size",
                       std::to_string(l.tmp_mb << 20),
                       "--tmpfs",
                       "/tmp",
                       "--file",
                       "3",
                       "/tmp/main.py",
                       "--remount-ro",
                       "/",
                       "--chdir",
                       "/tmp",
                       "--clearenv",
                       "--setenv",
                       "PATH",
                       "/usr/bin:/bin",
                       "--setenv",
                       "HOME",
                       "/tmp",
                       "--setenv",
                       "LANG",
                       "C.UTF-8",
                       "--setenv",
                       "PYTHONHASHSEED",
                       "0",
                       "--setenv",
                       "PYTHONIOENCODING",
                       "utf-8",
                       "--setenv",
                       "PYTHONDONTWRITEBYTECODE",
                       "1",
                       "--json-status-fd",
                       "4",
                       "--"});
    if (!as_root_) a.insert(a.end(), {"/usr/bin/prlimit", "--nproc=" + std::to_string(l.max_processes), "--"});
    a.insert(a.end(), {config_.python, "-s", "-B", "/tmp/main.py"});
    spec.env = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"};
    spec.stdin_data = j.stdin_data;
    spec.data_fds = {{3, j.program}};
    spec.status_fd = 4;
    spec.limits.cpu_seconds = cpu_limit_s;
    spec.limits.address_space_bytes = uint64_t(memory_mb) << 20;
    spec.limits.file_size_bytes = uint64_t(l.max_file_mb) << 20;
    spec.limits.open_files = uint64_t(l.max_open_files);
    if (as_root_) {
      uint64_t uid =
          uint64_t(config_.uid_base) + (uint64_t(::getpid()) % kUidProcessSlots) * kUidsPerProcess + uid_offset_ + slot;
      spec.uid = spec.gid = int64_t(uid);
      spec.limits.max_processes = uint64_t(l.max_processes);
    }
    spec.timeout_s = timeout_s;
    spec.max_stdout = spec.max_stderr = size_t(l.max_output_kb) << 10;
    spec.find_tracked = find_namespace_init;
    return spec;
  };
  runner_->submit(std::move(build), [done = std::move(done), cpu_limit_s](ProcessOutcome outcome) {
    done(to_result(std::move(outcome), double(cpu_limit_s)));
  });
}

SandboxResult Sandbox::run(SandboxJob job) {
  auto promise = std::make_shared<std::promise<SandboxResult>>();
  std::future<SandboxResult> result = promise->get_future();
  run_async(std::move(job), [promise](SandboxResult r) { promise->set_value(std::move(r)); });
  return result.get();
}

}  // namespace grpo::rewards
