// The reward service in process, over a real loopback port: scoring, auth, size caps, bad
// requests, deadlines, the concurrency limit, concurrent clients, /healthz and /metrics,
// the remote checker, graceful shutdown and TLS.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

#include "core/error.h"
#include "proto/reward.grpc.pb.h"
#include "rewards/combine.h"
#include "rewards/format/format_checker.h"
#include "rewards/service/client.h"
#include "rewards/service/convert.h"
#include "rewards/service/remote_checker.h"
#include "rewards/service/server.h"
#include "test_helpers.h"

namespace grpo::rewards {
namespace {

using namespace std::chrono_literals;
using testing_helpers::http_get;

// Sleeps for the number of milliseconds in the reference, then gives 1; "bad" is malformed.
class SlowChecker final : public RewardChecker {
 public:
  std::string name() const override { return "slow"; }
  ScoreResult score(const ScoreRequest& request) override {
    GRPO_CHECK(request.reference != "bad", "slow: malformed reference \"bad\"");
    int ms = request.reference.empty() ? 0 : std::stoi(request.reference);
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    ScoreResult r;
    r.reward = 1;
    r.reason = "slept";
    r.components.push_back({"slow", 1, 1, "slept"});
    return r;
  }
};

void register_test_checkers(CheckerRegistry& registry) {
  register_format_checker(registry);
  registry.add("slow", "sleeps reference ms", [](ConfigNode&) { return std::make_unique<SlowChecker>(); });
}

const char* kConfig = R"({
  "checkers": {"strict": {"use": "format", "answer_tag": true}},
  "tasks": {"r1": {"format": 0.1, "slow": 1.0}},
  "default": "format"
})";

ScoreItem item(const std::string& checker, const std::string& completion, uint64_t id, const std::string& reference = "") {
  ScoreItem i;
  i.checker = checker;
  i.request.completion = completion;
  i.request.reference = reference;
  i.request.id = id;
  return i;
}

class ServiceTest : public ::testing::Test {
 protected:
  void start(RewardServerOptions options = {}) {
    if (!registry_.has("format")) register_test_checkers(registry_);
    config_ = std::make_unique<ConfigNode>(ConfigNode::from_string(kConfig, "test config"));
    set_ = std::make_unique<RewardSet>(registry_, config_.get());
    options.listen = "127.0.0.1:0";
    options.metrics_listen = "127.0.0.1:0";
    if (options.auth_token.empty()) options.auth_token = "s3cret";
    if (options.handler.threads == 0) options.handler.threads = 4;
    options.max_message_bytes = 1 << 20;
    options.shutdown_grace_s = 10;
    server_ = std::make_unique<RewardServer>(*set_, options);
  }

  RewardClientOptions client_options(const std::string& token = "s3cret") const {
    RewardClientOptions o;
    o.address = server_->address();
    o.token = token;
    o.deadline_s = 30;
    return o;
  }

  // A stub without the client's retry policy, to see raw status codes.
  std::unique_ptr<pb::RewardService::Stub> raw_stub() const {
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(8 << 20);
    auto channel = grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args);
    return pb::RewardService::NewStub(channel);
  }

  grpc::Status raw_score(const std::vector<ScoreItem>& items, pb::ScoreResponse* response, const std::string& token = "s3cret",
                         std::chrono::milliseconds deadline = 30s) const {
    pb::ScoreRequest request;
    for (const ScoreItem& i : items) to_proto(i, request.add_items());
    grpc::ClientContext context;
    if (!token.empty()) context.AddMetadata("authorization", "Bearer " + token);
    context.set_deadline(std::chrono::system_clock::now() + deadline);
    return raw_stub()->Score(&context, request, response);
  }

  void expect_still_serving() const {
    RewardClient client(client_options());
    auto results = client.score({item("format", "<think>a</think>b", 99)});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].result.reason, "ok");
  }

  CheckerRegistry registry_;
  std::unique_ptr<ConfigNode> config_;
  std::unique_ptr<RewardSet> set_;
  std::unique_ptr<RewardServer> server_;
};

