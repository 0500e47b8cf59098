// Small gRPC helpers shared by the reward and rollout services: status codes by their canonical
// names ("UNAVAILABLE", ...) for messages and metrics labels, and the graceful shutdown both
// servers use. Includes gRPC, so only .cpp files include it.
#pragma once

#include <grpcpp/server.h>
#include <grpcpp/support/status_code_enum.h>

#include <functional>

namespace grpo::rewards {

const char* grpc_code_name(grpc::StatusCode code);

// Stops `server` gracefully: health checks report NOT_SERVING, calls already accepted may finish
// while in_flight() > 0 for up to grace_s seconds, then gRPC's shutdown cancels what is left
// (it is asked for only then: its own graceful mode would also wait for idle client
// connections) and the server is joined.
void graceful_shutdown(grpc::Server& server, double grace_s, const std::function<int64_t()>& in_flight);

}  // namespace grpo::rewards
