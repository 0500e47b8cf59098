#!/usr/bin/env bash
# gpu-check.sh: builds grpo.cpp with CUDA on a GPU machine that has no network and none of our
# Debian packages, runs the GPU tests, the GPU tests under compute-sanitizer and the GPU
# benchmarks, and writes a JSON summary. Run it in the repository root, as any user:
#
#   bash scripts/gpu-check.sh --summary "$OUT/gpu-check.json"
#
# The Debian packages come from the bundle made by scripts/gpu-bundle.sh (default .gpu-bundle,
# carried to the GPU machine beside the working tree). They are unpacked with dpkg-deb -x
# (fallbacks: python3, then ar + tar) into a private prefix (default /tmp/grpo-prefix, never /),
# then this script finishes what dpkg -x leaves undone:
#   - merged /usr: <prefix>/lib, /bin are folded into <prefix>/usr/...; absolute symlinks are
#     pointed into the prefix;
#   - OpenBLAS: the update-alternatives links (libopenblas.so, libblas.so.3, liblapack.so.3,
#     cblas.h, blas.pc ...) to the openblas-pthread flavour;
#   - pkg-config files: prefix=/usr (and any other =/usr, -I/usr, -L/usr) rewritten to the
#     prefix, which works the same with any pkg-config (PKG_CONFIG_SYSROOT_DIR is not used:
#     pkg-config and pkgconf apply it differently, and not to every variable);
#   - the bundled programs (protoc, grpc_cpp_plugin, pkgconf) become small wrappers that set
#     LD_LIBRARY_PATH for themselves only, so the compilers never see the bundle's libraries.
# CMake gets CMAKE_PREFIX_PATH=<prefix>/usr (searched before /usr), PKG_CONFIG_PATH, the system
# pkg-config or else the bundled pkgconf (PKG_CONFIG_EXECUTABLE), and link flags
# -Wl,--disable-new-dtags,-rpath,<prefix libs>: binaries carry an old-style RPATH, which also
# serves their libraries' libraries (libginac -> libcln -> libgmp), so tests and `grpo` run
# without LD_LIBRARY_PATH (the test phases set it anyway).
#
# Phases: unpack, configure (-DGRPO_CUDA=ON -DGRPO_NATIVE=ON, Release, GRPO_SERVICES=ON when
# the bundle has gRPC), build (targets grpo and test_cuda; when one fails, the tests still run
# if test_cuda was linked), test (ctest -L gpu, JUnit counts), sanitizer (compute-sanitizer memcheck on
# test_cuda, time-boxed; GRPO_SANITIZER_FILTER is a gtest filter, default *), bench_model
# (`grpo bench model --device cuda`, JSON kept), bench_torch (bench/torch_baseline.py when
# present, JSON kept), build_all (the whole tree, with the time left). The whole run keeps to
# a time budget (default 560 s, GRPO_CHECK_BUDGET_S) so that it fits a 10-minute slot: the
# sanitizer and the benchmarks get what is left, and the summary says when one was cut.
# Files: beside the summary go gpu-check.log (every phase's full log, one after the other, with
# a header line each), gpu-check-bench-model.json and gpu-check-bench-torch.json (the
# benchmarks' stdout); one file per phase (<phase>.log) and the ctest JUnit file go to
# BUILD/gpu-check-logs/, or beside the summary with --split-logs. (The GPU machine returns at
# most 8 files from $OUT, hence one combined log by default.)
# Exit status: 1 when unpack, configure, build, test or sanitizer failed (a sanitizer run cut
# by its time box without errors is not a failure), 2 for bad usage; the summary is always
# written. Benchmarks and build_all never change the exit status.
#
# Environment: GRPO_SANITIZER_FILTER (gtest filter, default *), GRPO_SANITIZER_TIMEOUT (cap,
# default 240 s), GRPO_BENCH_ARGS (default "--arch qwen3_moe --preset gpu"; --device cuda is
# added), GRPO_TORCH_BENCH_ARGS (replaces the arguments guessed from torch_baseline.py --help),
# GRPO_TORCH_BASELINE (the script, default bench/torch_baseline.py),
# GRPO_BENCH_TIMEOUT (cap per benchmark, default 120 s; the sanitizer leaves that much
# time per benchmark to come), GRPO_CHECK_BUDGET_S, GRPO_CMAKE_ARGS
# (extra configure arguments), CXX / CC (the host compilers, as CMake reads them).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() {
  sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --summary PATH       JSON summary (default BUILD/gpu-check.json); gpu-check.log beside it
  --bundle DIR         the gpu-bundle.sh folder (default .gpu-bundle)
  --prefix DIR         where the bundle is unpacked (default /tmp/grpo-prefix)
  --build-dir DIR      CMake build folder (default build-gpu)
  --jobs N             build jobs (default: all cores)
  --skip-bench         no benchmarks
  --sanitizer          run compute-sanitizer (the default)
  --no-sanitizer       do not
  --services on|off    override the bundle's choice for -DGRPO_SERVICES
  --fresh              configure from scratch (cmake --fresh)
  --configure-only     stop after configure (dry runs on machines without a GPU)
  --build-targets "T"  build only these targets, then go on (default "grpo test_cuda")
  --test-label L       ctest label for the test phase (default gpu)
  --no-build-all       do not build the whole tree at the end
  --split-logs         one log file per phase beside the summary instead of gpu-check.log
EOF
}

