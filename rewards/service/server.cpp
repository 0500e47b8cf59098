#include "rewards/service/server.h"
#include "rewards/service/grpc_util.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "proto/reward.grpc.pb.h"
#include "rewards/service/convert.h"
#include "rewards/service/http_server.h"

namespace grpo::rewards {

namespace {

using SteadyClock = std::chrono::steady_clock;

grpc::StatusCode to_grpc(StatusCode code) {
  switch (code) {
    case StatusCode::ok: return grpc::OK;
    case StatusCode::invalid_argument: return grpc::INVALID_ARGUMENT;
    case StatusCode::unauthenticated: return grpc::UNAUTHENTICATED;
    case StatusCode::resource_exhausted: return grpc::RESOURCE_EXHAUSTED;
    case StatusCode::deadline_exceeded: return grpc::DEADLINE_EXCEEDED;
    case StatusCode::cancelled: return grpc::CANCELLED;
    case StatusCode::unavailable: return grpc::UNAVAILABLE;
    case StatusCode::internal: return grpc::INTERNAL;
  }
  return grpc::UNKNOWN;
}

std::string read_file(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), flag << " " << path << ": cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Compares without an early exit, so the time taken does not leak how much of a token matched.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i % (b.empty() ? 1 : b.size())]);
  return diff == 0 && !b.empty();
}

// The reactor of one unary call: remembers a cancellation for the handler, frees itself.
class CallReactor final : public grpc::ServerUnaryReactor {
 public:
  std::shared_ptr<std::atomic<bool>> cancelled = std::make_shared<std::atomic<bool>>(false);
  void OnCancel() override { cancelled->store(true); }
  void OnDone() override { delete this; }
};

// The thin adapter: gRPC messages in, RewardHandler, gRPC messages out.
class Service final : public pb::RewardService::CallbackService {
 public:
  Service(RewardHandler& handler, RewardMetrics& metrics, std::string token, const std::atomic<bool>& accepting)
      : handler_(handler),
        metrics_(metrics),
        expected_authorization_(token.empty() ? "" : "Bearer " + token),
        accepting_(accepting) {}

  grpc::ServerUnaryReactor* Score(grpc::CallbackServerContext* context, const pb::ScoreRequest* request,
                                  pb::ScoreResponse* response) override {
    auto start = SteadyClock::now();
    auto* reactor = new CallReactor();
    if (Status refused = admit(context); !refused.ok()) {
      finish(reactor, "Score", start, refused);
      return reactor;
    }
    std::vector<ScoreItem> items;
    items.reserve(request->items_size());
    for (const pb::ScoreItem& item : request->items()) items.push_back(from_proto(item));

    RewardHandler::Call call;
    call.cancelled = reactor->cancelled;
    auto deadline = context->deadline();
    if (deadline != std::chrono::system_clock::time_point::max()) {
      auto left = deadline - std::chrono::system_clock::now();
      call.deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(left);
    }
    handler_.score(std::move(items), call, [this, reactor, response, start](Status status, std::vector<ScoredItem> results) {
      if (status.ok()) {
        response->mutable_results()->Reserve(static_cast<int>(results.size()));
        for (const ScoredItem& r : results) to_proto(r, response->add_results());
      }
      finish(reactor, "Score", start, status);
    });
    return reactor;
  }

  grpc::ServerUnaryReactor* ListCheckers(grpc::CallbackServerContext* context, const pb::ListCheckersRequest*,
                                         pb::ListCheckersResponse* response) override {
    auto start = SteadyClock::now();
    auto* reactor = new CallReactor();
    if (Status refused = admit(context); !refused.ok()) {
      finish(reactor, "ListCheckers", start, refused);
      return reactor;
    }
    for (const RewardSet::Entry& e : handler_.list()) {
      pb::CheckerInfo* info = response->add_checkers();
      info->set_name(valid_utf8(e.name));
      info->set_kind(e.kind);
      info->set_description(valid_utf8(e.description));
    }
    response->set_default_checker(handler_.default_checker());
    finish(reactor, "ListCheckers", start, Status{});
    return reactor;
  }

 private:
  Status admit(const grpc::CallbackServerContext* context) const {
    if (!authorized(context)) return Status{StatusCode::unauthenticated, "missing or wrong bearer token"};
    if (!accepting_.load()) return Status{StatusCode::unavailable, "the reward service is shutting down"};
    return Status{};
  }

