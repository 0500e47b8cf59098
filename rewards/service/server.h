// The reward service: RewardHandler (rewards/service/handler.h) behind gRPC's callback API,
// plus /healthz and /metrics over HTTP. `grpo reward serve` is a thin wrapper around this.
// No gRPC types in this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "rewards/combine.h"
#include "rewards/service/handler.h"
#include "rewards/service/metrics.h"

namespace grpo::rewards {

struct RewardServerOptions {
  std::string listen = "127.0.0.1:50061";  // gRPC address; port 0 picks a free port
  std::string auth_token;                   // bearer token required on every call; "" = none
  int64_t max_message_bytes = 64 << 20;     // cap on each request and response, in bytes
  std::string tls_cert_file, tls_key_file;  // PEM files; both or neither (then plaintext)
  std::string metrics_listen;               // HTTP address for /healthz and /metrics; "" = off
  HandlerOptions handler;                   // scoring threads, concurrency limit
  double shutdown_grace_s = 30;             // in-flight calls get this long to finish, seconds
};

class RewardServer {
 public:
  // Starts serving; throws grpo::Error when an address cannot be bound or a file cannot be
  // read. `rewards` must outlive the server.
  RewardServer(RewardSet& rewards, const RewardServerOptions& options);
  ~RewardServer();  // shutdown()
  RewardServer(const RewardServer&) = delete;
  RewardServer& operator=(const RewardServer&) = delete;

  // "HOST:PORT" of the gRPC listener, with the port actually bound.
  const std::string& address() const;
  // "HOST:PORT" of the HTTP listener; "" without metrics_listen.
  std::string metrics_address() const;
  RewardMetrics& metrics();
  RewardHandler& handler();

  // Stops accepting calls, lets in-flight calls finish (up to shutdown_grace_s, then cancels
  // them), stops the scoring threads and the HTTP listener. Idempotent; thread-safe.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::rewards
