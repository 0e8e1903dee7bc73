#!/usr/bin/env bash
# User-facing entry points for ctrec.
#
#   ./run.sh demo [--data FILE ...]   install missing Debian packages, configure ./build, build and
#                    run the demo (train on a synthetic click log or a Criteo file, save, reload, score)
#   ./run.sh test    same, build everything, run the test suite; the last line printed is
#                    "N passed, N failed[, N skipped]" (doctest cases counted individually)
#   ./run.sh bench   also install LibTorch/OpenBLAS, configure ./build-bench (release) and run
#                    every build-bench/bench/bench_* executable
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")"

BASE_PACKAGES=(g++ meson ninja-build pkg-config cmake libxsimd-dev xtensor-dev libboost-dev
               doctest-dev libeigen3-dev nlohmann-json3-dev libbenchmark-dev python3 libthrust-dev)
BENCH_PACKAGES=(libtorch-dev libopenblas0-openmp)
# the PyTorch interop test (tests/test_interop.cpp) and the safetensors exporter's tests
TEST_PACKAGES=(python3-numpy python3-torch)

usage() { echo "usage: $0 demo [--data FILE] [--skip-bad] [--rows N] [--epochs N] [--vocab N] | test | bench" >&2; exit 2; }

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

# Print "N passed, N failed[, N skipped]" from a Meson testlog.json; exit 1 if anything failed.
# A test whose output has a doctest summary line contributes that line's counts instead of 1.
# EXTRA_FAILED is added to the failed count (failures outside the test log).
summarize() {
  python3 - "$1" "$2" <<'PY'
import json, os, re, sys

log, failed = sys.argv[1], int(sys.argv[2])
passed = skipped = 0
doctest = re.compile(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed"
                     r"(?:\s*\|\s*(\d+) skipped)?")
ansi = re.compile(r"\x1b\[[0-9;]*m")
if os.path.exists(log):
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

cmd_test() {
  install_packages "${BASE_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
  configure build
  local log=build/meson-logs/testlog.json extra_failed=0 rc=0
  rm -f "$log"
  if ! meson compile -C build; then
    echo "run.sh: build failed, tests not run" >&2
    summarize "$log" 1
    return 1
  fi
  meson test -C build --print-errorlogs --num-processes 2 --timeout-multiplier 3 || rc=$?
  # If meson test failed but its log shows no failed test (e.g. it aborted), count one failure.
  if [[ $rc -ne 0 ]] && summarize "$log" 0 >/dev/null; then
    echo "run.sh: meson test exited with status $rc" >&2
    extra_failed=1
  fi
  summarize "$log" "$extra_failed"
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
[[ $cmd == demo || $# -eq 0 ]] || usage
case "$cmd" in
  demo) cmd_demo "$@" ;;
  test) cmd_test ;;
  bench) cmd_bench ;;
  *) usage ;;
esac
