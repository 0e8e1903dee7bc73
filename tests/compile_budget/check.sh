#!/usr/bin/env bash
# Compile-budget check: builds one model translation unit under an address-space cap
# (ulimit -v) and a time cap, so a compile-cost regression fails CI instead of slowing it.
#   check.sh CXX ROOT CAP_MB CAP_S SOURCE [-DMACRO=VALUE ...]
set -u
cxx=$1 root=$2 cap_mb=$3 cap_s=$4 src=$5
shift 5
ulimit -v $((cap_mb * 1024))
SECONDS=0
if ! timeout "$cap_s" "$cxx" -std=c++20 -O2 -I"$root/include" -I"$root/kernels" "$@" -c "$src" -o /dev/null; then
  echo "compile budget exceeded or build failed: $src $* (cap ${cap_mb} MB, ${cap_s} s)"
  exit 1
fi
echo "built $src $* within ${cap_mb} MB and ${cap_s} s (${SECONDS} s)"
