# `grpo reward score`: one JSON line out per input line, in order; malformed lines give an error
# line naming the line number, scoring continues, and the exit status is 1.
# -DGRPO=<grpo binary> -DPLUGIN=<libgrpo_custom_reward.so> -DDATA=<tests/rewards/data>
cmake_minimum_required(VERSION 3.25)  # string(JSON), if(IN_LIST)
execute_process(
  COMMAND ${GRPO} reward score --input ${DATA}/score_cases.jsonl --config ${DATA}/score_config.json
          --plugin ${PLUGIN} --threads 2
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 1)
  message(FATAL_ERROR "expected exit 1 (three bad lines), got ${rc}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(NOT err MATCHES "score_cases.jsonl: 3 of 8 lines could not be scored \\(first: line 6: unknown key \"respones\" \\(did you mean \"response\"\\?\\)\\)")
  message(FATAL_ERROR "stderr does not name the first bad line:\n${err}")
endif()

string(REGEX REPLACE "\n$" "" out "${out}")
string(REPLACE ";" "," out "${out}")  # a CMake list is split on ';'
string(REPLACE "\n" ";" lines "${out}")
list(LENGTH lines n)
if(NOT n EQUAL 8)
  message(FATAL_ERROR "expected 8 output lines (the blank line is skipped), got ${n}:\n${out}")
endif()

# expect(OUTPUT_LINE_INDEX EXPECTED KEY [KEY...]): the value at that JSON path.
function(expect line_index expected)
  list(GET lines ${line_index} line)
  string(JSON value ERROR_VARIABLE json_error GET "${line}" ${ARGN})
  if(json_error OR NOT "${value}" STREQUAL "${expected}")
    message(FATAL_ERROR "output line ${line_index}, ${ARGN}: expected \"${expected}\", got \"${value}\" ${json_error}\n${line}")
  endif()
endfunction()

expect(0 "fmt-ok" id)
expect(0 1.0 reward)
expect(0 "ok" reason)
expect(0 "ok" components format reason)
expect(1 2 id)
expect(1 0.0 reward)
expect(1 "missing_think" reason)
expect(2 "task" id)
list(GET lines 2 task_line)  # CMake prints doubles with 17 digits: check the text itself
if(NOT task_line MATCHES "\"reward\":1\\.1,.*\"format\":\\{\"value\":1\\.0,\"weight\":0\\.1,")
  message(FATAL_ERROR "task line: expected reward 1.1 and format weight 0.1: ${task_line}")
endif()
expect(2 "all_found" reason)
expect(2 1.0 components keyword value)
expect(3 "math" id)
expect(3 1.0 reward)
expect(3 "correct" reason)
expect(4 "bad-key" id)
expect(4 6 line)
expect(5 7 line)
list(GET lines 5 unknown)
if(NOT unknown MATCHES "unknown reward checker \\\\\"fromat\\\\\".*did you mean \\\\\"format\\\\\"")
  message(FATAL_ERROR "unknown checker line lacks the hint: ${unknown}")
endif()
expect(6 8 line)
expect(6 "" id)
expect(7 "default" id)
expect(7 1.0 reward)
expect(7 "b" extracted)

# All lines good: exit 0, --output writes the file.
file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/reward_score_ok.jsonl
     "{\"id\": 1, \"checker\": \"format\", \"completion\": \"<think>a</think>b\"}\n")
execute_process(
  COMMAND ${GRPO} reward score --input ${CMAKE_CURRENT_BINARY_DIR}/reward_score_ok.jsonl
          --output ${CMAKE_CURRENT_BINARY_DIR}/reward_score_ok.out
  RESULT_VARIABLE rc ERROR_VARIABLE err)
file(READ ${CMAKE_CURRENT_BINARY_DIR}/reward_score_ok.out ok_out)
if(NOT rc EQUAL 0 OR NOT ok_out MATCHES "^\\{\"id\":1,\"reward\":1\\.0")
  message(FATAL_ERROR "expected exit 0 and one result, got ${rc}: ${ok_out} ${err}")
endif()

# A missing input file is one clear error line.
execute_process(COMMAND ${GRPO} reward score --input ${DATA}/missing.jsonl RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 1 OR NOT err MATCHES "missing.jsonl: cannot open file")
  message(FATAL_ERROR "missing input: expected exit 1 and a message, got ${rc}: ${err}")
endif()

# `grpo reward list` shows built-ins, plug-in checkers and configured tasks as JSON.
execute_process(COMMAND ${GRPO} reward list --plugin ${PLUGIN} --config ${DATA}/score_config.json
                OUTPUT_VARIABLE listing RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo reward list failed (${rc}): ${err}")
endif()
string(JSON default_checker GET "${listing}" default)
string(JSON n LENGTH "${listing}" checkers)
set(found "")
math(EXPR last "${n} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${listing}" checkers ${i} name)
  string(JSON kind GET "${listing}" checkers ${i} kind)
  list(APPEND found "${name}:${kind}")
endforeach()
foreach(expected format:checker math:checker code:checker keyword:checker length_penalty:checker
                 strict_format:checker r1_keyword:task arithmetic:checker countdown:checker)
  if(NOT expected IN_LIST found)
    message(FATAL_ERROR "grpo reward list lacks ${expected}: ${found}")
  endif()
endforeach()
if(NOT default_checker STREQUAL "strict_format")
  message(FATAL_ERROR "grpo reward list: default is \"${default_checker}\"")
endif()
