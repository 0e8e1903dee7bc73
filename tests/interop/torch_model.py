#!/usr/bin/env python3
"""PyTorch side of the interop test (tests/test_interop.cpp).

Builds a small CTR model in PyTorch: a 2-layer DCN (vector) over a 20-wide input, then a
weight-normalised MLP [16, 8, 1] (Monolith's Dense: kernel (in, out), column-normalised, times a
trainable norm) and a sigmoid; writes its weights under ctrec's variable names, plus 32 inputs
and PyTorch's scores as verification vectors, with tools/export_safetensors.py. Name mapping
(also in README.md):

  torch                          ctrec                                  layout
  dcn.kernels[i]  (20, 1)        dcn/kernel_i                           same
  dcn.biases[i]   (1, 20)        dcn/bias_i                             same
  mlp[j].weight   (out, in)      mlp/dense_j/kernel                     transposed to (in, out)
  mlp[j].g        (out,)         mlp/dense_j/trainable_kernel_norm      same
  mlp[j].bias     (out,)         mlp/dense_j/bias                       same

usage: torch_model.py OUT.safetensors
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import export_safetensors as ex  # noqa: E402

torch.manual_seed(1234)
torch.set_default_dtype(torch.float64)  # the reference in double; ctrec scores in float


class Dcn(torch.nn.Module):
    """DCN, vector type: x <- x0 * (x . k_i) + b_i + x."""

    def __init__(self, d, layers):
        super().__init__()
        self.kernels = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(d, 1) * 0.3) for _ in range(layers)])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(1, d) * 0.1) for _ in range(layers)])

    def forward(self, x0):
        x = x0
        for k, b in zip(self.kernels, self.biases):
            x = x0 * (x @ k) + b + x
        return x


class WnDense(torch.nn.Module):
    """Monolith Dense with a trainable kernel norm: W_eff[:, j] = g_j W[:, j] / max(|W[:, j]|, 1e-3)."""

    def __init__(self, din, dout):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(dout, din) / din ** 0.5)  # PyTorch layout (out, in)
        self.g = torch.nn.Parameter(torch.rand(dout) + 0.5)
        self.bias = torch.nn.Parameter(torch.randn(dout) * 0.1)

    def forward(self, x):
        w = self.weight.t()  # (in, out)
        norm = torch.sqrt(torch.clamp((w * w).sum(0), min=1e-6))
        return x @ (w * (self.g / norm)) + self.bias


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.dcn = Dcn(20, 2)
        self.mlp = torch.nn.ModuleList([WnDense(20, 16), WnDense(16, 8), WnDense(8, 1)])

    def forward(self, x):
        h = self.dcn(x)
        for j, layer in enumerate(self.mlp):
            h = layer(h)
            if j + 1 < len(self.mlp):
                h = torch.relu(h)
        return torch.sigmoid(h)


def main():
    out = sys.argv[1]
    model = Model()
    x = torch.randn(32, 20)
    with torch.no_grad():
        y = model(x)
    tensors = {}
    for i, (k, b) in enumerate(zip(model.dcn.kernels, model.dcn.biases)):
        tensors[f"dcn/kernel_{i}"] = k
        tensors[f"dcn/bias_{i}"] = b
    for j, layer in enumerate(model.mlp):
        tensors[f"mlp/dense_{j}/kernel"] = layer.weight.t()
        tensors[f"mlp/dense_{j}/trainable_kernel_norm"] = layer.g
        tensors[f"mlp/dense_{j}/bias"] = layer.bias
    tensors = {k: ex.to_numpy(v).astype(np.float32) for k, v in tensors.items()}
    ex.export(out, tensors, verify_inputs={"x": ex.to_numpy(x).astype(np.float32)},
              verify_outputs={0: ex.to_numpy(y).astype(np.float32)}, tolerance=1e-5,
              metadata={"source": "pytorch " + torch.__version__})
    # the raw inputs and PyTorch's scores (double) for the C++ side's own comparison
    np.asarray(ex.to_numpy(x), dtype="<f8").tofile(out + ".x.f64")
    np.asarray(ex.to_numpy(y), dtype="<f8").tofile(out + ".y.f64")


if __name__ == "__main__":
    main()
