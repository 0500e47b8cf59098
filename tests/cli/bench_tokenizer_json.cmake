# `grpo bench tokenizer --quick` prints one JSON document with single-thread and batched MB/s
# and the raw PCRE2 peer (Qwen3 file when present, else the byte-level preset: memcpy peer).
set(dir ${SOURCE_DIR}/configs/tokenizers/byte_level)
if(EXISTS ${SOURCE_DIR}/../shared/tokenizers/qwen3/tokenizer.json)
  set(dir ${SOURCE_DIR}/../shared/tokenizers/qwen3)
endif()
execute_process(COMMAND ${GRPO} bench tokenizer --tokenizer ${dir} --quick --threads 2
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "grpo bench tokenizer failed (${rc}): ${err}")
endif()
foreach(path "single_thread;mb_s" "single_thread_cold;mb_s" "batched;mb_s" "peer;memcpy_mb_s")
  string(JSON v ERROR_VARIABLE jerr GET "${out}" ${path})
  if(jerr OR NOT v GREATER 0)
    message(FATAL_ERROR "bench tokenizer JSON: ${path} missing or not positive (${jerr}): ${out}")
  endif()
endforeach()
