// `grpo reward serve` as a child process: prints `listening on HOST:PORT` first, serves
// checkers from --plugin and --config with a bearer token, exposes /healthz, and stops
// cleanly on SIGTERM / SIGINT.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <regex>

#include "rewards/service/client.h"
#include "test_helpers.h"

namespace grpo::rewards {
namespace {

using testing_helpers::ChildProcess;

std::string write_temp(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

ScoreItem item(const std::string& checker, const std::string& completion, uint64_t id, const std::string& reference = "") {
  ScoreItem i;
  i.checker = checker;
  i.request.completion = completion;
  i.request.reference = reference;
  i.request.id = id;
  return i;
}

// The address from the first stdout line, or "" (with the output in `why`).
std::string listening_address(ChildProcess& child, std::string* why) {
  std::string line = child.read_line(60);
  std::smatch m;
  static const std::regex pattern("^listening on (127\\.0\\.0\\.1:[0-9]+)$");
  if (std::regex_match(line, m, pattern)) return m[1];
  *why = "first line: \"" + line + "\"";
  return "";
}

TEST(RewardServeCli, ServesAndStopsOnSignal) {
  std::string token = write_temp("grpo_serve_token", "tok3n\n");
  std::string config = write_temp("grpo_serve_config.json", R"({
    "checkers": {"length_penalty": {"target_chars": 5, "max_chars": 10}},
    "tasks": {"kw_fmt": {"keyword": 1.0, "format": 0.5}}
  })");
  for (int signal : {SIGTERM, SIGINT}) {
    ChildProcess child({GRPO_BINARY, "reward", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
                        "--plugin", GRPO_EXAMPLE_PLUGIN, "--config", config, "--auth-token-file", token, "--threads", "2"});
    std::string why;
    std::string address = listening_address(child, &why);
    ASSERT_FALSE(address.empty()) << why;

    RewardClientOptions options;
    options.address = address;
    options.token = "tok3n";
    options.deadline_s = 30;
    RewardClient client(options);
    std::vector<ScoredItem> r = client.score({item("format", "<think>a</think>b", 1),
                                              item("keyword", "the cat sat", 2, "cat\ndog"),
                                              item("kw_fmt", "<think>a</think>dog", 3, "dog"),
                                              item("length_penalty", "1234567", 4)});
    ASSERT_EQ(r.size(), 4u);
    EXPECT_EQ(r[0].result.reason, "ok");
    EXPECT_DOUBLE_EQ(r[1].result.reward, 0.5);
    EXPECT_DOUBLE_EQ(r[2].result.reward, 1.5);
    EXPECT_DOUBLE_EQ(r[3].result.reward, 0.6);
    std::vector<RemoteCheckerInfo> list = client.list();
    bool has_task = false;
    for (const auto& c : list) has_task |= c.name == "kw_fmt" && c.kind == "task";
    EXPECT_TRUE(has_task);

    options.token = "wrong";
    try {
      RewardClient(options).score({item("format", "x", 1)});
      ADD_FAILURE() << "wrong token accepted";
    } catch (const RewardClientError& e) {
      EXPECT_EQ(e.code(), "UNAUTHENTICATED");
    }

    child.send_signal(signal);
    EXPECT_EQ(child.wait(30), 0) << "signal " << signal;
  }
}

TEST(RewardServeCli, MetricsListenerAnswers) {
  int port = testing_helpers::unused_port();
  std::string metrics = "127.0.0.1:" + std::to_string(port);
  ChildProcess child({GRPO_BINARY, "reward", "serve", "--listen", "127.0.0.1:0", "--metrics-listen", metrics});
  std::string why;
  ASSERT_FALSE(listening_address(child, &why).empty()) << why;
  testing_helpers::HttpResult health = testing_helpers::http_get(metrics, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_NE(testing_helpers::http_get(metrics, "/metrics").body.find("grpo_reward_requests_in_flight 0"), std::string::npos);
  child.send_signal(SIGTERM);
  EXPECT_EQ(child.wait(30), 0);
}

TEST(RewardServeCli, BadStartIsOneClearError) {
  struct Case {
    std::vector<std::string> args;
    const char* message;
  };
  std::string bad_config = write_temp("grpo_serve_bad.json", R"({"tasks": {"t": {"fromat": 1}}})");
  const Case cases[] = {
      {{"--listen", "nonsense"}, "--listen \"nonsense\": expected HOST:PORT"},
      {{"--plugin", "/nonexistent/lib.so"}, "/nonexistent/lib.so: no such file"},
      {{"--config", bad_config}, "grpo_serve_bad.json: reward config \"tasks.t\": unknown checker \"fromat\""},
      {{"--auth-token-file", "/nonexistent/token"}, "--auth-token-file /nonexistent/token: cannot open file"},
      {{"--tls-cert", "/nonexistent/cert.pem"}, "--tls-cert and --tls-key go together"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {GRPO_BINARY, "reward", "serve"};
    if (c.args[0] != "--listen") argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ChildProcess child(argv, /*merge_stderr=*/true);
    std::string out = child.read_all(30);
    EXPECT_EQ(child.wait(30), 1) << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << out;
    EXPECT_EQ(out.find("listening on"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace grpo::rewards
