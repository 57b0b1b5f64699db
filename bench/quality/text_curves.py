#!/usr/bin/env python3
"""The text curves: from docs/quality-text-test.json (every policy at its default schedule on the 1000
test sentences, as `prune_text_reference.py` ran them) to one `plot_sweep` input, agreement with the
dense class and accuracy against GFLOPs per text, the dense point and the recommendation included.

  python3 bench/quality/text_curves.py docs/quality-text-test.json OUT_DIR
  cargo run --release --example plot_sweep -- OUT_DIR/text.json docs/quality-text-1000.png "TITLE" agreement
"""
import json
import sys
from pathlib import Path

DENSE_GFLOPS = 0.570  # per test sentence, dense (docs/results/quality.md, "Text")
# The text recommendation per level (src/prune/policies/mod.rs, RECOMMENDED_TEXT).
RECOMMENDED = {0.8: "zero-tprune-merge", 0.65: "tome-protect", 0.5: "tome-protect"}
NAMES = {"zero-tprune-adaptive": "zero-tprune-adaptive (mean)"}

d = json.loads(Path(sys.argv[1]).read_text())
pts = [{"policy": "none", "gflops": DENSE_GFLOPS, "top1": d["dense"]["acc"], "agreement": 100.0}]
for r in d["rows"]:
    p = {"gflops": r["rel"] * DENSE_GFLOPS, "top1": r["acc"], "agreement": r["agree"]}
    pts.append({"policy": NAMES.get(r["policy"], r["policy"]), **p})
    if RECOMMENDED[r["target"]] == r["policy"]:
        pts.append({"policy": "recommended", **p})
out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
(out / "text.json").write_text(json.dumps({"rows": pts}, indent=1) + "\n")
print(out / "text.json")
