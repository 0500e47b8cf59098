// Checkpoints that resume exactly, and that a crash mid-write never leaves looking valid.
//
// Layout (format_version 1):
//   RUN_DIR/checkpoints/step-N/                 a Hugging Face model directory:
//     config.json, model.safetensors            Model::save, f32 (the master weights, so a
//                                               resume is bit-exact; transformers loads them)
//     tokenizer.json, tokenizer_config.json,    copied from CheckpointOptions::tokenizer_dir
//     special_tokens_map.json, *.jinja, ...
//     trainer_state/optimizer.safetensors       f32 AdamW moments by parameter name:
//                                               "exp_avg.<hf name>", "exp_avg_sq.<hf name>"
//     trainer_state/state.json                  {"format_version", "step", "optimizer_step",
//                                                "rng": {name: uint64}, "cursor": <json>,
//                                                "config": <json>}
//     COMPLETE                                  {"format_version", "step", "files": [{"path",
//                                                "bytes", "crc32"}, ...]}, written last
// The trainer state sits in a subdirectory because vLLM loads every *.safetensors at the top
// of a model directory.
//
// Save: everything is written into RUN_DIR/checkpoints/.tmp-step-N-<pid>, each file and
// directory fsync'd, COMPLETE (sizes and CRC-32 of every file) written last, then the
// directory is renamed to step-N and the parent fsync'd. A crash leaves either the old state
// or a .tmp directory that is never mistaken for a checkpoint (and is removed by the next
// save: one writer per run directory). Older checkpoints beyond keep_last are deleted only
// after the new one is in place.
//
// Resume: find_latest_checkpoint walks step-N from the highest N down and takes the first
// directory whose COMPLETE marker is present and whose files all have the listed size and
// CRC-32; each directory skipped (and each leftover .tmp) adds a one-line reason, also logged
// as a warning.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace grpo {

class Model;
class Optimizer;

inline constexpr int kCheckpointFormatVersion = 1;

// What the caller saves beside the weights and moments, and gets back on load.
struct TrainerState {
  int64_t step = 0;                     // the trainer's step: the directory is step-<step>
  std::map<std::string, uint64_t> rng;  // named RNG seeds / streams / offsets
  std::string cursor = "null";          // the data cursor: any JSON, opaque here
  std::string config = "{}";            // the effective run config: any JSON
};
// (cursor and config come back re-serialised compactly: equal as JSON, not as text.)

struct CheckpointOptions {
  int64_t keep_last = 0;       // newest complete checkpoints kept after a save (0: all)
  std::string tokenizer_dir;   // copy the tokenizer files found here ("": none)
};

// Writes RUN_DIR/checkpoints/step-<state.step> as above and returns its path. The optimizer
// must be the model's. A step-N that already exists is replaced (swapped in by rename). On
// any error the temporary directory is removed and earlier checkpoints are untouched.
std::string save_checkpoint(const std::string& run_dir, const Model& model, const Optimizer& optimizer,
                            const TrainerState& state, const CheckpointOptions& options = {});

// "" when `dir` holds a complete checkpoint, else the reason (one line). check_contents also
// reads every file to compare CRC-32s; without it only presence and sizes are checked.
std::string verify_checkpoint(const std::string& dir, bool check_contents = true);

struct CheckpointScan {
  std::string path;                   // the newest complete checkpoint, "" when none
  int64_t step = -1;                  // its step
  std::vector<std::string> skipped;   // "<dir>: <reason>" for each directory passed over
};
// Newest complete checkpoint under RUN_DIR/checkpoints (a run without one gives path "").
CheckpointScan find_latest_checkpoint(const std::string& run_dir);

// Restores the model's weights, the optimizer's moments and step count from checkpoint
// directory `dir`, and returns the trainer state. Everything is checked before anything is
// written (complete marker and checksums unless verify is false, format version, that the
// checkpoint's parameter table equals the model's), so a refused checkpoint changes nothing.
TrainerState load_checkpoint(const std::string& dir, Model& model, Optimizer& optimizer, bool verify = true);

// find_latest_checkpoint + load_checkpoint (without re-reading the checksums). Throws a
// grpo::Error naming RUN_DIR (and why each candidate was skipped) when there is none.
// `path` (optional) receives the directory loaded.
TrainerState resume_from_run_dir(const std::string& run_dir, Model& model, Optimizer& optimizer,
                                 std::string* path = nullptr);

}  // namespace grpo