TEST_F(ServiceTest, ScoresABatchInOrder) {
  start();
  EXPECT_EQ(server_->address().rfind("127.0.0.1:", 0), 0u) << server_->address();
  RewardClient client(client_options());
  std::vector<ScoreItem> batch;
  for (uint64_t i = 0; i < 30; ++i) {
    if (i % 3 == 0) batch.push_back(item("format", i % 2 ? "no think" : "<think>x</think>y", 1000 + i));
    if (i % 3 == 1) batch.push_back(item("strict", "<think>x</think><answer>y</answer>", 1000 + i));
    if (i % 3 == 2) batch.push_back(item("r1", "<think>x</think>y", 1000 + i, "1"));
  }
  std::vector<ScoredItem> results = client.score(batch);
  ASSERT_EQ(results.size(), batch.size());
  for (uint64_t i = 0; i < 30; ++i) {
    const ScoreResult& r = results[i].result;
    EXPECT_EQ(r.id, 1000 + i);
    EXPECT_GE(results[i].elapsed_ms, 0.0);
    if (i % 3 == 0) {
      EXPECT_EQ(r.reason, i % 2 ? "missing_think" : "ok");
    } else if (i % 3 == 1) {
      EXPECT_EQ(r.extracted, "y");
    } else {
      EXPECT_DOUBLE_EQ(r.reward, 1.1);
      ASSERT_EQ(r.components.size(), 2u);
      EXPECT_EQ(r.components[0].name, "format");
      EXPECT_DOUBLE_EQ(r.components[0].weight, 0.1);
      EXPECT_EQ(r.components[1].name, "slow");
    }
  }
  // The default checker ("format") scores items that name none.
  EXPECT_EQ(client.score({item("", "<think>a</think>b", 1)})[0].result.reason, "ok");
  EXPECT_TRUE(client.score({}).empty());
}

TEST_F(ServiceTest, ListsCheckersAndTasks) {
  start();
  RewardClient client(client_options());
  std::string default_checker;
  std::vector<RemoteCheckerInfo> list = client.list(&default_checker);
  EXPECT_EQ(default_checker, "format");
  std::map<std::string, std::string> kinds;
  for (const auto& c : list) kinds[c.name] = c.kind;
  EXPECT_EQ(kinds["format"], "checker");
  EXPECT_EQ(kinds["strict"], "checker");
  EXPECT_EQ(kinds["r1"], "task");
}

