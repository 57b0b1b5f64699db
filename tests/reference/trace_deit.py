#!/usr/bin/env python3
"""Intermediate tensors of one real DeiT-Tiny forward pass, for the debug twin's test.

NumPy only (float64), reusing numpy_deit.py's layers. Input: `input0` of
tests/fixtures/deit-tiny-numpy-first8.safetensors (the first validation image, PIL-preprocessed).
Writes tests/fixtures/deit-tiny-numpy-trace.safetensors (f32):
  probs.0  [3, 8, 197]    block 0's attention probabilities, queries 0..7 of every head
  x.B      [197, 192]     the residual stream after block B (B = 0, 5, 11)
  cls      [192]          the final-normed CLS row
  logits   [1000]

  python3 tests/reference/trace_deit.py [--shared ../shared]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from numpy_deit import REPO, gelu, layer_norm, linear, load_deit, patch_embed, softmax  # noqa: E402

BLOCKS = (0, 5, 11)
QUERIES = 8


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    args = ap.parse_args()
    p, _ = load_deit(args.shared / "models" / "deit-tiny-patch16-224")
    x = load_file(str(REPO / "tests/fixtures/deit-tiny-numpy-first8.safetensors"))["input0"]
    x = x[None].astype(np.float64)
    t = patch_embed(x, p["patch_w"], p["patch_b"])
    D = t.shape[-1]
    t = np.concatenate([np.broadcast_to(p["cls"], (1, 1, D)), t], axis=1) + p["pos"][None]
    heads, eps = p["num_heads"], p["eps"]
    out = {}
    for i, blk in enumerate(p["blocks"]):
        h = layer_norm(t, blk["ln1_w"], blk["ln1_b"], eps)
        B, N, _ = h.shape
        hd = D // heads
        qkv = linear(h, blk["qkv_w"], blk["qkv_b"]).reshape(B, N, 3, heads, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv
        a = softmax((q * hd ** -0.5) @ k.transpose(0, 1, 3, 2), axis=-1)
        if i == 0:
            out["probs.0"] = a[0, :, :QUERIES, :]
        o = (a @ v).transpose(0, 2, 1, 3).reshape(B, N, D)
        t = t + linear(o, blk["proj_w"], blk["proj_b"])
        m = layer_norm(t, blk["ln2_w"], blk["ln2_b"], eps)
        t = t + linear(gelu(linear(m, blk["fc1_w"], blk["fc1_b"])), blk["fc2_w"], blk["fc2_b"])
        if i in BLOCKS:
            out[f"x.{i}"] = t[0]
    cls = layer_norm(t, p["norm_w"], p["norm_b"], eps)[0, 0]
    out["cls"] = cls
    out["logits"] = linear(cls, p["head_w"], p["head_b"])
    path = REPO / "tests/fixtures/deit-tiny-numpy-trace.safetensors"
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}, str(path))
    print(f"wrote {path}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in out.items()))


if __name__ == "__main__":
    main()