SUMMARY="" BUNDLE="$ROOT/.gpu-bundle" PREFIX="/tmp/grpo-prefix" BUILD="$ROOT/build-gpu"
JOBS="$(nproc 2>/dev/null || echo 4)" BENCH=1 SANITIZER=1 SERVICES_OPT="" FRESH=0
CONFIGURE_ONLY=0 TARGETS="grpo test_cuda" TEST_LABEL="gpu" BUILD_ALL=1 SPLIT_LOGS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --summary) SUMMARY="${2:?}"; shift ;;
    --bundle) BUNDLE="${2:?}"; shift ;;
    --prefix) PREFIX="${2:?}"; shift ;;
    --build-dir) BUILD="${2:?}"; shift ;;
    --jobs) JOBS="${2:?}"; shift ;;
    --skip-bench) BENCH=0 ;;
    --sanitizer) SANITIZER=1 ;;
    --no-sanitizer) SANITIZER=0 ;;
    --services) SERVICES_OPT="${2:?}"; shift ;;
    --fresh) FRESH=1 ;;
    --configure-only) CONFIGURE_ONLY=1 ;;
    --build-targets) TARGETS="${2:?}"; shift ;;
    --test-label) TEST_LABEL="${2:?}"; shift ;;
    --no-build-all) BUILD_ALL=0 ;;
    --split-logs) SPLIT_LOGS=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$SERVICES_OPT" in ""|on|off) ;; *) echo "gpu-check: --services takes on or off" >&2; exit 2 ;; esac
case "$JOBS" in ''|*[!0-9]*) echo "gpu-check: --jobs takes a number" >&2; exit 2 ;; esac

abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
BUNDLE="$(abspath "$BUNDLE")"; PREFIX="$(abspath "$PREFIX")"; BUILD="$(abspath "$BUILD")"
SUMMARY="$(abspath "${SUMMARY:-$BUILD/gpu-check.json}")"
SUMDIR="$(dirname "$SUMMARY")"
LOGDIR="$BUILD/gpu-check-logs" COMBINED_LOG="$SUMDIR/gpu-check.log"
[ "$SPLIT_LOGS" = 0 ] || { LOGDIR="$SUMDIR"; COMBINED_LOG=""; }
mkdir -p "$SUMDIR" "$LOGDIR" || { echo "gpu-check: cannot create $SUMDIR or $LOGDIR" >&2; exit 2; }
PLIB="$PREFIX/usr/lib/x86_64-linux-gnu"
BUDGET="${GRPO_CHECK_BUDGET_S:-560}"
SAN_CAP="${GRPO_SANITIZER_TIMEOUT:-240}"
BENCH_CAP="${GRPO_BENCH_TIMEOUT:-120}"
SAN_FILTER="${GRPO_SANITIZER_FILTER:-*}"
[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
ORIG_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
RUN_LD_LIBRARY_PATH="$PLIB${ORIG_LD_LIBRARY_PATH:+:$ORIG_LD_LIBRARY_PATH}"
HAVE_TIMEOUT=0; command -v timeout >/dev/null && HAVE_TIMEOUT=1

START_EPOCH="$(date +%s)"
STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
now() { date +%s; }
left() { echo $((BUDGET - ($(now) - START_EPOCH))); }
say() { echo "gpu-check: $*"; }
warn() { echo "gpu-check: warning: $*" >&2; WARNINGS+=("$*"); }
WARNINGS=()

# ---- JSON --------------------------------------------------------------------------------------
json_str() {
  local s="$1"
  s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\n'/\\n}"; s="${s//$'\t'/\\t}"; s="${s//$'\r'/}"
  s="$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')"
  printf '"%s"' "$s"
}
json_num() { case "$1" in ''|*[!0-9.-]*) printf 'null' ;; *) printf '%s' "$1" ;; esac; }
json_bool() { [ "$1" = 1 ] && printf 'true' || printf 'false'; }

PHASES=(unpack configure build test sanitizer bench_model bench_torch build_all)
declare -A ST=() DUR=() LOG=() RC=() NOTE=() EXTRA=()
for p in "${PHASES[@]}"; do ST[$p]="not_run"; done
EXIT_CODE=0
FINISHED=0
GIT_COMMIT="" GPU_NAME="" GPU_DRIVER="" GPU_COUNT="" GPU_LIST="" V_NVCC="" V_CMAKE="" V_CXX=""
V_NINJA="" V_GLIBC="" V_GLIBCXX="" V_SANITIZER="" V_PYTHON="" PKG_CONFIG_DESC="" SERVICES=0
GRPO_BUNDLE_SERVICES="" GRPO_BUNDLE_DEBS="" GRPO_BUNDLE_BYTES="" GRPO_BUNDLE_NEEDS_GLIBC="" GRPO_BUNDLE_NEEDS_GLIBCXX=""

