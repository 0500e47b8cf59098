# `grpo report RUN_DIR` on a small run directory written here: exit 0, the path written on
# stdout, a page with inline SVG and the escaped samples; --out writes elsewhere. A missing
# RUN_DIR or metrics.jsonl is one 'grpo: error: ' line naming the path, exit 1, nothing written.
set(dir "${WORK_DIR}/grpo_report_cli")
file(REMOVE_RECURSE "${dir}")
set(run "${dir}/run")
file(WRITE ${run}/metrics.jsonl
  "{\"step\": 0, \"eval/pass@1\": 0.1}\n"
  "{\"step\": 1, \"reward/mean\": 0.2, \"reward/std\": 0.1, \"accuracy\": 0.25, \"kl\": 0.0, \"elapsed_s\": 3.5}\n"
  "{\"step\": 2, \"reward/mean\": 0.4, \"reward/std\": 0.2, \"accuracy\": 0.5, \"kl\": 0.01, \"elapsed_s\": 7.0}\n"
  "{\"step\": 3, \"reward/mean\": 0.3, \"reward/std\": 0.1, \"accuracy\": 0.5, \"kl\": 0.02, \"elapsed_s\": 10.5, "
  "\"eval/pass@1\": 0.3}\n")
file(WRITE ${run}/samples.jsonl
  "{\"step\": 3, \"group\": 0, \"sample\": 0, \"prompt\": \"Compute 1 + 2.\", "
  "\"completion\": \"<script>x</script> 1 & 2 = 3\", \"reward\": 1.0, \"finish\": \"stop\", \"tokens\": 9}\n")

execute_process(COMMAND ${GRPO} report ${run} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(STRIP "${out}" written)
if(NOT rc EQUAL 0 OR NOT written STREQUAL "${run}/report.html")
  message(FATAL_ERROR "grpo report: expected exit 0 and ${run}/report.html on stdout, got ${rc}: ${out} ${err}")
endif()
if(NOT EXISTS "${run}/report.html" OR EXISTS "${run}/report.html.tmp")
  message(FATAL_ERROR "grpo report: ${run}/report.html not written (or its .tmp left behind)")
endif()
file(READ "${run}/report.html" page)
foreach(want "<!DOCTYPE html>" "<svg" "data-key=\"reward/mean\"" "data-key=\"eval/pass@1\""
             "&lt;script&gt;x&lt;/script&gt; 1 &amp; 2 = 3")
  string(FIND "${page}" "${want}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "grpo report: the page lacks ${want}")
  endif()
endforeach()
foreach(absent "<script" "http")
  string(FIND "${page}" "${absent}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "grpo report: the page contains ${absent}")
  endif()
endforeach()

# --out and --max-sample-steps 0: another file, no samples section.
execute_process(COMMAND ${GRPO} report ${run} --out ${dir}/page.html --max-sample-steps 0
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(STRIP "${out}" written)
if(NOT rc EQUAL 0 OR NOT written STREQUAL "${dir}/page.html" OR NOT EXISTS "${dir}/page.html")
  message(FATAL_ERROR "grpo report --out: expected exit 0 and ${dir}/page.html, got ${rc}: ${out} ${err}")
endif()
file(READ "${dir}/page.html" page)
string(FIND "${page}" "&lt;script&gt;" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "grpo report --max-sample-steps 0 still shows samples")
endif()

# Errors: exit code, "|", the arguments after `grpo report` separated by "~", "|", the text the
# one error line must contain.
file(MAKE_DIRECTORY ${dir}/empty)
set(cases
  "1|${dir}/absent|${dir}/absent"
  "1|${dir}/empty|${dir}/empty/metrics.jsonl"
  "2|${run}~--max-sample-steps~-1|--max-sample-steps"
  "2|--out~${dir}/page2.html|run_dir")
foreach(case IN LISTS cases)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 want_rc)
  list(GET parts 1 args)
  list(GET parts 2 want)
  string(REPLACE "~" ";" args "${args}")
  execute_process(COMMAND ${GRPO} report ${args} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  string(STRIP "${err}" line)
  string(FIND "${line}" "\n" newline)
  string(FIND "${line}" "${want}" at)
  if(NOT rc EQUAL want_rc OR NOT newline EQUAL -1 OR NOT line MATCHES "^grpo: error: " OR at EQUAL -1
     OR NOT out STREQUAL "")
    message(FATAL_ERROR "grpo report ${args}: expected exit ${want_rc} and one error line naming \"${want}\", "
                        "got exit ${rc}, stderr: ${err} stdout: ${out}")
  endif()
endforeach()
if(EXISTS "${dir}/empty/report.html")
  message(FATAL_ERROR "grpo report wrote a page for a directory without metrics.jsonl")
endif()
file(REMOVE_RECURSE "${dir}")
