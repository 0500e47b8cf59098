// Small gRPC helpers shared by the reward and rollout services: status codes by their canonical
// names ("UNAVAILABLE", ...) for messages and metrics labels, and the graceful shutdown both
// servers use. Includes gRPC, so only .cpp files include it.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/support/status_code_enum.h>

#include <functional>
#include <memory>
#include <string>

namespace grpo::rewards {

const char* grpc_code_name(grpc::StatusCode code);

// Builds and starts a server for `service` on `listen` ("host:port"; port 0 picks a free one)
// with the health-check service and both message-size caps. Throws naming --listen when it
// cannot listen. `address` receives "host:port" with the port chosen ([host] for IPv6).
std::unique_ptr<grpc::Server> start_grpc_server(grpc::Service* service, const std::string& listen, const std::string& host,
                                                std::shared_ptr<grpc::ServerCredentials> credentials,
                                                int64_t max_message_bytes, std::string& address);

// Stops `server` gracefully: health checks report NOT_SERVING, calls already accepted may finish
// while in_flight() > 0 for up to grace_s seconds, then gRPC's shutdown cancels what is left
// (it is asked for only then: its own graceful mode would also wait for idle client
// connections) and the server is joined.
void graceful_shutdown(grpc::Server& server, double grace_s, const std::function<int64_t()>& in_flight);

}  // namespace grpo::rewards
