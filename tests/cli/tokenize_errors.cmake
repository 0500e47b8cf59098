# Bad inputs to `grpo tokenize`: exit code 1 and exactly one line on stderr naming the culprit.
set(preset ${SOURCE_DIR}/configs/tokenizers/byte_level)
# Each case: the arguments separated by "~", then "|" and the text the error must contain.
set(cases
  "tokenize~--tokenizer~/nonexistent/tokenizer~--text~hi|/nonexistent/tokenizer"
  "tokenize~--tokenizer~${preset}~--decode~--text~1, 2,|--decode"
  "tokenize~--tokenizer~${preset}~--decode~--text~{\"x\": 1}|--decode"
  "tokenize~--tokenizer~${preset}~--format~raw~--text~hi|{prompt}")
foreach(case IN LISTS cases)
  string(REPLACE "|" "~" parts "${case}")
  string(REPLACE "~" ";" parts "${parts}")
  list(GET parts -1 expect)
  list(REMOVE_AT parts -1)
  execute_process(COMMAND ${GRPO} ${parts} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 1)
    message(FATAL_ERROR "grpo ${parts}: exit code ${rc}, expected 1 (stderr: ${err})")
  endif()
  string(STRIP "${err}" line)
  string(FIND "${line}" "\n" newline)
  if(NOT newline EQUAL -1 OR NOT line MATCHES "^grpo: error: ")
    message(FATAL_ERROR "grpo ${parts}: expected one 'grpo: error: ' line on stderr, got: ${err}")
  endif()
  string(FIND "${line}" "${expect}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "grpo ${parts}: the error does not name \"${expect}\": ${line}")
  endif()
endforeach()

# Ids on stdin: an id past the vocabulary.
set(input ${CMAKE_CURRENT_BINARY_DIR}/tokenize_errors_ids.json)
file(WRITE ${input} "[104, 105, 100000]")
execute_process(COMMAND ${GRPO} tokenize --tokenizer ${preset} --decode INPUT_FILE ${input}
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(STRIP "${err}" line)
if(NOT rc EQUAL 1 OR NOT line MATCHES "^grpo: error: decode: id 100000 " OR line MATCHES "\n")
  message(FATAL_ERROR "grpo tokenize --decode with id 100000: exit ${rc}, stderr: ${err}")
endif()
file(REMOVE ${input})
