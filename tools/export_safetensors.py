#!/usr/bin/env python3
"""Write a ctrec weight file (safetensors) from a dict of arrays.

Needs numpy only; PyTorch is optional (tensors of a state_dict are converted with
.detach().cpu().numpy(), bfloat16 ones widened to float32 first).

ctrec loads a file whose tensor names are the model's variable names ("mlp/dense_0/kernel",
...), each with the parameter's static shape (a Dense kernel is (in, out): a PyTorch Linear
weight (out, in) must be transposed) and dtype F32, F64, F16 or BF16. Optional verification
vectors let ctrec re-run the model on inputs at load time and compare with the expected
outputs, so a wrong name mapping fails at load time:

  tensors "__verify__/input/<input name>"  shape (batch, ...) (an unbatched shared input: (...))
          "__verify__/output/<k>"          output k of the program, shape (batch, ...)
  metadata "verify_batch", "verify_tolerance" (|got - want| <= t (1 + |want|)), "verify_seed"

From Python:

    import numpy as np, export_safetensors as ex
    ex.export("model.safetensors",
              {"mlp/dense_0/kernel": k0, "mlp/dense_0/bias": b0, ...},  # or a PyTorch state_dict
              verify_inputs={"x": xs}, verify_outputs={0: ys},            # optional
              metadata={"source": "pytorch"}, dtype="keep")

From the command line (an .npz whose keys are the names; np.savez accepts "a/b" keys as
**{"a/b": array}; a .pt/.pth state_dict when PyTorch is installed):

    python3 tools/export_safetensors.py weights.npz model.safetensors \\
        [--verify verify.npz]           # keys "input/<name>" and "output/<k>"
        [--verify-batch N]              # default: the first axis of the first output
        [--tolerance 1e-5] [--seed S]
        [--metadata KEY=VALUE ...]
        [--rename OLD=NEW ...]          # exact names, applied before --transpose
        [--transpose NAME ...]          # 2-D arrays to transpose (PyTorch Linear weights)
        [--dtype keep|f32|f64|f16|bf16] # floating parameters only; verification vectors keep theirs

Floating arrays are stored as their dtype (float16/32/64) unless --dtype casts them (rounding to
nearest even; bf16 from float32 bits); integer and bool arrays are stored as such (ctrec rejects
them on load, naming the dtype). The file is written to a temporary beside the target and
renamed over it. The header is compact JSON padded with spaces to a multiple of 8 bytes.
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import numpy as np

_DTYPE_NAMES = {
    "bool": "BOOL", "uint8": "U8", "int8": "I8", "uint16": "U16", "int16": "I16", "float16": "F16",
    "uint32": "U32", "int32": "I32", "float32": "F32", "uint64": "U64", "int64": "I64", "float64": "F64",
}
_CASTS = ("keep", "f32", "f64", "f16", "bf16")


def to_numpy(value):
    """A numpy array from an array-like or a PyTorch tensor."""
    if hasattr(value, "detach"):  # a torch.Tensor
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(value)


def bf16_bits(a):
    """bfloat16 bit patterns (uint16) of an array, rounded to nearest even from float32."""
    f = np.asarray(a, dtype=np.float32).reshape(-1)  # 1-d, so that 0-d input stays an array below
    b = f.view(np.uint32)
    r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(f)
    r[nan] = ((b[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)  # quiet NaN, sign kept
    return r.reshape(np.shape(a))


def _encode(name, a, cast):
    """(dtype name, shape, little-endian bytes) of an array, cast as asked when floating."""
    a = to_numpy(a)
    if a.dtype.kind == "f" and cast != "keep":
        if cast == "bf16":
            return "BF16", list(a.shape), bf16_bits(a).astype("<u2").tobytes()
        a = a.astype({"f16": np.float16, "f32": np.float32, "f64": np.float64}[cast])
    key = a.dtype.name
    if key not in _DTYPE_NAMES:
        raise ValueError(f"tensor '{name}': dtype {a.dtype} has no safetensors equivalent")
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)  # 0-d arrays stay 0-d (shape [])
    return _DTYPE_NAMES[key], list(a.shape), a.tobytes(order="C")


def serialize(tensors, metadata=None, verify_inputs=None, verify_outputs=None, verify_batch=None,
              tolerance=None, verify_seed=None, dtype="keep"):
    """The bytes of a safetensors file; see export()."""
    if dtype not in _CASTS:
        raise ValueError(f"dtype must be one of {_CASTS}, got {dtype!r}")
    entries = []  # (name, dtype, shape, bytes), in order
    for name, a in tensors.items():
        entries.append((str(name),) + _encode(name, a, dtype))
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if verify_inputs or verify_outputs:
        if not verify_inputs or not verify_outputs:
            raise ValueError("verification vectors need both inputs and expected outputs")
        outs = {int(k): to_numpy(v) for k, v in verify_outputs.items()}
        for name, a in verify_inputs.items():
            entries.append((f"__verify__/input/{name}",) + _encode(name, a, "keep"))
        for k in sorted(outs):
            entries.append((f"__verify__/output/{k}",) + _encode(k, outs[k], "keep"))
        if verify_batch is None:
            first = outs[min(outs)]
            if first.ndim == 0:
                raise ValueError("cannot infer verify_batch from an unbatched output: pass it")
            verify_batch = first.shape[0]
        meta["verify_batch"] = str(int(verify_batch))
        if tolerance is not None:
            meta["verify_tolerance"] = repr(float(tolerance))
        if verify_seed:
            meta["verify_seed"] = str(int(verify_seed))
    header = {}
    if meta:
        header["__metadata__"] = meta
    at = 0
    for name, dt, shape, data in entries:
        if name in header:
            raise ValueError(f"tensor '{name}' given twice")
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [at, at + len(data)]}
        at += len(data)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return b"".join([struct.pack("<Q", len(text)), text] + [e[3] for e in entries])


def export(path, tensors, metadata=None, verify_inputs=None, verify_outputs=None, verify_batch=None,
           tolerance=None, verify_seed=None, dtype="keep"):
    """Write tensors (name -> array or torch tensor) to path atomically.

    verify_inputs: input name -> array (batch-major); verify_outputs: output index -> expected
    array; verify_batch defaults to the first axis of the first output; tolerance, verify_seed:
    stored as metadata; dtype: "keep" or the dtype for floating parameters (f32, f64, f16, bf16).
    """
    blob = serialize(tensors, metadata, verify_inputs, verify_outputs, verify_batch, tolerance,
                     verify_seed, dtype)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp.", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _load_arrays(path):
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    import torch  # a .pt / .pth state_dict

    sd = torch.load(path, map_location="cpu")
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    return {k: to_numpy(v) for k, v in sd.items()}


def _pairs(items, what):
    out = {}
    for s in items or []:
        if "=" not in s:
            raise SystemExit(f"export_safetensors: {what} must be KEY=VALUE, got {s!r}")
        k, v = s.split("=", 1)
        out[k] = v
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a ctrec safetensors weight file from an .npz (or .pt) file.")
    ap.add_argument("input", help=".npz whose keys are the variable names (or a PyTorch .pt/.pth state_dict)")
    ap.add_argument("output", help="the .safetensors file to write")
    ap.add_argument("--verify", help=".npz with input/<name> and output/<k> arrays")
    ap.add_argument("--verify-batch", type=int)
    ap.add_argument("--tolerance", type=float)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--metadata", action="append", metavar="KEY=VALUE")
    ap.add_argument("--rename", action="append", metavar="OLD=NEW")
    ap.add_argument("--transpose", action="append", metavar="NAME", default=[])
    ap.add_argument("--dtype", choices=_CASTS, default="keep")
    a = ap.parse_args(argv)

    arrays = _load_arrays(a.input)
    for old, new in _pairs(a.rename, "--rename").items():
        if old not in arrays:
            raise SystemExit(f"export_safetensors: --rename: no array named {old!r}")
        arrays = {(new if k == old else k): v for k, v in arrays.items()}
    for name in a.transpose:
        if name not in arrays or arrays[name].ndim != 2:
            raise SystemExit(f"export_safetensors: --transpose: no 2-D array named {name!r}")
        arrays[name] = arrays[name].T
    vin, vout = None, None
    if a.verify:
        with np.load(a.verify, allow_pickle=False) as z:
            vin = {k[len("input/"):]: z[k] for k in z.files if k.startswith("input/")}
            vout = {k[len("output/"):]: z[k] for k in z.files if k.startswith("output/")}
            rest = [k for k in z.files if not k.startswith(("input/", "output/"))]
        if rest:
            raise SystemExit(f"export_safetensors: --verify: unexpected keys {rest} (want input/<name>, output/<k>)")
    export(a.output, arrays, _pairs(a.metadata, "--metadata"), vin, vout, a.verify_batch, a.tolerance, a.seed,
           a.dtype)
    return 0


if __name__ == "__main__":
    sys.exit(main())
