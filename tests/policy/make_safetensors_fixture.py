#!/usr/bin/env python3
"""Writes tests/policy/fixtures/reference.safetensors with the Python `safetensors` package
(the reference implementation of the format) and reference.json with what the C++ reader must
find in it: every tensor's on-disk dtype, shape, raw element bits, and for float dtypes the
bits of its values widened to f32 by torch.

Needs: pip install safetensors torch  (torch supplies bf16 and float8_e4m3fn, which numpy
lacks). The outputs are committed; the C++ test does not need Python.

    python3 tests/policy/make_safetensors_fixture.py
"""
import json
import os

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures")

SPECIALS = [0.0, -0.0, 1.0, -2.5, 3.140625, 1e-3, -65504.0, 1e-40, float("inf"), float("-inf"), float("nan")]


def tensors():
    g = torch.Generator().manual_seed(1234)
    t = {}
    t["f32.matrix"] = torch.randn(3, 5, generator=g, dtype=torch.float32)
    t["f32.specials"] = torch.tensor(SPECIALS, dtype=torch.float32)
    t["bf16.matrix"] = torch.randn(2, 3, 4, generator=g).to(torch.bfloat16)
    t["bf16.specials"] = torch.tensor(SPECIALS, dtype=torch.float32).to(torch.bfloat16)
    t["f16.matrix"] = torch.randn(4, 3, generator=g).to(torch.float16)
    t["f16.specials"] = torch.tensor(SPECIALS[:-4] + [6e-8, float("inf"), float("nan")], dtype=torch.float32).to(torch.float16)
    t["f8.values"] = torch.tensor([0.0, -0.0, 1.0, -1.75, 448.0, -448.0, 0.001953125, 0.3, 17.0],
                                  dtype=torch.float32).to(torch.float8_e4m3fn)
    t["i32.values"] = torch.tensor([0, 1, -1, 2**31 - 1, -2**31, 123456], dtype=torch.int32)
    t["i64.values"] = torch.tensor([0, -1, 2**62 + 12345, -2**63, 7], dtype=torch.int64)
    t["scalar"] = torch.tensor(0.75, dtype=torch.float32)
    t["empty"] = torch.zeros(2, 0, dtype=torch.bfloat16)
    return t


BITS_VIEW = {
    torch.float32: (torch.int32, 32, "F32"),
    torch.bfloat16: (torch.int16, 16, "BF16"),
    torch.float16: (torch.int16, 16, "F16"),
    torch.float8_e4m3fn: (torch.uint8, 8, "F8_E4M3"),
    torch.int32: (torch.int32, 32, "I32"),
    torch.int64: (torch.int64, 64, "I64"),
}


def unsigned_bits(x, view, width):
    return [int(v) & ((1 << width) - 1) for v in x.reshape(-1).view(view).tolist()]


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    ts = tensors()
    metadata = {"format": "pt", "source": "make_safetensors_fixture.py"}
    save_file(ts, os.path.join(OUT_DIR, "reference.safetensors"), metadata=metadata)
    expected = {"metadata": metadata, "tensors": {}}
    for name, x in ts.items():
        view, width, disk = BITS_VIEW[x.dtype]
        e = {"dtype": disk, "shape": list(x.shape), "bits": unsigned_bits(x, view, width)}
        if x.dtype.is_floating_point:
            e["f32_bits"] = unsigned_bits(x.float(), torch.int32, 32)
        expected["tensors"][name] = e
    with open(os.path.join(OUT_DIR, "reference.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
