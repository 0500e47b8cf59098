// Helpers of the reward service tests: child processes with a stdout pipe, and a minimal
// HTTP GET over a loopback socket.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace grpo::rewards::testing_helpers {

class ChildProcess {
 public:
  // Starts argv[0] (a path) with stdout on a pipe; stderr too when `merge_stderr`.
  explicit ChildProcess(const std::vector<std::string>& argv, bool merge_stderr = false);
  ~ChildProcess();  // SIGKILL and reap when still running
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // The next line of output without its newline; "" on EOF or after `timeout_s` seconds.
  std::string read_line(double timeout_s);
  // Everything up to EOF (or `timeout_s`).
  std::string read_all(double timeout_s);
  void send_signal(int signal);
  // Exit status (128 + signal when killed by one), or -1 if still running after `timeout_s`.
  int wait(double timeout_s);
  pid_t pid() const { return pid_; }

 private:
  bool fill(double timeout_s);  // reads more output into buffer_; false on EOF/timeout
  pid_t pid_ = -1;
  int fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string buffer_;
};

struct HttpResult {
  int status = 0;
  std::string headers;
  std::string body;
};

// GET http://HOST:PORT/path (IPv4 host); status 0 when the connection fails.
HttpResult http_get(const std::string& host_port, const std::string& path);

// A TCP port on 127.0.0.1 that nothing listens on (bound and released).
int unused_port();

}  // namespace grpo::rewards::testing_helpers
