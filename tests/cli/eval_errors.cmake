# Bad inputs to `grpo eval`: one 'grpo: error: ' line on stderr naming the culprit, nothing on
# stdout, no --json file; exit 2 for bad flags (usage), 1 for data, checkers and models.
set(dir "${WORK_DIR}/grpo_eval_errors")
file(REMOVE_RECURSE "${dir}")
set(model ${dir}/model)
execute_process(COMMAND ${GRPO} model init --arch qwen3 --preset tiny --out ${model}
                        --tokenizer ${SOURCE_DIR}/configs/tokenizers/byte_level
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo model init failed (${rc}): ${err}")
endif()
file(WRITE ${dir}/good.jsonl "{\"prompt\": \"Compute 1 + 2.\", \"reference\": \"3\", \"checker\": \"arithmetic\"}\n")
file(WRITE ${dir}/bad.jsonl "{\"prompt\": \"a\", \"reference\": \"1\"}\n\n{\"prompt\": \"b\"\n")
file(WRITE ${dir}/no_checker.jsonl "{\"prompt\": \"a\", \"reference\": \"1\"}\n")

# Each case: exit code, "|", the arguments after `grpo eval` separated by "~", "|", the text the
# error must contain.
set(m --model~${model})
set(cases
  "1|${m}~--data~${dir}/absent.jsonl|${dir}/absent.jsonl"
  "1|${m}~--data~${dir}/bad.jsonl|${dir}/bad.jsonl:3"
  "1|${m}~--data~${dir}/good.jsonl~--checker~nope|nope"
  "1|${m}~--data~${dir}/no_checker.jsonl|--checker"
  "1|${m}~--data~arithmetic:0:5|LEVEL"
  "1|--model~${dir}/absent~--data~${dir}/good.jsonl|${dir}/absent"
  "1|${m}~--data~${dir}/good.jsonl~--device~cpu~--dtype~bf16|dtype bf16: the cpu backend computes in f32 only"
  "2|${m}~--data~${dir}/good.jsonl~--n~0|--n"
  "2|${m}~--data~${dir}/good.jsonl~--temperature~-1|--temperature"
  "2|${m}~--data~${dir}/good.jsonl~--max-tokens~0|--max-tokens"
  "2|${m}~--data~${dir}/good.jsonl~--format~yaml|--format"
  "2|${m}~--data~${dir}/good.jsonl~--dtype~f16|--dtype"
  "2|${m}|--data"
  "2|--data~${dir}/good.jsonl|--model")
foreach(case IN LISTS cases)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 want_rc)
  list(GET parts 1 args)
  list(GET parts 2 want)
  string(REPLACE "~" ";" args "${args}")
  execute_process(COMMAND ${GRPO} eval ${args} --json ${dir}/out.json RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  string(STRIP "${err}" line)
  string(FIND "${line}" "\n" newline)
  string(FIND "${line}" "${want}" at)
  if(NOT rc EQUAL want_rc OR NOT newline EQUAL -1 OR NOT line MATCHES "^grpo: error: " OR at EQUAL -1
     OR NOT out STREQUAL "" OR EXISTS ${dir}/out.json)
    message(FATAL_ERROR "grpo eval ${args}: expected exit ${want_rc} and one error line naming \"${want}\", "
                        "got exit ${rc}, stderr: ${err} stdout: ${out}")
  endif()
endforeach()
file(REMOVE_RECURSE "${dir}")
