#!/usr/bin/env python3
"""Paired figures of a `zeroprune eval --json` run with a policy (it runs dense on the same images):
top-1 of both, the paired change with its standard error, agreement with dense.

  zeroprune eval --json --flops 0.65 --images DIR --labels FILE --skip 100 > run.json
  python3 bench/quality/gpu_eval.py run.json
"""
import json
import math
import sys

for path in sys.argv[1:]:
    r = json.load(open(path))
    p = r["predictions"]
    d = [(x["pred"] == x["label"]) - (x["dense_pred"] == x["label"]) for x in p]
    n = len(d)
    mean = 100 * sum(d) / n
    se = 100 * math.sqrt(sum((v - sum(d) / n) ** 2 for v in d) / (n - 1) / n)
    agree = 100 * sum(x["pred"] == x["dense_pred"] for x in p) / n
    print(f"{path}: {r['policy']} {r['schedule']} on {n} images: top-1 {100 * r['top1']:.2f}% "
          f"(dense {100 * r['dense_top1']:.2f}%), change {mean:+.2f} ± {se:.2f}, agreement {agree:.2f}%, "
          f"{r['gflops_per_image']:.3f} GFLOPs ({r['gflops_per_image'] / r['dense_gflops_per_image']:.3f} of dense)")
