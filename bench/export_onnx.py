#!/usr/bin/env python3
"""Export the shared DeiT-Tiny weights to ONNX for the onnxruntime-web peer (bench/ort-web/).

Builds timm's `deit_tiny_patch16_224` (pretrained=False: nothing is downloaded), loads
`<model>/model.safetensors`, exports it with `torch.onnx.export` (dynamic batch axis), then runs the ONNX
file with onnxruntime (CPU) on a few real validation images and asserts that its logits match torch's.

    python3 bench/export_onnx.py [--model DIR] [--out bench/out/deit-tiny.onnx] [--opset 17] [--images 4]

Writes the .onnx file (weights inline, about 23 MB), `<out>.json` (exporter, opset, max |diff|) and, for the
browser runners' correctness check, `sample-input.f32` (the first image, preprocessed, raw float32
[1, 3, 224, 224]) and `sample.json` (its file name, label and torch's logits) next to it.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402


def build_timm(model_dir: Path):
    import timm
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    arch = cfg.get("architecture", "deit_tiny_patch16_224")
    m = timm.create_model(arch, pretrained=False, num_classes=cfg.get("num_classes", 1000))
    sd = load_file(str(model_dir / "model.safetensors"))
    missing, unexpected = m.load_state_dict(sd, strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    # timm's fused path (F.scaled_dot_product_attention) traces into a Shape/Sqrt subgraph per block for
    # the scale; the eager path exports the plain q*scale @ k^T -> Softmax -> @ v (same numbers).
    for mod in m.modules():
        if hasattr(mod, "fused_attn"):
            mod.fused_attn = False
    return m.eval(), cfg


def export(m, out: Path, opset: int):
    """torch.onnx.export with a dynamic batch axis. Tries the TorchScript exporter first (one plain graph,
    what onnxruntime-web handles best), then the dynamo exporter."""
    x = torch.zeros(1, 3, 224, 224)
    errors = []
    for dynamo in (False, True):
        try:
            t0 = time.time()
            kw = dict(input_names=["pixel_values"], output_names=["logits"], opset_version=opset)
            if dynamo:
                kw["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024)}}
                kw["external_data"] = False
            else:
                kw["dynamic_axes"] = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
            torch.onnx.export(m, (x,), str(out), dynamo=dynamo, **kw)
            return ("dynamo" if dynamo else "torchscript"), time.time() - t0
        except Exception as e:  # noqa: BLE001 - report and try the other exporter
            errors.append(f"dynamo={dynamo}: {type(e).__name__}: {str(e)[:400]}")
            print(f"export with dynamo={dynamo} failed: {errors[-1]}", file=sys.stderr)
    raise SystemExit("ONNX export failed:\n" + "\n".join(errors))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=common.MODEL_DIR)
    ap.add_argument("--out", type=Path, default=common.OUT / "deit-tiny.onnx")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--images", type=int, default=4, help="real images for the onnxruntime check")
    ap.add_argument("--tol", type=float, default=1e-3, help="max |logit diff| allowed (ORT vs torch)")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    a.out.parent.mkdir(parents=True, exist_ok=True)

    m, cfg = build_timm(a.model)
    exporter, secs = export(m, a.out, a.opset)
    import onnx
    import onnxruntime as ort

    mo = onnx.load(str(a.out))
    onnx.checker.check_model(mo)
    opset = max(o.version for o in mo.opset_import if o.domain in ("", "ai.onnx"))
    ops = sorted({n.op_type for n in mo.graph.node})
    inp = mo.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]

    files = common.image_files(a.images)
    x = np.stack([common.preprocess(f, cfg) for f in files])
    ref = m(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(a.out), providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    got = sess.run(None, {iname: x})[0]
    diff = float(np.abs(got - ref).max())
    got1 = sess.run(None, {iname: x[:1]})[0]  # batch 1 through the same (dynamic) graph
    diff1 = float(np.abs(got1 - ref[:1]).max())
    agree = bool((got.argmax(1) == ref.argmax(1)).all())
    labels = common.labels()
    print(f"exported {a.out} ({a.out.stat().st_size / 1e6:.1f} MB) with the {exporter} exporter in {secs:.1f}s, "
          f"opset {opset}, input {inp.name} {dims}, {len(mo.graph.node)} nodes")
    print(f"onnxruntime {ort.__version__} (CPU) vs torch on {len(files)} real images: max |diff| = {diff:.2e} "
          f"(batch 1: {diff1:.2e}), same top-1: {agree}; top-1 {got.argmax(1).tolist()} "
          f"labels {[labels[f.name] for f in files]}")
    assert diff < a.tol and diff1 < a.tol and agree, (diff, diff1, agree)
    info = dict(file=str(a.out.relative_to(common.REPO)) if a.out.is_relative_to(common.REPO) else str(a.out),
                bytes=a.out.stat().st_size, exporter=exporter, opset=opset, input=inp.name, input_shape=dims,
                nodes=len(mo.graph.node), ops=ops, torch=torch.__version__, onnx=onnx.__version__,
                onnxruntime=ort.__version__, check_images=len(files), max_abs_diff=diff, max_abs_diff_batch1=diff1,
                same_top1=agree)
    a.out.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    # one real image for the browser runners' correctness check: raw float32 [1,3,224,224] + torch's logits
    sample = a.out.parent / "sample-input.f32"
    x[:1].astype("<f4").tofile(sample)
    (a.out.parent / "sample.json").write_text(json.dumps(dict(
        image=files[0].name, label=labels[files[0].name], input=sample.name, shape=list(x[:1].shape),
        logits=[float(v) for v in ref[0]])) + "\n")


if __name__ == "__main__":
    main()