write_summary() {
  local tmp="$SUMMARY.tmp" p first=1 w
  {
    printf '{\n  "schema": 1,\n'
    printf '  "started": %s,\n' "$(json_str "$STARTED")"
    printf '  "finished": %s,\n' "$(json_str "$(date -u +%Y-%m-%dT%H:%M:%SZ)")"
    printf '  "duration_s": %s,\n' "$(($(now) - START_EPOCH))"
    printf '  "complete": %s,\n' "$(json_bool "$FINISHED")"
    printf '  "result": %s,\n' "$(json_str "$([ "$EXIT_CODE" = 0 ] && echo pass || echo fail)")"
    printf '  "exit_code": %s,\n' "$EXIT_CODE"
    printf '  "host": %s,\n' "$(json_str "$(hostname 2>/dev/null || uname -n)")"
    printf '  "logs": {"combined": %s, "phases_dir": %s},\n' "$(json_str "$COMBINED_LOG")" "$(json_str "$LOGDIR")"
    printf '  "repo": {"path": %s, "git_commit": %s},\n' "$(json_str "$ROOT")" "$(json_str "$GIT_COMMIT")"
    printf '  "gpu": {"name": %s, "driver": %s, "count": %s, "nvidia_smi_L": %s},\n' \
      "$(json_str "$GPU_NAME")" "$(json_str "$GPU_DRIVER")" "$(json_num "$GPU_COUNT")" "$(json_str "$GPU_LIST")"
    printf '  "toolchain": {"nvcc": %s, "cmake": %s, "cxx": %s, "ninja": %s, "glibc": %s, "glibcxx": %s, "pkg_config": %s, "compute_sanitizer": %s, "python3": %s},\n' \
      "$(json_str "$V_NVCC")" "$(json_str "$V_CMAKE")" "$(json_str "$V_CXX")" "$(json_str "$V_NINJA")" \
      "$(json_str "$V_GLIBC")" "$(json_str "$V_GLIBCXX")" "$(json_str "$PKG_CONFIG_DESC")" \
      "$(json_str "$V_SANITIZER")" "$(json_str "$V_PYTHON")"
    printf '  "bundle": {"dir": %s, "debs": %s, "bytes": %s, "services": %s, "needs_glibc": %s, "needs_glibcxx": %s, "prefix": %s},\n' \
      "$(json_str "$BUNDLE")" "$(json_num "${GRPO_BUNDLE_DEBS:-}")" "$(json_num "${GRPO_BUNDLE_BYTES:-}")" \
      "$(json_bool "$SERVICES")" "$(json_str "${GRPO_BUNDLE_NEEDS_GLIBC:-}")" \
      "$(json_str "${GRPO_BUNDLE_NEEDS_GLIBCXX:-}")" "$(json_str "$PREFIX")"
    printf '  "options": {"build_dir": %s, "jobs": %s, "targets": %s, "test_label": %s, "sanitizer": %s, "sanitizer_filter": %s, "bench": %s, "budget_s": %s},\n' \
      "$(json_str "$BUILD")" "$JOBS" "$(json_str "$TARGETS")" "$(json_str "$TEST_LABEL")" \
      "$(json_bool "$SANITIZER")" "$(json_str "$SAN_FILTER")" "$(json_bool "$BENCH")" "$(json_num "$BUDGET")"
    printf '  "warnings": ['
    first=1
    for w in "${WARNINGS[@]}"; do [ $first = 1 ] || printf ', '; first=0; json_str "$w"; done
    printf '],\n  "phases": {\n'
    first=1
    for p in "${PHASES[@]}"; do
      [ $first = 1 ] || printf ',\n'; first=0
      printf '    %s: {"status": %s, "duration_s": %s, "exit_code": %s, "log": %s, "note": %s%s}' \
        "$(json_str "$p")" "$(json_str "${ST[$p]}")" "$(json_num "${DUR[$p]:-}")" "$(json_num "${RC[$p]:-}")" \
        "$(json_str "${LOG[$p]:-}")" "$(json_str "${NOTE[$p]:-}")" "${EXTRA[$p]:-}"
    done
    printf '\n  }\n}\n'
  } >"$tmp" && mv -f "$tmp" "$SUMMARY"
  write_combined_log
}

# all phase logs in one file beside the summary (each cut to its last 4 MB)
write_combined_log() {
  [ -n "$COMBINED_LOG" ] || return 0
  local p
  {
    echo "gpu-check.sh log, started $STARTED, repository $ROOT"
    for p in "${PHASES[@]}"; do
      [ -n "${LOG[$p]:-}" ] && [ -f "${LOG[$p]}" ] || continue
      echo
      echo "===== $p: ${ST[$p]}, ${DUR[$p]:-?} s, exit ${RC[$p]:-?} (${LOG[$p]}) ====="
      tail -c 4000000 "${LOG[$p]}"
    done
  } >"$COMBINED_LOG.tmp" && mv -f "$COMBINED_LOG.tmp" "$COMBINED_LOG"
}

# run_phase NAME TIMEOUT_S cmd... : runs cmd with all output into the phase log; sets ST/DUR/RC.
# TIMEOUT_S 0 means none. Status ok / failed / timeout.
run_phase() {
  local name="$1" limit="$2"; shift 2
  local log="$LOGDIR/$name.log" t0 rc
  LOG[$name]="$log"
  t0="$(now)"
  # in the background + wait: a TERM to this script is handled at once (see on_term)
  if [ "$limit" -gt 0 ] && [ "$HAVE_TIMEOUT" = 1 ]; then
    timeout -k 15 "$limit" "$@" >"$log" 2>&1 &
  else
    "$@" >"$log" 2>&1 &
  fi
  CHILD=$!; CUR_PHASE="$name"; wait "$CHILD"; rc=$?; CHILD=""; CUR_PHASE=""
  DUR[$name]=$(($(now) - t0)); RC[$name]=$rc
  if [ $rc -eq 0 ]; then ST[$name]=ok
  elif [ "$limit" -gt 0 ] && { [ $rc -eq 124 ] || [ $rc -eq 137 ]; }; then ST[$name]=timeout
  else ST[$name]=failed; fi
  return $rc
}
show_tail() { [ -f "$1" ] && { echo "----- last lines of $1"; tail -n "${2:-30}" "$1"; echo "-----"; }; }
phase_line() { say "$(printf '%-12s %-8s %5ss  %s' "$1" "${ST[$1]}" "${DUR[$1]:--}" "${NOTE[$1]:-}")"; }

