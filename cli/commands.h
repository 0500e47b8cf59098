// Subcommands of `grpo`. Each registers its options on the parent CLI11 app and returns the
// function that runs it once parsing succeeded.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace grpo::cli {

using Runner = std::function<int()>;

// `grpo bench ...`
void add_bench_commands(CLI::App& app, Runner& run);

// `grpo tokenize --tokenizer DIR [--decode]`
void add_tokenize_command(CLI::App& app, Runner& run);

// `grpo reward score|serve|list ...` (serve only with GRPO_SERVICES)
void add_reward_commands(CLI::App& app, Runner& run);

// `grpo model init|info ...`
void add_model_commands(CLI::App& app, Runner& run);

// `grpo rollout serve ...` (says the build has no services without GRPO_SERVICES)
void add_rollout_commands(CLI::App& app, Runner& run);

// `grpo generate --model DIR --prompt TEXT [--n K] [--seed S] ...`
void add_generate_command(CLI::App& app, Runner& run);

// `grpo eval --model DIR --data FILE [--n K] [--temperature T] ...`
void add_eval_command(CLI::App& app, Runner& run);

// `grpo sft CONFIG [--set KEY=VALUE] [--resume RUN_DIR]`
void add_sft_command(CLI::App& app, Runner& run);

// `grpo report RUN_DIR [--out FILE] [--max-sample-steps N]`
void add_report_command(CLI::App& app, Runner& run);

// `grpo train CONFIG [--set KEY=VALUE] [--resume RUN_DIR]`
void add_train_command(CLI::App& app, Runner& run);

}  // namespace grpo::cli
