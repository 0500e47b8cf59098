# `grpo eval` on a tiny random model with the byte-level tokenizer: a JSONL file and a built-in
# dataset spec, the table on stdout, the JSON fields and their consistency (n samples per
# problem, ks 1, 2, 4, mean length = mean of the samples' tokens), and the same seed giving the
# same result. A random byte model never writes <answer> tags, so the arithmetic checker scores
# every sample "no_answer": pass@k = maj@k = 0 is the known outcome.
set(dir "${WORK_DIR}/grpo_eval_run")
file(REMOVE_RECURSE "${dir}")
set(model ${dir}/model)
execute_process(COMMAND ${GRPO} model init --arch qwen3 --preset tiny --out ${model} --seed 3
                        --tokenizer ${SOURCE_DIR}/configs/tokenizers/byte_level
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo model init failed (${rc}): ${err}")
endif()
file(WRITE ${dir}/data.jsonl
  "{\"id\": 0, \"checker\": \"arithmetic\", \"prompt\": \"Compute 1 + 2.\", \"reference\": \"3\"}\n"
  "{\"id\": 1, \"prompt\": \"Compute 4 * 5.\", \"reference\": \"20\"}\n"
  "\n"
  "{\"id\": \"x\", \"checker\": \"arithmetic\", \"prompt\": \"Compute 9 - 7.\", \"reference\": \"2\", \"level\": 1}\n")

function(expect what cond_text)
  if(NOT (${ARGN}))
    message(FATAL_ERROR "${what}: expected ${cond_text}")
  endif()
endfunction()

# `grpo eval --model MODEL ARGN --json ${dir}/${name}.json`: stdout in ${name}_out, JSON in ${name}.
function(eval name)
  execute_process(COMMAND ${GRPO} eval --model ${model} ${ARGN} --json ${dir}/${name}.json RESULT_VARIABLE rc
                  OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grpo eval ${ARGN} failed (${rc}): ${err}")
  endif()
  file(READ ${dir}/${name}.json json)
  set(${name}_out "${out}" PARENT_SCOPE)
  set(${name} "${json}" PARENT_SCOPE)
endfunction()

set(common --data ${dir}/data.jsonl --checker arithmetic --n 4 --max-tokens 12)
eval(a ${common} --seed 5)
eval(b ${common} --seed 5)
eval(c ${common} --seed 6)
expect("--seed 5 twice" "the same JSON" a STREQUAL b)
expect("--seed 5 and --seed 6" "different samples" NOT a STREQUAL c)
expect("the table" "pass@k and maj@k rows with k=1, 2, 4: ${a_out}"
       a_out MATCHES "3 problems x 4 samples" AND a_out MATCHES "pass@k +0\\.0000 +0\\.0000 +0\\.0000\n"
       AND a_out MATCHES "maj@k +0\\.0000" AND a_out MATCHES "k=4")

string(JSON n GET "${a}" n)
string(JSON problems GET "${a}" problems)
string(JSON samples GET "${a}" samples)
string(JSON ks GET "${a}" ks)
string(JSON mean GET "${a}" mean_length)
expect("JSON header" "n 4, 3 problems, 12 samples: ${a}" n EQUAL 4 AND problems EQUAL 3 AND samples EQUAL 12)
string(REGEX REPLACE "[ \n]" "" ks "${ks}")
expect("JSON ks" "[1,2,4], got ${ks}" ks STREQUAL "[1,2,4]")
foreach(k 1 2 4)
  string(JSON p GET "${a}" "pass@k" ${k})
  string(JSON m GET "${a}" "maj@k" ${k})
  expect("pass@${k} and maj@${k}" "0 (no answer tags), got ${p} ${m}" p EQUAL 0 AND m EQUAL 0)
endforeach()
set(total 0)
foreach(i 0 1 2)
  string(JSON id GET "${a}" per_problem ${i} id)
  string(JSON checker GET "${a}" per_problem ${i} checker)
  string(JSON correct GET "${a}" per_problem ${i} num_correct)
  string(JSON ns LENGTH "${a}" per_problem ${i} samples)
  expect("problem ${i}" "checker arithmetic, 4 samples, none correct" checker STREQUAL "arithmetic" AND ns EQUAL 4
         AND correct EQUAL 0)
  foreach(s 0 1 2 3)
    string(JSON t GET "${a}" per_problem ${i} samples ${s} tokens)
    string(JSON reason GET "${a}" per_problem ${i} samples ${s} reason)
    string(JSON finish GET "${a}" per_problem ${i} samples ${s} finish)
    string(JSON text TYPE "${a}" per_problem ${i} samples ${s} text)
    expect("problem ${i} sample ${s}" "<= 12 tokens, no_answer, a text: ${t} ${reason} ${finish} ${text}"
           t LESS_EQUAL 12 AND t GREATER 0 AND reason STREQUAL "no_answer" AND text STREQUAL "STRING")
    math(EXPR total "${total} + ${t}")
  endforeach()
endforeach()
string(JSON id2 GET "${a}" per_problem 2 id)
expect("the third record's id" "\"x\", got ${id2}" id2 STREQUAL "x")
# mean_length * 12 is the sum of the samples' tokens (to 3 decimals).
math(EXPR want_milli "${total} * 1000 / 12")
expect("mean_length" "a plain decimal, got ${mean}" mean MATCHES "^[0-9]+(\\.[0-9]+)?$")
string(REGEX REPLACE "\\..*$" "" whole "${mean}")
set(frac "000")
if(mean MATCHES "\\.([0-9]+)$")
  set(frac "${CMAKE_MATCH_1}000")
endif()
string(SUBSTRING "${frac}" 0 3 frac)
math(EXPR got_milli "${whole}${frac}")  # whole >= 1: no leading zero
math(EXPR diff "${got_milli} - ${want_milli}")
expect("mean_length ${mean}" "${total} / 12" diff GREATER -2 AND diff LESS 2)

# A built-in dataset spec: 2 countdown problems, each with its own checker.
eval(d --data countdown:2 --n 2 --max-tokens 4)
string(JSON checker GET "${d}" per_problem 1 checker)
string(JSON problems GET "${d}" problems)
string(JSON ks LENGTH "${d}" ks)
expect("--data countdown:2" "2 problems, checker countdown, ks [1, 2]" problems EQUAL 2 AND checker STREQUAL "countdown"
       AND ks EQUAL 2)
file(REMOVE_RECURSE "${dir}")
