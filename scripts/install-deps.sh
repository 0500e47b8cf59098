#!/usr/bin/env bash
# Installs every Debian 12 package grpo.cpp needs to build, test and run.
# Idempotent and fast when everything is present: apt runs only for missing packages.
# Run as root (or with sudo available). The CUDA toolkit is not a Debian package here: the
# CUDA backend builds when nvcc is found (see README, "GPU").
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config git ca-certificates
  # compute
  libopenblas-dev
  # tokenizer: tokenizer.json regexes (PCRE2 with JIT) and Unicode normalization (ICU)
  libpcre2-dev libicu-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # services: gRPC and protobuf (precompiled, from Debian)
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  # HTTP (Boost.Beast on Asio), JSON, command line
  libboost-dev nlohmann-json3-dev libcli11-dev
  # rewards: GiNaC (math answers), bubblewrap (code sandbox), Python for code answers, the
  # Python example reward server and its test (grpcio, grpc_tools, protobuf), openssl (TLS test)
  libginac-dev bubblewrap python3 python3-grpcio python3-grpc-tools python3-protobuf openssl
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-deps: done"
