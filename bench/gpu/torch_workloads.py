#!/usr/bin/env python3
"""PyTorch baselines for bench/gpu/device_check.sh: workloads W1, W2, W4, W5, W6, W7 of
../shared/bench/WORKLOADS.md in float32 on the GPU, eager and torch.compile, TF32 off.

Untested here (no GPU and no PyTorch on the build machine): see bench/gpu/README.md.

  python3 bench/gpu/torch_workloads.py --batch 4096 --workloads 1 2 4 5 6 7 [--wait-for FILE]

Prints "time W<n> torch_eager|torch_compile <B> <median ms> <p90 ms>" per workload (CUDA events
around each forward call, after warm-up). With --wait-for, every model is built and compiled first
(torch.compile's work is on the CPU, so it can overlap the nvcc builds), and the timing waits until
FILE exists, so the GPU is not shared with anything else while timing.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
torch.set_float32_matmul_precision("highest")


class W1(nn.Module):  # MLP 256 -> 512 -> 256 -> 128 -> 1, relu between, sigmoid at the end
    def __init__(self):
        super().__init__()
        self.l = nn.ModuleList([nn.Linear(a, b) for a, b in [(256, 512), (512, 256), (256, 128), (128, 1)]])

    def forward(self, x):
        for i, l in enumerate(self.l):
            x = l(x)
            if i + 1 < len(self.l):
                x = F.relu(x)
        return torch.sigmoid(x)

    @staticmethod
    def inputs(b):
        return (torch.randn(b, 256),)


class W2(nn.Module):  # CIN: N = 39, K = 16, [128, 128], direct connections, sum over K -> 256
    def __init__(self, n=39, hidden=(128, 128)):
        super().__init__()
        chans, self.w = n, nn.ParameterList()
        for h in hidden:
            self.w.append(nn.Parameter(torch.randn(h, chans * n) / (chans * n) ** 0.5))
            chans = h
        self.b = nn.ParameterList([nn.Parameter(torch.zeros(h)) for h in hidden])

    def forward(self, x0):  # (B, N, K)
        b, n, k = x0.shape
        x, outs = x0, []
        for w, bias in zip(self.w, self.b):
            z = torch.einsum("bhk,bmk->bhmk", x, x0).reshape(b, -1, k)  # (B, H N, K)
            x = F.relu(torch.einsum("oc,bck->bok", w, z) + bias[None, :, None])
            outs.append(x.sum(dim=2))
        return torch.cat(outs, dim=1)

    @staticmethod
    def inputs(b):
        return (torch.randn(b, 39, 16),)


class W4(nn.Module):  # DIN: q 32, keys 50 x 32, attention MLP [80, 40, 1] over [q, k, q - k, q * k]
    def __init__(self, h=32):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(4 * h, 80), nn.ReLU(), nn.Linear(80, 40), nn.ReLU(), nn.Linear(40, 1))

    def forward(self, q, k):
        qq = q[:, None, :].expand_as(k)
        w = self.mlp(torch.cat([qq, k, qq - k, qq * k], dim=-1))  # (B, T, 1)
        return (w * k).sum(dim=1)

    @staticmethod
    def inputs(b):
        return torch.randn(b, 32), torch.randn(b, 50, 32)


class W5(nn.Module):  # DCN matrix: D = 624, 3 layers x_{l+1} = x0 * (x_l W + b) + x_l
    def __init__(self, d=624, layers=3):
        super().__init__()
        self.l = nn.ModuleList([nn.Linear(d, d) for _ in range(layers)])

    def forward(self, x0):
        x = x0
        for l in self.l:
            x = x0 * l(x) + x
        return x

    @staticmethod
    def inputs(b):
        return (torch.randn(b, 624),)


class W6(nn.Module):  # DIEN: T = 50, K = 32, GRU 32 units, then AUGRU with attention from the target
    def __init__(self, e=32, u=32):
        super().__init__()
        self.gru = nn.GRU(e, u, batch_first=True)
        self.att = nn.Parameter(torch.randn(u, u) / u**0.5)
        self.wi = nn.Linear(u, 3 * u)
        self.wh = nn.Linear(u, 3 * u, bias=False)
        self.u = u

    def forward(self, q, k):
        h, _ = self.gru(k)  # (B, T, U)
        a = torch.softmax(torch.einsum("btu,uv,bv->bt", h, self.att, q), dim=1)
        xi = self.wi(h)  # the input-side products of every step in one GEMM
        s = torch.zeros(q.shape[0], self.u, device=q.device, dtype=q.dtype)
        for t in range(h.shape[1]):
            xr, xz, xn = xi[:, t].chunk(3, dim=1)
            hr, hz, hn = self.wh(s).chunk(3, dim=1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz) * a[:, t, None]  # AUGRU: the update gate scaled by attention
            n = F.relu(xn + r * hn)
            s = (1 - z) * s + z * n
        return s

    @staticmethod
    def inputs(b):
        return torch.randn(b, 32), torch.randn(b, 50, 32)


class W7(nn.Module):  # MMoE: input 512, 8 experts [256, 128], 3 tasks, softmax gates
    def __init__(self, d=512, experts=8, tasks=3):
        super().__init__()
        self.experts = nn.ModuleList(
            [nn.Sequential(nn.Linear(d, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU()) for _ in range(experts)])
        self.gates = nn.Linear(d, experts * tasks, bias=False)
        self.e, self.t = experts, tasks

    def forward(self, x):
        o = torch.stack([e(x) for e in self.experts], dim=1)  # (B, E, 128)
        g = torch.softmax(self.gates(x).view(-1, self.t, self.e), dim=2)  # (B, T, E)
        return torch.einsum("bte,bed->btd", g, o)

    @staticmethod
    def inputs(b):
        return (torch.randn(b, 512),)


MODELS = {1: W1, 2: W2, 4: W4, 5: W5, 6: W6, 7: W7}


def timed(fn, args, reps):
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(*args)
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    times.sort()
    return times[len(times) // 2], times[len(times) * 9 // 10]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--workloads", type=int, nargs="+", default=sorted(MODELS))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--wait-for", default=None)
    a = ap.parse_args()
    dev = torch.device("cuda")
    torch.manual_seed(0)
    ready = []
    with torch.no_grad():
        for w in a.workloads:
            m = MODELS[w]().to(dev).eval()
            args = tuple(t.to(dev) for t in MODELS[w].inputs(a.batch))
            c = torch.compile(m)
            for _ in range(3):  # compiles (CPU) and warms up
                m(*args)
                c(*args)
            torch.cuda.synchronize()
            ready.append((w, m, c, args))
            print(f"# W{w} compiled", file=sys.stderr, flush=True)
        if a.wait_for:
            while not os.path.exists(a.wait_for):
                time.sleep(1)
        for w, m, c, args in ready:
            for name, fn in (("torch_eager", m), ("torch_compile", c)):
                for _ in range(3):
                    fn(*args)
                med, p90 = timed(fn, args, a.reps)
                print(f"time W{w} {name} {a.batch} {med:.4f} {p90:.4f}", flush=True)


if __name__ == "__main__":
    main()
