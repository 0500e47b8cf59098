// Plain C++ types of the reward service (no gRPC): a batch item names its checker, a scored
// item carries its time, and a status says why a whole call failed. rewards/service/convert.h
// maps them to and from proto/reward.proto.
#pragma once

#include <string>

#include "rewards/checker.h"

namespace grpo::rewards {

struct ScoreItem {
  std::string checker;   // checker or task name; "" = the server's default
  ScoreRequest request;  // prompt, completion, reference, id
};

struct ScoredItem {
  ScoreResult result;
  double elapsed_ms = 0;  // time spent scoring this item, in milliseconds
};

// The subset of gRPC status codes the reward service answers with.
enum class StatusCode {
  ok,
  invalid_argument,    // unknown checker, malformed reference, bad request
  unauthenticated,     // missing or wrong bearer token
  resource_exhausted,  // concurrency limit reached (retry later) or message too large
  deadline_exceeded,   // the call's deadline passed before every item was scored
  cancelled,           // the client went away
  unavailable,         // a remote checker behind this one failed, or the server is shutting down
  internal,            // a checker broke its contract (a bug)
};

struct Status {
  StatusCode code = StatusCode::ok;
  std::string message;
  bool ok() const { return code == StatusCode::ok; }
};

// "OK", "INVALID_ARGUMENT", ... (the gRPC spelling, used in metrics and messages).
const char* status_code_name(StatusCode code);

}  // namespace grpo::rewards
