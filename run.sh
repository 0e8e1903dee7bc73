#!/usr/bin/env bash
# User-facing entry points for ctrec.
#
#   ./run.sh demo [--data FILE ...]   install missing Debian packages, configure ./build, build and
#                    run the demo (train on a synthetic click log or a Criteo file, save, reload, score)
#   ./run.sh test    same, build everything, run the test suite, then rerun the reliability set
#                    under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan), the thread
#                    test under ThreadSanitizer (build-tsan) and each fuzz target for
#                    CTREC_FUZZ_SECONDS (default 15; tests/fuzz/run_fuzz.sh, clang-14); the last line
#                    printed is "N passed, N failed[, N skipped]" over all of it (doctest cases
#                    counted individually). CTREC_TEST_QUICK=1 runs the main suite only.
#   ./run.sh fuzz [SECONDS]  fuzz the safetensors reader and the Criteo parser (default 600 s each)
#   ./run.sh bench   also install LibTorch/OpenBLAS, configure ./build-bench (release) and run
#                    every build-bench/bench/bench_* executable
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

BASE_PACKAGES=(g++ meson ninja-build pkg-config cmake libxsimd-dev xtensor-dev libboost-dev
               doctest-dev libeigen3-dev nlohmann-json3-dev libbenchmark-dev python3 libthrust-dev)
BENCH_PACKAGES=(libtorch-dev libopenblas0-openmp)
# the PyTorch interop test (tests/test_interop.cpp) and the safetensors exporter's tests
TEST_PACKAGES=(python3-numpy python3-torch)
# the fuzz targets (libFuzzer ships with clang's runtime libraries)
FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev)

usage() { echo "usage: $0 demo [--data FILE] [--skip-bad] [--rows N] [--epochs N] [--vocab N] | test | bench | fuzz [SECONDS]" >&2; exit 2; }

# Install the given Debian packages that are not installed yet.
install_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "Installing missing packages: ${missing[*]}"
  local sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# configure BUILD_DIR [meson options...]: set up a Meson build directory unless it already is one.
configure() {
  local dir=$1; shift
  if [[ ! -f "$dir/meson-private/coredata.dat" ]]; then
    meson setup "$dir" "$@"
  fi
}

# summarize EXTRA_FAILED EXTRA_PASSED EXTRA_SKIPPED LOG...: print "N passed, N failed[, N skipped]"
# from Meson testlog.json files; exit 1 if anything failed. A test whose output has a doctest
# summary line contributes that line's counts instead of 1. The EXTRA counts are results from
# outside the test logs (a failed build, the fuzz runs).
summarize() {
  python3 - "$@" <<'PY'
import json, os, re, sys

failed, passed, skipped = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
logs = sys.argv[4:]
doctest = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed"
                     r"(?:\s*\|\s*(\d+) skipped)?")
ansi = re.compile(r"\x1b\[[0-9;]*m")
for log in logs:
  if not os.path.exists(log):
    continue
  with open(log) as f:
        for line in f:
            if not line.strip():
                continue
            t = json.loads(line)
            res = t.get("result", "")
            bad = res not in ("OK", "EXPECTEDFAIL", "SKIP")
            out = ansi.sub("", (t.get("stdout") or "") + "\n" + (t.get("stderr") or ""))
            m = doctest.findall(out)
            if m:
                p = sum(int(x[1]) for x in m)
                fl = sum(int(x[2]) for x in m)
                s = sum(int(x[3] or 0) for x in m)
                # A crash or timeout after the summary must still count as a failure.
                if bad and fl == 0:
                    fl = 1
                passed, failed, skipped = passed + p, failed + fl, skipped + s
            elif res == "SKIP":
                skipped += 1
            elif bad:
                failed += 1
            else:
                passed += 1
summary = f"{passed} passed, {failed} failed"
if skipped:
    summary += f", {skipped} skipped"
print(summary)
sys.exit(1 if failed else 0)
PY
}

cmd_demo() {
  install_packages "${BASE_PACKAGES[@]}"
  configure build
  meson compile -C build demo
  ./build/examples/demo --out build/demo-out "$@"
}