on_exit() {
  local rc=$?
  if [ "$FINISHED" != 1 ]; then
    [ "$EXIT_CODE" != 0 ] || EXIT_CODE=$((rc == 0 ? 1 : rc))
    WARNINGS+=("gpu-check stopped early (exit $rc)")
    write_summary
  fi
}
CHILD="" CUR_PHASE=""
on_term() {
  [ -z "$CHILD" ] || { kill -TERM "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null; }
  [ -z "$CUR_PHASE" ] || ST[$CUR_PHASE]=interrupted
  exit 143
}
trap on_exit EXIT
trap on_term TERM INT

# ---- facts about this machine --------------------------------------------------------------------
GIT_COMMIT="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)"
if command -v nvidia-smi >/dev/null; then
  GPU_LIST="$(nvidia-smi -L 2>&1)"
  q="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  GPU_NAME="$(head -1 <<<"$q" | cut -d, -f1 | sed 's/^ *//;s/ *$//')"
  GPU_DRIVER="$(head -1 <<<"$q" | cut -d, -f2 | sed 's/^ *//;s/ *$//')"
  GPU_COUNT="$(grep -c '^GPU ' <<<"$GPU_LIST")"
else
  GPU_LIST="nvidia-smi not found"
fi
CXX_BIN="${CXX:-}"; [ -n "$CXX_BIN" ] || CXX_BIN="$(command -v g++ || command -v c++ || true)"
V_NVCC="$(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\), V\([0-9.]*\).*/\2/p')"
V_CMAKE="$(cmake --version 2>/dev/null | head -1 | awk '{print $3}')"
V_CXX="$([ -n "$CXX_BIN" ] && "$CXX_BIN" --version 2>/dev/null | head -1)"
V_NINJA="$(ninja --version 2>/dev/null)"
V_GLIBC="$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')"
if [ -n "$CXX_BIN" ]; then
  libstdcxx="$("$CXX_BIN" -print-file-name=libstdc++.so.6 2>/dev/null)"
  [ -f "$libstdcxx" ] && V_GLIBCXX="$(grep -aoE 'GLIBCXX_3\.4\.[0-9]+' "$libstdcxx" | sed 's/GLIBCXX_//' | sort -uV | tail -1)"
fi
SANITIZER_BIN="$(command -v compute-sanitizer || true)"
[ -n "$SANITIZER_BIN" ] || for c in /usr/local/cuda/compute-sanitizer/compute-sanitizer /usr/local/cuda/bin/compute-sanitizer; do
  [ -x "$c" ] && SANITIZER_BIN="$c" && break
done
V_SANITIZER="$([ -n "$SANITIZER_BIN" ] && "$SANITIZER_BIN" --version 2>/dev/null | grep -oE '[0-9]{4}\.[0-9.]+' | head -1)"
V_PYTHON="$(python3 --version 2>/dev/null | awk '{print $2}')"

# bundle facts
if [ -f "$BUNDLE/bundle.env" ]; then
  while IFS='=' read -r k v; do
    case "$k" in GRPO_BUNDLE_*) printf -v "$k" '%s' "$v" ;; esac
  done < <(grep -E '^GRPO_BUNDLE_[A-Z_]+=' "$BUNDLE/bundle.env")
fi
if [ -n "$SERVICES_OPT" ]; then [ "$SERVICES_OPT" = on ] && SERVICES=1
elif [ "${GRPO_BUNDLE_SERVICES:-0}" = 1 ]; then SERVICES=1; fi

say "repository $ROOT${GIT_COMMIT:+ (commit ${GIT_COMMIT:0:12})}"
say "GPUs:"; sed 's/^/gpu-check:   /' <<<"$GPU_LIST"
say "nvcc ${V_NVCC:-missing}, cmake ${V_CMAKE:-missing}, ninja ${V_NINJA:-missing}, compute-sanitizer ${V_SANITIZER:-missing}, python3 ${V_PYTHON:-missing}"
say "c++: ${V_CXX:-missing} (${CXX_BIN:-none}), glibc ${V_GLIBC:-?}, libstdc++ GLIBCXX_${V_GLIBCXX:-?}"

verlt() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$1" ]; }
[ -n "$V_CMAKE" ] || { warn "cmake not found"; }
if [ -n "$V_CMAKE" ] && verlt "$V_CMAKE" 3.25; then warn "cmake $V_CMAKE is older than 3.25 (the project's minimum)"; fi
[ -n "$CXX_BIN" ] || warn "no C++ compiler (g++) found: the build cannot work (the bundle does not ship one)"
if [ -n "$V_GLIBC" ] && [ -n "${GRPO_BUNDLE_NEEDS_GLIBC:-}" ] && verlt "$V_GLIBC" "$GRPO_BUNDLE_NEEDS_GLIBC"; then
  warn "glibc $V_GLIBC is older than the $GRPO_BUNDLE_NEEDS_GLIBC the bundle's Debian libraries need"
fi
if [ -n "$V_GLIBCXX" ] && [ -n "${GRPO_BUNDLE_NEEDS_GLIBCXX:-}" ] && verlt "$V_GLIBCXX" "$GRPO_BUNDLE_NEEDS_GLIBCXX"; then
  warn "libstdc++ has GLIBCXX_$V_GLIBCXX, older than the GLIBCXX_$GRPO_BUNDLE_NEEDS_GLIBCXX the bundle's libraries need"
fi
write_summary

# ---- unpack ----------------------------------------------------------------------------------------
extract_deb() {  # deb dest
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$1" "$2"
  elif command -v python3 >/dev/null; then
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
deb, dest = sys.argv[1], sys.argv[2]
with open(deb, "rb") as f:
    if f.read(8) != b"!<arch>\n":
        sys.exit(f"{deb}: not an ar archive")
    while True:
        head = f.read(60)
        if len(head) < 60:
            sys.exit(f"{deb}: no data.tar member")
        name = head[:16].decode().strip().rstrip("/")
        size = int(head[48:58].decode().strip())
        data = f.read(size)
        if size % 2:
            f.read(1)
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as t:
                if hasattr(tarfile, "fully_trusted_filter"):
                    t.extractall(dest, filter="fully_trusted")
                else:
                    t.extractall(dest)
            break
PY
  elif command -v ar >/dev/null; then
    local member
    member="$(ar t "$1" | grep '^data\.tar')" || return 1
    case "$member" in
      *.xz) ar p "$1" "$member" | tar -xJ -C "$2" ;;
      *.gz) ar p "$1" "$member" | tar -xz -C "$2" ;;
      *.zst) ar p "$1" "$member" | tar --zstd -x -C "$2" ;;
      *) ar p "$1" "$member" | tar -x -C "$2" ;;
    esac
  else
    echo "no dpkg-deb, python3 or ar to unpack $1" >&2; return 1
  fi
}

