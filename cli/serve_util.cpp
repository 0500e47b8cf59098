#include "cli/serve_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace grpo::cli {

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), "--auth-token-file " << path << ": cannot open file");
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  GRPO_CHECK(!token.empty(), "--auth-token-file " << path << ": the file is empty");
  GRPO_CHECK(token.find_first_of(" \t\r\n") == std::string::npos, "--auth-token-file " << path << ": the token has whitespace");
  return token;
}

namespace {
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int signal) {
  unsigned char byte = static_cast<unsigned char>(signal);
  ssize_t ignored = write(g_signal_pipe[1], &byte, 1);
  (void)ignored;
}
}  // namespace

void install_stop_handlers() {
  if (g_signal_pipe[0] < 0) GRPO_CHECK(pipe2(g_signal_pipe, O_CLOEXEC) == 0, "serve: cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int wait_for_stop_signal() {
  unsigned char byte = SIGTERM;
  for (;;) {
    ssize_t n = read(g_signal_pipe[0], &byte, 1);
    if (n == 1 || n == 0 || (n < 0 && errno != EINTR)) break;
  }
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return byte;
}

}  // namespace grpo::cli
