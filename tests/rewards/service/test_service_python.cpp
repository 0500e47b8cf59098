// examples/python_reward_server: a Python process serving proto/reward.proto, used as a
// "remote" checker directly and behind `grpo`'s own service. Skips when Debian's
// python3-grpcio / python3-grpc-tools are missing.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/error.h"
#include "rewards/combine.h"
#include "rewards/format/format_checker.h"
#include "rewards/service/client.h"
#include "rewards/service/remote_checker.h"
#include "rewards/service/server.h"
#include "test_helpers.h"

namespace grpo::rewards {
namespace {

constexpr const char* kPython = "/usr/bin/python3";

ScoreRequest request(const std::string& completion, const std::string& reference, uint64_t id) {
  ScoreRequest r;
  r.completion = completion;
  r.reference = reference;
  r.id = id;
  return r;
}

TEST(PythonRewardServer, ScoresThroughTheRemoteCheckerAndTheService) {
  if (std::system("/usr/bin/python3 -c 'import grpc, grpc_tools.protoc, google.protobuf' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "python3-grpcio / python3-grpc-tools / python3-protobuf are not installed for /usr/bin/python3 "
                    "(apt-get install python3-grpcio python3-grpc-tools python3-protobuf)";
  testing_helpers::ChildProcess python({kPython, GRPO_SOURCE_DIR "/examples/python_reward_server/server.py", "--listen",
                                        "127.0.0.1:0", "--proto", GRPO_SOURCE_DIR "/proto"});
  std::string line = python.read_line(60);
  std::smatch m;
  ASSERT_TRUE(std::regex_match(line, m, std::regex("^listening on (127\\.0\\.0\\.1:[0-9]+)$"))) << "first line: " << line;
  std::string address = m[1];

  // 1. Directly, as "remote" checkers in a reward config, and in a task with a C++ checker.
  CheckerRegistry registry;
  register_format_checker(registry);
  register_remote_checker(registry);
  nlohmann::json config = {
      {"checkers",
       {{"py_exact", {{"use", "remote"}, {"address", address}, {"checker", "exact_match"}, {"deadline_s", 30}}},
        {"py_contains", {{"use", "remote"}, {"address", address}, {"checker", "contains"}, {"deadline_s", 30}}},
        {"py_typo", {{"use", "remote"}, {"address", address}, {"checker", "exact_mtch"}, {"deadline_s", 30}}}}},
      {"tasks", {{"py_task", {{"py_exact", 1.0}, {"format", 0.25}}}}}};
  ConfigNode node(config, "python test config");
  RewardSet set(registry, &node);

  ScoreResult exact = set.get("py_exact")->score(request("Let me see.\n\n  42 \n", "42", 7));
  EXPECT_EQ(exact.reward, 1);
  EXPECT_EQ(exact.reason, "correct");
  EXPECT_EQ(exact.extracted, "42");
  EXPECT_EQ(exact.id, 7u);
  EXPECT_EQ(set.get("py_exact")->score(request("41", "42", 8)).reason, "wrong");
  EXPECT_EQ(set.get("py_contains")->score(request("a needle here", "needle", 9)).reward, 1);
  ScoreResult task = set.get("py_task")->score(request("<think>hm</think>\n42", "42", 10));
  EXPECT_DOUBLE_EQ(task.reward, 1.25);
  ASSERT_EQ(task.components.size(), 2u);
  EXPECT_EQ(task.components[1].name, "py_exact");
  EXPECT_THROW(set.get("py_typo")->score(request("x", "y", 1)), Error);        // INVALID_ARGUMENT from Python
  EXPECT_THROW(set.get("py_contains")->score(request("x", "", 1)), Error);     // malformed reference

  // 2. Behind grpo's own service: a client -> C++ service -> Python server.
  RewardServerOptions options;
  options.listen = "127.0.0.1:0";
  options.handler.threads = 4;
  RewardServer server(set, options);
  RewardClientOptions client_options;
  client_options.address = server.address();
  client_options.deadline_s = 30;
  RewardClient client(client_options);
  std::vector<ScoreItem> batch;
  for (uint64_t i = 0; i < 16; ++i) batch.push_back(ScoreItem{"py_task", request("<think>a</think>\n" + std::to_string(i), "3", i)});
  std::vector<ScoredItem> results = client.score(batch);
  ASSERT_EQ(results.size(), 16u);
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_EQ(results[i].result.id, i);
    EXPECT_DOUBLE_EQ(results[i].result.reward, i == 3 ? 1.25 : 0.25) << i;
  }
  try {
    client.score({ScoreItem{"py_typo", request("x", "y", 5)}});
    ADD_FAILURE() << "unknown Python checker scored";
  } catch (const RewardClientError& e) {
    EXPECT_EQ(e.code(), "INVALID_ARGUMENT");
    EXPECT_NE(e.message().find("unknown checker \"exact_mtch\""), std::string::npos) << e.message();
  }
  server.shutdown();

  python.send_signal(SIGTERM);
  EXPECT_EQ(python.wait(30), 0);
}

}  // namespace
}  // namespace grpo::rewards
