#!/usr/bin/env python3
"""Validate numpy_deit.py against torch/timm (needs torch, timm, torchvision).

1. preprocessing: numpy_deit.preprocess vs timm/torchvision eval transforms on 2 images (both modes)
2. DeiT-Tiny logits: numpy forward vs timm.create_model('deit_tiny_patch16_224') with the same weights
3. tiny fixtures: numpy forward on each tests/fixtures/tiny-*/model.safetensors vs reference.safetensors
   (an independent check of the tensor names/layout written by make_fixtures.py)

Run: python3 tests/reference/check_numpy_vs_timm.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
import timm
import timm.data
import timm.layers
from torchvision import transforms as T
from safetensors.numpy import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy_deit as nd  # noqa: E402

REPO = nd.REPO
SHARED = REPO.parent / "shared"
MODEL = SHARED / "models" / "deit-tiny-patch16-224"
DATA = SHARED / "data" / "imagenet-val-1300"

timm.layers.set_fused_attn(False)
torch.set_grad_enabled(False)


def main():
    ok = True
    cfg = json.loads((MODEL / "config.json").read_text())
    files = sorted(l.split("\t")[0] for l in (DATA / "labels.tsv").read_text().splitlines() if l.strip())[:2]
    from PIL import Image

    # 1. preprocessing vs torchvision / timm's own eval transform
    pc = cfg["pretrained_cfg"]
    tf_resize = timm.data.create_transform(input_size=tuple(pc["input_size"]), interpolation=pc["interpolation"],
                                           mean=tuple(pc["mean"]), std=tuple(pc["std"]),
                                           crop_pct=pc["crop_pct"], crop_mode=pc["crop_mode"], is_training=False)
    tf_plain = T.Compose([T.CenterCrop(224), T.ToTensor(), T.Normalize(pc["mean"], pc["std"])])
    print(f"timm eval transform: {tf_resize}")
    xs = {}
    for mode, tf in (("resize", tf_resize), ("plain", tf_plain)):
        a = np.stack([nd.preprocess(DATA / "images" / f, mode, cfg) for f in files])
        b = np.stack([tf(Image.open(DATA / "images" / f).convert("RGB")).numpy() for f in files])
        d = np.abs(a - b).max()
        print(f"preprocess {mode}: max |numpy - torchvision| = {d:.3g}")
        ok &= d < 1e-5
        xs[mode] = a

    # 2. DeiT-Tiny numpy vs timm
    model = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    sd = load_file(str(MODEL / "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    p64, _ = nd.load_deit(MODEL, np.float64)
    p32, _ = nd.load_deit(MODEL, np.float32)
    for mode, x in xs.items():
        ref = model(torch.from_numpy(x)).numpy()
        l64 = nd.forward(p64, x)
        l32 = nd.forward(p32, x)
        d64 = np.abs(l64 - ref).max()
        d32 = np.abs(l32 - ref).max()
        print(f"deit-tiny {mode}: max|logit| {np.abs(ref).max():.2f}; max |numpy(f64) - timm| = {d64:.3g}, "
              f"max |numpy(f32) - timm| = {d32:.3g}; top1 timm {ref.argmax(-1).tolist()} numpy {l64.argmax(-1).tolist()}")
        ok &= d64 < 1e-3 and d32 < 1e-3 and (ref.argmax(-1) == l64.argmax(-1)).all()

    # 2b. first8 fixture, if present
    f8 = REPO / "tests" / "fixtures" / "deit-tiny-numpy-first8.safetensors"
    if f8.exists():
        t = load_file(str(f8))
        d = np.abs(t["input0"] - xs["resize"][0]).max()
        print(f"first8 fixture: input0 vs preprocess: {d:.3g}")
        ok &= d == 0
        names = sorted(l.split("\t")[0] for l in (DATA / "labels.tsv").read_text().splitlines() if l.strip())[:8]
        x8 = np.stack([nd.preprocess(DATA / "images" / f, "resize", cfg) for f in names])
        d = np.abs(model(torch.from_numpy(x8)).numpy() - t["logits"]).max()
        print(f"first8 fixture: logits vs timm: {d:.3g}")
        ok &= d < 1e-3

    # 3. tiny fixtures
    for d in sorted((REPO / "tests" / "fixtures").glob("tiny-*")):
        conf = json.loads((d / "config.json").read_text())
        sd = load_file(str(d / "model.safetensors"))
        if "model_args" in conf:
            p = nd.load_timm_params(sd, conf["model_args"]["num_heads"], eps=1e-6)
        else:
            p = nd.load_hf_params(sd, conf)
        ref = load_file(str(d / "reference.safetensors"))
        out = nd.forward(p, ref["input"])
        diff = np.abs(out - ref["logits"]).max()
        print(f"{d.name}: max |numpy - reference logits| = {diff:.3g} (max|logit| {np.abs(ref['logits']).max():.3f})")
        ok &= diff < 1e-4
    print("ALL OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
