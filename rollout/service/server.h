// The rollout service: RolloutHandler (rollout/service/handler.h) behind gRPC's callback API
// (proto/rollout.proto), plus /healthz and /metrics over HTTP. `grpo rollout serve` is a thin
// wrapper around this. No gRPC types in this header.
//
//   Engine engine(model, cfg, &tokenizer);
//   RolloutServer server(engine, &tokenizer, {.listen = "127.0.0.1:0"});
//   std::printf("listening on %s\n", server.address().c_str());
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "policy/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/service/metrics.h"

namespace grpo::rollout {

struct RolloutServerOptions {
  std::string listen = "127.0.0.1:50051";  // gRPC address; port 0 picks a free port
  std::string auth_token;                   // bearer token required on every call; "" = none
  int64_t max_message_bytes = 64 << 20;     // cap on each request, response and weight chunk, bytes
  std::string metrics_listen;               // HTTP address for /healthz and /metrics; "" = off
  std::string device_description = "cpu";   // reported by GetStatus
  double shutdown_grace_s = 30;             // in-flight calls get this long to finish, seconds
};

class RolloutServer {
 public:
  // Starts the engine loop thread and serving; throws grpo::Error when an address cannot be
  // bound. `engine` and `tokenizer` (may be null: token-id prompts only) must outlive the
  // server; nothing else may step the engine while it serves.
  RolloutServer(Engine& engine, const Tokenizer* tokenizer, const RolloutServerOptions& options);
  ~RolloutServer();  // shutdown()
  RolloutServer(const RolloutServer&) = delete;
  RolloutServer& operator=(const RolloutServer&) = delete;

  // "HOST:PORT" of the gRPC listener, with the port actually bound.
  const std::string& address() const;
  // "HOST:PORT" of the HTTP listener; "" without metrics_listen.
  std::string metrics_address() const;
  RolloutMetrics& metrics();

  // Stops accepting calls, lets in-flight calls finish (up to shutdown_grace_s, then cancels
  // them, which cancels their samples), stops the engine loop and the HTTP listener.
  // Idempotent; thread-safe.
  void shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::rollout
