# `grpo bench train` prints one JSON document: seconds per step and the time split of the same
# run under the local topology (child processes over gRPC) and the colocated one (in process),
# and their ratio.
set(dir ${WORK_DIR}/bench_train)
file(REMOVE_RECURSE ${dir})
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${GRPO} model init --arch qwen3 --preset tiny --out ${dir}/model RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "model init failed")
endif()
file(WRITE ${dir}/config.json "{
  \"model\": \"${dir}/model\",
  \"data\": {\"name\": \"arithmetic\", \"count\": 100, \"min_level\": 1, \"max_level\": 1},
  \"eval\": {\"data\": {\"name\": \"arithmetic\", \"count\": 4, \"min_level\": 1, \"max_level\": 1}},
  \"prompt\": {\"format\": \"raw\", \"template\": \"{prompt}\\n\"},
  \"rollout\": {\"prompts_per_step\": 2, \"group_size\": 4, \"max_new_tokens\": 8},
  \"reward\": {\"checker\": \"arithmetic\"},
  \"topology\": {\"kind\": \"remote\", \"rollout_addresses\": [\"127.0.0.1:1\"], \"worker_kv_memory\": \"8M\", \"worker_threads\": 1},
  \"run_dir\": \"${dir}/unused\"
}")
execute_process(COMMAND ${GRPO} bench train --config ${dir}/config.json --steps 3
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo bench train failed (${rc}): ${err}")
endif()
string(JSON measured GET "${out}" measured_steps)
if(NOT measured EQUAL 2)
  message(FATAL_ERROR "bench train: measured_steps ${measured}: ${out}")
endif()
foreach(kind local colocated)
  string(JSON sps GET "${out}" ${kind} seconds_per_step)
  string(JSON tokens GET "${out}" ${kind} generated_tokens_per_step)
  if(sps LESS_EQUAL 0 OR tokens LESS_EQUAL 0 OR tokens GREATER 64)
    message(FATAL_ERROR "bench train ${kind}: seconds/step ${sps}, tokens/step ${tokens}: ${out}")
  endif()
  foreach(phase generate_s reward_s learn_s weight_sync_s)
    string(JSON t GET "${out}" ${kind} ${phase})
    if(t LESS 0 OR t GREATER sps)
      message(FATAL_ERROR "bench train ${kind}: ${phase} ${t} outside [0, ${sps}]: ${out}")
    endif()
  endforeach()
endforeach()
string(JSON workers GET "${out}" local workers)
string(JSON ratio GET "${out}" local_over_colocated)
if(NOT workers EQUAL 2 OR ratio LESS_EQUAL 0)
  message(FATAL_ERROR "bench train: workers ${workers}, ratio ${ratio}: ${out}")
endif()
# Nothing left behind: the run directories were temporary, the config's run_dir untouched.
if(EXISTS ${dir}/unused)
  message(FATAL_ERROR "bench train wrote into the config's run_dir")
endif()

# Bad input: one clear line, non-zero exit.
execute_process(COMMAND ${GRPO} bench train --config ${dir}/config.json --steps 1
                RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "--steps")
  message(FATAL_ERROR "bench train --steps 1: rc ${rc}, stderr ${err}")
endif()
execute_process(COMMAND ${GRPO} bench train --config ${dir}/missing.json RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "missing.json")
  message(FATAL_ERROR "bench train on a missing config: rc ${rc}, stderr ${err}")
endif()
