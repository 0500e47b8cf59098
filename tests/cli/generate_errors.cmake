# Bad inputs to `grpo generate`: one 'grpo: error: ' line on stderr naming the culprit, nothing
# on stdout; exit 2 for bad flags (usage), 1 for a model folder that cannot be used.
set(dir "${WORK_DIR}/grpo_generate_errors")
file(REMOVE_RECURSE "${dir}")
set(tokenizer ${SOURCE_DIR}/configs/tokenizers/byte_level)
foreach(name model no_tokenizer)
  set(tok ${tokenizer})
  if(name STREQUAL "no_tokenizer")
    set(tok none)
  endif()
  execute_process(COMMAND ${GRPO} model init --arch qwen3 --preset tiny --out ${dir}/${name} --tokenizer ${tok}
                  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grpo model init failed (${rc}): ${err}")
  endif()
endforeach()
# A folder with the tokenizer but no config.json or weights.
file(MAKE_DIRECTORY ${dir}/no_config)
file(COPY ${tokenizer}/tokenizer.json ${tokenizer}/tokenizer_config.json DESTINATION ${dir}/no_config)
set(model ${dir}/model)
string(REPEAT "a" 1100 long)  # the tiny preset's context is 1024 tokens (one byte a token)

# Each case: exit code, "|", the arguments after `grpo generate` separated by "~", "|", the text
# the error must contain.
set(cases
  "1|--model~${dir}/absent~--prompt~hi|${dir}/absent"
  "1|--model~${dir}/no_tokenizer~--prompt~hi|tokenizer.json"
  "1|--model~${dir}/no_config~--prompt~hi|config.json"
  "1|--model~${model}~--prompt~hi~--device~tpu|tpu"
  "1|--model~${model}~--prompt~hi~--device~cpu~--dtype~bf16|dtype bf16: the cpu backend computes in f32 only"
  "1|--model~${model}~--prompt~${long}|1100 tokens"
  "2|--model~${model}~--prompt~hi~--top-p~1.5|--top-p"
  "2|--model~${model}~--prompt~hi~--top-p~0|--top-p"
  "2|--model~${model}~--prompt~hi~--top-p~x|--top-p"
  "2|--model~${model}~--prompt~hi~--min-p~1|--min-p"
  "2|--model~${model}~--prompt~hi~--temperature~-1|--temperature"
  "2|--model~${model}~--prompt~hi~--top-k~-1|--top-k"
  "2|--model~${model}~--prompt~hi~--n~0|--n"
  "2|--model~${model}~--prompt~hi~--max-tokens~0|--max-tokens"
  "2|--model~${model}~--prompt~hi~--format~yaml|--format"
  "2|--model~${model}~--prompt~hi~--dtype~f16|--dtype"
  "2|--model~${model}~--prompt~hi~--kv-memory~lots|--kv-memory"
  "2|--model~${model}~--prompt~hi~--n~2~--stream|--stream"
  "2|--model~${model}~--prompt~hi~--system~be brief|--system"
  "2|--model~${model}|--prompt"
  "2|--prompt~hi|--model")
foreach(case IN LISTS cases)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 want_rc)
  list(GET parts 1 args)
  list(GET parts 2 want)
  string(REPLACE "~" ";" args "${args}")
  execute_process(COMMAND ${GRPO} generate ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(STRIP "${err}" line)
  string(FIND "${line}" "\n" newline)
  string(FIND "${line}" "${want}" at)
  if(NOT rc EQUAL want_rc OR NOT newline EQUAL -1 OR NOT line MATCHES "^grpo: error: " OR at EQUAL -1
     OR NOT out STREQUAL "")
    message(FATAL_ERROR "grpo generate ${args}: expected exit ${want_rc} and one error line naming \"${want}\", "
                        "got exit ${rc}, stderr: ${err} stdout: ${out}")
  endif()
endforeach()
file(REMOVE_RECURSE "${dir}")
