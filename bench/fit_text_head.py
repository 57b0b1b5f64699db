#!/usr/bin/env python3
"""Fit a logistic-regression head on a text encoder's dense embeddings of the train split, and save it
in the format `zeroprune eval --texts ... --head FILE` reads: safetensors with `weight` [C, D] and `bias` [C]
(f32), applied to the pooled embedding.

  python3 bench/fit_text_head.py [--model ../shared/models/all-minilm-l6-v2]
      [--data ../shared/data/sentence-polarity/sentences.tsv] [--out bench/text/minilm-polarity-head.safetensors]

The embeddings come from `zeroprune embed --json` (target/release/zeroprune, or --bin), so the head sees
exactly what the runtime computes. The regularisation C is chosen by 5-fold cross-validation on the
train split only; the test split is never read. Needs numpy, scikit-learn and safetensors.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import save_file
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(REPO, "../shared/models/all-minilm-l6-v2"))
    ap.add_argument("--data", default=os.path.join(REPO, "../shared/data/sentence-polarity/sentences.tsv"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench/text/minilm-polarity-head.safetensors"))
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/zeroprune"))
    args = ap.parse_args()

    rows = [l.rstrip("\n").split("\t", 2) for l in open(args.data, encoding="utf-8")][1:]
    train = [(int(label), text) for split, label, text in rows if split == "train"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("\n".join(t for _, t in train) + "\n")
        texts = f.name
    env = dict(os.environ, WGPU_BACKEND=os.environ.get("WGPU_BACKEND", "vulkan"))
    out = subprocess.run([args.bin, "embed", "--json", "--batch", "32", "--model", args.model, "--file", texts],
                         check=True, capture_output=True, text=True, env=env)
    os.unlink(texts)
    x = np.array(json.loads(out.stdout)["embeddings"], dtype=np.float64)
    y = np.array([label for label, _ in train])
    assert len(x) == len(y), (len(x), len(y))

    best = None
    for c in [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]:
        acc = cross_val_score(LogisticRegression(C=c, max_iter=5000), x, y, cv=5).mean()
        print(f"C={c:<5} 5-fold accuracy on train: {100 * acc:.2f}%")
        if best is None or acc > best[1]:
            best = (c, acc)
    clf = LogisticRegression(C=best[0], max_iter=5000).fit(x, y)
    classes = int(y.max()) + 1
    if clf.coef_.shape[0] == 1:
        # Binary: class 1 when w.x + b > 0, i.e. logits [0, w.x + b].
        weight = np.vstack([np.zeros_like(clf.coef_), clf.coef_])
        bias = np.array([0.0, clf.intercept_[0]])
    else:
        weight, bias = clf.coef_, clf.intercept_
    assert weight.shape[0] == classes
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    save_file({"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)}, args.out)
    print(f"chose C={best[0]} ({100 * best[1]:.2f}% in cross-validation); wrote {args.out} "
          f"(weight {list(weight.shape)}) from {len(y)} train sentences")


if __name__ == "__main__":
    sys.exit(main())
