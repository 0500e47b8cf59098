#!/usr/bin/env bash
# gpu-bundle.sh [DIR]: gathers the Debian 12 packages that grpo.cpp needs to build and run its
# GPU tests on a machine that has no network and none of our Debian packages (see README, "GPU").
# Run it on a Debian 12 machine with apt (root, or a user that may run apt-get download);
# scripts/gpu-check.sh unpacks the result into a private prefix on the GPU machine.
#
#   DIR (default .gpu-bundle, git-ignored) ends up holding only .deb files plus MANIFEST.tsv
#   and bundle.env. Idempotent: packages already in DIR are not downloaded again, files that
#   are no longer wanted (old versions, services toggled off) are removed.
#
# What goes in (dependency closure of the roots below, first alternative of each "a | b"):
#   core:     OpenBLAS (pthread flavour), nlohmann-json, CLI11, PCRE2, ICU, GiNaC/CLN/GMP,
#             Boost headers, GoogleTest/GoogleMock, pkgconf (the GPU machine may lack pkg-config)
#   services: gRPC, protobuf, protoc, grpc_cpp_plugin (+ absl, re2, c-ares, OpenSSL, zlib),
#             included when the whole bundle still fits under the size limit.
#   Google benchmark is not shipped: the build does not use it (bench/ is our own code).
# What stays out (BASE_EXCLUDE): glibc and its -dev parts, the compiler's own runtime and
# headers (libgcc-s1, libstdc++6, libstdc++-12-dev, libgcc-12-dev, libgomp1 for OpenMP, the
# sanitizer runtimes) and Kerberos/tirpc/libcrypt pulled in through libc6-dev: any machine
# that has g++ has its own, and mixing in Debian's would shadow the host toolchain.
# libgfortran5/libquadmath0 (OpenBLAS needs them) ARE shipped: gfortran is rarely installed.
#
# Slimming (to stay under the limit): in every package, static archives lib*.a in a folder that
# also holds shared lib*.so* are dropped (we link shared; GoogleTest ships only .a, kept whole).
# Documentation other than copyright files goes too. Slimmed packages are repacked as
# <name>_<version>_<arch>.slim.deb (still plain .debs). After a change to these rules, delete
# DIR to rebuild it (an existing .slim.deb is reused as it is).
# Boost: libboost1.74-dev is 9.5 MB (130 MB unpacked) and shipped whole by default (the bundle
# fits). GRPO_BUNDLE_BOOST=subset cuts it to 1.8 MB: only the Boost libraries that our sources
# include, directly or through other Boost headers (g++ -M over every #include <boost/...> in
# the tree, then whole top-level modules such as boost/asio/), plus GRPO_BUNDLE_BOOST_EXTRA
# ="mod1 mod2". A subset bundle must be rebuilt when a source starts using another Boost library.
#
# Environment: GRPO_BUNDLE_MAX_MB (default 60: hard limit, in 10^6 bytes),
# GRPO_BUNDLE_SERVICES=auto|on|off (default auto: include gRPC when it fits).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/.gpu-bundle}"
MAX_MB="${GRPO_BUNDLE_MAX_MB:-60}"
SERVICES="${GRPO_BUNDLE_SERVICES:-auto}"
BOOST_MODE="${GRPO_BUNDLE_BOOST:-full}"
MAX_BYTES=$((MAX_MB * 1000 * 1000))

CORE_ROOTS=(libopenblas-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev libginac-dev
            libboost1.74-dev libgtest-dev libgmock-dev pkgconf)
SERVICE_ROOTS=(libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc)
BASE_EXCLUDE=(
  # glibc, its headers and what libc6-dev drags in
  libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt1 libcrypt-dev libnsl2 libnsl-dev
  libtirpc3 libtirpc-dev libtirpc-common rpcsvc-proto libkrb5-3 libk5crypto3 libkrb5support0
  libgssapi-krb5-2 libkeyutils1 libcom-err2 libselinux1 libpcre3
  # the C/C++ compiler's runtime and headers (the GPU machine's g++ brings its own)
  gcc-12-base libgcc-s1 libstdc++6 libgcc-12-dev libstdc++-12-dev libgomp1 libitm1 libatomic1
  libasan8 liblsan0 libtsan2 libubsan1 libhwasan0
  # Debian tooling, never needed to build or run
  debconf dpkg perl-base tar sensible-utils
)

say() { echo "gpu-bundle: $*"; }
die() { echo "gpu-bundle: error: $*" >&2; exit 1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }

for tool in apt-get apt-cache dpkg-deb awk; do
  command -v "$tool" >/dev/null || die "$tool not found: run this on the Debian 12 development machine"
