#include "cli/serve_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/config.h"
#include "core/error.h"

namespace grpo::cli {

void apply_set(nlohmann::json& root, const std::string& kv) {
  const size_t eq = kv.find('=');
  GRPO_CHECK(eq != std::string::npos && eq > 0, "--set " << kv << ": expected KEY=VALUE");
  const std::string key = kv.substr(0, eq), text = kv.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;
  nlohmann::json* node = &root;
  size_t start = 0;
  for (size_t dot; (dot = key.find('.', start)) != std::string::npos; start = dot + 1) {
    node = &(*node)[key.substr(start, dot - start)];
    GRPO_CHECK(node->is_null() || node->is_object(), "--set " << key << ": " << key.substr(0, dot) << " is not an object");
  }
  (*node)[key.substr(start)] = value;
}


std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), "--auth-token-file " << path << ": cannot open file");
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  GRPO_CHECK(!token.empty(), "--auth-token-file " << path << ": the file is empty");
  GRPO_CHECK(token.find_first_of(" \t\r\n") == std::string::npos, "--auth-token-file " << path << ": the token has whitespace");
  return token;
}

nlohmann::json load_run_config(const std::string& command, const std::string& config, const std::string& resume,
                               const std::vector<std::string>& sets, std::string* source) {
  GRPO_CHECK(!config.empty() || !resume.empty(), command << ": give a CONFIG file or --resume RUN_DIR");
  *source = config;
  if (source->empty()) {
    *source = (std::filesystem::path(resume) / "config.json").string();
    GRPO_CHECK(std::filesystem::is_regular_file(*source), "--resume " << resume << ": no config.json in it");
  }
  nlohmann::json raw = load_json_file(*source);
  GRPO_CHECK(raw.is_object(), *source << ": expected a JSON object");
  for (const std::string& s : sets) apply_set(raw, s);
  if (!resume.empty()) {
    GRPO_CHECK(config.empty() || !raw.contains("run_dir") || raw["run_dir"] == resume,
               "--resume " << resume << " but " << config << " has run_dir " << raw["run_dir"].dump());
    raw["run_dir"] = resume;
  }
  return raw;
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

void wake_stop_waiter() {
  unsigned char byte = 0;
  ssize_t ignored = write(g_signal_pipe[1], &byte, 1);
  (void)ignored;
}

int wait_for_stop_signal() {
  unsigned char byte = SIGTERM;
  for (;;) {
    ssize_t n = read(g_signal_pipe[0], &byte, 1);
    if (n == 1 || n == 0 || (n < 0 && errno != EINTR)) break;
  }
  if (byte == 0) return 0;  // woken, not signalled: the handlers stay
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  return byte;
}

}  // namespace grpo::cli
