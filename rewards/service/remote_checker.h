// The "remote" checker: scores by calling any process that serves proto/reward.proto.
// Configured in a reward config (rewards/combine.h):
//   "checkers": {"judge": {"use": "remote",
//                          "address": "127.0.0.1:50051",   // required
//                          "checker": "keyword",           // name on the server; "" = its default
//                          "token_file": "judge.token",    // bearer token (or "token": "...")
//                          "deadline_s": 120,              // per item, seconds
//                          "max_message_bytes": 67108864,
//                          "tls": false, "tls_ca_file": "", "tls_server_name": ""}}
// Each item is one Score call (the server's own thread pool scores concurrent items in
// parallel). A remote that answers INVALID_ARGUMENT (e.g. a malformed reference) throws
// grpo::Error; any other failure throws RewardClientError (rewards/service/client.h), which
// the reward service reports as UNAVAILABLE or DEADLINE_EXCEEDED: a broken remote is never
// silently scored 0.
#pragma once

#include <memory>

#include "rewards/registry.h"
#include "rewards/service/client.h"

namespace grpo::rewards {

std::unique_ptr<RewardChecker> make_remote_checker(const RewardClientOptions& options, const std::string& remote_checker);

// Registers "remote" (options above).
void register_remote_checker(CheckerRegistry& registry);

}  // namespace grpo::rewards