fix_prefix() {
  local P="$PREFIX" d l t f n
  # merged /usr: fold <P>/lib, /lib64, /bin, /sbin into <P>/usr and link them
  for d in lib lib64 bin sbin; do
    if [ -d "$P/$d" ] && [ ! -L "$P/$d" ]; then
      mkdir -p "$P/usr/$d"
      cp -a "$P/$d/." "$P/usr/$d/" && rm -rf "${P:?}/$d" && ln -s "usr/$d" "$P/$d"
    fi
  done
  # absolute symlinks point into the prefix
  while IFS= read -r -d '' l; do
    t="$(readlink "$l")"
    case "$t" in /*) ln -sfn "$P$t" "$l" ;; esac
  done < <(find "$P" -type l -print0)
  # OpenBLAS: the links update-alternatives would make (pthread flavour)
  local ob="$PLIB/openblas-pthread"
  if [ -d "$ob" ]; then
    for f in "$ob"/lib*.so*; do
      n="$(basename "$f")"
      [ -e "$PLIB/$n" ] || ln -s "openblas-pthread/$n" "$PLIB/$n"
    done
    mkdir -p "$PLIB/pkgconfig" "$P/usr/include/x86_64-linux-gnu"
    for n in blas lapack; do
      [ -e "$ob/pkgconfig/$n-openblas.pc" ] && ln -sfn "../openblas-pthread/pkgconfig/$n-openblas.pc" "$PLIB/pkgconfig/$n.pc"
    done
    [ -e "$ob/pkgconfig/openblas.pc" ] && ln -sfn "../openblas-pthread/pkgconfig/openblas.pc" "$PLIB/pkgconfig/openblas.pc"
    for f in "$P"/usr/include/x86_64-linux-gnu/openblas-pthread/*.h; do
      [ -e "$f" ] || continue
      n="$(basename "$f")"
      [ -e "$P/usr/include/x86_64-linux-gnu/$n" ] || ln -s "openblas-pthread/$n" "$P/usr/include/x86_64-linux-gnu/$n"
    done
  fi
  # pkg-config files: /usr -> <P>/usr
  while IFS= read -r -d '' f; do
    sed -i -E \
      -e "s#^([A-Za-z_][A-Za-z0-9_.]*[[:space:]]*=[[:space:]]*)/usr(/|\$)#\\1$P/usr\\2#" \
      -e "s#^([A-Za-z_][A-Za-z0-9_.]*[[:space:]]*=[[:space:]]*)/lib/#\\1$P/usr/lib/#" \
      -e "s#(-[IL])/usr/#\\1$P/usr/#g" "$f"
  done < <(find "$P" -type f -name '*.pc' -path '*/pkgconfig/*' -print0)
  # bundled programs run with the bundle's libraries, and nothing else does
  for f in "$P"/usr/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    case "$f" in *.real) continue ;; esac
    [ "$(head -c 4 "$f" | tail -c 3)" = ELF ] || continue
    mv "$f" "$f.real"
    printf '#!/bin/sh\n# made by gpu-check.sh: the bundled %s with the bundle'"'"'s libraries\nLD_LIBRARY_PATH="%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "%s" "$@"\n' \
      "$(basename "$f")" "$PLIB" "$f.real" >"$f"
    chmod +x "$f"
  done
  # for people: source it to use the prefix by hand
  cat >"$P/grpo-env.sh" <<EOF
# made by scripts/gpu-check.sh: the bundle's libraries for a shell (. $P/grpo-env.sh)
export LD_LIBRARY_PATH="$PLIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_PATH="$PLIB/pkgconfig:$P/usr/share/pkgconfig\${PKG_CONFIG_PATH:+:\$PKG_CONFIG_PATH}"
export CMAKE_PREFIX_PATH="$P/usr\${CMAKE_PREFIX_PATH:+:\$CMAKE_PREFIX_PATH}"
EOF
}

FIXUP_VERSION=2
unpack_bundle() {
  local marker="$PREFIX/.grpo-gpu-check" sig deb n=0
  case "$PREFIX" in /|/usr|/usr/*|/bin|/lib|/lib64|/etc|/opt|/root|/home|"$HOME") echo "refusing prefix $PREFIX"; return 1 ;; esac
  sig="fixups $FIXUP_VERSION $(cat "$BUNDLE/MANIFEST.tsv" 2>/dev/null; ls -l "$BUNDLE"/*.deb 2>/dev/null | awk '{print $5, $NF}')"
  if [ -f "$marker" ] && [ "$(cat "$marker")" = "$sig" ]; then
    echo "prefix $PREFIX is up to date with the bundle"
    return 0
  fi
  if [ -e "$PREFIX" ] && [ ! -f "$marker" ] && [ -n "$(ls -A "$PREFIX" 2>/dev/null)" ]; then
    echo "refusing to empty $PREFIX: it is not empty and gpu-check.sh did not make it"; return 1
  fi
  rm -rf "$PREFIX" && mkdir -p "$PREFIX" || return 1
  for deb in "$BUNDLE"/*.deb; do
    echo "unpack $(basename "$deb")"
    extract_deb "$deb" "$PREFIX" || { echo "failed to unpack $deb"; return 1; }
    n=$((n + 1))
  done
  [ "$n" -gt 0 ] || { echo "no .deb files in $BUNDLE"; return 1; }
  fix_prefix || return 1
  printf '%s' "$sig" >"$marker"
  echo "unpacked $n packages into $PREFIX"
}

finish() {
  FINISHED=1
  write_summary
  echo
  say "$(printf '%-12s %-8s %6s  %s' phase status time notes)"
  for p in "${PHASES[@]}"; do phase_line "$p"; done
  for w in "${WARNINGS[@]}"; do say "warning: $w"; done
  say "summary: $SUMMARY${COMBINED_LOG:+, log: $COMBINED_LOG}"
  say "result: $([ "$EXIT_CODE" = 0 ] && echo PASS || echo FAIL)"
  exit "$EXIT_CODE"
}

if ! ls "$BUNDLE"/*.deb >/dev/null 2>&1; then
  ST[unpack]=failed; NOTE[unpack]="no bundle at $BUNDLE (run scripts/gpu-bundle.sh and carry it)"
  say "unpack: ${NOTE[unpack]}"
  EXIT_CODE=1; finish
fi
say "unpack: $BUNDLE -> $PREFIX"
if run_phase unpack 0 unpack_bundle; then
  NOTE[unpack]="$(tail -1 "${LOG[unpack]}")"
else
  NOTE[unpack]="see ${LOG[unpack]}"; show_tail "${LOG[unpack]}"; EXIT_CODE=1; finish
fi
phase_line unpack
export PKG_CONFIG_PATH="$PLIB/pkgconfig:$PREFIX/usr/share/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"

# pkg-config: the machine's, else the bundled pkgconf (a wrapper, see fix_prefix)
PKG_CONFIG_BIN="${PKG_CONFIG:-}"
[ -n "$PKG_CONFIG_BIN" ] || PKG_CONFIG_BIN="$(command -v pkg-config || command -v pkgconf || true)"
if [ -n "$PKG_CONFIG_BIN" ]; then
  PKG_CONFIG_DESC="$PKG_CONFIG_BIN (system, $("$PKG_CONFIG_BIN" --version 2>/dev/null))"
elif [ -x "$PREFIX/usr/bin/pkgconf" ]; then
  PKG_CONFIG_BIN="$PREFIX/usr/bin/pkgconf"
  PKG_CONFIG_DESC="$PKG_CONFIG_BIN (bundled, $("$PKG_CONFIG_BIN" --version 2>/dev/null))"
else
  PKG_CONFIG_DESC="none"
  warn "no pkg-config on this machine and none in the bundle"
fi
say "pkg-config: $PKG_CONFIG_DESC"
write_summary

# ---- configure -----------------------------------------------------------------------------------
LINK_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$PLIB -Wl,-rpath-link,$PLIB"
CMAKE_ARGS=(
  -S "$ROOT" -B "$BUILD"
  -DCMAKE_BUILD_TYPE=Release -DGRPO_CUDA=ON -DGRPO_NATIVE=ON
  -DGRPO_SERVICES="$([ "$SERVICES" = 1 ] && echo ON || echo OFF)"
  -DCMAKE_PREFIX_PATH="$PREFIX/usr"
  -DCMAKE_LIBRARY_PATH="$PLIB"
  -DCMAKE_INCLUDE_PATH="$PREFIX/usr/include/x86_64-linux-gnu;$PREFIX/usr/include"
  -DCMAKE_EXE_LINKER_FLAGS="$LINK_FLAGS"
  -DCMAKE_SHARED_LINKER_FLAGS="$LINK_FLAGS"
  -DCMAKE_MODULE_LINKER_FLAGS="$LINK_FLAGS"
)
[ -n "$PKG_CONFIG_BIN" ] && CMAKE_ARGS+=(-DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG_BIN")
if [ ! -f "$BUILD/CMakeCache.txt" ] || [ "$FRESH" = 1 ]; then
  command -v ninja >/dev/null && CMAKE_ARGS+=(-G Ninja)
fi
[ "$FRESH" = 1 ] && CMAKE_ARGS+=(--fresh)
# shellcheck disable=SC2206
[ -n "${GRPO_CMAKE_ARGS:-}" ] && CMAKE_ARGS+=(${GRPO_CMAKE_ARGS})
say "configure: $BUILD (services $([ "$SERVICES" = 1 ] && echo ON || echo OFF))"
if run_phase configure 0 cmake "${CMAKE_ARGS[@]}"; then
  NOTE[configure]="$(grep -m1 -o 'grpo: CUDA backend.*' "${LOG[configure]}" || true)"
else
  NOTE[configure]="see ${LOG[configure]}"; show_tail "${LOG[configure]}" 40; EXIT_CODE=1
fi
phase_line configure
write_summary
[ "${ST[configure]}" = ok ] || finish
[ "$CONFIGURE_ONLY" = 0 ] || finish

# ---- build -----------------------------------------------------------------------------------------
# Keep going past a failed target, so that a broken CLI does not hide the GPU test results.
keep_going=(-- -k 0)
grep -q '^CMAKE_GENERATOR:INTERNAL=Ninja' "$BUILD/CMakeCache.txt" 2>/dev/null || keep_going=(-- -k)
build_marker="$BUILD/.gpu-check-build-start"
touch "$build_marker"
limit=$(( $(left) - 30 )); [ "$limit" -ge 60 ] || limit=60
say "build: ${TARGETS} (-j $JOBS, at most ${limit} s)"
# shellcheck disable=SC2086
if run_phase build "$limit" cmake --build "$BUILD" -j "$JOBS" --target $TARGETS "${keep_going[@]}"; then
  NOTE[build]="$TARGETS"
else
  NOTE[build]="$TARGETS: see ${LOG[build]}"
  grep -E 'error|FAILED' "${LOG[build]}" | head -20
  show_tail "${LOG[build]}" 30; EXIT_CODE=1
fi
phase_line build
write_summary
if [ "${ST[build]}" != ok ]; then
  # go on to the tests only with a test_cuda linked by this build (not a stale one)
  if [ -z "$(find "$BUILD" -type f -name test_cuda -newer "$build_marker" 2>/dev/null | head -1)" ]; then
    ST[test]=skipped; NOTE[test]="no test_cuda from this build"
    finish
  fi
  warn "the build failed but test_cuda was linked: running the GPU tests anyway"
fi

# ---- tests -----------------------------------------------------------------------------------------
junit="$LOGDIR/ctest-$TEST_LABEL.xml"
rm -f "$junit"
limit=$(( $(left) - 30 )); [ "$limit" -ge 60 ] || limit=60
say "test: ctest -L $TEST_LABEL (at most ${limit} s)"
run_phase test "$limit" env LD_LIBRARY_PATH="$RUN_LD_LIBRARY_PATH" \
  ctest --test-dir "$BUILD" -L "$TEST_LABEL" --output-on-failure --no-tests=error --output-junit "$junit"
t_total="" t_failed="" t_skipped="" t_disabled="" t_passed=""
if [ -f "$junit" ]; then
  head_line="$(tr '\n\t' '  ' <"$junit" | grep -o '<testsuite [^>]*>' | head -1)"
  attr() { sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p" <<<"$head_line"; }
  t_total="$(attr tests)"; t_failed="$(attr failures)"; t_skipped="$(attr skipped)"; t_disabled="$(attr disabled)"
  t_passed=$(( ${t_total:-0} - ${t_failed:-0} - ${t_skipped:-0} - ${t_disabled:-0} ))
fi
EXTRA[test]=", \"junit\": $(json_str "$junit"), \"tests\": $(json_num "$t_total"), \"passed\": $(json_num "$t_passed"), \"failed\": $(json_num "$t_failed"), \"skipped\": $(json_num "$t_skipped"), \"disabled\": $(json_num "$t_disabled")"
NOTE[test]="${t_passed:-?} passed, ${t_failed:-?} failed, ${t_skipped:-?} skipped"
if [ "${ST[test]}" != ok ]; then
  EXIT_CODE=1
  grep -E '^\s*[0-9]+ - |tests passed|Failed|Not Run' "${LOG[test]}" | tail -20
fi
[ "${t_skipped:-0}" = 0 ] || warn "${t_skipped} GPU tests skipped (is the GPU visible to the tests?)"
phase_line test
write_summary

# ---- compute-sanitizer -------------------------------------------------------------------------------
bench_reserve=0
if [ "$BENCH" = 1 ]; then
  bench_reserve="$BENCH_CAP"
  [ -f "${GRPO_TORCH_BASELINE:-$ROOT/bench/torch_baseline.py}" ] && bench_reserve=$((2 * BENCH_CAP))
fi
if [ "$SANITIZER" = 1 ]; then
  test_bin="$(find "$BUILD" -type f -name test_cuda -perm -u+x 2>/dev/null | head -1)"
  limit=$(( $(left) - bench_reserve - 20 )); [ "$limit" -le "$SAN_CAP" ] || limit="$SAN_CAP"
  if [ -z "$SANITIZER_BIN" ]; then
    ST[sanitizer]=skipped; NOTE[sanitizer]="compute-sanitizer not found"; warn "compute-sanitizer not found"
  elif [ -z "$test_bin" ]; then
    ST[sanitizer]=skipped; NOTE[sanitizer]="no test_cuda binary in $BUILD"
  elif [ "$limit" -lt 30 ]; then
    ST[sanitizer]=skipped; NOTE[sanitizer]="no time left in the ${BUDGET} s budget"; warn "sanitizer skipped: no time left"
  else
    say "sanitizer: compute-sanitizer memcheck $test_bin --gtest_filter=$SAN_FILTER (time box ${limit} s)"
    run_phase sanitizer "$limit" env LD_LIBRARY_PATH="$RUN_LD_LIBRARY_PATH" \
      "$SANITIZER_BIN" --tool memcheck --error-exitcode 1 "$test_bin" --gtest_filter="$SAN_FILTER" --gtest_color=no
    slog="${LOG[sanitizer]}"
    s_errors="$(grep -oE 'ERROR SUMMARY: [0-9]+' "$slog" | tail -1 | grep -oE '[0-9]+$')"
    s_reported="$(grep -cE '^========= (Invalid|Program hit|Uninitialized|Leaked|Error|Malloc|Cuda API|Host API)' "$slog")"
    s_ok="$(grep -cE '^\[       OK \]' "$slog")"
    s_skipped="$(grep -cE '^\[  SKIPPED \] .* \([0-9]+ ms\)$' "$slog")"
    s_failed="$(grep -cE '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$slog")"
    cut=0
    if [ "${ST[sanitizer]}" = timeout ]; then
      cut=1
      if [ "${s_reported:-0}" -gt 0 ] || [ "${s_failed:-0}" -gt 0 ]; then ST[sanitizer]=failed; fi
      warn "the sanitizer run was cut by its ${limit} s time box after ${s_ok} tests"
    fi
    EXTRA[sanitizer]=", \"timeout_s\": $limit, \"cut\": $(json_bool "$cut"), \"filter\": $(json_str "$SAN_FILTER"), \"errors\": $(json_num "${s_errors:-$s_reported}"), \"tests_passed\": $(json_num "$s_ok"), \"tests_failed\": $(json_num "$s_failed"), \"tests_skipped\": $(json_num "$s_skipped")"
    NOTE[sanitizer]="${s_errors:-$s_reported} errors, ${s_ok} tests passed, ${s_failed} failed, ${s_skipped} skipped$([ "$cut" = 1 ] && echo ", cut after ${limit} s")"
    if [ "${ST[sanitizer]}" = failed ]; then
      EXIT_CODE=1
      grep -E '^========= ' "$slog" | head -30
      grep -E '^\[  FAILED  \]' "$slog" | head -10
    fi
  fi
else
  ST[sanitizer]=skipped; NOTE[sanitizer]="--no-sanitizer"
fi
phase_line sanitizer
write_summary

# ---- benchmarks ------------------------------------------------------------------------------------
grpo_bin="$BUILD/cli/grpo"
valid_json() {
  [ -s "$1" ] || return 1
  if command -v python3 >/dev/null; then python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$1" 2>/dev/null
  else head -c 1 "$1" | grep -q '[{[]'; fi
}
if [ "$BENCH" = 1 ]; then
  # grpo bench model on the GPU
  bjson="$SUMDIR/gpu-check-bench-model.json" cfgdir="$BUILD/gpu-check-bench-config"
  rm -f "$bjson"
  limit=$(( $(left) - 20 )); [ "$limit" -le "$BENCH_CAP" ] || limit="$BENCH_CAP"
  if [ ! -x "$grpo_bin" ]; then
    ST[bench_model]=skipped; NOTE[bench_model]="no $grpo_bin"
  elif ! help="$("$grpo_bin" bench model --help 2>&1)" || ! grep -q cuda <<<"$help"; then
    ST[bench_model]=skipped; NOTE[bench_model]="grpo bench model has no --device cuda yet"
  elif [ "$limit" -lt 20 ]; then
    ST[bench_model]=skipped; NOTE[bench_model]="no time left"
  else
    read -ra bargs <<<"${GRPO_BENCH_ARGS:---arch qwen3_moe --preset gpu}"
    grep -q -- '--device' <<<"${bargs[*]}" || bargs+=(--device cuda)
    if grep -q -- '--save-config' <<<"$help"; then rm -rf "$cfgdir"; mkdir -p "$cfgdir"; bargs+=(--save-config "$cfgdir"); fi
    say "bench_model: grpo bench model ${bargs[*]} (at most ${limit} s)"
    LOG[bench_model]="$LOGDIR/bench_model.log"
    t0="$(now)"
    if [ "$HAVE_TIMEOUT" = 1 ]; then
      timeout -k 10 "$limit" "$grpo_bin" bench model "${bargs[@]}" >"$bjson" 2>"${LOG[bench_model]}" &
    else
      "$grpo_bin" bench model "${bargs[@]}" >"$bjson" 2>"${LOG[bench_model]}" &
    fi
    CHILD=$!; wait "$CHILD"; rc=$?; CHILD=""
    DUR[bench_model]=$(($(now) - t0)); RC[bench_model]=$rc
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then ST[bench_model]=timeout
    elif [ $rc -ne 0 ]; then ST[bench_model]=failed
    elif valid_json "$bjson"; then ST[bench_model]=ok
    else ST[bench_model]=failed; NOTE[bench_model]="stdout is not JSON"; fi
    [ -s "$bjson" ] || rm -f "$bjson"
    EXTRA[bench_model]=", \"args\": $(json_str "${bargs[*]}"), \"json\": $(json_str "$([ -f "$bjson" ] && echo "$bjson")")"
    if [ "${ST[bench_model]}" = ok ]; then NOTE[bench_model]="$bjson"
    elif [ -z "${NOTE[bench_model]:-}" ]; then NOTE[bench_model]="exit $rc, see ${LOG[bench_model]}"; fi
    [ "${ST[bench_model]}" = ok ] || show_tail "${LOG[bench_model]}" 15
  fi
  phase_line bench_model
  write_summary

  # the PyTorch baseline (another process, with the machine's own libraries)
  tscript="${GRPO_TORCH_BASELINE:-$ROOT/bench/torch_baseline.py}" tjson="$SUMDIR/gpu-check-bench-torch.json"
  rm -f "$tjson"
  limit=$(( $(left) - 15 )); [ "$limit" -le "$BENCH_CAP" ] || limit="$BENCH_CAP"
  if [ ! -f "$tscript" ]; then
    ST[bench_torch]=skipped; NOTE[bench_torch]="$tscript not found"
  elif ! command -v python3 >/dev/null; then
    ST[bench_torch]=skipped; NOTE[bench_torch]="python3 not found"
  elif [ "$limit" -lt 20 ]; then
    ST[bench_torch]=skipped; NOTE[bench_torch]="no time left"
  else
    if [ -n "${GRPO_TORCH_BENCH_ARGS:-}" ]; then
      read -ra targs <<<"$GRPO_TORCH_BENCH_ARGS"
    else
      # guess from its --help: the config saved by grpo bench model, else arch/preset; the GPU
      thelp="$(LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" timeout 60 python3 "$tscript" --help 2>&1 || true)"
      targs=()
      read -ra bargs0 <<<"${GRPO_BENCH_ARGS:---arch qwen3_moe --preset gpu}"
      if grep -q -- '--config' <<<"$thelp" && [ -f "$cfgdir/config.json" ]; then targs+=(--config "$cfgdir")
      else
        for ((i = 0; i < ${#bargs0[@]}; i++)); do
          case "${bargs0[$i]}" in --arch|--preset) grep -q -- "${bargs0[$i]}" <<<"$thelp" && targs+=("${bargs0[$i]}" "${bargs0[$((i + 1))]:-}") ;; esac
        done
      fi
      grep -q -- '--device' <<<"$thelp" && targs+=(--device cuda)
    fi
    say "bench_torch: python3 $tscript ${targs[*]} (at most ${limit} s)"
    LOG[bench_torch]="$LOGDIR/bench_torch.log"
    t0="$(now)"
    (cd "$ROOT" && LD_LIBRARY_PATH="$ORIG_LD_LIBRARY_PATH" exec timeout -k 10 "$limit" python3 "$tscript" "${targs[@]}") \
      >"$tjson" 2>"${LOG[bench_torch]}" &
    CHILD=$!; wait "$CHILD"; rc=$?; CHILD=""
    DUR[bench_torch]=$(($(now) - t0)); RC[bench_torch]=$rc
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then ST[bench_torch]=timeout
    elif [ $rc -ne 0 ]; then ST[bench_torch]=failed
    elif valid_json "$tjson"; then ST[bench_torch]=ok
    else ST[bench_torch]=failed; NOTE[bench_torch]="stdout is not JSON"; fi
    [ -s "$tjson" ] || rm -f "$tjson"
    EXTRA[bench_torch]=", \"args\": $(json_str "${targs[*]}"), \"json\": $(json_str "$([ -f "$tjson" ] && echo "$tjson")")"
    if [ "${ST[bench_torch]}" = ok ]; then NOTE[bench_torch]="$tjson"
    elif [ -z "${NOTE[bench_torch]:-}" ]; then NOTE[bench_torch]="exit $rc, see ${LOG[bench_torch]}"; fi
    [ "${ST[bench_torch]}" = ok ] || show_tail "${LOG[bench_torch]}" 15
  fi
  phase_line bench_torch
else
  ST[bench_model]=skipped; ST[bench_torch]=skipped; NOTE[bench_model]="--skip-bench"; NOTE[bench_torch]="--skip-bench"
fi
write_summary

# ---- the whole tree, with the time left ------------------------------------------------------------
if [ "$BUILD_ALL" = 1 ]; then
  limit=$(( $(left) - 10 ))
  if [ "$limit" -lt 30 ]; then
    ST[build_all]=skipped; NOTE[build_all]="no time left"
  else
    say "build_all: the whole tree (-j $JOBS, at most ${limit} s)"
    if run_phase build_all "$limit" cmake --build "$BUILD" -j "$JOBS"; then NOTE[build_all]="whole tree"
    elif [ "${ST[build_all]}" = timeout ]; then NOTE[build_all]="cut after ${limit} s (time budget)"
    else NOTE[build_all]="see ${LOG[build_all]}"; grep -E '^FAILED' "${LOG[build_all]}" | head -10; fi
  fi
else
  ST[build_all]=skipped; NOTE[build_all]="--no-build-all"
fi
phase_line build_all
finish
