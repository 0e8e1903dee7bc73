#!/usr/bin/env bash
# GPU check of the Thrust backend (issue 14), to run on the device machine from the repository
# root. PREPARED BUT NOT YET RUN: written on a machine without a GPU or nvcc (see README.md, which
# also says what to carry and how to call it through the device tool).
#
#   bash bench/gpu/device_check.sh
#
# Results: build-gpu/results/ (every log and output), packed at the end into $OUT/results.tgz with
# $OUT/report.md and $OUT/steps.log beside it ($OUT: the device tool's folder, which brings back
# at most 8 files; ./gpu-results when unset).
#
# Steps: (1) PyTorch baselines start compiling in the background; (2) nvcc builds, in parallel
# and each under a time limit, the parity tests tests/test_thrust*.cpp (Thrust backend on CUDA
# against the CPU backend, every landed layer, forward, gradients and JVP) and one benchmark
# binary per workload; (3) PyTorch times eager and torch.compile once the builds are done (the
# GPU to itself); (4) the parity tests run; (5) the ctrec benchmarks run at B = 4096; (6)
# bench/gpu/report.py writes the table. A failed or timed-out step is logged and the rest go on.
#
# Environment: WORKLOADS ("1 2 4 5 6 7"), TESTS ("thrust thrust_2 thrust_3 thrust_4 thrust_5"),
# BATCH (4096), REPS (30), CUDA_ARCH (sm_90), BUILD_TIMEOUT (s, 420), RUN_TIMEOUT (s, 120),
# HEADERS (.carry/headers: xsimd and doctest copied from the build machine), FP32_TFLOPS (67).
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."

OUT=${OUT:-$PWD/gpu-results}
WORKLOADS=${WORKLOADS:-"1 2 4 5 6 7"}
TESTS=${TESTS:-"thrust thrust_2 thrust_3 thrust_4 thrust_5"}
BATCH=${BATCH:-4096}
REPS=${REPS:-30}
ARCH=${CUDA_ARCH:-sm_90}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-420}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
HEADERS=${HEADERS:-.carry/headers}
B=build-gpu
R=$B/results
mkdir -p "$OUT" "$R"
rm -f "$B/builds_done" "$R"/*
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$R/steps.log"; }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
} > "$R/env.txt" 2>&1
DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
stamp "device: $DEVICE"

# (1) PyTorch: build and torch.compile every model now, time them once the builds are done
python3 bench/gpu/torch_workloads.py --batch "$BATCH" --reps "$REPS" --workloads $WORKLOADS \
  --wait-for "$B/builds_done" > "$R/torch.txt" 2> "$R/torch.log" &
torch_pid=$!

# (2) builds. CUDA's own Thrust (CCCL) comes with nvcc: nothing from /usr/include/thrust.
NVCC=(nvcc -std=c++20 --extended-lambda --expt-relaxed-constexpr -arch="$ARCH" -O2
      -Iinclude -Ikernels -Itests -I"$HEADERS" -Xcompiler -march=native -diag-suppress 174,68,186)
g++ -std=c++20 -O1 -I"$HEADERS" -c tests/doctest_main.cpp -o "$B/doctest_main.o" > "$B/doctest_main.log" 2>&1 ||
  stamp "doctest_main: build failed (see $B/doctest_main.log)"
pids=()
for t in $TESTS; do
  ( s=$(date +%s); timeout "$BUILD_TIMEOUT" "${NVCC[@]}" -x cu "tests/test_$t.cpp" -x none "$B/doctest_main.o" -o "$B/test_$t"
    echo "exit $? after $(( $(date +%s) - s )) s" ) > "$B/test_$t.log" 2>&1 &
  pids+=($!)
done
for w in $WORKLOADS; do
  ( s=$(date +%s); timeout "$BUILD_TIMEOUT" "${NVCC[@]}" -DCTREC_W="$w" -x cu bench/gpu/bench_thrust.cpp -o "$B/bench_w$w"
    echo "exit $? after $(( $(date +%s) - s )) s" ) > "$B/bench_w$w.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
for f in "$B"/test_*.log "$B"/bench_w*.log; do
  stamp "build $(basename "$f" .log): $(tail -1 "$f")"
  cp "$f" "$R/build_$(basename "$f")"
done
touch "$B/builds_done"

# (3) PyTorch's timing (it was waiting for the builds)
wait "$torch_pid" || stamp "torch_workloads.py failed (see torch.log)"
stamp "torch done"

# (4) parity tests
for t in $TESTS; do
  if [[ -x "$B/test_$t" ]]; then
    timeout "$RUN_TIMEOUT" "$B/test_$t" > "$R/test_$t.txt" 2>&1
    stamp "test_$t: exit $? $(grep -E 'test cases|assertions' "$R/test_$t.txt" | tr '\n' ' ')"
  else
    stamp "test_$t: not built"
  fi
done

# (5) ctrec benchmarks (each binary also checks parity with the CPU backend at B = 64)
: > "$R/ctrec.txt"
for w in $WORKLOADS; do
  if [[ -x "$B/bench_w$w" ]]; then
    timeout "$RUN_TIMEOUT" "$B/bench_w$w" "$BATCH" "$REPS" >> "$R/ctrec.txt" 2>&1
    stamp "bench_w$w: exit $?"
  else
    stamp "bench_w$w: not built"
  fi
done

# (6) the table
python3 bench/gpu/report.py "$R/ctrec.txt" "$R/torch.txt" --device "$DEVICE" --fp32-tflops "${FP32_TFLOPS:-67}" \
  > "$R/report.md" 2>&1
cat "$R/ctrec.txt" "$R/report.md"
stamp "done"
tar czf "$OUT/results.tgz" -C "$B" results
cp "$R/report.md" "$R/steps.log" "$OUT/"
