#!/usr/bin/env bash
# Builds the libFuzzer targets tests/fuzz/fuzz_*.cpp with clang++-14 (ASan + UBSan) and runs each
# for SECONDS seconds, both at once, from a scratch copy of its seed corpus and its
# regression inputs (the repository is never written to).
#
#   tests/fuzz/run_fuzz.sh SECONDS [OUTDIR]     (OUTDIR: builds, corpora, logs; default a new temp dir)
#
# Prints one line per target, "fuzz <target>: <execs> executions, corpus <n> inputs, 0 crashes",
# or a FAILED line with the path of the input that crashed, hung or ran out of memory (copy it
# to tests/fuzz/regressions/<target>/ once fixed). Exit status: 0 clean, 1 a finding or a build
# failure, 2 usage or a missing libFuzzer runtime, 77 (skip) without clang++-14.
# Debian packages: clang-14 libclang-rt-14-dev.
set -uo pipefail

usage() { echo "usage: $0 SECONDS [OUTDIR]" >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 && $1 =~ ^[1-9][0-9]*$ ]] || usage
seconds=$1
root=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
cxx=clang++-14

if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "run_fuzz.sh: $cxx not found, fuzzing skipped (Debian: apt-get install clang-14 libclang-rt-14-dev)"
  exit 77
fi
runtime=$("$cxx" -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer-$(uname -m).a
if [[ ! -f $runtime ]]; then
  echo "run_fuzz.sh: $cxx has no libFuzzer runtime ($runtime); install libclang-rt-14-dev" >&2
  exit 2
fi

out=${2:-$(mktemp -d "${TMPDIR:-/tmp}/ctrec-fuzz.XXXXXX")}
mkdir -p "$out" && out=$(cd "$out" && pwd) || exit 2
echo "run_fuzz.sh: ${seconds} s per target, work in $out"

flags=(-std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I"$root/include" -I"$root/kernels")
# One target: build, then fuzz. Both targets run at once (CI has two cores; each is one
# process), each printing into its own directory; the results are printed in order below.
fuzz_target() {
  local target=$1 dir=$out/$1 rc execs corpus crashes
  rm -rf "$dir" && mkdir -p "$dir/corpus" "$dir/artifacts"
  if ! "$cxx" "${flags[@]}" "$root/tests/fuzz/fuzz_$target.cpp" -o "$dir/fuzz_$target" >"$dir/build.log" 2>&1; then
    cat "$dir/build.log" >&2
    echo "fuzz $target: FAILED to build"
    return 1
  fi
  cp "$root/tests/fuzz/corpus/$target"/* "$dir/corpus/"
  find "$root/tests/fuzz/regressions/$target" -type f ! -name '.*' -exec cp {} "$dir/corpus/" \; 2>/dev/null
  local options=(-max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -timeout=10 -print_final_stats=1
                 -artifact_prefix="$dir/artifacts/")
  [[ -f $root/tests/fuzz/$target.dict ]] && options+=(-dict="$root/tests/fuzz/$target.dict")
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$dir/fuzz_$target" "${options[@]}" "$dir/corpus" >"$dir/fuzz.log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9][0-9]*\).*/\1/p' "$dir/fuzz.log" | tail -n 1)
  [[ -n $execs ]] || execs=$(sed -n 's/^Done \([0-9][0-9]*\) runs.*/\1/p' "$dir/fuzz.log" | tail -n 1)
  corpus=$(find "$dir/corpus" -type f | wc -l)
  crashes=$(find "$dir/artifacts" -type f | wc -l)
  if [[ $rc -eq 0 && $crashes -eq 0 ]]; then
    echo "fuzz $target: ${execs:-0} executions, corpus $corpus inputs, 0 crashes"
    return 0
  fi
  grep -v '# Uses:' "$dir/fuzz.log" | tail -n 60 >&2
  echo "fuzz $target: FAILED (exit $rc) after ${execs:-?} executions, $crashes crash input(s):"
  find "$dir/artifacts" -type f -exec echo "  {}" \;
  echo "  log: $dir/fuzz.log"
  return 1
}

targets=(criteo safetensors)
pids=()
for target in "${targets[@]}"; do
  fuzz_target "$target" >"$out/$target.result" 2>"$out/$target.stderr" &
  pids+=($!)
done
status=0
for i in "${!targets[@]}"; do
  wait "${pids[$i]}" || status=1
  cat "$out/${targets[$i]}.stderr" >&2
  cat "$out/${targets[$i]}.result"
done
exit $status
