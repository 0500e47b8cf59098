// `grpo report RUN_DIR`: one self-contained HTML page (no scripts, no external files, inline
// SVG) with the curves of a `grpo train` run and a table of its sampled completions.
//
// Inputs, all in RUN_DIR:
//   metrics.jsonl   one JSON object per line, written by the trainer: "step" (integer) and
//                   numeric metrics with flat names ("reward/mean", "accuracy", "kl", ...;
//                   see learner/train/trainer.h). A key may be absent from some lines (eval
//                   metrics appear on eval steps only; step 0 may carry only eval metrics).
//                   Non-numeric values are ignored; null and Python's NaN/Infinity/-Infinity
//                   count as non-finite. A step written twice (a resumed run) keeps the later
//                   line. A line that is not JSON is an error naming FILE:LINE, except a torn
//                   last line (no trailing newline), which is skipped, so a running job's
//                   directory can be read.
//   samples.jsonl   optional; one object per line: "step", "group", "sample", "prompt",
//                   "completion", "reward", "components" {name: number}, "reason", "extracted",
//                   "finish", "tokens", "advantage" (any may be missing).
//   config.json     optional; shown verbatim (escaped) in a collapsible <details> block.
//
// Page: title (the run directory), a summary table (steps, first/last reward/mean and accuracy,
// eval/pass@1 first and last when present, total time from the last "elapsed_s"), then the main
// plots in this order, each only when the key exists: reward/mean (with a reward/std band when
// present), accuracy, eval/pass@1, response_length/mean, kl, entropy, grad_norm, lr,
// time/step_s; then one small plot for each remaining numeric key (sorted by name). Each plot is
// an <svg data-key="KEY"> with a polyline of (step, value) points (x over the run's whole step
// range, shared by every plot), axes with min/max labels and the key as title; non-finite
// values are left out of the line and counted in its caption. Then the samples table: the last
// `max_sample_steps` steps that have samples, newest first, with prompt and completion
// HTML-escaped inside <pre>, reward, components, finish and length.
#pragma once

#include <cstdint>
#include <string>

namespace grpo {

struct ReportOptions {
  int64_t max_sample_steps = 10;   // steps of samples shown
  int64_t max_points = 2000;       // a longer series is thinned evenly (first and last kept)
};

// The page for RUN_DIR as a string. Throws grpo::Error naming the file when RUN_DIR or its
// metrics.jsonl is missing, or a line is malformed (see above).
std::string render_report(const std::string& run_dir, const ReportOptions& options = {});

// render_report written to out_path (RUN_DIR/report.html when ""), via a temporary file and a
// rename. Returns the path written.
std::string write_report(const std::string& run_dir, const std::string& out_path = "",
                         const ReportOptions& options = {});

}  // namespace grpo