  bool authorized(const grpc::CallbackServerContext* context) const {
    if (expected_authorization_.empty()) return true;
    auto range = context->client_metadata().equal_range("authorization");
    for (auto it = range.first; it != range.second; ++it)
      if (same_secret(std::string_view(it->second.data(), it->second.size()), expected_authorization_)) return true;
    return false;
  }

  void finish(CallReactor* reactor, const char* rpc, SteadyClock::time_point start, const Status& status) {
    metrics_.record_request(rpc, status_code_name(status.code),
                            std::chrono::duration<double>(SteadyClock::now() - start).count());
    reactor->Finish(grpc::Status(to_grpc(status.code), status.message));
  }

  RewardHandler& handler_;
  RewardMetrics& metrics_;
  std::string expected_authorization_;
  const std::atomic<bool>& accepting_;
};

}  // namespace

struct RewardServer::Impl {
  RewardServerOptions options;
  RewardMetrics metrics;
  std::unique_ptr<RewardHandler> handler;
  std::unique_ptr<Service> service;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<HttpServer> http;
  std::string address;
  std::atomic<bool> serving{true};  // false: new calls get UNAVAILABLE, /healthz 503
  std::mutex shutdown_mutex;
  bool shut_down = false;
};

RewardServer::RewardServer(RewardSet& rewards, const RewardServerOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  GRPO_CHECK(options.max_message_bytes > 0 && options.max_message_bytes <= INT32_MAX,
             "--max-message-bytes must be in 1.." << INT32_MAX << ", got " << options.max_message_bytes);
  GRPO_CHECK(options.tls_cert_file.empty() == options.tls_key_file.empty(), "--tls-cert and --tls-key go together");
  std::string host;
  int port = 0;
  split_host_port(options.listen, "--listen", &host, &port);

  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_file(options.tls_key_file, "--tls-key"), read_file(options.tls_cert_file, "--tls-cert")});
    credentials = grpc::SslServerCredentials(ssl);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }

  impl_->handler = std::make_unique<RewardHandler>(rewards, options.handler, &impl_->metrics);
  impl_->service = std::make_unique<Service>(*impl_->handler, impl_->metrics, options.auth_token, impl_->serving);

  impl_->server = start_grpc_server(impl_->service.get(), options.listen, host, credentials,
                                           options.max_message_bytes, impl_->address);

  if (!options.metrics_listen.empty()) {
    Impl* impl = impl_.get();
    impl_->http = std::make_unique<HttpServer>(options.metrics_listen, [impl](const std::string& path) {
      if (path == "/healthz")
        return impl->serving ? HttpResponse{200, "text/plain; charset=utf-8", "ok\n"}
                             : HttpResponse{503, "text/plain; charset=utf-8", "shutting down\n"};
      if (path == "/metrics") return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", impl->metrics.render()};
      return HttpResponse{404, "text/plain; charset=utf-8", "not found: try /healthz or /metrics\n"};
    });
  }
}

RewardServer::~RewardServer() { shutdown(); }

const std::string& RewardServer::address() const { return impl_->address; }
std::string RewardServer::metrics_address() const { return impl_->http ? impl_->http->address() : std::string(); }
RewardMetrics& RewardServer::metrics() { return impl_->metrics; }
RewardHandler& RewardServer::handler() { return *impl_->handler; }

void RewardServer::shutdown() {
  std::lock_guard<std::mutex> lock(impl_->shutdown_mutex);
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->serving = false;
  if (impl_->server)
    graceful_shutdown(*impl_->server, impl_->options.shutdown_grace_s, [this] { return int64_t(impl_->handler->in_flight()); });
  impl_->handler.reset();  // finishes whatever is still queued (cancelled calls skip quickly)
  if (impl_->http) impl_->http->stop();
}

void graceful_shutdown(grpc::Server& server, double grace_s, const std::function<int64_t()>& in_flight) {
  if (auto* health = server.GetHealthCheckService()) health->Shutdown();
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(grace_s));
  while (in_flight() > 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  server.Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(100));  // then cancels what is left
  server.Wait();
}

std::unique_ptr<grpc::Server> start_grpc_server(grpc::Service* service, const std::string& listen, const std::string& host,
                                                std::shared_ptr<grpc::ServerCredentials> credentials,
                                                int64_t max_message_bytes, std::string& address) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(listen, std::move(credentials), &selected_port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  GRPO_CHECK(server && selected_port > 0,
             "--listen " << listen << ": cannot listen (address in use, or not an address of this machine?)");
  const bool v6 = host.find(':') != std::string::npos;
  address = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(selected_port);
  return server;
}

}  // namespace grpo::rewards
