# `grpo bench learner` prints one JSON document: the GRPO step's time and tokens/s, and each
# phase (old log-probs, reference, forward + backward, optimizer) with its share of the step.
function(bench out)
  execute_process(COMMAND ${GRPO} bench learner ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE json ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grpo bench learner ${ARGN} failed (${rc}): ${err}")
  endif()
  set(${out} "${json}" PARENT_SCOPE)
endfunction()

bench(out --arch qwen3_moe --preset tiny --quick --threads 1)
string(JSON tokens GET "${out}" batch tokens)
string(JSON loss_tokens GET "${out}" batch loss_tokens)
# 2 prompts x 4 completions, each 16 prompt + 16 completion tokens, the last token not fed.
if(NOT tokens EQUAL 248 OR NOT loss_tokens EQUAL 128)
  message(FATAL_ERROR "bench learner: tokens ${tokens}, loss tokens ${loss_tokens}; expected 248 and 128: ${out}")
endif()
set(share_sum 0)
foreach(phase old_logprob reference forward_backward optimizer)
  string(JSON s GET "${out}" ${phase} seconds)
  string(JSON share GET "${out}" ${phase} share_of_step)
  if(s LESS_EQUAL 0 OR share LESS_EQUAL 0 OR share GREATER 1)
    message(FATAL_ERROR "bench learner: phase ${phase} seconds ${s} share ${share}: ${out}")
  endif()
endforeach()
string(JSON step_tps GET "${out}" step tokens_per_s)
if(step_tps LESS_EQUAL 0)
  message(FATAL_ERROR "bench learner: step tokens/s ${step_tps}")
endif()

# beta 0 skips the reference pass entirely.
bench(out --arch llama --preset tiny --quick --threads 1 --beta 0)
string(JSON ref GET "${out}" reference seconds)
if(NOT ref EQUAL 0)
  message(FATAL_ERROR "bench learner --beta 0: the reference pass took ${ref} s")
endif()

# Bad input: one clear line, non-zero exit.
execute_process(COMMAND ${GRPO} bench learner --preset tiny RESULT_VARIABLE rc OUTPUT_VARIABLE o ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "--arch")
  message(FATAL_ERROR "bench learner without a model: rc ${rc}, stderr ${err}")
endif()
