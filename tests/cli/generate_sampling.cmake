# `grpo generate` on a tiny random model with the byte-level tokenizer: the same seed gives the
# same completion, --n K gives K completions whose sample i does not depend on K, --json gives
# each sample's fields, greedy decoding ignores the seed, EOS and --stop end completions, and
# the plain, streamed and JSON outputs agree with each other and with `grpo tokenize`.
set(dir "${WORK_DIR}/grpo_generate_sampling")
file(REMOVE_RECURSE "${dir}")
set(model ${dir}/model)
execute_process(COMMAND ${GRPO} model init --arch qwen3 --preset tiny --out ${model} --seed 3
                        --tokenizer ${SOURCE_DIR}/configs/tokenizers/byte_level
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo model init failed (${rc}): ${err}")
endif()

# `grpo generate --model MODEL ARGN` with stdout in ${dir}/${name}.out; its lines in
# ${name}_0, ${name}_1, ... and their number in ${name}_count.
function(generate name)
  execute_process(COMMAND ${GRPO} generate --model ${model} ${ARGN} RESULT_VARIABLE rc
                  OUTPUT_FILE ${dir}/${name}.out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "grpo generate ${ARGN} failed (${rc}): ${err}")
  endif()
  file(READ ${dir}/${name}.out out)
  set(i 0)
  while(NOT out STREQUAL "")
    string(FIND "${out}" "\n" nl)
    if(nl EQUAL -1)
      message(FATAL_ERROR "grpo generate ${ARGN}: output does not end with a newline: ${out}")
    endif()
    string(SUBSTRING "${out}" 0 ${nl} line)
    math(EXPR nl "${nl} + 1")
    string(SUBSTRING "${out}" ${nl} -1 out)
    set(${name}_${i} "${line}" PARENT_SCOPE)
    math(EXPR i "${i} + 1")
  endwhile()
  set(${name}_count ${i} PARENT_SCOPE)
endfunction()

function(expect what cond_text)
  if(NOT (${ARGN}))
    message(FATAL_ERROR "${what}: expected ${cond_text}")
  endif()
endfunction()

set(common --prompt Hello --max-tokens 24 --ignore-eos)

# Same seed, same text; another seed, another text.
generate(a ${common} --seed 7)
generate(b ${common} --seed 7)
generate(c ${common} --seed 8)
file(SHA256 ${dir}/a.out ha)
file(SHA256 ${dir}/b.out hb)
file(SHA256 ${dir}/c.out hc)
expect("--seed 7 twice" "the same output" ha STREQUAL hb)
expect("--seed 7 and --seed 8" "different outputs" NOT ha STREQUAL hc)
# --dtype auto is f32 on the CPU: naming f32 changes nothing.
generate(cpu_auto ${common} --seed 7 --device cpu)
generate(cpu_f32 ${common} --seed 7 --device cpu --dtype f32)
file(SHA256 ${dir}/cpu_auto.out h_auto)
file(SHA256 ${dir}/cpu_f32.out h_f32)
expect("--device cpu with --dtype auto and f32" "the same output" h_auto STREQUAL h_f32)
# --eager (no CUDA graphs) changes nothing on the CPU, which decodes op by op anyway.
generate(cpu_eager ${common} --seed 7 --device cpu --eager)
file(SHA256 ${dir}/cpu_eager.out h_eager)
expect("--device cpu with and without --eager" "the same output" h_auto STREQUAL h_eager)

# --n 3 --json: three objects with every field; sample 0 is the --n 1 completion of the seed.
generate(j3 ${common} --seed 7 --n 3 --json)
expect("--n 3 --json" "3 lines, got ${j3_count}" j3_count EQUAL 3)
set(distinct "")
foreach(i 0 1 2)
  set(line "${j3_${i}}")
  string(JSON index GET "${line}" index)
  string(JSON n GET "${line}" num_tokens)
  string(JSON n_ids LENGTH "${line}" token_ids)
  string(JSON n_lp LENGTH "${line}" logprobs)
  string(JSON finish GET "${line}" finish_reason)
  string(JSON prompt GET "${line}" prompt_tokens)
  string(JSON ids GET "${line}" token_ids)
  string(JSON text TYPE "${line}" text)
  expect("--n 3 --json sample ${i}" "index ${i}, 24 tokens, logprobs and length: ${line}"
         index EQUAL i AND n EQUAL 24 AND n_ids EQUAL 24 AND n_lp EQUAL 24 AND finish STREQUAL "length"
         AND prompt EQUAL 5 AND text STREQUAL "STRING")
  math(EXPR last "${n_lp} - 1")
  foreach(k RANGE ${last})
    string(JSON lp GET "${line}" logprobs ${k})
    expect("--n 3 --json sample ${i}" "log-probs <= 0, got ${lp}" lp LESS_EQUAL 0)
  endforeach()
  list(APPEND distinct "${ids}")
endforeach()
list(REMOVE_DUPLICATES distinct)
list(LENGTH distinct n_distinct)
expect("--n 3 at temperature 1" "3 different completions" n_distinct EQUAL 3)
generate(j1 ${common} --seed 7 --json)
string(JSON ids0 GET "${j3_0}" token_ids)
string(JSON ids1 GET "${j1_0}" token_ids)
expect("sample 0 of --n 3 and of --n 1 (same seed)" "the same tokens: ${ids0} vs ${ids1}" ids0 STREQUAL ids1)

# The plain output is the JSON text; --stream writes the same; `grpo tokenize --decode` of the
# ids gives that text too (ids past the tokenizer's 259 are left out of it).
string(JSON text GET "${j1_0}" text)
file(READ ${dir}/a.out plain)
expect("plain output" "the JSON text plus a newline" plain STREQUAL "${text}\n")
generate(s ${common} --seed 7 --stream)
file(SHA256 ${dir}/s.out hs)
expect("--stream" "the plain output" hs STREQUAL ha)
string(JSON n_ids LENGTH "${j1_0}" token_ids)
math(EXPR last "${n_ids} - 1")
set(known "")
foreach(k RANGE ${last})
  string(JSON id GET "${j1_0}" token_ids ${k})
  if(id LESS 256)
    list(APPEND known ${id})
  endif()
endforeach()
string(REPLACE ";" "," known "${known}")
execute_process(COMMAND ${GRPO} tokenize --tokenizer ${model} --decode --text "[${known}]"
                RESULT_VARIABLE rc OUTPUT_VARIABLE dec ERROR_VARIABLE err)
string(JSON back GET "${dec}" text)
expect("grpo tokenize --decode of the ids" "the generated text" back STREQUAL text)

# Greedy: every sample and every seed give the same tokens.
generate(g1 --prompt Hello --max-tokens 16 --ignore-eos --temperature 0 --n 3 --json --seed 1)
generate(g2 --prompt Hello --max-tokens 16 --ignore-eos --temperature 0 --json --seed 2)
string(JSON greedy GET "${g2_0}" token_ids)
foreach(i 0 1 2)
  string(JSON ids GET "${g1_${i}}" token_ids)
  expect("greedy sample ${i}" "the tokens of every other greedy sample" ids STREQUAL greedy)
endforeach()

# EOS (id 256) ends a completion unless --ignore-eos: a "stop" sample ends with it, a "length"
# sample never holds it. With this seed at least one of the 16 samples stops (each token is
# EOS with probability ~1/272: P(no stop in 16 x 96 tokens) ~ 0.4%).
generate(e --prompt Hello --max-tokens 96 --n 16 --seed 11 --json)
set(stops 0)
foreach(i RANGE 15)
  string(JSON finish GET "${e_${i}}" finish_reason)
  string(JSON n GET "${e_${i}}" num_tokens)
  string(JSON ids GET "${e_${i}}" token_ids)
  math(EXPR last "${n} - 1")
  string(JSON last_id GET "${e_${i}}" token_ids ${last})
  string(REGEX MATCHALL "(^|[^0-9])256([^0-9]|$)" eos "${ids}")
  list(LENGTH eos n_eos)
  if(finish STREQUAL "stop")
    math(EXPR stops "${stops} + 1")
    expect("EOS sample ${i}" "EOS last and only once: ${ids}" last_id EQUAL 256 AND n_eos EQUAL 1)
  else()
    expect("EOS sample ${i}" "96 tokens without EOS: ${finish} ${ids}" finish STREQUAL "length" AND n EQUAL 96
           AND n_eos EQUAL 0)
  endif()
endforeach()
expect("16 samples of 96 tokens" "at least one stopped at EOS" stops GREATER 0)
generate(ei --prompt Hello --max-tokens 96 --n 16 --seed 11 --json --ignore-eos)
foreach(i RANGE 15)
  string(JSON n GET "${ei_${i}}" num_tokens)
  expect("--ignore-eos sample ${i}" "96 tokens" n EQUAL 96)
endforeach()

# --stop: a letter of the seed-7 completion ends the same completion at its first occurrence.
set(letter "")
foreach(k RANGE 1 23)
  string(JSON id GET "${j1_0}" token_ids ${k})
  if((id GREATER_EQUAL 97 AND id LESS_EQUAL 122) OR (id GREATER_EQUAL 65 AND id LESS_EQUAL 90))
    string(ASCII ${id} letter)
    break()
  endif()
endforeach()
string(JSON full GET "${j1_0}" text)
expect("the seed-7 completion \"${full}\"" "a letter among its tokens 1..23" letter MATCHES "^[A-Za-z]$")
generate(st ${common} --seed 7 --json --stop "${letter}")
string(JSON finish GET "${st_0}" finish_reason)
string(JSON text GET "${st_0}" text)
string(FIND "${full}" "${letter}" at)
math(EXPR want_len "${at} + 1")
string(SUBSTRING "${full}" 0 ${want_len} want)
expect("--stop ${letter}" "a stop after the first \"${letter}\" of \"${full}\", got ${finish} \"${text}\""
       finish STREQUAL "stop" AND text STREQUAL want)

# --format chatml encodes the prompt as `grpo tokenize --format chatml` does.
generate(f --prompt Hello --max-tokens 2 --format chatml --system "Be brief." --json)
execute_process(COMMAND ${GRPO} tokenize --tokenizer ${model} --format chatml --system "Be brief." --text Hello
                OUTPUT_VARIABLE enc RESULT_VARIABLE rc)
string(JSON want GET "${enc}" n_tokens)
string(JSON got GET "${f_0}" prompt_tokens)
expect("--format chatml" "prompt_tokens ${want} (grpo tokenize), got ${got}" got EQUAL want)
file(REMOVE_RECURSE "${dir}")
