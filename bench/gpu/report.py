#!/usr/bin/env python3
"""The table of bench/gpu/device_check.sh: per workload the Thrust backend's forward time at
B = 4096, PyTorch eager and torch.compile in the same run, the ratios (baseline time / ctrec
time: above 1 means ctrec is faster), the issue's target ratio against torch.compile, and the
fraction of the fp32 limit (FLOP x B / peak; --fp32-tflops, default 67: the H100/H200 SXM
datasheet figure, a lead, not a measurement).

  python3 bench/gpu/report.py ctrec.txt torch.txt [--fp32-tflops 67] [--device NAME]

(B is read from the ctrec lines; the torch lines are taken at the same B by device_check.sh.)
"""
import argparse

TARGET = {1: 0.7, 2: 1.5, 3: 1.5, 4: 1.5, 5: 0.7, 6: 10.0, 7: 0.7}  # issue 14: x torch.compile


def read(paths):
    t, mflop, batch = {}, {}, {}
    for p in paths:
        try:
            lines = open(p).read().splitlines()
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) >= 5 and f[0] == "time":
                w = int(f[1][1:])
                t[(w, f[2])] = float(f[4])
                if len(f) >= 7:
                    mflop[w], batch[w] = float(f[6]), int(f[3])
    return t, mflop, batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--fp32-tflops", type=float, default=67.0)
    ap.add_argument("--device", default="")
    a = ap.parse_args()
    t, mflop, batch = read(a.files)
    ws = sorted({w for w, _ in t})
    print(f"device: {a.device}  B = {sorted(set(batch.values()))}  fp32 limit {a.fp32_tflops} TFLOP/s\n")
    print("| workload | ctrec thrust ms | eager ms | torch.compile ms | eager / ctrec | compile / ctrec | target | ctrec % of fp32 limit |")
    print("|---|---|---|---|---|---|---|---|")
    fmt = lambda v: f"{v:.3f}" if v is not None else "-"
    for w in ws:
        c, e, k = t.get((w, "ctrec_thrust")), t.get((w, "torch_eager")), t.get((w, "torch_compile"))
        re = e / c if c and e else None
        rk = k / c if c and k else None
        frac = None
        if c and w in mflop:
            frac = 100.0 * mflop[w] * 1e6 * batch[w] / (c * 1e-3) / (a.fp32_tflops * 1e12)
        print(f"| W{w} | {fmt(c)} | {fmt(e)} | {fmt(k)} | {fmt(re)} | {fmt(rk)} | {TARGET.get(w, '-')} | "
              f"{fmt(frac)} |")


if __name__ == "__main__":
    main()
