// `grpo rollout serve` as child processes: two workers on port 0 behind a RolloutPool, one
// killed (SIGKILL) mid-request, every group still comes back (retried on the other) and equals
// the in-process engine's; bad starts are one clear line; SIGTERM stops a worker cleanly.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <regex>
#include <set>

#include "service_test_util.h"
#include "tests/rewards/service/test_helpers.h"

namespace grpo::rollout {
namespace {

using rewards::testing_helpers::ChildProcess;

// The address from the first stdout line, or "" (with the line in `why`).
std::string listening_address(ChildProcess& child, std::string* why) {
  std::string line = child.read_line(60);
  std::smatch m;
  static const std::regex pattern("^listening on (127\\.0\\.0\\.1:[0-9]+)$");
  if (std::regex_match(line, m, pattern)) return m[1];
  *why = "first line: \"" + line + "\"";
  return "";
}

std::vector<std::string> serve_argv(const std::string& model, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {GRPO_BINARY, "rollout", "serve", "--model", model, "--listen", "127.0.0.1:0",
                                   "--kv-memory", "32M", "--device", "cpu"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

TEST(RolloutServeCli, PoolRetriesTheGroupsOfAKilledWorker) {
  const std::string dir = test::tiny_model_dir("cli", 21);
  const std::string token_file = ::testing::TempDir() + "/grpo_rollout_token";
  std::ofstream(token_file) << "t0ken\n";
  ChildProcess a(serve_argv(dir, {"--auth-token-file", token_file}));
  ChildProcess b(serve_argv(dir, {"--auth-token-file", token_file}));
  std::string why;
  const std::string address_a = listening_address(a, &why);
  ASSERT_FALSE(address_a.empty()) << why;
  const std::string address_b = listening_address(b, &why);
  ASSERT_FALSE(address_b.empty()) << why;

  // Twelve groups of different lengths (no stops), so they finish one after another.
  std::vector<PromptRequest> prompts;
  for (int i = 0; i < 12; ++i) {
    PromptRequest p;
    p.id = 100 + uint64_t(i);
    p.tokens = {int32_t(3 + i), 40, 41};
    p.sampling.n = 2;
    p.sampling.seed = uint64_t(i);
    p.sampling.max_new_tokens = 16 + 24 * i;
    prompts.push_back(p);
  }
  RolloutPoolOptions options;
  options.client.token = "t0ken";
  options.client.deadline_s = 120;
  options.max_groups_per_call = 2;
  RolloutPool pool({address_a, address_b}, options);

  // The first group's worker is killed as soon as that group arrives: it still has groups
  // running, which must come back from the other worker.
  std::string killed;
  std::vector<RemoteGroup> got;
  std::set<std::string> workers_used;
  pool.generate(prompts, [&](RemoteGroup g) {
    workers_used.insert(g.worker);
    if (killed.empty()) {
      killed = g.worker;
      (killed == address_a ? a : b).send_signal(SIGKILL);
    }
    got.push_back(std::move(g));
  });
  ASSERT_EQ(got.size(), prompts.size());
  EXPECT_EQ(workers_used.size(), 2u);  // spread over both
  EXPECT_GT(pool.retried_groups(), 0);
  for (const PoolWorkerState& w : pool.workers()) {
    EXPECT_EQ(w.down, w.address == killed) << w.address;
    EXPECT_EQ(w.outstanding, 0) << w.address;
  }

  // Every group as the in-process engine generates it, whichever worker answered.
  std::unique_ptr<test::LocalEngine> reference = test::load_engine(dir);
  std::vector<GroupResult> want = test::reference_groups(*reference, prompts);
  std::sort(got.begin(), got.end(), [](const RemoteGroup& x, const RemoteGroup& y) { return x.result.id < y.result.id; });
  for (size_t i = 0; i < want.size(); ++i) test::expect_same_group(want[i], got[i], *reference->tokenizer);

  // The survivor serves on, and stops cleanly on SIGTERM; the killed one is reaped.
  ChildProcess& survivor = killed == address_a ? b : a;
  EXPECT_EQ(pool.generate({prompts[0]}).size(), 1u);
  survivor.send_signal(SIGTERM);
  EXPECT_EQ(survivor.wait(60), 0);
  EXPECT_EQ((killed == address_a ? a : b).wait(60), 128 + SIGKILL);
  std::remove(token_file.c_str());
}

TEST(RolloutServeCli, EveryWorkerDownIsUnavailable) {
  const std::string dir = test::tiny_model_dir("cli", 21);
  ChildProcess a(serve_argv(dir));
  std::string why;
  const std::string address = listening_address(a, &why);
  ASSERT_FALSE(address.empty()) << why;
  a.send_signal(SIGKILL);
  a.wait(60);
  RolloutPoolOptions options;
  options.client.deadline_s = 10;
  RolloutPool pool({address}, options);
  PromptRequest p;
  p.tokens = {1, 2};
  try {
    pool.generate({p});
    ADD_FAILURE() << "generated without a worker";
  } catch (const RolloutClientError& e) {
    EXPECT_EQ(e.code(), "UNAVAILABLE") << e.what();
    EXPECT_NE(e.message().find("every worker is down"), std::string::npos) << e.message();
  }
}

TEST(RolloutServeCli, BadStartIsOneClearError) {
  const std::string dir = test::tiny_model_dir("cli", 21);
  struct Case {
    std::vector<std::string> args;
    int exit_code;
    const char* message;
  };
  const Case cases[] = {
      {{"--model", "/nonexistent/model"}, 1, "--model /nonexistent/model: no such directory"},
      {{"--model", dir, "--listen", "nonsense"}, 1, "--listen \"nonsense\": expected HOST:PORT"},
      {{"--model", dir, "--kv-memory", "lots"}, 2, "--kv-memory"},
      {{"--model", dir, "--max-batch", "0"}, 2, "--max-batch"},
      {{"--model", dir, "--device", "tpu"}, 1, "tpu"},
      {{"--model", dir, "--device", "cpu", "--dtype", "bf16"}, 1, "dtype bf16: the cpu backend computes in f32 only"},
      {{"--model", dir, "--dtype", "f16"}, 2, "--dtype"},
      {{"--model", dir, "--auth-token-file", "/nonexistent/token"}, 1, "--auth-token-file /nonexistent/token: cannot open file"},
      {{"--listen", "127.0.0.1:0"}, 2, "--model is required"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {GRPO_BINARY, "rollout", "serve"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    if (c.args[0] == "--model" && c.args.size() == 2) argv.insert(argv.end(), {"--listen", "127.0.0.1:0"});
    ChildProcess child(argv, /*merge_stderr=*/true);
    std::string out = child.read_all(60);
    EXPECT_EQ(child.wait(60), c.exit_code) << out;
    EXPECT_NE(out.find(c.message), std::string::npos) << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
    EXPECT_EQ(out.rfind("grpo: error: ", 0), 0u) << out;
  }
}

TEST(RolloutServeCli, MetricsListenerAndStatus) {
  const std::string dir = test::tiny_model_dir("cli", 21);
  const std::string metrics = "127.0.0.1:" + std::to_string(rewards::testing_helpers::unused_port());
  ChildProcess child(serve_argv(dir, {"--metrics-listen", metrics, "--max-batch", "4", "--dtype", "f32"}));
  std::string why;
  const std::string address = listening_address(child, &why);
  ASSERT_FALSE(address.empty()) << why;
  RolloutClientOptions o;
  o.address = address;
  RolloutClient client(o);
  WorkerStatus s = client.status();
  EXPECT_EQ(s.model_type, "qwen3_moe");
  EXPECT_TRUE(s.has_tokenizer);
  EXPECT_EQ(s.device, "cpu");
  auto health = rewards::testing_helpers::http_get(metrics, "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_NE(rewards::testing_helpers::http_get(metrics, "/metrics").body.find("grpo_rollout_policy_version 0\n"),
            std::string::npos);
  child.send_signal(SIGINT);
  EXPECT_EQ(child.wait(60), 0);
}

}  // namespace
}  // namespace grpo::rollout
