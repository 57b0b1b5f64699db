#!/usr/bin/env python3
"""Independent NumPy reference forward pass of DeiT-Tiny (timm weights) on ImageNet val images.

Pure NumPy + PIL + safetensors (no torch). Computes in float64 by default.

  python3 tests/reference/numpy_deit.py --crop resize     # 256 bicubic resize + center crop 224
  python3 tests/reference/numpy_deit.py --crop plain      # center crop 224 from the 227x227 image

Writes tests/fixtures/deit-tiny-numpy-<mode>.tsv (file, label, top1, top5 comma-separated; sorted
by file name) and, for --crop resize, tests/fixtures/deit-tiny-numpy-first8.safetensors with
`logits` [8,1000] f32 (first 8 files of the TSV) and `input0` [3,224,224] f32 (preprocessed first image).

The forward functions (load_timm_params / load_hf_params / forward) are generic ViT/DeiT code and
are reused by check_numpy_vs_timm.py to cross-check the tiny fixtures.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# math
def erf(x: np.ndarray) -> np.ndarray:
    """erf via Abramowitz & Stegun 7.1.26 (max abs error 1.5e-7), vectorised, odd-extended."""
    a1, a2, a3, a4, a5 = 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429
    p = 0.3275911
    s = np.sign(x)
    ax = np.abs(x)
    t = 1.0 / (1.0 + p * ax)
    y = 1.0 - (((((a5 * t + a4) * t) + a3) * t + a2) * t + a1) * t * np.exp(-ax * ax)
    return s * y


def gelu(x: np.ndarray) -> np.ndarray:
    """exact (erf) GELU: 0.5 x (1 + erf(x / sqrt 2))"""
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def layer_norm(x, w, b, eps):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc / np.sqrt(var + eps) * w + b


def softmax(x, axis=-1):
    x = x - x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def linear(x, w, b):
    # w is [out, in] (torch convention)
    y = x @ w.T
    return y + b if b is not None else y


# ----------------------------------------------------------------------------------------------
# parameters in a canonical layout
def load_timm_params(sd: dict, num_heads: int, eps: float = 1e-6, dtype=np.float64) -> dict:
    c = lambda k: np.ascontiguousarray(sd[k].astype(dtype))
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    p = {
        "eps": eps,
        "num_heads": num_heads,
        "patch_w": c("patch_embed.proj.weight"),
        "patch_b": c("patch_embed.proj.bias"),
        "cls": c("cls_token").reshape(-1),
        "dist": c("dist_token").reshape(-1) if "dist_token" in sd else None,
        "pos": c("pos_embed")[0],
        "norm_w": c("norm.weight"),
        "norm_b": c("norm.bias"),
        "head_w": c("head.weight"),
        "head_b": c("head.bias"),
        "head_dist_w": c("head_dist.weight") if "head_dist.weight" in sd else None,
        "head_dist_b": c("head_dist.bias") if "head_dist.bias" in sd else None,
        "blocks": [],
    }
    for i in range(depth):
        b = f"blocks.{i}."
        p["blocks"].append({
            "ln1_w": c(b + "norm1.weight"), "ln1_b": c(b + "norm1.bias"),
            "qkv_w": c(b + "attn.qkv.weight"), "qkv_b": c(b + "attn.qkv.bias"),
            "proj_w": c(b + "attn.proj.weight"), "proj_b": c(b + "attn.proj.bias"),
            "ln2_w": c(b + "norm2.weight"), "ln2_b": c(b + "norm2.bias"),
            "fc1_w": c(b + "mlp.fc1.weight"), "fc1_b": c(b + "mlp.fc1.bias"),
            "fc2_w": c(b + "mlp.fc2.weight"), "fc2_b": c(b + "mlp.fc2.bias"),
        })
    return p


def load_hf_params(sd: dict, config: dict, dtype=np.float64) -> dict:
    """HF transformers ViTForImageClassification / DeiTForImageClassificationWithTeacher layout."""
    c = lambda k: np.ascontiguousarray(sd[k].astype(dtype))
    pre = "deit." if any(k.startswith("deit.") for k in sd) else "vit."
    e = pre + "embeddings."
    depth = config["num_hidden_layers"]
    p = {
        "eps": config.get("layer_norm_eps", 1e-12),
        "num_heads": config["num_attention_heads"],
        "patch_w": c(e + "patch_embeddings.projection.weight"),
        "patch_b": c(e + "patch_embeddings.projection.bias"),
        "cls": c(e + "cls_token").reshape(-1),
        "dist": c(e + "distillation_token").reshape(-1) if e + "distillation_token" in sd else None,
        "pos": c(e + "position_embeddings")[0],
        "norm_w": c(pre + "layernorm.weight"),
        "norm_b": c(pre + "layernorm.bias"),
        "blocks": [],
    }
    if "classifier.weight" in sd:
        p.update(head_w=c("classifier.weight"), head_b=c("classifier.bias"), head_dist_w=None, head_dist_b=None)
    else:
        p.update(head_w=c("cls_classifier.weight"), head_b=c("cls_classifier.bias"),
                 head_dist_w=c("distillation_classifier.weight"), head_dist_b=c("distillation_classifier.bias"))
    for i in range(depth):
        b = f"{pre}encoder.layer.{i}."
        a = b + "attention.attention."
        p["blocks"].append({
            "ln1_w": c(b + "layernorm_before.weight"), "ln1_b": c(b + "layernorm_before.bias"),
            "qkv_w": np.concatenate([c(a + "query.weight"), c(a + "key.weight"), c(a + "value.weight")], 0),
            "qkv_b": np.concatenate([c(a + "query.bias"), c(a + "key.bias"), c(a + "value.bias")], 0),
            "proj_w": c(b + "attention.output.dense.weight"), "proj_b": c(b + "attention.output.dense.bias"),
            "ln2_w": c(b + "layernorm_after.weight"), "ln2_b": c(b + "layernorm_after.bias"),
            "fc1_w": c(b + "intermediate.dense.weight"), "fc1_b": c(b + "intermediate.dense.bias"),
            "fc2_w": c(b + "output.dense.weight"), "fc2_b": c(b + "output.dense.bias"),
        })
    return p


# ----------------------------------------------------------------------------------------------
def patch_embed(x, w, b):
    """x [B,C,H,W], w [D,C,P,P] stride-P conv -> [B, (H/P)*(W/P), D] in row-major patch order"""
    B, C, H, W = x.shape
    D, _, P, _ = w.shape
    gh, gw = H // P, W // P
    x = x[:, :, : gh * P, : gw * P].reshape(B, C, gh, P, gw, P)
    x = x.transpose(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * P * P)  # (c, ky, kx) order = w flatten
    return x @ w.reshape(D, -1).T + b


def attention(x, blk, num_heads):
    B, N, D = x.shape
    hd = D // num_heads
    qkv = linear(x, blk["qkv_w"], blk["qkv_b"]).reshape(B, N, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # [B,H,N,hd]
    s = (q * (hd ** -0.5)) @ k.transpose(0, 1, 3, 2)
    a = softmax(s, axis=-1)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(B, N, D)
    return linear(o, blk["proj_w"], blk["proj_b"])


def forward(p: dict, x: np.ndarray) -> np.ndarray:
    """x: normalised pixels [B,3,H,W] -> logits [B,classes] (distilled: mean of the two heads)."""
    dt = p["pos"].dtype
    x = x.astype(dt)
    B = x.shape[0]
    t = patch_embed(x, p["patch_w"], p["patch_b"])
    D = t.shape[-1]
    pre = [np.broadcast_to(p["cls"], (B, 1, D))]
    if p["dist"] is not None:
        pre.append(np.broadcast_to(p["dist"], (B, 1, D)))
    t = np.concatenate(pre + [t], axis=1) + p["pos"][None]
    eps = p["eps"]
    for blk in p["blocks"]:
        t = t + attention(layer_norm(t, blk["ln1_w"], blk["ln1_b"], eps), blk, p["num_heads"])
        h = layer_norm(t, blk["ln2_w"], blk["ln2_b"], eps)
        h = linear(gelu(linear(h, blk["fc1_w"], blk["fc1_b"])), blk["fc2_w"], blk["fc2_b"])
        t = t + h
    t = layer_norm(t, p["norm_w"], p["norm_b"], eps)
    logits = linear(t[:, 0], p["head_w"], p["head_b"])
    if p["dist"] is not None and p["head_dist_w"] is not None:
        logits = (logits + linear(t[:, 1], p["head_dist_w"], p["head_dist_b"])) / 2
    return logits


# ----------------------------------------------------------------------------------------------
# preprocessing (torchvision semantics, on PIL images)
def resize_shorter(img: Image.Image, size: int, resample) -> Image.Image:
    """torchvision Resize(int): shorter side -> size, long side = int(size * long / short)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), resample)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision CenterCrop: top = int(round((h - size) / 2.0)), left likewise."""
    w, h = img.size
    if w < size or h < size:
        raise ValueError(f"image {img.size} smaller than crop {size}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def preprocess(path, mode: str, cfg: dict) -> np.ndarray:
    pc = cfg["pretrained_cfg"]
    img_size = pc["input_size"][-1]
    img = Image.open(path).convert("RGB")
    if mode == "resize":
        scale = int(math.floor(img_size / pc["crop_pct"]))  # 256
        assert pc["interpolation"] == "bicubic"
        img = resize_shorter(img, scale, Image.BICUBIC)
    elif mode != "plain":
        raise ValueError(mode)
    img = center_crop(img, img_size)
    a = np.asarray(img, dtype=np.float32) / np.float32(255.0)  # HWC
    mean = np.asarray(pc["mean"], dtype=np.float32)
    std = np.asarray(pc["std"], dtype=np.float32)
    a = (a - mean) / std
    return np.ascontiguousarray(a.transpose(2, 0, 1))  # CHW f32


def load_deit(model_dir: Path, dtype=np.float64):
    cfg = json.loads((model_dir / "config.json").read_text())
    sd = load_file(str(model_dir / "model.safetensors"))
    p = load_timm_params(sd, num_heads=cfg["model_args"]["num_heads"], eps=1e-6, dtype=dtype)
    return p, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", choices=["resize", "plain"], default="resize")
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--model", type=Path, default=None, help="default <shared>/models/deit-tiny-patch16-224")
    ap.add_argument("--data", type=Path, default=None, help="default <shared>/data/imagenet-val-1300")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    args = ap.parse_args()

    model_dir = args.model or args.shared / "models" / "deit-tiny-patch16-224"
    data_dir = args.data or args.shared / "data" / "imagenet-val-1300"
    dtype = np.float64 if args.dtype == "float64" else np.float32
    params, cfg = load_deit(model_dir, dtype)

    labels = {}
    for line in (data_dir / "labels.tsv").read_text().splitlines():
        if line.strip():
            name, lab = line.split("\t")
            labels[name] = int(lab)
    files = sorted(labels)
    missing = [f for f in files if not (data_dir / "images" / f).exists()]
    if missing:
        sys.exit(f"missing images: {missing[:5]}")
    if args.limit:
        files = files[: args.limit]

    rows, first8, input0 = [], [], None
    n1 = n5 = 0
    t0 = time.time()
    for i in range(0, len(files), args.batch):
        chunk = files[i: i + args.batch]
        x = np.stack([preprocess(data_dir / "images" / f, args.crop, cfg) for f in chunk])
        if input0 is None:
            input0 = x[0].copy()
        logits = forward(params, x)
        if len(first8) < 8:
            first8.extend(logits[: 8 - len(first8)].astype(np.float32))
        top5 = np.argsort(-logits, axis=-1, kind="stable")[:, :5]
        for f, t5 in zip(chunk, top5):
            lab = labels[f]
            n1 += int(t5[0] == lab)
            n5 += int(lab in t5)
            rows.append(f"{f}\t{lab}\t{t5[0]}\t{','.join(str(int(c)) for c in t5)}")
        done = i + len(chunk)
        el = time.time() - t0
        print(f"\r[{done}/{len(files)}] top1 {100*n1/done:.2f}% top5 {100*n5/done:.2f}% "
              f"{el:.0f}s (eta {el/done*(len(files)-done):.0f}s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)

    n = len(files)
    print(f"DeiT-Tiny numpy ({args.dtype}), crop={args.crop}, {n} images: "
          f"top-1 {100*n1/n:.2f}% ({n1}/{n}), top-5 {100*n5/n:.2f}% ({n5}/{n})")
    if args.limit:
        print("(--limit given: fixtures not written)")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    tsv = args.out / f"deit-tiny-numpy-{args.crop}.tsv"
    tsv.write_text("\n".join(rows) + "\n")
    print(f"wrote {tsv}")
    if args.crop == "resize":
        st = args.out / "deit-tiny-numpy-first8.safetensors"
        save_file({"logits": np.stack(first8).astype(np.float32),
                   "input0": input0.astype(np.float32)}, str(st),
                  metadata={"files": ",".join(files[:8]), "crop": "resize"})
        os.chmod(st, 0o644)
        print(f"wrote {st} (files: {', '.join(files[:8])})")


if __name__ == "__main__":
    main()
