#!/usr/bin/env python3
"""The quality study's curves: from `quality.py report --json` to one `plot_sweep` input per image
set (top-1 and agreement with dense against GFLOPs per image, the dense point included), for the
configurations the README compares.

  python3 bench/quality/curves.py REPORT.json OUT_DIR
  cargo run --release --example plot_sweep -- OUT_DIR/val.json docs/quality-val.png "TITLE" agreement
"""
import json
import sys
from pathlib import Path

DENSE_GFLOPS = 2.5073664
# Every policy at its default schedule, ToMe as published, and random; then the recommended one per level.
SHOWN = {"recommended": None, "tome": "tome (published r)", "random": "random"}
SHOWN.update({f"{p} (default)": p for p in ("tome-protect", "pitome", "wpr-merge", "token-transforming",
                                               "zero-tprune-merge", "zero-tprune", "wpr", "evit")})
SHOWN["zero-tprune-adaptive (mean, calibrated)"] = "zero-tprune-adaptive (mean)"
RECOMMENDED = {0.8: "tome-protect (default)", 0.65: "zero-tprune-merge (default)", 0.5: "zero-tprune-merge (default)"}

rows = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for s in sorted({r["set"] for r in rows}):
    mine = [r for r in rows if r["set"] == s]
    pts = [{"policy": "none", "gflops": DENSE_GFLOPS, "top1": mine[0]["dense_top1"], "agreement": 100.0}]
    for r in mine:
        point = {"gflops": r["flops_ratio"] * DENSE_GFLOPS, "top1": r["top1"], "agreement": r["agreement"]}
        if r["name"] in SHOWN and SHOWN[r["name"]]:
            pts.append({"policy": SHOWN[r["name"]], **point})
        if RECOMMENDED.get(r["target"]) == r["name"]:
            pts.append({"policy": "recommended", **point})
    (out / f"{s}.json").write_text(json.dumps({"rows": pts}, indent=1) + "\n")
    print(out / f"{s}.json")
