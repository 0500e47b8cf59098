#include "rewards/service/remote_checker.h"

#include <fstream>
#include <sstream>

namespace grpo::rewards {

namespace {

class RemoteChecker final : public RewardChecker {
 public:
  RemoteChecker(const RewardClientOptions& options, std::string remote_checker)
      : client_(options), remote_checker_(std::move(remote_checker)) {}

  std::string name() const override { return "remote"; }

  ScoreResult score(const ScoreRequest& request) override {
    std::vector<ScoreItem> batch{ScoreItem{remote_checker_, request}};
    std::vector<ScoredItem> scored;
    try {
      scored = client_.score(batch);
    } catch (const RewardClientError& e) {
      if (e.code() == "INVALID_ARGUMENT") throw Error(e.message());  // the caller's mistake
      throw;
    }
    ScoreResult result = std::move(scored[0].result);
    result.id = request.id;
    return result;
  }

 private:
  RewardClient client_;
  std::string remote_checker_;
};

std::string read_token(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), "\"token_file\" " << path << ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string token = ss.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  GRPO_CHECK(!token.empty(), "\"token_file\" " << path << ": empty");
  return token;
}

}  // namespace

std::unique_ptr<RewardChecker> make_remote_checker(const RewardClientOptions& options, const std::string& remote_checker) {
  return std::make_unique<RemoteChecker>(options, remote_checker);
}

void register_remote_checker(CheckerRegistry& registry) {
  registry.add("remote", "forwards to a server of proto/reward.proto (options: address, checker, token_file, deadline_s, tls)",
               [](ConfigNode& config) {
                 RewardClientOptions options;
                 options.address = config.require<std::string>("address");
                 std::string remote_checker = config.get<std::string>("checker", "");
                 options.token = config.get<std::string>("token", "");
                 std::string token_file = config.get<std::string>("token_file", "");
                 GRPO_CHECK(options.token.empty() || token_file.empty(), "give \"token\" or \"token_file\", not both");
                 if (!token_file.empty()) options.token = read_token(token_file);
                 options.deadline_s = config.get<double>("deadline_s", options.deadline_s);
                 options.max_message_bytes = config.get<int64_t>("max_message_bytes", options.max_message_bytes);
                 options.tls = config.get<bool>("tls", options.tls);
                 options.tls_ca_file = config.get<std::string>("tls_ca_file", "");
                 options.tls_server_name = config.get<std::string>("tls_server_name", "");
                 return make_remote_checker(options, remote_checker);
               });
}

}  // namespace grpo::rewards
