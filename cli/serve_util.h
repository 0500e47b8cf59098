// Shared by several subcommands: `--set KEY=VALUE` of the run-config commands (sft, train), the
// bearer token file of the services and a clean stop on SIGINT/SIGTERM.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace grpo::cli {

// `--set KEY=VALUE` of the run-config commands (sft, train): a dotted KEY into `root`; VALUE is
// JSON when it parses as JSON, else a string.
void apply_set(nlohmann::json& root, const std::string& kv);

// The run config of `grpo sft|train CONFIG [--set ...] [--resume RUN_DIR]`: CONFIG (or
// RUN_DIR/config.json, the effective config saved there, with --resume alone), the --set
// overrides applied, and run_dir = RUN_DIR with --resume (a CONFIG naming another run_dir is an
// error). `source` receives the file read.
nlohmann::json load_run_config(const std::string& command, const std::string& config, const std::string& resume,
                               const std::vector<std::string>& sets, std::string* source);

// The token in `path` (trailing newline/spaces dropped); a missing or empty file, or a token
// with whitespace, is an error naming --auth-token-file.
std::string read_token_file(const std::string& path);

// SIGINT/SIGTERM arrive on whichever thread the kernel picks (gRPC and other libraries start
// threads before main, so masking cannot catch them all): the handler only writes the signal
// number to a pipe. Install before starting the server; wait_for_stop_signal() blocks until
// one arrives and returns it; a second signal during the graceful shutdown ends the process.
void install_stop_handlers();
int wait_for_stop_signal();
// Makes a thread blocked in wait_for_stop_signal() return 0 (no signal), e.g. at normal exit.
void wake_stop_waiter();

}  // namespace grpo::cli
