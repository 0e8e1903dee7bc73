#!/usr/bin/env python3
"""Runs the ctrec benchmarks (or reads their JSON) and prints a comparison table.

    python3 bench/report.py                        # build-bench/: roofline, W1, and W2..W6 where built
    python3 bench/report.py --build build-bench --only w6          # W6 alone
    python3 bench/report.py --build build-w2 --skip-roofline --skip-w1   # W2 only
    python3 bench/report.py --build build-bench --repetitions 5 --min-time 0.2
    python3 bench/report.py --json w1.json --json roofline.json   # no run, read files
    python3 bench/report.py --save-json out/       # keep the raw JSON of this run

One table per workload (W1 MLP, W2 CIN, W3 AutoInt, W4 DIN, W5 DCN, W6 DIEN, W7 MMoE) with the
implementations each binary has: ctrec, eigen and (when built with LibTorch) torch, the
ratios Eigen/ctrec and Torch/ctrec (> 1x: ctrec faster), and a second table on thread CPU
time. Times are per-iteration medians: for each benchmark, the median over repetitions of the
per-iteration median latency of one run (counter p50_us); p99 is the median over
repetitions of the per-run 99th percentile. GFLOP/s and the fraction of peak are computed
from that median time with the FLOP counts of bench/ROOFLINE.md (W1: 0.59 MFLOP per example
forward; forward+backward and JVP: 3x), against the FP32 peak the benchmark measured at its
start (or --peak-gflops). Benchmarks run one at a time (the machine has 2 cores).

Standard library only.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

FLOP_PER_EXAMPLE = {  # GEMM FLOPs (multiply-add = 2)
    ("W1", "fwd"): 590080.0,
    ("W1", "fwdbwd"): 3 * 590080.0,
    ("W1", "jvp"): 3 * 590080.0,
    # W2 CIN: forward = outer products + GEMMs + bias/pooling (26.79 M); forward+backward and
    # JVP = 3x the GEMM FLOPs (26.68 M)
    ("W2", "fwd"): 26793744.0,
    ("W2", "fwdbwd"): 3 * 26677248.0,
    ("W2", "jvp"): 3 * 26677248.0,
    # W3 AutoInt N=39 K=16, 3 layers: 3 x (4 N^2 K + 4 N^2) (0.31 M, bench/ROOFLINE.md);
    # forward+backward and JVP 3x
    ("W3", "fwd"): 3 * (4 * 39 * 39 * 16 + 4 * 39 * 39.0),
    ("W3", "fwdbwd"): 9 * (4 * 39 * 39 * 16 + 4 * 39 * 39.0),
    ("W3", "jvp"): 9 * (4 * 39 * 39 * 16 + 4 * 39 * 39.0),
    # W5 DCN matrix: 3 x (2 D^2 + 3 D), D = 624 (2.34 M); forward+backward and JVP 3x
    ("W5", "fwd"): 3 * (2 * 624 * 624 + 3 * 624.0),
    ("W5", "fwdbwd"): 9 * (2 * 624 * 624 + 3 * 624.0),
    ("W5", "jvp"): 9 * (2 * 624 * 624 + 3 * 624.0),
    # W4 DIN attention (bench/ROOFLINE.md): 1.37 M literal (concat then the [80, 40, 1] tower
    # over T = 50 steps, weighted sum); forward+backward and JVP 3x
    ("W4", "fwd"): 1.37e6,
    ("W4", "fwdbwd"): 3 * 1.37e6,
    ("W4", "jvp"): 3 * 1.37e6,
    # W6 DIEN T=50 E=32 U=32 (spec 2.3.9): T (6 E U + 18 U^2) + 2 U^2 + 2 T U = 1.234 M;
    # forward+backward 3x
    ("W6", "fwd"): 50 * (6 * 32 * 32 + 18 * 32 * 32) + 2 * 32 * 32 + 2 * 50 * 32.0,
    ("W6", "fwdbwd"): 3 * (50 * (6 * 32 * 32 + 18 * 32 * 32) + 2 * 32 * 32 + 2 * 50 * 32.0),
    # W7 MMoE 512 -> 8 experts [256, 128], 3 softmax gates: 2 (512 (8 x 256 + 24) + 8 x 256 x 128
    # + 3 x 8 x 128) = 2.65 M (first layers and gate, second layers, mixture); fwd+bwd and JVP 3x
    ("W7", "fwd"): 2 * (512 * 2072 + 8 * 256 * 128 + 3 * 8 * 128.0),
    ("W7", "fwdbwd"): 6 * (512 * 2072 + 8 * 256 * 128 + 3 * 8 * 128.0),
    ("W7", "jvp"): 6 * (512 * 2072 + 8 * 256 * 128 + 3 * 8 * 128.0),
}
# W4 also against the FLOPs left after the concat-split and hoisting rewrites (~0.85 M)
FLOP_PER_EXAMPLE_REWRITTEN = {
    ("W4", "fwd"): 0.85e6,
    ("W4", "fwdbwd"): 3 * 0.85e6,
    ("W4", "jvp"): 3 * 0.85e6,
}
TITLES = {
    "W1": "W1 MLP 256-512-256-128-1, float32, one thread",
    "W2": "W2 CIN N=39 K=16 [128, 128], float32, one thread",
    "W3": "W3 AutoInt N=39 K=16, 3 layers of softmax(X X^T) X, float32, one thread",
    "W5": "W5 DCN matrix D=624, 3 cross layers, float32, one thread",
    "W4": "W4 DIN attention H=32 T=50, MLP [80, 40, 1] relu, sum, float32, one thread",
    "W6": "W6 DIEN T=50 E=32, GRU 32 units then AUGRU, float32, one thread",
    "W7": "W7 MMoE 512 -> 8 experts [256, 128] relu, 3 softmax gates, float32, one thread",
}
# binary name per workload, in the order they run
BINARIES = (("w1", "bench_w1_mlp"), ("w2", "bench_w2_cin"), ("w4", "bench_w4_din"), ("w3", "bench_w3_autoint"),
            ("w5", "bench_w5_dcn"), ("w6", "bench_w6_dien"), ("w7", "bench_w7_mmoe"))
IMPLS = ("ctrec", "eigen", "torch")
MODES = ("fwd", "fwdbwd", "jvp")


def run_bench(binary, args, taskset):
    cmd = [binary, "--benchmark_format=json"] + args
    if taskset is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(taskset)] + cmd
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    # stderr (the verification lines) goes straight to the terminal
    res = subprocess.run(cmd, stdout=subprocess.PIPE, check=False)
    if res.returncode != 0:
        sys.exit(f"report.py: {binary} exited with status {res.returncode}")
    return json.loads(res.stdout.decode())


def by_run(doc):
    """{run_name: {aggregate or 'iteration': [entries]}}"""
    out = {}
    for b in doc.get("benchmarks", []):
        name = b.get("run_name", b["name"])
        kind = b.get("aggregate_name", "iteration") if b.get("run_type") == "aggregate" else "iteration"
        out.setdefault(name, {}).setdefault(kind, []).append(b)
    return out


def counter(entries, key):
    vals = [e[key] for e in entries if key in e]
    return statistics.median(vals) if vals else None


def pick(runs, name, key):
    """Median over repetitions of `key`: the 'median' aggregate if present, else the runs."""
    r = runs.get(name)
    if not r:
        return None
    if "median" in r:
        return counter(r["median"], key)
    return counter(r.get("iteration", []), key)


def to_us(entry_value, unit):
    return entry_value * {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}[unit]


def w1_rows(doc):
    runs = by_run(doc)
    rows = {}
    for name, r in runs.items():
        parts = name.split("/")
        if len(parts) < 4 or parts[2] not in IMPLS + ("ctrec_wn", "ctrec_bf16"):
            continue
        wl, mode, impl, B = parts[0], parts[1], parts[2], int(parts[3])
        entries = r.get("median") or r.get("iteration")
        unit = entries[0].get("time_unit", "ns")
        p50 = pick(runs, name, "p50_us")
        if p50 is None:  # no latency counters: fall back to the mean time per iteration
            p50 = to_us(pick(runs, name, "real_time"), unit)
        rows.setdefault((wl, mode, B), {})[impl] = {
            "p50": p50,
            "cpu": pick(runs, name, "cpu_mean_us") or pick(runs, name, "cpu_p50_us"),  # older JSON: per-call p50
            "p99": pick(runs, name, "p99_us"),
            "mean": to_us(pick(runs, name, "real_time"), unit),
            "bw_frac": pick(runs, name, "bw_frac"),
        }
    return rows


def fmt_us(v):
    if v is None:
        return "-"
    return f"{v:,.1f}" if v < 1e4 else f"{v:,.0f}"


def fmt_ratio(a, b):
    if a is None or b is None:
        return "-"
    return f"{a / b:.2f}x"


def print_roofline(doc):
    runs = by_run(doc)
    fma = []
    bw = []
    for name in runs:
        if name.startswith("BM_fma"):
            fma.append((name, pick(runs, name, "FLOPS")))
        elif name.startswith("BM_read/"):
            bw.append((int(name.split("/")[1]), pick(runs, name, "bytes_per_second")))
    print("Roofline (bench_roofline, one core)")
    for name, f in sorted(fma, key=lambda t: (t[0].split("/")[0], int(t[0].split("/")[1]) if t[0].count("/") else 0)):
        print(f"  {name:<22} {f / 1e9:8.1f} GFLOP/s")
    for kib, b in sorted(bw):
        size = f"{kib} KiB" if kib < 4096 else f"{kib // 1024} MiB"
        print(f"  read {size:>10}      {b / 1e9:8.1f} GB/s")
    print()
    return max((f for _, f in fma), default=None)


def print_w1(doc, peak_override):
    ctx = doc.get("context", {})
    peak = peak_override * 1e9 if peak_override else float(ctx.get("fp32_peak_gflops", "nan")) * 1e9
    wls = sorted({b.get("run_name", b["name"]).split("/")[0] for b in doc.get("benchmarks", [])})
    print("; ".join(TITLES.get(w, w) for w in wls))
    print(f"  FP32 peak for the fractions: {peak / 1e9:.1f} GFLOP/s "
          f"({'--peak-gflops' if peak_override else ctx.get('peak_source', '?')})")
    for key in ("verify", "verify_worst_diff", "openblas_core", "torch_threads", "xsimd_arch"):
        if key in ctx:
            print(f"  {key}: {ctx[key]}")
    print(f"  host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs @ {ctx.get('mhz_per_cpu', '?')} MHz, "
          f"load avg at start {ctx.get('load_avg', '?')}")
    rows = w1_rows(doc)
    present = [i for i in IMPLS if any(i in r for r in rows.values())]
    print(f"  implementations: {', '.join(present) if present else 'none'}"
          + ("" if "torch" in present else " (no torch: built without LibTorch)"))
    hdr = ("workload", "B", "ctrec us", "p99 us", "Eigen us", "Torch us", "Eigen/ctrec", "Torch/ctrec",
           "ctrec GF/s", "ctrec %pk", "Eigen %pk", "Torch %pk", "cpu: ctrec us", "Eigen/ctrec", "Torch/ctrec")
    table = []
    order = sorted(rows, key=lambda k: (k[0], MODES.index(k[1]) if k[1] in MODES else 9, k[2]))
    for wl, mode, B in order:
        r = rows[(wl, mode, B)]
        c, e, t = (r.get(i, {}).get("p50") for i in IMPLS)
        cc, ce, ct = (r.get(i, {}).get("cpu") for i in IMPLS)  # thread CPU time (older JSON: none)
        flop = FLOP_PER_EXAMPLE.get((wl, mode), float("nan")) * B

        def pk(v):
            return f"{100 * flop / (v * 1e-6) / peak:.1f}%" if v else "-"

        table.append((f"{wl} {mode}", str(B), fmt_us(c), fmt_us(r.get("ctrec", {}).get("p99")), fmt_us(e), fmt_us(t),
                      fmt_ratio(e, c), fmt_ratio(t, c), f"{flop / (c * 1e-6) / 1e9:.1f}" if c else "-",
                      pk(c), pk(e), pk(t), fmt_us(cc), fmt_ratio(ce, cc), fmt_ratio(ct, cc)))
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(hdr)]
    line = "  ".join(h.rjust(w) if i > 0 else h.ljust(w) for i, (h, w) in enumerate(zip(hdr, widths)))
    print()
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(v.rjust(w) if i > 0 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print()
    print("  times: median per-iteration latency (median over repetitions); ratios > 1x: ctrec faster;")
    print("  cpu: the same from the thread CPU time per call (mean over the run; time descheduled on a loaded machine excluded)")
    wn = [(k, rows[k]["ctrec_wn"]["p50"], rows[k].get("ctrec", {}).get("p50")) for k in order if "ctrec_wn" in rows[k]]
    if wn:
        print("  ctrec_wn, the layer with Monolith's default weight norm (effective kernels folded by prepare()):")
        for (wl, mode, B), v, c in wn:
            print(f"    {wl} {mode} B={B}: {fmt_us(v)} us (without weight norm {fmt_us(c)} us)")
    bf = [(k, rows[k]["ctrec_bf16"]["p50"], rows[k].get("ctrec", {}).get("p50"), rows[k].get("eigen", {}).get("p50"))
          for k in order if "ctrec_bf16" in rows[k]]
    if bf:
        print("  ctrec_bf16, opt-in bf16 weights (cpu_bf16_backend; a different model, its distance to float32 is in the verify lines):")
        for (wl, mode, B), v, c, e in bf:
            vs = f", {e / v:.2f}x Eigen" if e else ""
            print(f"    {wl} {mode} B={B}: {fmt_us(v)} us (float32 ctrec {fmt_us(c)} us{vs})")
    bw = [(k, rows[k]) for k in order if any(r.get("bw_frac") is not None for r in rows[k].values())]
    if bw:
        # bw_frac is a mean-time rate; here: parameter bytes / median time / the measured read bandwidth
        pb, gbs = float(ctx.get("param_bytes", "nan")), float(ctx.get("read_bw_gbs", "nan"))
        print(f"  weight streaming: {pb / 1e6:.2f} MB of parameters per call, read bandwidth {gbs:.1f} GB/s "
              f"({ctx.get('bw_source', '?')}), limit at B = 1 {pb / (gbs * 1e9) * 1e6:.1f} us; fraction of that limit:")
        for (wl, mode, B), r in bw:
            if mode != "fwd" or B != 1:  # (at B > 1 the weights are read once per B examples)
                continue
            fr = ", ".join(f"{i} {pb / (r[i]['p50'] * 1e-6) / (gbs * 1e9):.2f}" for i in IMPLS + ("ctrec_wn",) if i in r)
            print(f"    {wl} {mode} B={B}: {fr}")
    cpu_rows = [k for k in order if any(r.get("cpu") is not None for r in rows[k].values())]
    if cpu_rows:
        print_cpu_table(rows, cpu_rows, peak)


def print_cpu_table(rows, order, peak):
    """Thread CPU time per call (CLOCK_THREAD_CPUTIME_ID: the mean over the run; W4 times each call), ratios on it, and the
    fractions of peak on the literal and the rewritten FLOP counts (W4)."""
    hdr = ("workload", "B", "ctrec cpu us", "Eigen cpu us", "Torch cpu us", "Eigen/ctrec", "Torch/ctrec",
           "ctrec %pk", "Eigen %pk", "Torch %pk", "ctrec %pk rw", "Eigen %pk rw", "Torch %pk rw")
    table = []
    for wl, mode, B in order:
        r = rows[(wl, mode, B)]
        c, e, t = (r.get(i, {}).get("cpu") for i in IMPLS)
        lit = FLOP_PER_EXAMPLE.get((wl, mode), float("nan")) * B
        rw = FLOP_PER_EXAMPLE_REWRITTEN.get((wl, mode), float("nan")) * B

        def pk(v, flop):
            return f"{100 * flop / (v * 1e-6) / peak:.1f}%" if v and flop == flop else "-"  # (nan: no such count)

        table.append((f"{wl} {mode}", str(B), fmt_us(c), fmt_us(e), fmt_us(t), fmt_ratio(e, c), fmt_ratio(t, c),
                      pk(c, lit), pk(e, lit), pk(t, lit), pk(c, rw), pk(e, rw), pk(t, rw)))
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(hdr)]
    line = "  ".join(h.rjust(w) if i > 0 else h.ljust(w) for i, (h, w) in enumerate(zip(hdr, widths)))
    print()
    print("  thread CPU time per call (CLOCK_THREAD_CPUTIME_ID, median; not inflated by descheduling):")
    print(line)
    print("-" * len(line))
    for row in table:
        print("  ".join(v.rjust(w) if i > 0 else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    print("  %pk: literal FLOPs; %pk rw: the FLOPs left after the rewrites (W4: 0.85 M per example forward)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build-bench", help="meson build directory (default build-bench)")
    ap.add_argument("--json", action="append", default=[], help="read this benchmark JSON instead of running")
    ap.add_argument("--min-time", default="0.2", help="--benchmark_min_time (seconds, default 0.2)")
    ap.add_argument("--repetitions", type=int, default=5, help="--benchmark_repetitions (default 5)")
    ap.add_argument("--filter", default=None, help="--benchmark_filter for the workload binaries")
    ap.add_argument("--peak-gflops", type=float, default=None,
                    help="FP32 peak for the fractions (default: the benchmark's own measurement)")
    ap.add_argument("--skip-roofline", action="store_true", help="do not run bench_roofline")
    ap.add_argument("--skip-w1", action="store_true", help="do not run bench_w1_mlp")
    ap.add_argument("--skip-w2", action="store_true", help="do not run bench_w2_cin (run when built)")
    ap.add_argument("--skip-w4", action="store_true", help="do not run bench_w4_din (run when built)")
    ap.add_argument("--skip-w5", action="store_true", help="do not run bench_w5_dcn (run when built)")
    ap.add_argument("--skip-w3", action="store_true", help="do not run bench_w3_autoint (run when built)")
    ap.add_argument("--skip-w6", action="store_true", help="do not run bench_w6_dien (run when built)")
    ap.add_argument("--skip-w7", action="store_true", help="do not run bench_w7_mmoe (run when built)")
    ap.add_argument("--only", action="append", default=[], choices=[w for w, _ in BINARIES],
                    help="run only this workload (repeatable; implies --skip-roofline)")
    ap.add_argument("--taskset", default=None, help="pin the benchmarks to this CPU (taskset -c)")
    ap.add_argument("--no-interleave", action="store_true",
                    help="run the repetitions of each benchmark back to back (default: random interleaving)")
    ap.add_argument("--save-json", default=None, help="directory to write the raw JSON into")
    a = ap.parse_args()

    docs = []
    if a.json:
        for path in a.json:
            with open(path) as f:
                docs.append(json.load(f))
    else:
        bdir = os.path.join(a.build, "bench")
        common = [f"--benchmark_min_time={a.min_time}", f"--benchmark_repetitions={a.repetitions}",
                  "--benchmark_report_aggregates_only=true"]
        if a.repetitions > 1 and not a.no_interleave:
            # repetitions of different benchmarks interleaved in random order: background load
            # on this shared 2-core machine then hits every implementation alike
            common.append("--benchmark_enable_random_interleaving=true")
        load = os.getloadavg()[0]
        if load > 0.5:
            print(f"report.py: warning: load average {load:.2f} before the run; other work on this machine "
                  "makes the numbers noisy", file=sys.stderr)
        if not a.skip_roofline and not a.only:
            docs.append(("roofline", run_bench(os.path.join(bdir, "bench_roofline"), common, a.taskset)))
        w_args = list(common)
        if a.peak_gflops:
            w_args.append(f"--peak_gflops={a.peak_gflops}")
        if a.filter:
            w_args.append(f"--benchmark_filter={a.filter}")
        for w, binary in BINARIES:
            path = os.path.join(bdir, binary)
            if a.only:
                if w not in a.only:
                    continue
                if not os.path.exists(path):
                    sys.exit(f"report.py: {path} is not built")
            elif getattr(a, f"skip_{w}") or (w != "w1" and not os.path.exists(path)):
                continue
            docs.append((binary[len("bench_"):], run_bench(path, w_args, a.taskset)))
        if a.save_json:
            os.makedirs(a.save_json, exist_ok=True)
            for name, d in docs:
                with open(os.path.join(a.save_json, f"{name}.json"), "w") as f:
                    json.dump(d, f, indent=1)
        docs = [d for _, d in docs]

    for d in docs:
        names = [b.get("run_name", b["name"]) for b in d.get("benchmarks", [])]
        if any(n.startswith("BM_fma") or n.startswith("BM_read") for n in names):
            print_roofline(d)
    for d in docs:
        names = [b.get("run_name", b["name"]) for b in d.get("benchmarks", [])]
        if any(n.startswith(tuple(f"{w.upper()}/" for w, _ in BINARIES)) for n in names):
            print_w1(d, a.peak_gflops)


if __name__ == "__main__":
    main()
