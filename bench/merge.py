#!/usr/bin/env python3
"""Merge the peers' JSON files of bench/out/ into bench/out/peers.json and print a short table.

Inputs (each optional; a missing one is reported, not fatal): deit-tiny.json (export_onnx.py),
torch-cpu.json (torch_cpu.py), ort-web.json (ort-web/run.mjs), steps.json (peers.sh: exit status and
wall time of each step).

Ratios written under `ratios`:
- `browser`: for every browser runner R (ort-wasm, and whatever runner is added to ort-web/run.mjs, e.g.
  our own wasm build), R's batch-1 median latency / ort-webgpu's (< 1: R is faster than onnxruntime-web WebGPU);
- `cpu`: for every CPU row, its median / the timm dense median at the same batch, and each pruned row over
  the dense row of the same implementation (the speed-up pruning buys in PyTorch).

    python3 bench/merge.py [--out-dir bench/out]
"""
import argparse
import json
import platform
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        return {"missing": f"{p.name}: {e.__class__.__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", type=Path, default=HERE / "out")
    a = ap.parse_args()
    d = a.out_dir
    onnx = load(d / "deit-tiny.json")
    cpu = load(d / "torch-cpu.json")
    web = load(d / "ort-web.json")
    steps = load(d / "steps.json")
    peers = dict(
        generated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        host=dict(node=platform.node(), machine=platform.machine(), cores=__import__("os").cpu_count(),
                  loadavg_at_merge=list(__import__("os").getloadavg())),
        steps=steps, onnx_export=onnx, torch_cpu=cpu, ort_web=web, ratios={})

    lines = []
    # browser
    runners = web.get("runners", {}) if isinstance(web, dict) else {}
    base = runners.get("ort-webgpu", {})
    br = {}
    if runners:
        ad = web.get("adapter", {})
        lines.append(f"browser: Chromium {web.get('chromium')} WebGPU adapter "
                     f"{ad.get('vendor')}/{ad.get('architecture')} (fallback={ad.get('is_fallback_adapter')})")
        for name, r in runners.items():
            if "median_ms" not in r:
                lines.append(f"  {name:22s} FAILED: {r.get('error')}")
                continue
            ratio = r["median_ms"] / base["median_ms"] if "median_ms" in base else None
            if name != "ort-webgpu" and ratio is not None:
                br[f"{name}/ort-webgpu"] = ratio
            lines.append(f"  {name:22s} batch {r.get('batch', 1)}: median {r['median_ms']:9.1f} ms  "
                         f"(min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, {r.get('runs')} runs)"
                         + (f"  x{ratio:.3f} of ort-webgpu" if ratio is not None and name != "ort-webgpu" else ""))
    else:
        lines.append(f"browser: no results ({web.get('missing', 'no runners')})")
    peers["ratios"]["browser"] = br

    # cpu
    cr = {}
    rows = cpu.get("latency", []) if isinstance(cpu, dict) else []
    if rows:
        h = cpu["host"]
        lines.append(f"cpu: torch {cpu['torch']}, {h['threads']} threads on {h['cores']} cores ({h['processor']})")
        acc = cpu.get("accuracy", {})
        for r in rows:
            a_ = acc.get(r["name"], {})
            top = f"top-1 {a_['top1']:.2f}% ({a_['images']} img)" if a_ else ""
            lines.append(f"  batch {r['batch']} {r['name']:24s} {r['gflops_per_image']:.2f} GFLOPs  median "
                         f"{r['median_ms']:8.1f} ms (min {r['min_ms']:.1f}, max {r['max_ms']:.1f})  "
                         f"{r['images_per_s']:6.1f} img/s  x{r['speedup_vs_same_impl_dense']:.2f} vs own dense  {top}")
            cr[f"batch{r['batch']} {r['name']} / timm dense"] = r["median_ms"] / next(
                x["median_ms"] for x in rows if x["name"] == "timm dense" and x["batch"] == r["batch"])
            if r["policy"] != "none":
                cr[f"batch{r['batch']} {r['name']} / {r['impl']} dense"] = 1 / r["speedup_vs_same_impl_dense"]
    else:
        lines.append(f"cpu: no results ({cpu.get('missing', '')})")
    peers["ratios"]["cpu"] = cr
    if "max_abs_diff" in onnx:
        lines.append(f"onnx: {onnx['exporter']} exporter, opset {onnx['opset']}, onnxruntime CPU vs torch max |diff| "
                     f"{onnx['max_abs_diff']:.1e}")
    if isinstance(steps, dict) and "missing" not in steps:
        bad = {k: v for k, v in steps.items() if v.get("rc")}
        lines.append("steps: " + ", ".join(f"{k} {v.get('secs', 0):.0f}s" + (f" (rc {v['rc']})" if v.get("rc") else "")
                                            for k, v in steps.items()) + (" FAILED: " + ", ".join(bad) if bad else ""))
    (d / "peers.json").write_text(json.dumps(peers, indent=1) + "\n")
    print("\n".join(lines))
    print(f"wrote {d / 'peers.json'}")


if __name__ == "__main__":
    main()