done
case "$SERVICES" in auto|on|off) ;; *) die "GRPO_BUNDLE_SERVICES must be auto, on or off" ;; esac
case "$BOOST_MODE" in subset|full) ;; *) die "GRPO_BUNDLE_BOOST must be subset or full" ;; esac

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
WORK="$DIR/.work"
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

# ---- dependency closure ----------------------------------------------------------------------
# apt-cache depends --recurse prints each package once with its (Pre)Depends; "|" marks "or the
# next line"; a virtual package <v> is followed by its providers (deeper indentation). awk
# turns that into "pkg<TAB>choice1|choice2..." lines; the walk below takes the first choice.
dep_graph() {
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "$@" | awk '
    function flush_group() { if (ng > 0) { g = grp[1]; for (i = 2; i <= ng; i++) g = g "|" grp[i]; print cur "\t" g } ng = 0; open = 0 }
    /^[^ ]/ { flush_group(); cur = $1; next }
    /^ [ |](Pre)?Depends: / {
      if (!open) flush_group()
      open = (substr($0, 2, 1) == "|")
      d = $2; sub(/:any$/, "", d)
      grp[++ng] = d; virt = (d ~ /^</)
      next
    }
    /^    [^ ]/ { if (virt && ng > 0) { grp[ng] = $1; virt = 0 } next }
    END { flush_group() }'
}