# run_suite DIR: build DIR and run its tests (testlog in DIR/meson-logs); returns 1 when the
# build failed or meson test aborted without a failed test in its log (counted by the caller).
run_suite() {
  local dir=$1 rc=0
  rm -f "$dir/meson-logs/testlog.json"
  if ! meson compile -C "$dir"; then
    echo "run.sh: build of $dir failed, its tests not run" >&2
    return 1
  fi
  meson test -C "$dir" --print-errorlogs --num-processes 2 --timeout-multiplier 3 || rc=$?
  if [[ $rc -ne 0 ]] && summarize 0 0 0 "$dir/meson-logs/testlog.json" >/dev/null; then
    echo "run.sh: meson test in $dir exited with status $rc" >&2
    return 1
  fi
  return 0
}

cmd_test() {
  install_packages "${BASE_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  local extra_failed=0 extra_passed=0 extra_skipped=0 logs=(build/meson-logs/testlog.json)
  configure build
  run_suite build || extra_failed=$((extra_failed + 1))
  if [[ ${CTREC_TEST_QUICK:-0} != 1 ]]; then
    # ASan + UBSan (any report fails the test: -fno-sanitize-recover), then TSan; see tests/meson.build
    configure build-asan -Dtest_set=sanitize -Db_sanitize=address,undefined -Db_lundef=false -Dsimd=avx2 \
      -Dcpp_args=-fno-sanitize-recover=all
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
      run_suite build-asan || extra_failed=$((extra_failed + 1))
    configure build-tsan -Dtest_set=threads -Db_sanitize=thread -Db_lundef=false
    TSAN_OPTIONS=halt_on_error=1 run_suite build-tsan || extra_failed=$((extra_failed + 1))
    logs+=(build-asan/meson-logs/testlog.json build-tsan/meson-logs/testlog.json)
    # libFuzzer, bounded: one result per target (a crash fails it; no clang-14: skipped)
    install_packages "${FUZZ_PACKAGES[@]}" || true
    local fuzz_out rc=0
    fuzz_out=$(tests/fuzz/run_fuzz.sh "${CTREC_FUZZ_SECONDS:-15}" build-fuzz 2>&1) || rc=$?
    echo "$fuzz_out" | tail -n 40
    local ok
    ok=$(echo "$fuzz_out" | grep -c '^fuzz .*, 0 crashes$' || true)
    if [[ $rc -eq 77 ]]; then
      extra_skipped=$((extra_skipped + 2))
    else
      extra_passed=$((extra_passed + ok))
      [[ $rc -ne 0 || $ok -lt 2 ]] && extra_failed=$((extra_failed + 1))
    fi
  fi
  summarize "$extra_failed" "$extra_passed" "$extra_skipped" "${logs[@]}"
}

# Longer local fuzzing than CI's (SECONDS per target, default 600); findings go to build-fuzz.
cmd_fuzz() {
  install_packages "${FUZZ_PACKAGES[@]}"
  tests/fuzz/run_fuzz.sh "${1:-600}" build-fuzz
}

cmd_bench() {
  install_packages "${BASE_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
  configure build-bench -Dbench=true -Dtests=false -Dbuildtype=release
  meson compile -C build-bench
  local found=0 exe
  for exe in build-bench/bench/bench_*; do
    [[ -f "$exe" && -x "$exe" ]] || continue
    found=1
    echo "== $exe"
    OPENBLAS_NUM_THREADS=1 "$exe"
  done
  if [[ $found -eq 0 ]]; then
    echo "run.sh: no bench_* executables in build-bench/bench" >&2
    return 1
  fi
}

[[ $# -ge 1 ]] || usage
cmd=$1; shift
[[ $cmd == demo || $cmd == fuzz || $# -eq 0 ]] || usage
case "$cmd" in
  demo) cmd_demo "$@" ;;
  test) cmd_test ;;
  bench) cmd_bench ;;
  fuzz) cmd_fuzz "$@" ;;
  *) usage ;;
esac
