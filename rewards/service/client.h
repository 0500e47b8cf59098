// A client of any process that serves proto/reward.proto (`grpo reward serve`, the Python
// example, a user's own server). Used by the "remote" checker and by the learner.
// No gRPC types in this header.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "rewards/service/batch.h"

namespace grpo::rewards {

// A failed call: `code` is the gRPC status ("UNAVAILABLE", "INVALID_ARGUMENT", ...).
class RewardClientError : public Error {
 public:
  RewardClientError(std::string code, const std::string& message) : Error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

struct RewardClientOptions {
  std::string address;                     // "host:port" of the server
  std::string token;                       // bearer token sent on every call; "" = none
  double deadline_s = 120;                 // per call, in seconds
  int64_t max_message_bytes = 64 << 20;    // cap on each request and response, in bytes
  bool tls = false;                        // connect with TLS
  std::string tls_ca_file;                 // PEM roots to trust; "" = the system's
  std::string tls_server_name;             // name to verify in the server's certificate; "" = host
};

struct RemoteCheckerInfo {
  std::string name, kind, description;  // kind: "checker" or "task"
};

class RewardClient {
 public:
  // Creates the channel (connects lazily); throws grpo::Error for bad options.
  explicit RewardClient(const RewardClientOptions& options);
  ~RewardClient();
  RewardClient(const RewardClient&) = delete;
  RewardClient& operator=(const RewardClient&) = delete;

  // One Score call; results in item order. Thread-safe. Throws RewardClientError on any
  // non-OK status (after the channel's retries of UNAVAILABLE and RESOURCE_EXHAUSTED) and
  // when the server answers with the wrong number of results.
  std::vector<ScoredItem> score(const std::vector<ScoreItem>& items) const;

  // ListCheckers; `default_checker` receives the server's default (may be null).
  std::vector<RemoteCheckerInfo> list(std::string* default_checker = nullptr) const;

  const std::string& address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo::rewards