closure() {  # roots... -> selected package names, one per line
  local graph
  graph="$(dep_graph "$@")"
  declare -A excluded=() seen=()
  local p
  for p in "${BASE_EXCLUDE[@]}"; do excluded[$p]=1; done
  local queue=("$@") picked=()
  while [ ${#queue[@]} -gt 0 ]; do
    p="${queue[0]}"; queue=("${queue[@]:1}")
    [ -n "${seen[$p]:-}" ] && continue
    seen[$p]=1
    [ -n "${excluded[$p]:-}" ] && continue
    picked+=("$p")
    local choice alts a x
    while IFS=$'\t' read -r _ alts; do
      [ -n "$alts" ] || continue
      choice=""
      IFS='|' read -ra a <<<"$alts"
      # an alternative already chosen or excluded (present on any base system) satisfies it
      for x in "${a[@]}"; do
        if [ -n "${seen[$x]:-}" ] || [ -n "${excluded[$x]:-}" ]; then choice="$x"; break; fi
      done
      [ -n "$choice" ] || choice="${a[0]}"
      [[ "$choice" == \<* ]] && continue   # virtual package with no provider
      queue+=("$choice")
    done < <(awk -F'\t' -v p="$p" '$1 == p' <<<"$graph")
  done
  printf '%s\n' "${picked[@]}"
}

# name version arch size of the candidate version of each package
pkg_info() {
  apt-cache show --no-all-versions "$@" | awk '
    /^Package: / { p = $2 } /^Version: / { v = $2 } /^Architecture: / { a = $2 } /^Size: / { s = $2 }
    /^$/ { if (p != "") print p, v, a, s; p = "" }
    END { if (p != "") print p, v, a, s }'
}

deb_name() { local v="${2//:/%3a}"; echo "${1}_${v}_${3}.deb"; }

# ---- Boost subset ----------------------------------------------------------------------------
boost_modules() {
  local tu="$WORK/boost_includes.cpp"
  (cd "$ROOT" && grep -rhoE '#include <boost/[^>]+>' --include='*.cpp' --include='*.h' \
     --include='*.hpp' --include='*.cc' --include='*.cu' --include='*.cuh' \
     --exclude-dir='build*' --exclude-dir='.git' --exclude-dir='.gpu-bundle*' . | sort -u) >"$tu" || true
  {
    if [ -s "$tu" ]; then
      command -v g++ >/dev/null || die "g++ is needed to find the Boost headers in use (or GRPO_BUNDLE_BOOST=full)"
      g++ -std=c++20 -M "$tu" -o "$WORK/boost.d" || die "g++ -M over the Boost includes failed"
      tr ' \\' '\n\n' <"$WORK/boost.d" | sed -n 's#^/usr/include/boost/\([^/.]*\).*#\1#p'
    fi
    # always: configuration and version (BoostConfig.cmake reads boost/version.hpp)
    echo config; echo version
    for m in ${GRPO_BUNDLE_BOOST_EXTRA:-}; do echo "$m"; done
  } | sort -u
}

# repack DEB into OUT, keeping what keep_path() accepts; $1 deb $2 out $3 mode (static|boost)
repack() {
  local deb="$1" out="$2" mode="$3" tree="$WORK/repack"
  rm -rf "$tree"; mkdir -p "$tree"
  dpkg-deb -R "$deb" "$tree"
  local removed=0
  if [ "$mode" = static ]; then
    # a static archive goes when its folder also holds shared libraries (lib*.so*)
    while IFS= read -r -d '' a; do
      compgen -G "$(dirname "$a")/lib*.so*" >/dev/null || continue
      rm -f "$a"; removed=$((removed + 1))
    done < <(find "$tree" -path "$tree/DEBIAN" -prune -o -name 'lib*.a' -print0)
  else
    local inc="$tree/usr/include/boost" keep="$WORK/boost-keep"
    mkdir -p "$keep"
    while read -r m; do
      [ -e "$inc/$m" ] && mv "$inc/$m" "$keep/"
      [ -e "$inc/$m.hpp" ] && mv "$inc/$m.hpp" "$keep/"
    done <"$DIR/.boost-modules"
    removed=$(find "$inc" -type f | wc -l)
    rm -rf "$inc"; mv "$keep" "$inc"
  fi
  # documentation: keep only the copyright files
  find "$tree/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete 2>/dev/null || true
  find "$tree/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$tree/usr/share/man"
  # keep md5sums truthful for what is left (dpkg -x ignores it; tools that check do not)
  if [ -f "$tree/DEBIAN/md5sums" ]; then
    (cd "$tree" && while read -r sum path; do if [ -e "$path" ]; then echo "$sum  $path"; fi; done \
       <DEBIAN/md5sums >DEBIAN/md5sums.new && mv DEBIAN/md5sums.new DEBIAN/md5sums)
  fi
  dpkg-deb --root-owner-group -Zxz -b "$tree" "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
  rm -rf "$tree"
  say "  slimmed $(basename "$out") ($removed files dropped)"
}

# true when some folder of the package holds both lib*.a and lib*.so* (awk reads it all: no
# early exit that would break dpkg-deb's pipe)
needs_static_slim() {
  dpkg-deb -c "$1" | awk '{ n = split($6, part, "/"); f = part[n]; d = substr($6, 1, length($6) - length(f))
    if (f ~ /^lib.*\.a$/) a[d] = 1; if (f ~ /^lib.*\.so/) so[d] = 1 }
    END { for (d in a) if (d in so) found = 1; exit !found }'
}

# ---- fetch one set of packages into DIR --------------------------------------------------------
# fill_bundle names... : writes $WORK/wanted (file names that make up the bundle)
fill_bundle() {
  local names=("$@") missing=() p v a f slim
  : >"$WORK/plan"
  : >"$WORK/wanted"
  : >"$WORK/manifest"
  while read -r p v a _; do
    f="$(deb_name "$p" "$v" "$a")"
    slim="${f%.deb}.slim.deb"
    echo "$p $v $a $f $slim" >>"$WORK/plan"
  done < <(pkg_info "${names[@]}")
  while read -r p v a f slim; do
    if [ -f "$DIR/$f" ] || [ -f "$DIR/$slim" ]; then continue; fi
    missing+=("$p=$v")
  done <"$WORK/plan"
  if [ ${#missing[@]} -gt 0 ]; then
    say "downloading ${#missing[@]} packages"
    mkdir -p "$WORK/dl"
    (cd "$WORK/dl" && apt-get download -q -o APT::Sandbox::User=root "${missing[@]}" >/dev/null) \
      || die "apt-get download failed (run 'apt-get update' first?)"
    mv "$WORK"/dl/*.deb "$DIR/"
  fi
  # slim what needs it (once: a .slim.deb replaces its original)
  while read -r p v a f slim; do
    if [ "$p" = libboost1.74-dev ] && [ "$BOOST_MODE" = subset ]; then
      if [ -f "$DIR/$slim" ] && cmp -s "$DIR/.boost-modules" "$DIR/.boost-modules.built" 2>/dev/null; then
        :
      else
        if [ ! -f "$DIR/$f" ]; then
          (cd "$WORK" && apt-get download -q -o APT::Sandbox::User=root "$p=$v" >/dev/null) \
            || die "apt-get download $p failed"
          mv "$WORK/$f" "$DIR/$f"
        fi
        repack "$DIR/$f" "$DIR/$slim" boost
        cp "$DIR/.boost-modules" "$DIR/.boost-modules.built"
      fi
      rm -f "$DIR/$f"; f="$slim"
    elif [ -f "$DIR/$slim" ]; then
      f="$slim"
    elif [ "$p" != libgtest-dev ] && [ "$p" != libgmock-dev ] && needs_static_slim "$DIR/$f"; then
      repack "$DIR/$f" "$DIR/$slim" static
      rm -f "$DIR/$f"; f="$slim"
    fi
    echo "$f" >>"$WORK/wanted"
    printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$v" "$a" "$f" "$(stat -c %s "$DIR/$f")" >>"$WORK/manifest"
  done <"$WORK/plan"
}

bundle_bytes() { local t=0 f; while read -r f; do t=$((t + $(stat -c %s "$DIR/$f"))); done <"$WORK/wanted"; echo "$t"; }

# ---- main ------------------------------------------------------------------------------------
if [ "$BOOST_MODE" = subset ]; then
  boost_modules >"$DIR/.boost-modules"
  say "Boost modules: $(tr '\n' ' ' <"$DIR/.boost-modules")"
else
  rm -f "$DIR/.boost-modules" "$DIR/.boost-modules.built" "$DIR"/libboost1.74-dev_*.slim.deb
fi

say "resolving the dependency closure (core)"
mapfile -t core_pkgs < <(closure "${CORE_ROOTS[@]}")
[ ${#core_pkgs[@]} -gt 0 ] || die "empty dependency closure (run 'apt-get update' first?)"
fill_bundle "${core_pkgs[@]}"
core_bytes="$(bundle_bytes)"
say "core: ${#core_pkgs[@]} packages, $(mb "$core_bytes")"
with_services=0
if [ "$SERVICES" != off ]; then
  say "resolving the dependency closure (core + services)"
  mapfile -t all_pkgs < <(closure "${CORE_ROOTS[@]}" "${SERVICE_ROOTS[@]}")
  cp "$WORK/wanted" "$WORK/wanted.core"; cp "$WORK/manifest" "$WORK/manifest.core"
  fill_bundle "${all_pkgs[@]}"
  all_bytes="$(bundle_bytes)"
  say "core + services: ${#all_pkgs[@]} packages, $(mb "$all_bytes")"
  if [ "$all_bytes" -lt "$MAX_BYTES" ]; then
    with_services=1
  elif [ "$SERVICES" = on ]; then
    die "with services the bundle is $(mb "$all_bytes"), over the ${MAX_MB} MB limit"
  else
    say "services left out: they would take the bundle over ${MAX_MB} MB"
    cp "$WORK/wanted.core" "$WORK/wanted"; cp "$WORK/manifest.core" "$WORK/manifest"
  fi
fi

# drop whatever is not part of this bundle (older versions, services when left out)
removed=0
for f in "$DIR"/*.deb; do
  [ -e "$f" ] || continue
  grep -qxF "$(basename "$f")" "$WORK/wanted" || { rm -f "$f"; removed=$((removed + 1)); }
done
[ "$removed" -eq 0 ] || say "removed $removed files that are no longer part of the bundle"

{
  printf '# package\tversion\tarch\tfile\tbytes\n'
  sort "$WORK/manifest"
} >"$DIR/MANIFEST.tsv"

# Highest glibc / libstdc++ symbol versions the shipped binaries need: gpu-check.sh compares
# them with the GPU machine's (Debian 12 has glibc 2.36; Ubuntu 22.04 has 2.35).
glibc_need="" glibcxx_need=""
if command -v readelf >/dev/null; then
  mkdir -p "$WORK/x"
  while read -r f; do dpkg-deb -x "$DIR/$f" "$WORK/x"; done <"$WORK/wanted"
  vers="$(find "$WORK/x" -type f \( -name '*.so*' -o -path '*/bin/*' \) -print0 \
          | xargs -0 -r readelf -V --wide 2>/dev/null | grep -oE 'Name: (GLIBC|GLIBCXX)_[0-9.]+' | sort -u || true)"
  glibc_need="$(grep -oE 'GLIBC_[0-9.]+' <<<"$vers" | sed 's/GLIBC_//' | sort -V | tail -1 || true)"
  glibcxx_need="$(grep -oE 'GLIBCXX_[0-9.]+' <<<"$vers" | sed 's/GLIBCXX_//' | sort -V | tail -1 || true)"
fi

total="$(bundle_bytes)"
count="$(wc -l <"$WORK/wanted")"
cat >"$DIR/bundle.env" <<EOF
# written by scripts/gpu-bundle.sh; read by scripts/gpu-check.sh
GRPO_BUNDLE_SERVICES=$with_services
GRPO_BUNDLE_DEBS=$count
GRPO_BUNDLE_BYTES=$total
GRPO_BUNDLE_NEEDS_GLIBC=$glibc_need
GRPO_BUNDLE_NEEDS_GLIBCXX=$glibcxx_need
GRPO_BUNDLE_DEBIAN=$(cat /etc/debian_version 2>/dev/null || echo unknown)
EOF

say "largest files:"
sort -t$'\t' -k5,5nr "$WORK/manifest" | head -8 | while IFS=$'\t' read -r p v a f b; do
  printf 'gpu-bundle:   %-28s %8s\n' "$p" "$(mb "$b")"
done
say "needs glibc >= ${glibc_need:-?}, libstdc++ GLIBCXX >= ${glibcxx_need:-?}"
say "services (gRPC): $([ "$with_services" = 1 ] && echo included || echo 'not included')"
say "total: $count packages, $(mb "$total") ($total bytes) in $DIR"
if [ "$total" -ge "$MAX_BYTES" ]; then
  die "the bundle is $(mb "$total"), over the ${MAX_MB} MB limit"
fi
