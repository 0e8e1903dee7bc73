#!/usr/bin/env python3
"""Compile-cost benchmark: builds a series of model translation units and prints, for each,
wall time and peak memory (/usr/bin/time), under a time and memory cap; writes the table
(markdown), the raw results (JSON) and a PNG plot of cost against model size.

    python3 bench/compile/compile_cost.py                      # every series
    python3 bench/compile/compile_cost.py --series dcn_train --cap-s 120
    python3 bench/compile/compile_cost.py --list

Flags: g++ -std=c++20 -O2 -march=native (the issue's setting), one TU at a time. A series
stops at its first size that fails or passes a cap (larger sizes cost more)."""
import argparse, json, os, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "bench", "compile", "models")

# name -> (model file, x-axis label, [(size, {macro: value})])
SERIES = {
    # mixed DCN chains (x used three times a layer)
    "dcn_fwd":        ("dcn.cpp", "cross layers", [(n, {"LAYERS": n, "KN": "false", "GRAD": 0}) for n in (1, 3, 6, 12, 24)]),
    "dcn_train":      ("dcn.cpp", "cross layers", [(n, {"LAYERS": n, "KN": "false", "GRAD": 1}) for n in range(1, 7)] +
                                                            [(n, {"LAYERS": n, "KN": "false", "GRAD": 1}) for n in (12, 24)]),
    "dcn_train_kn":   ("dcn.cpp", "cross layers", [(n, {"LAYERS": n, "KN": "true", "GRAD": 1}) for n in range(1, 7)]),
    # the layers
    "mlp_bn_train":   ("mlp_bn_train.cpp", "layers", [(n, {"DEPTH": n}) for n in (2, 4, 6, 8, 10, 12)]),
    "din":            ("din.cpp", "model", [(1, {})]),
    "dien":           ("dien.cpp", "model", [(1, {"TRAIN": 0}), (2, {"TRAIN": 1})]),
    "realistic_score": ("realistic.cpp", "model", [(1, {"TRAIN": 0})]),
    "realistic_train": ("realistic.cpp", "model", [(1, {"TRAIN": 1})]),
    "realistic_score_bf16": ("realistic.cpp", "model", [(1, {"TRAIN": 0, "BF16": 1})]),
    # the two-task MMoE of issue 12 (4 experts [128, 64], top-2 gates, towers [32, 1], CV^2 loss)
    "mmoe_score":     ("mmoe.cpp", "model", [(1, {"TRAIN": 0})]),
    "mmoe_train":     ("mmoe.cpp", "model", [(1, {"TRAIN": 1})]),
}


def compile_one(path, macros, cap_s, cap_gb, cxx):
    defs = [f"-D{k}={v}" for k, v in macros.items()]
    cmd = [cxx, "-std=c++20", "-O2", "-march=native", "-I", os.path.join(ROOT, "include"),
           "-I", os.path.join(ROOT, "kernels"), *defs, "-c", path, "-o", os.devnull]
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        shell = (f"ulimit -v {int(cap_gb * 1024 * 1024)}; exec timeout {cap_s} /usr/bin/time -f '%e %M' -o {tf.name} "
                 + " ".join(f"'{c}'" for c in cmd))
        t0 = time.time()
        p = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
        wall = time.time() - t0
        txt = tf.read().strip().splitlines()
    if p.returncode == 124:
        return {"status": f"over {cap_s} s", "seconds": wall, "peak_mb": None}
    ok = p.returncode == 0
    sec, kb = (None, None)
    if txt and len(txt[-1].split()) == 2:
        sec, kb = float(txt[-1].split()[0]), int(txt[-1].split()[1])
    if not ok:
        err = (p.stderr or "").strip().splitlines()
        mem = any("memory" in l or "bad_alloc" in l for l in err)
        return {"status": f"over {cap_gb} GB" if mem else "error: " + (err[0][:200] if err else "?"),
                "seconds": sec or wall, "peak_mb": kb / 1024 if kb else None}
    return {"status": "ok", "seconds": sec, "peak_mb": kb / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", nargs="*", default=None, help="series names (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--cap-s", type=int, default=300, help="time cap per TU (s)")
    ap.add_argument("--cap-gb", type=float, default=12.0, help="address-space cap per TU (GiB)")
    ap.add_argument("--out", default=os.path.join(ROOT, "build-compile-cost"), help="output folder")
    ap.add_argument("--cxx", default="g++")
    a = ap.parse_args()
    if a.list:
        for k, (f, xl, pts) in SERIES.items():
            print(f"{k:24s} {f:24s} sizes {[s for s, _ in pts]}")
        return
    names = a.series or list(SERIES)
    os.makedirs(a.out, exist_ok=True)
    res_path = os.path.join(a.out, "results.json")
    results = json.load(open(res_path)) if os.path.exists(res_path) else {}
    for name in names:
        f, xl, pts = SERIES[name]
        results[name] = {"file": f, "x": xl, "points": []}
        for size, macros in pts:
            r = compile_one(os.path.join(MODELS, f), macros, a.cap_s, a.cap_gb, a.cxx)
            r["size"] = size
            results[name]["points"].append(r)
            mb = f"{r['peak_mb']:.0f} MB" if r["peak_mb"] else "-"
            print(f"{name:24s} {size:3d}  {r['seconds']:7.1f} s  {mb:>9s}  {r['status']}", flush=True)
            json.dump(results, open(res_path, "w"), indent=1)
            if r["status"] != "ok":
                break
    # markdown table
    lines = ["| series | size | seconds | peak MB | status |", "|---|---:|---:|---:|---|"]
    for name, s in results.items():
        for r in s["points"]:
            mb = f"{r['peak_mb']:.0f}" if r["peak_mb"] else "-"
            lines.append(f"| {name} | {r['size']} | {r['seconds']:.1f} | {mb} | {r['status']} |")
    open(os.path.join(a.out, "table.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (apt-get install python3-matplotlib): no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, s in results.items():
        pts = [r for r in s["points"] if r["status"] == "ok"]
        if len(pts) < 2:
            continue
        xs = [r["size"] for r in pts]
        ax[0].plot(xs, [r["seconds"] for r in pts], "o-", label=name)
        ax[1].plot(xs, [r["peak_mb"] for r in pts], "o-", label=name)
    ax[0].set_xlabel("model size (layers)"); ax[0].set_ylabel("compile seconds (g++ 12, -O2)")
    ax[1].set_xlabel("model size (layers)"); ax[1].set_ylabel("peak memory (MB)")
    for x in ax:
        x.grid(True, alpha=0.3); x.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(a.out, "compile_cost.png"), dpi=110)
    print("plot:", os.path.join(a.out, "compile_cost.png"))


if __name__ == "__main__":
    main()
