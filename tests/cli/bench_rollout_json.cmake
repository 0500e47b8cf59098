# `grpo bench rollout` prints one JSON document: per group size, the run with prefix sharing
# and the same run without (the prompt prefilled once against G times, blocks saved), and the
# batch sweep up to what max_batch and the KV budget admit.
set(dir "${WORK_DIR}/grpo_bench_rollout")
file(REMOVE_RECURSE "${dir}")
execute_process(COMMAND ${GRPO} model init --arch qwen3_moe --preset tiny --out ${dir}/model --seed 1
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo model init failed (${rc}): ${err}")
endif()

function(bench out)
  execute_process(COMMAND ${GRPO} bench rollout ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grpo bench rollout ${ARGN} failed (${rc}): ${err}")
  endif()
  set(${out} "${json}" PARENT_SCOPE)
endfunction()

function(expect what cond_text)
  if(NOT (${ARGN}))
    message(FATAL_ERROR "bench rollout JSON, ${what}: expected ${cond_text}")
  endif()
endfunction()

# P = 40 tokens (2 full blocks of 16 and a partial one), M = 6 new tokens.
bench(out --model ${dir}/model --prompt-tokens 40 --max-tokens 6 --groups 1 8 --quick)
string(JSON n_groups LENGTH "${out}" groups)
expect("groups" "2 entries: ${out}" n_groups EQUAL 2)
string(JSON dtype GET "${out}" dtype)
expect("dtype" "f32 (auto on the CPU): ${out}" dtype STREQUAL "f32")
foreach(i 0 1)
  string(JSON G GET "${out}" groups ${i} G)
  foreach(run sharing no_sharing)
    string(JSON tps GET "${out}" groups ${i} ${run} tokens_per_s)
    string(JSON ttft GET "${out}" groups ${i} ${run} ttft_s)
    string(JSON gen GET "${out}" groups ${i} ${run} generated_tokens)
    math(EXPR want_gen "${G} * 6")
    expect("G=${G} ${run}" "tokens_per_s and ttft_s > 0 and ${want_gen} tokens generated"
           tps GREATER 0 AND ttft GREATER 0 AND gen EQUAL want_gen)
  endforeach()
  string(JSON pre GET "${out}" groups ${i} sharing prefill_tokens)
  string(JSON pre_peer GET "${out}" groups ${i} no_sharing prefill_tokens)
  string(JSON saved GET "${out}" groups ${i} sharing kv_blocks_saved_by_sharing)
  string(JSON saved_peer GET "${out}" groups ${i} no_sharing kv_blocks_saved_by_sharing)
  string(JSON peak GET "${out}" groups ${i} sharing peak_kv_blocks_used)
  string(JSON peak_peer GET "${out}" groups ${i} no_sharing peak_kv_blocks_used)
  string(JSON ratio GET "${out}" groups ${i} prefill_tokens_ratio)
  string(JSON time_ratio GET "${out}" groups ${i} time_ratio)
  math(EXPR want_peer "${G} * 40")
  expect("G=${G}" "the prompt prefilled once with sharing, G times without: ${pre} / ${pre_peer}"
         pre EQUAL 40 AND pre_peer EQUAL want_peer AND time_ratio GREATER 0)
  if(G EQUAL 8)
    # Each of the 7 forks reuses at least the 2 full prompt blocks.
    expect("G=8" "sharing to save >= 14 blocks (${saved}), the peer none (${saved_peer}), a lower peak (${peak} < ${peak_peer}) and prefill ratio 1/8 (${ratio})"
           saved GREATER_EQUAL 14 AND saved_peer EQUAL 0 AND peak LESS peak_peer AND ratio EQUAL 0.125)
  else()
    expect("G=1" "nothing saved (${saved}), prefill ratio 1 (${ratio})" saved EQUAL 0 AND ratio EQUAL 1)
  endif()
endforeach()
string(JSON n_batches LENGTH "${out}" batches)
expect("batches" "one sweep per group size" n_batches EQUAL 2)
foreach(i 0 1)
  string(JSON G GET "${out}" batches ${i} G)
  string(JSON n_runs LENGTH "${out}" batches ${i} runs)
  expect("batches[${i}]" "runs up to 2 groups (--quick)" n_runs EQUAL 2)
  string(JSON R GET "${out}" batches ${i} runs 1 groups)
  string(JSON seqs GET "${out}" batches ${i} runs 1 sequences)
  string(JSON tps GET "${out}" batches ${i} runs 1 tokens_per_s)
  math(EXPR want "${G} * 2")
  expect("batches G=${G}" "2 groups of ${want} sequences at tokens_per_s > 0" R EQUAL 2 AND seqs EQUAL want AND tps GREATER 0)
endforeach()

# A KV budget of 10 blocks (1 KiB per token: 2 layers x 2 KV heads x 32 x K,V x f32; 16-token
# blocks) admits one group of 8 (2 shared blocks + 8 x 1): the sweep stops there.
bench(out --model ${dir}/model --prompt-tokens 40 --max-tokens 6 --groups 8 --kv-memory 160KiB)
string(JSON blocks GET "${out}" engine kv_blocks_total)
string(JSON admitted GET "${out}" batches 0 groups_admitted)
string(JSON limit GET "${out}" batches 0 limited_by)
string(JSON n_runs LENGTH "${out}" batches 0 runs)
string(JSON preempted GET "${out}" groups 0 sharing preemptions)
expect("--kv-memory 160KiB" "10 blocks admitting 1 group, limited by kv_memory, one run (${blocks} ${admitted} ${limit} ${n_runs})"
       blocks EQUAL 10 AND admitted EQUAL 1 AND limit STREQUAL "kv_memory" AND n_runs EQUAL 1 AND preempted EQUAL 0)

# A random-weight preset in process.
bench(out --arch llama --preset tiny --quick --groups 2)
string(JSON G GET "${out}" groups 0 G)
string(JSON model GET "${out}" model)
expect("--arch llama --preset tiny" "one group size 2 of preset:tiny" G EQUAL 2 AND model STREQUAL "preset:tiny")

# Errors: no model source; two of them.
foreach(args "--groups;2" "--model;${dir}/model;--arch;llama")
  execute_process(COMMAND ${GRPO} bench rollout ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE err)
  string(FIND "${err}" "--model" at)
  if(NOT rc EQUAL 1 OR at EQUAL -1)
    message(FATAL_ERROR "grpo bench rollout ${args}: expected exit 1 naming --model, got ${rc}: ${err}")
  endif()
endforeach()
# bf16 storage on the CPU (which computes in f32 only): one line, exit 1.
execute_process(COMMAND ${GRPO} bench rollout --arch llama --preset tiny --quick --dtype bf16 RESULT_VARIABLE rc
                OUTPUT_VARIABLE json ERROR_VARIABLE err)
string(STRIP "${err}" line)
if(NOT rc EQUAL 1 OR NOT line MATCHES "^grpo: error: dtype bf16: the cpu backend computes in f32 only" OR line MATCHES "\n")
  message(FATAL_ERROR "grpo bench rollout --dtype bf16 on the CPU: expected exit 1 and one line, got ${rc}: ${err}")
endif()
file(REMOVE_RECURSE "${dir}")
