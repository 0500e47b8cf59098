#include "rewards/service/client.h"
#include "rewards/service/grpc_util.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "proto/reward.grpc.pb.h"
#include "rewards/service/convert.h"

namespace grpo::rewards {

namespace {

// Retries a busy (RESOURCE_EXHAUSTED) or unreachable (UNAVAILABLE) server with backoff, within
// the call's deadline. gRPC applies this policy transparently.
constexpr const char* kServiceConfig = R"({
  "methodConfig": [{
    "name": [{"service": "grpo.reward.v1.RewardService"}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "2s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
    }
  }]
})";


std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), what << " " << path << ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

struct RewardClient::Impl {
  RewardClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::RewardService::Stub> stub;

  void prepare(grpc::ClientContext& context) const {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::duration_cast<std::chrono::system_clock::duration>(
                             std::chrono::duration<double>(options.deadline_s)));
    if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
  }

  [[noreturn]] void fail(const char* rpc, const grpc::Status& status) const {
    const char* code = grpc_code_name(status.error_code());
    throw RewardClientError(code, "reward server " + options.address + ": " + rpc + " failed: " + code + ": " +
                                      status.error_message());
  }
};

RewardClient::RewardClient(const RewardClientOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  GRPO_CHECK(!options.address.empty(), "reward client: an \"address\" (host:port) is needed");
  GRPO_CHECK(options.deadline_s > 0, "reward client: \"deadline_s\" must be positive");
  GRPO_CHECK(options.max_message_bytes > 0 && options.max_message_bytes <= INT32_MAX,
             "reward client: \"max_message_bytes\" must be in 1.." << INT32_MAX);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetServiceConfigJSON(kServiceConfig);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls) {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) ssl.pem_root_certs = read_file(options.tls_ca_file, "\"tls_ca_file\"");
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  } else {
    GRPO_CHECK(options.tls_ca_file.empty() && options.tls_server_name.empty(),
               "reward client: \"tls_ca_file\" / \"tls_server_name\" need \"tls\": true");
    credentials = grpc::InsecureChannelCredentials();
  }
  impl_->channel = grpc::CreateCustomChannel(options.address, credentials, args);
  impl_->stub = pb::RewardService::NewStub(impl_->channel);
}

RewardClient::~RewardClient() = default;

const std::string& RewardClient::address() const { return impl_->options.address; }

std::vector<ScoredItem> RewardClient::score(const std::vector<ScoreItem>& items) const {
  pb::ScoreRequest request;
  request.mutable_items()->Reserve(static_cast<int>(items.size()));
  for (const ScoreItem& item : items) to_proto(item, request.add_items());
  pb::ScoreResponse response;
  grpc::ClientContext context;
  impl_->prepare(context);
  grpc::Status status = impl_->stub->Score(&context, request, &response);
  if (!status.ok()) impl_->fail("Score", status);
  if (static_cast<size_t>(response.results_size()) != items.size())
    throw RewardClientError("INTERNAL", "reward server " + impl_->options.address + ": answered " +
                                            std::to_string(response.results_size()) + " results for " +
                                            std::to_string(items.size()) + " items");
  std::vector<ScoredItem> out;
  out.reserve(items.size());
  for (const pb::ScoreResult& r : response.results()) out.push_back(from_proto(r));
  return out;
}

std::vector<RemoteCheckerInfo> RewardClient::list(std::string* default_checker) const {
  pb::ListCheckersRequest request;
  pb::ListCheckersResponse response;
  grpc::ClientContext context;
  impl_->prepare(context);
  grpc::Status status = impl_->stub->ListCheckers(&context, request, &response);
  if (!status.ok()) impl_->fail("ListCheckers", status);
  if (default_checker) *default_checker = response.default_checker();
  std::vector<RemoteCheckerInfo> out;
  for (const pb::CheckerInfo& c : response.checkers()) out.push_back(RemoteCheckerInfo{c.name(), c.kind(), c.description()});
  return out;
}

const char* grpc_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::UNKNOWN: return "UNKNOWN";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::ABORTED: return "ABORTED";
    case grpc::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::INTERNAL: return "INTERNAL";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN";
  }
}

}  // namespace grpo::rewards
