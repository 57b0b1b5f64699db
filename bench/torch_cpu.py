#!/usr/bin/env python3
"""PyTorch on the CPU: what a user would pick instead of zeroprune on a machine without a GPU.

Latency (batch 1 and 8; warm-up, then the median, min and max of N timed forwards, the implementations
interleaved round-robin so that they share the machine's load) and top-1 on the first
images of ../shared/data/imagenet-val-1300 (file-name order), all with torch.set_num_threads(os.cpu_count()):

- `timm` dense: timm's deit_tiny_patch16_224 (pretrained=False) with the shared safetensors weights,
  eval mode, torch.inference_mode, timm's default (fused scaled-dot-product) attention;
- `reference` dense, zero-tprune and tome: the PyTorch implementation of the pruning policies that the tests
  use (tests/reference/prune_reference.py, imported, not copied): its own ViT forward with the pruning hook;
  the pruned runs really drop (or merge) tokens, every later block runs on the kept rows. Schedules come
  from its FLOPs solver, the same rule as the Rust side (`--flops 0.65`: zero-tprune keeps the same rate at
  blocks 2, 4, 6, 8, 10; tome merges at every block). The kept-token counts per step are printed and stored;
- `onnxruntime` dense (optional, when bench/out/deit-tiny.onnx and the onnxruntime wheel are there):
  the exported model on onnxruntime's CPU EP, intra-op threads = cores.

The one change to the reference for timing: its top-k helper also computes decision margins (a per-image
Python loop used to qualify test fixtures); `--keep-margins` leaves it alone, by default they are switched
off (`prune_reference.MARGINS = False`), and the script checks on one batch that the logits are identical.

    python3 bench/torch_cpu.py [--runs 20] [--warmup 3] [--batch 1,8] [--images 256] [--flops 0.65]
                               [--policies zero-tprune,tome] [--threads N] [--out bench/out/torch-cpu.json]
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import prune_reference as pr  # noqa: E402  (sets 2 threads at import: reset below)


def timm_model(model_dir: Path):
    import timm
    from safetensors.torch import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    m = timm.create_model(cfg.get("architecture", "deit_tiny_patch16_224"), pretrained=False,
                          num_classes=cfg.get("num_classes", 1000))
    m.load_state_dict(load_file(str(model_dir / "model.safetensors")), strict=True)
    return m.eval()


def summarize(ts):
    a = np.array(ts)
    return dict(median_ms=float(np.median(a)), min_ms=float(a.min()), max_ms=float(a.max()),
                mean_ms=float(a.mean()), runs=len(ts), samples_ms=[round(float(t), 3) for t in ts])


def time_interleaved(fns, batches, warmup, runs, max_seconds):
    """Warm every function up, then `runs` rounds in which each function runs once (round-robin), so that
    all of them see the same load on a shared machine; stops after max_seconds per function (at least 3
    rounds). Consecutive rounds cycle through `batches` (different images). Returns name -> stats."""
    for name, fn in fns.items():
        for i in range(warmup):
            fn(batches[i % len(batches)])
    ts = {name: [] for name in fns}
    t_start = time.perf_counter()
    for i in range(runs):
        xb = batches[(warmup + i) % len(batches)]
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(xb)
            ts[name].append((time.perf_counter() - t0) * 1000)
        if i + 1 >= 3 and time.perf_counter() - t_start > max_seconds * len(fns):
            break
    return {name: summarize(v) for name, v in ts.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=common.MODEL_DIR)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--images", type=int, default=256, help="top-1 on the first N images (0: skip)")
    ap.add_argument("--latency-images", type=int, default=64, help="timed runs cycle through the first N images")
    ap.add_argument("--flops", type=float, default=0.65, help="FLOPs target of the pruned runs (x dense)")
    ap.add_argument("--policies", default="zero-tprune,tome")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--max-seconds", type=float, default=120,
                    help="timed runs stop after this many seconds per implementation and batch size (>= 3 runs)")
    ap.add_argument("--no-ort", action="store_true", help="skip the onnxruntime CPU row")
    ap.add_argument("--keep-margins", action="store_true", help="time prune_reference exactly as it is")
    ap.add_argument("--out", type=Path, default=common.OUT / "torch-cpu.json")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    batches = [int(b) for b in a.batch.split(",")]
    ref = pr.ViT(a.model)
    cfg = ref.cfg
    labels = common.labels()
    n_pool = max(a.images, a.latency_images, max(batches))
    files = common.image_files(n_pool)
    t0 = time.time()
    X = torch.from_numpy(np.stack([common.preprocess(f, cfg) for f in files]))
    y = np.array([labels[f.name] for f in files])
    print(f"preprocessed {len(files)} images in {time.time() - t0:.1f}s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores", file=sys.stderr)

    # --- the implementations -------------------------------------------------------------------
    tm = timm_model(a.model)
    impls = {}  # name -> (impl, policy, fn(x) -> logits, gflops/image)
    impls["timm dense"] = ("timm", "none", lambda x: tm(x), ref.dense_flops() / 1e9)
    pols = {"none": pr.Policy("none", {})}
    for name in [p for p in a.policies.split(",") if p]:
        pols[name] = pr.policy_from_args(name, ["--flops", str(a.flops)], ref)
    schedules = {}
    for name, pol in pols.items():
        # kept-token counts per step (record=True), FLOPs counted by the reference from the shapes that run
        logits_o, fl, recs = pr.forward(ref, X[:2], pol, record=True)
        counts = [dict(block=r["block"], kept=r["count"].tolist()) for r in recs]
        n_in = ref.num_patches
        for c in counts:
            assert all(k < n_in for k in c["kept"]), f"{name}: block {c['block']} keeps {c['kept']} of {n_in}"
            n_in = c["kept"][0]
        schedules[name] = dict(schedule=pol.desc, options=pol.opts(), gflops=float(fl.mean()) / 1e9,
                               flops_ratio=float(fl.mean()) / ref.dense_flops(), steps=counts)
        if not a.keep_margins:
            pr.MARGINS = False
            logits_f, _, _ = pr.forward(ref, X[:2], pol)
            pr.MARGINS = True
            assert torch.equal(logits_o, logits_f), f"{name}: top-k without margins changed the logits"
        impls[f"reference {name}"] = ("reference", name, (lambda p: lambda x: pr.forward(ref, x, p)[0])(pol),
                                      schedules[name]["gflops"])
        print(f"{name}: {pol.desc} {pol.opts()} -> {schedules[name]['gflops']:.3f} GFLOPs "
              f"({schedules[name]['flops_ratio']:.3f} x dense); patch tokens after each step "
              f"{[c['kept'][0] for c in counts]}", file=sys.stderr)
    if not a.keep_margins:
        pr.MARGINS = False

    ort_info = None
    onnx_path = common.OUT / "deit-tiny.onnx"
    if not a.no_ort and onnx_path.exists():
        try:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
            iname = sess.get_inputs()[0].name
            impls["onnxruntime dense"] = ("onnxruntime", "none",
                                          lambda x: torch.from_numpy(sess.run(None, {iname: x.numpy()})[0]),
                                          ref.dense_flops() / 1e9)
            ort_info = dict(version=ort.__version__, provider="CPUExecutionProvider", intra_op_threads=a.threads,
                            model=str(onnx_path.relative_to(common.REPO)))
        except ImportError as e:
            print(f"onnxruntime row skipped: {e}", file=sys.stderr)

    # --- accuracy --------------------------------------------------------------------------------
    accuracy = {}
    if a.images > 0:
        n = min(a.images, X.shape[0])
        preds = {}
        for key, (impl, pol, fn, _) in impls.items():
            t0 = time.time()
            p = torch.cat([fn(X[i:min(n, i + 64)]).argmax(-1) for i in range(0, n, 64)]).numpy()
            preds[key] = p
            accuracy[key] = dict(images=n, top1=100 * float((p == y[:n]).mean()), secs=time.time() - t0)
        for key in impls:
            accuracy[key]["agreement_with_dense"] = 100 * float((preds[key] == preds["timm dense"]).mean())
        same = bool((preds["timm dense"] == preds["reference none"]).all())
        print(f"top-1 on the first {n} images: "
              + ", ".join(f"{k} {v['top1']:.2f}" for k, v in accuracy.items())
              + f" (timm and reference dense agree on every image: {same})", file=sys.stderr)

    # --- latency ---------------------------------------------------------------------------------
    rows = []
    for B in batches:
        pool = [X[i:i + B] for i in range(0, max(a.latency_images, B) - B + 1, B)]
        with torch.inference_mode():
            res = time_interleaved({k: v[2] for k, v in impls.items()}, pool, a.warmup, a.runs, a.max_seconds)
        for key, (impl, pol, fn, gfl) in impls.items():
            r = res[key]
            r = dict(name=key, impl=impl, policy=pol, batch=B, gflops_per_image=gfl,
                     images_per_s=1000 * B / r["median_ms"], **r)
            rows.append(r)
            print(f"batch {B} {key:24s} median {r['median_ms']:8.1f} ms (min {r['min_ms']:.1f}, max "
                  f"{r['max_ms']:.1f}, {r['runs']} runs) {r['images_per_s']:.1f} img/s", file=sys.stderr, flush=True)
    for r in rows:  # speed-up of each pruned run over the dense run of the same implementation and batch
        d = next(x for x in rows if x["impl"] == r["impl"] and x["policy"] == "none" and x["batch"] == r["batch"])
        r["speedup_vs_same_impl_dense"] = d["median_ms"] / r["median_ms"]
        t = next(x for x in rows if x["name"] == "timm dense" and x["batch"] == r["batch"])
        r["speedup_vs_timm_dense"] = t["median_ms"] / r["median_ms"]

    out = dict(
        what="PyTorch CPU peers: timm dense, prune_reference.py dense / pruned, onnxruntime CPU dense",
        host=dict(cores=os.cpu_count(), threads=torch.get_num_threads(), machine=platform.machine(),
                  processor=common.cpu_model(), python=platform.python_version()),
        torch=torch.__version__, timm=__import__("timm").__version__, onnxruntime=ort_info,
        options=dict(runs=a.runs, warmup=a.warmup, batches=batches, latency_images=a.latency_images,
                     accuracy_images=a.images, flops_target=a.flops, max_seconds=a.max_seconds,
                     reference_topk="with margins" if a.keep_margins else "without margins"),
        dense_gflops=ref.dense_flops() / 1e9, schedules=schedules, accuracy=accuracy, latency=rows)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
