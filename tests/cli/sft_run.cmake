# `grpo sft configs/sft-arithmetic.json` shrunk by --set overrides: a few steps write the
# effective config, one metrics line per step and a complete checkpoint; --resume continues to
# a longer run; errors are one line naming the field (a dtype the CPU does not store among them).
# Run from the source tree (relative paths).
set(dir "${WORK_DIR}/grpo_sft_cli")
file(REMOVE_RECURSE "${dir}")
set(small --set data.count=40 --set eval.data.count=4 --set eval.every=2 --set tokens_per_batch=256
          --set max_seq_len=128 --set optimizer.total_steps=6 --set optimizer.warmup_steps=1 --set device=cpu)
execute_process(COMMAND ${GRPO} sft configs/sft-arithmetic.json ${small} --set steps=3 --set run_dir=${dir} --set dtype=f32
                WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo sft failed (${rc}): ${err}")
endif()
if(NOT err MATCHES "step 3/3  loss [0-9.]+  lr [0-9.e-]+  [0-9]+ tok/s  eta")
  message(FATAL_ERROR "grpo sft: no progress line in: ${err}")
endif()
foreach(f config.json metrics.jsonl checkpoints/step-3/COMPLETE checkpoints/step-3/model.safetensors
          checkpoints/step-3/tokenizer.json checkpoints/step-3/trainer_state/state.json)
  if(NOT EXISTS "${dir}/${f}")
    message(FATAL_ERROR "grpo sft wrote no ${f}")
  endif()
endforeach()
file(STRINGS "${dir}/metrics.jsonl" lines)
list(LENGTH lines n)
list(GET lines 1 second)
string(JSON step GET "${second}" step)
string(JSON eval GET "${second}" eval_loss)
if(NOT n EQUAL 3 OR NOT step EQUAL 2)
  message(FATAL_ERROR "grpo sft: expected 3 metric lines, step 2 with eval_loss: ${lines}")
endif()
file(READ "${dir}/config.json" effective)
string(JSON steps GET "${effective}" steps)
string(JSON count GET "${effective}" data count)
string(JSON dtype GET "${effective}" dtype)
if(NOT steps EQUAL 3 OR NOT count EQUAL 40 OR NOT dtype STREQUAL "f32")
  message(FATAL_ERROR "grpo sft: the effective config lacks the overrides: ${effective}")
endif()
# Resume with a longer horizon: continues at step 4.
execute_process(COMMAND ${GRPO} sft --resume ${dir} --set steps=4 WORKING_DIRECTORY ${SOURCE_DIR}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT err MATCHES "resumed from .*step-3" OR NOT err MATCHES "step 4/4"
   OR NOT EXISTS "${dir}/checkpoints/step-4/COMPLETE")
  message(FATAL_ERROR "grpo sft --resume failed (${rc}): ${err}")
endif()
# Errors: one line naming the field, exit 1; an existing run is not overwritten.
foreach(case "--set;epoch=2|unknown key \"epoch\" (did you mean \"epochs\"?)"
             "--set;data=/nonexistent.jsonl|data: no such file /nonexistent.jsonl"
             "--set;run_dir=${dir}|already has a checkpoint"
             "--set;dtype=bf16|dtype bf16: the cpu backend computes in f32 only"
             "--set;dtype=fp16|\"dtype\" is \"fp16\", expected one of auto, f32, bf16")
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts -1 want)
  list(REMOVE_AT parts -1)
  execute_process(COMMAND ${GRPO} sft configs/sft-arithmetic.json ${small} ${parts} WORKING_DIRECTORY ${SOURCE_DIR}
                  RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
  string(FIND "${err}" "${want}" pos)
  string(STRIP "${err}" stripped)
  if(NOT rc EQUAL 1 OR pos LESS 0 OR stripped MATCHES "\n")
    message(FATAL_ERROR "grpo sft ${parts}: expected exit 1 and one line with \"${want}\", got ${rc}: ${err}")
  endif()
endforeach()
file(REMOVE_RECURSE "${dir}")