TEST_F(ServiceTest, BearerTokenIsCheckedOnEveryCall) {
  start();
  pb::ScoreResponse response;
  EXPECT_EQ(raw_score({item("format", "x", 1)}, &response, "").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(raw_score({item("format", "x", 1)}, &response, "wrong").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_EQ(raw_score({item("format", "x", 1)}, &response, "s3cre").error_code(), grpc::UNAUTHENTICATED);
  EXPECT_TRUE(raw_score({item("format", "x", 1)}, &response, "s3cret").ok());
  try {
    RewardClient(client_options("nope")).list();
    FAIL() << "ListCheckers without the token succeeded";
  } catch (const RewardClientError& e) {
    EXPECT_EQ(e.code(), "UNAUTHENTICATED");
  }
}

TEST_F(ServiceTest, OversizedMessageIsRefusedAndTheServerGoesOn) {
  start();
  pb::ScoreResponse response;
  grpc::Status status = raw_score({item("format", std::string(2 << 20, 'x'), 1)}, &response);
  EXPECT_EQ(status.error_code(), grpc::RESOURCE_EXHAUSTED) << status.error_message();
  expect_still_serving();
}

TEST_F(ServiceTest, UnknownCheckerIsInvalidArgumentAndTheServerGoesOn) {
  start();
  pb::ScoreResponse response;
  grpc::Status status = raw_score({item("format", "x", 1), item("fromat", "x", 2)}, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("item 1 (id 2)"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("did you mean \"format\""), std::string::npos) << status.error_message();
  EXPECT_EQ(response.results_size(), 0);
  expect_still_serving();
}

TEST_F(ServiceTest, MalformedReferenceIsInvalidArgument) {
  start();
  pb::ScoreResponse response;
  grpc::Status status = raw_score({item("slow", "x", 1, "0"), item("r1", "x", 42, "bad")}, &response);
  EXPECT_EQ(status.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("item 1 (id 42, checker \"r1\")"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("malformed reference"), std::string::npos) << status.error_message();
  expect_still_serving();
}

TEST_F(ServiceTest, DeadlinePassesBeforeTheBatchIsScored) {
  RewardServerOptions options;
  options.handler.threads = 1;
  start(options);
  std::vector<ScoreItem> batch;
  for (int i = 0; i < 10; ++i) batch.push_back(item("slow", "x", i, "200"));
  pb::ScoreResponse response;
  auto started = std::chrono::steady_clock::now();
  grpc::Status status = raw_score(batch, &response, "s3cret", 300ms);
  EXPECT_EQ(status.error_code(), grpc::DEADLINE_EXCEEDED);
  expect_still_serving();
  // The remaining items were skipped, not run (all ten would take 2 s).
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms);
}

TEST_F(ServiceTest, ConcurrencyLimitPushesBack) {
  RewardServerOptions options;
  options.handler.max_concurrency = 2;
  options.handler.threads = 2;
  start(options);
  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < 6; ++i)
    calls.push_back(std::async(std::launch::async, [this] {
      pb::ScoreResponse response;
      return raw_score({item("slow", "x", 1, "1500")}, &response);
    }));
  int ok = 0, busy = 0;
  for (auto& c : calls) {
    grpc::Status s = c.get();
    if (s.ok()) ++ok;
    if (s.error_code() == grpc::RESOURCE_EXHAUSTED) {
      ++busy;
      EXPECT_NE(s.error_message().find("--max-concurrency"), std::string::npos);
    }
  }
  EXPECT_GE(ok, 2);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
  // The client's retry policy turns back-pressure into waiting.
  RewardClient client(client_options());
  std::vector<std::future<size_t>> retried;
  for (int i = 0; i < 3; ++i)
    retried.push_back(std::async(std::launch::async, [&client] { return client.score({item("slow", "x", 1, "100")}).size(); }));
  for (auto& r : retried) EXPECT_EQ(r.get(), 1u);
}

TEST_F(ServiceTest, ConcurrentClients) {
  start();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      RewardClient client(client_options());
      for (int call = 0; call < 15; ++call) {
        std::vector<ScoreItem> batch;
        for (int i = 0; i < 8; ++i) {
          uint64_t id = static_cast<uint64_t>(t * 1000 + call * 10 + i);
          batch.push_back(item(i % 2 ? "format" : "strict", i % 4 < 2 ? "<think>a</think><answer>b</answer>" : "b", id));
        }
        std::vector<ScoredItem> results = client.score(batch);
        for (size_t i = 0; i < batch.size(); ++i)
          if (results[i].result.id != batch[i].request.id || results[i].result.reward != (i % 4 < 2 ? 1.0 : 0.0)) ++failures;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(ServiceTest, HealthAndMetricsOverHttp) {
  start();
  RewardClient client(client_options());
  client.score({item("format", "<think>a</think>b", 1), item("r1", "x", 2, "0")});
  pb::ScoreResponse response;
  raw_score({item("nope", "x", 1)}, &response);

  testing_helpers::HttpResult health = http_get(server_->metrics_address(), "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  testing_helpers::HttpResult metrics = http_get(server_->metrics_address(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.headers.find("text/plain; version=0.0.4"), std::string::npos) << metrics.headers;
  const std::string& m = metrics.body;
  EXPECT_NE(m.find("grpo_reward_requests_total{rpc=\"Score\",code=\"OK\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("grpo_reward_requests_total{rpc=\"Score\",code=\"INVALID_ARGUMENT\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("grpo_reward_items_total{checker=\"format\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("grpo_reward_items_total{checker=\"r1\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("grpo_reward_request_seconds_bucket{rpc=\"Score\",le=\"+Inf\"} 2\n"), std::string::npos) << m;
  EXPECT_NE(m.find("grpo_reward_requests_in_flight 0\n"), std::string::npos) << m;
  EXPECT_EQ(http_get(server_->metrics_address(), "/other").status, 404);
}

TEST_F(ServiceTest, RemoteCheckerForwardsToTheService) {
  start();
  CheckerRegistry registry;
  register_remote_checker(registry);
  nlohmann::json config = {{"checkers",
                            {{"far_format", {{"use", "remote"}, {"address", server_->address()}, {"checker", "strict"}, {"token", "s3cret"}}},
                             {"far_default", {{"use", "remote"}, {"address", server_->address()}, {"token", "s3cret"}}},
                             {"far_typo", {{"use", "remote"}, {"address", server_->address()}, {"checker", "strcit"}, {"token", "s3cret"}}},
                             {"far_no_token", {{"use", "remote"}, {"address", server_->address()}, {"checker", "strict"}}}}}};
  ConfigNode node(config, "remote config");
  RewardSet remote(registry, &node);
  ScoreRequest request;
  request.completion = "<think>a</think><answer>42</answer>";
  request.id = 77;
  ScoreResult r = remote.get("far_format")->score(request);
  EXPECT_EQ(r.reward, 1);
  EXPECT_EQ(r.extracted, "42");
  EXPECT_EQ(r.id, 77u);
  EXPECT_EQ(remote.get("far_default")->score(request).reason, "ok");
  try {
    remote.get("far_typo")->score(request);
    FAIL() << "unknown remote checker scored";
  } catch (const RewardClientError&) {
    FAIL() << "INVALID_ARGUMENT from the remote should be a plain grpo::Error";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("did you mean \"strict\""), std::string::npos) << e.message();
  }
  try {
    remote.get("far_no_token")->score(request);
    FAIL() << "scored without a token";
  } catch (const RewardClientError& e) {
    EXPECT_EQ(e.code(), "UNAUTHENTICATED");
  }

  // A service whose checker is a dead remote answers UNAVAILABLE, not reward 0.
  nlohmann::json dead = {{"checkers", {{"dead", {{"use", "remote"}, {"deadline_s", 20},
                                                  {"address", "127.0.0.1:" + std::to_string(testing_helpers::unused_port())}}}}}};
  ConfigNode dead_node(dead, "dead config");
  RewardSet dead_set(registry, &dead_node);
  RewardHandler handler(dead_set, HandlerOptions{1, 4});
  std::vector<ScoredItem> results;
  Status status = handler.score_sync({item("dead", "x", 1)}, &results);
  EXPECT_EQ(status.code, StatusCode::unavailable) << status.message;
  EXPECT_TRUE(results.empty());

  ConfigNode missing = ConfigNode::from_string(R"({"checkers": {"r": {"use": "remote"}}})", "cfg");
  EXPECT_THROW(RewardSet(registry, &missing), Error);
}

TEST_F(ServiceTest, ShutdownFinishesInFlightCalls) {
  start();
  auto call = std::async(std::launch::async, [this] {
    pb::ScoreResponse response;
    grpc::Status s = raw_score({item("slow", "x", 1, "500"), item("slow", "x", 2, "500")}, &response);
    return std::make_pair(s, response.results_size());
  });
  for (int i = 0; i < 1000 && server_->handler().in_flight() == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(server_->handler().in_flight(), 1);
  std::string metrics_address = server_->metrics_address();
  server_->shutdown();
  auto [status, n] = call.get();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(n, 2);
  pb::ScoreResponse response;
  EXPECT_FALSE(raw_score({item("format", "x", 1)}, &response, "s3cret", 2s).ok());
  EXPECT_NE(http_get(metrics_address, "/healthz").status, 200);  // the HTTP listener is gone too
  server_->shutdown();                                         // idempotent
}

TEST(RewardHandler, EmptyBatchAndInvalidUtf8) {
  CheckerRegistry registry;
  register_format_checker(registry);
  RewardSet set(registry, nullptr);
  RewardHandler handler(set, HandlerOptions{2, 4});
  std::vector<ScoredItem> results;
  EXPECT_TRUE(handler.score_sync({}, &results).ok());
  EXPECT_TRUE(results.empty());

  EXPECT_EQ(valid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(valid_utf8("\xC3\xA9t\xC3\xA9"), "\xC3\xA9t\xC3\xA9");
  EXPECT_EQ(valid_utf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(valid_utf8("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // truncated sequence
  EXPECT_EQ(valid_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(valid_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");       // overlong
}

TEST_F(ServiceTest, InvalidUtf8CompletionsAreScored) {
  start();
  RewardClient client(client_options());
  std::vector<ScoredItem> r = client.score({item("format", "<think>\xFF\xFE</think>\x80 answer", 1)});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].result.reason, "ok");
  EXPECT_EQ(r[0].result.extracted, "\xEF\xBF\xBD answer");
}

TEST_F(ServiceTest, Tls) {
  if (std::system("openssl version > /dev/null 2>&1") != 0) GTEST_SKIP() << "openssl command not found";
  std::string dir = ::testing::TempDir() + "/grpo_tls_" + std::to_string(::getpid());
  std::string cmd = "mkdir -p " + dir + " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost " +
                    "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " + dir + "/key.pem -out " + dir +
                    "/cert.pem > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  RewardServerOptions options;
  options.tls_cert_file = dir + "/cert.pem";
  options.tls_key_file = dir + "/key.pem";
  start(options);
  RewardClientOptions tls = client_options();
  tls.tls = true;
  tls.tls_ca_file = dir + "/cert.pem";
  tls.tls_server_name = "localhost";
  EXPECT_EQ(RewardClient(tls).score({item("format", "<think>a</think>b", 1)})[0].result.reason, "ok");
  RewardClientOptions plain = client_options();
  plain.deadline_s = 3;
  EXPECT_THROW(RewardClient(plain).score({item("format", "x", 1)}), RewardClientError);
  std::system(("rm -rf " + dir).c_str());

  RewardServerOptions half;
  half.tls_cert_file = "cert.pem";
  EXPECT_THROW(start(half), Error);
}

}  // namespace
}  // namespace grpo::rewards
