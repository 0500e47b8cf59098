// Shared by the `serve` subcommands (reward, rollout): the bearer token file and a clean stop
// on SIGINT/SIGTERM.
#pragma once

#include <string>

namespace grpo::cli {

// The token in `path` (trailing newline/spaces dropped); a missing or empty file, or a token
// with whitespace, is an error naming --auth-token-file.
std::string read_token_file(const std::string& path);

// SIGINT/SIGTERM arrive on whichever thread the kernel picks (gRPC and other libraries start
// threads before main, so masking cannot catch them all): the handler only writes the signal
// number to a pipe. Install before starting the server; wait_for_stop_signal() blocks until
// one arrives and returns it; a second signal during the graceful shutdown ends the process.
void install_stop_handlers();
int wait_for_stop_signal();

}  // namespace grpo::cli
