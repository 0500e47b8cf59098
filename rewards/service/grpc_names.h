// gRPC status codes by their canonical names ("UNAVAILABLE", ...), for error messages and
// metrics labels. Shared by the reward and rollout services' clients; includes gRPC, so only
// .cpp files include it.
#pragma once

#include <grpcpp/support/status_code_enum.h>

namespace grpo::rewards {

const char* grpc_code_name(grpc::StatusCode code);

}  // namespace grpo::rewards
