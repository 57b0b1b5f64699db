#!/usr/bin/env python3
"""The quality study of the pruning policies, on both image regimes, with paired statistics.

Runs on the reference implementation (prune_reference.py, PyTorch on the CPU), which keeps exactly
the GPU's tokens (tests/pruning/prune_reference.rs), so its figures are the GPU's up to near-ties.

Sets (by file name): `val`, the 1300 ImageNet validation images of ../shared/data/imagenet-val-1300
(pre-scaled to 227x227 by their publisher: upsampled to 256 before the crop), and `photos`, the 400
full-size photos of ../shared/data/imagenet-samples-400 (downscaled). Calibration: the first 300 of
`val` and the first 100 of `photos`; evaluation: the other 1000 and 300. Preprocessing: timm's eval
transform (resize the shorter side to 256 bicubic, center crop 224), as numpy_deit.py.

  python3 tests/reference/quality.py tune --policy tome-protect --flops 0.65 [--rounds 2] [--out F]
      The schedule search of `zeroprune tune` (docs/pruning.md, "Schedule search"), the same
      algorithm step for step, scored by agreement with the dense model on the 400 calibration
      images (mean KL as the tie-break). Writes a schedule file `zeroprune --schedule` reads.
  python3 tests/reference/quality.py search-fixture
      The search on the tiny model of tests/fixtures/prune/tiny-timm-deep with a synthetic score
      (no images), every candidate in order, into tests/fixtures/search/: tests/pruning/search.rs
      checks that src/prune/search.rs takes exactly the same steps.
  python3 tests/reference/quality.py report --configs CONFIGS.json [--split eval] [--json OUT] [--md OUT]
      Every configuration on each set's evaluation images: top-1, agreement with dense, and the
      paired differences to dense, to ToMe (the `tome` configuration at the same target) and to
      the tuned ToMe (`tome-tuned`) with their standard errors. CONFIGS.json: [{"name", "target", "policy", "args": [...]} or
      {"name", "target", "schedule": FILE} or {"name", "target", "policy", "calibrate": true}, a threshold
      policy whose threshold is calibrated to the mean FLOPs target on the calibration images of both sets;
      "baseline": true marks the configuration the others at its target are paired against].
      FLOPs: the mean over the images, with the 10th-90th percentiles where they differ per image.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prune_reference as pr  # noqa: E402

pr.MARGINS = False  # decision margins qualify fixtures; not needed here

SETS = {
    "val": (pr.SHARED / "data" / "imagenet-val-1300", 300),
    "photos": (pr.SHARED / "data" / "imagenet-samples-400", 100),
}


def load_set(model, name):
    """(preprocessed images [N,3,224,224] f32, labels [N], file names), by file name."""
    folder, _ = SETS[name]
    items = []
    for line in (folder / "labels.tsv").read_text().splitlines():
        if line.strip():
            f, lab = line.split("\t")[:2]
            items.append((f, int(lab)))
    items.sort()
    files = [f for f, _ in items]
    cache = Path(f"/tmp/zp_quality_{name}.npy")
    if cache.exists():
        x = np.load(cache, mmap_mode="r")
        if x.shape[0] == len(files):
            return x, np.array([l for _, l in items]), files
    import numpy_deit as nd
    img_dir = folder / "images" if (folder / "images").is_dir() else folder
    x = np.stack([nd.preprocess(img_dir / f, "resize", model.cfg) for f in files]).astype(np.float32)
    np.save(cache, x)
    return x, np.array([l for _, l in items]), files


def split(name, n, which):
    cal = SETS[name][1]
    return slice(0, cal) if which == "cal" else slice(cal, n)


class Images:
    """One set's images of a split, with the dense model's predictions cached."""

    def __init__(self, model, name, which):
        x, labels, files = load_set(model, name)
        s = split(name, x.shape[0], which)
        self.name, self.x, self.labels, self.files = name, np.array(x[s]), labels[s], files[s]
        top5, _, lp = pr.evaluate(model, self.x, pr.Policy("none", {}), cache_prefix=False)
        self.dense_top1, self.dense_lp = top5[:, 0], lp

    def run(self, model, pol):
        # The dense blocks before the first step are computed once per set (the same numbers).
        top5, fl, lp = pr.evaluate(model, self.x, pol)
        return top5[:, 0], fl, lp


# ---------------------------------------------------------------------------------------------
# The schedule search (docs/pruning.md, "Schedule search"; src/prune/search.rs does the same).

rnd, families, Space = pr.rnd, pr.families, pr.Space


def cmd_tune(a):
    model = pr.ViT(pr.DEIT_DIR)
    cal = [Images(model, name, "cal") for name in SETS]
    x = np.concatenate([c.x for c in cal])
    dense_top1 = np.concatenate([c.dense_top1 for c in cal])
    dense_lp = torch.cat([c.dense_lp for c in cal])
    opts = a.options.split() if a.options else []
    space = Space(model, a.policy, opts, a.flops, a.rounds)

    def score(tokens):
        pol = space.policy_of(tokens)
        top5, _, lp = pr.evaluate(model, x, pol, cache_prefix=False)
        return {"agree": int((top5[:, 0] == dense_top1).sum()), "images": len(x),
                "kl": pr.kl_to_dense(dense_lp, lp)}

    t0 = time.time()
    tried = []

    def report(c):
        tried.append(c)
        spec = ",".join(f"{b}:{k}" for b, k in c["tokens"])
        print(f"{c['how']:26s} {spec:64s} cost {c['cost']:.3f} agreement {100 * c['agree'] / c['images']:.2f}% "
              f"KL {c['kl']:.4f}  [{time.time() - t0:.0f}s]", flush=True)

    best = space.search(score, report)
    spec = ",".join(f"{b}:{k}" for b, k in best["tokens"])
    pol = space.policy_of(best["tokens"])
    out = {"policy": a.policy, "tokens": spec, "depth": model.L, "patches": model.num_patches}
    if a.policy in pr.WPR_POLICIES:
        out["heads"] = pol.heads
    if a.policy == "tome-protect":
        out["protect"] = pol.protect
    if a.policy == "zero-tprune":
        out["sim"] = pol.sim
    out["flops_ratio"] = best["cost"]
    out["found_by"] = {"command": "tests/reference/quality.py tune " + " ".join(sys.argv[2:]),
                       "budget": f"{a.flops} of the dense FLOPs", "family_or_move": best["how"],
                       "images": len(x), "agreement": best["agree"] / len(x), "kl": best["kl"],
                       "candidates": len(tried)}
    path = Path(a.out or f"schedule-{a.policy}-flops{a.flops}.json")
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"best: {best['how']} {spec} agreement {100 * best['agree'] / len(x):.2f}% -> {path}")


# ---------------------------------------------------------------------------------------------
# The report

def paired(a, b):
    """mean of a - b (0/1 per image, in points) and its standard error"""
    d = (a.astype(float) - b.astype(float)) * 100
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d)))


CALIBRATED = {}


def config_policy(model, cfg):
    if cfg.get("calibrate"):
        # A threshold policy at a mean FLOPs target: its threshold calibrated on the calibration
        # images of both sets together, as `zeroprune eval --calibrate` does.
        key = (cfg["policy"], cfg["target"])
        if key not in CALIBRATED:
            sets = [load_set(model, name)[0] for name in SETS]
            x = np.concatenate([np.array(x[split(name, x.shape[0], "cal")]) for name, x in zip(SETS, sets)])
            CALIBRATED[key] = pr.calibrate_scale(model, x, cfg["policy"], cfg["target"])
            print(f"calibrated {key}: scale {CALIBRATED[key][0]:.6g}, threshold {CALIBRATED[key][1]!r}, "
                  f"{CALIBRATED[key][2]:.4f} of dense", file=sys.stderr, flush=True)
        th = CALIBRATED[key][1]
        bl = ",".join(map(str, pr.default_blocks(cfg["policy"], model.L)))
        return pr.policy_from_args(cfg["policy"], ["--threshold", f"{th!r}@{bl}"], model)
    if "schedule" in cfg:
        s = json.loads(Path(cfg["schedule"]).read_text())
        args = ["--tokens", s["tokens"]]
        for k in ("heads", "protect", "sim", "iters", "seed"):
            if k in s:
                args += [f"--{k}", str(s[k])]
        return pr.policy_from_args(s["policy"], args, model)
    return pr.policy_from_args(cfg["policy"], cfg.get("args", []), model)


def cmd_report(a):
    model = pr.ViT(pr.DEIT_DIR)
    configs = json.loads(Path(a.configs).read_text())
    rows = []
    for name in SETS:
        imgs = Images(model, name, a.split)
        ok_dense = imgs.dense_top1 == imgs.labels
        results = {}
        for cfg in configs:
            t0 = time.time()
            pol = config_policy(model, cfg)
            top1, fl, lp = imgs.run(model, pol)
            results[(cfg["name"], cfg["target"])] = (top1, fl, lp, pol)
            print(f"{name}: {cfg['name']} @ {cfg['target']} done in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
        for cfg in configs:
            key = (cfg["name"], cfg["target"])
            top1, fl, lp, pol = results[key]
            ok = top1 == imgs.labels
            rel = fl / model.dense_flops()
            row = dict(set=name, images=len(top1), name=cfg["name"], target=cfg["target"], policy=pol.name,
                       schedule=pol.desc, flops_ratio=float(rel.mean()),
                       flops_p10=float(np.percentile(rel, 10)), flops_p90=float(np.percentile(rel, 90)),
                       top1=100 * float(ok.mean()), dense_top1=100 * float(ok_dense.mean()),
                       agreement=100 * float((top1 == imgs.dense_top1).mean()),
                       kl=pr.kl_to_dense(imgs.dense_lp, lp))
            row["vs_dense"], row["vs_dense_se"] = paired(ok, ok_dense)
            for base, key in (("tome", "vs_tome"), ("tome-tuned", "vs_tome_tuned")):
                other = results.get((base, cfg["target"]))
                if other is not None and cfg["name"] != base:
                    row[key], row[key + "_se"] = paired(ok, other[0] == imgs.labels)
            # Against the configuration marked "baseline" at the same target (the recommendation
            # before), paired: top-1 and agreement with dense.
            base = next((c for c in configs if c.get("baseline") and c["target"] == cfg["target"]), None)
            if base is not None and base is not cfg:
                other = results[(base["name"], base["target"])][0]
                row["baseline"] = base["name"]
                row["vs_baseline"], row["vs_baseline_se"] = paired(ok, other == imgs.labels)
                row["agreement_vs_baseline"], row["agreement_vs_baseline_se"] = paired(
                    top1 == imgs.dense_top1, other == imgs.dense_top1)
            rows.append(row)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| set | config | target | FLOPs | top-1 | vs dense | vs ToMe | vs tuned ToMe | agreement | KL |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def pm(r, key):
        return f"{r[key]:+.2f} ± {r[key + '_se']:.2f}" if key in r else ""
    for r in rows:
        spread = f" ({r['flops_p10']:.2f}-{r['flops_p90']:.2f})" if r["flops_p90"] - r["flops_p10"] > 1e-3 else ""
        lines.append(f"| {r['set']} ({r['images']}) | {r['name']} | {r['target']:g} | {r['flops_ratio']:.3f}{spread} | "
                     f"{r['top1']:.2f} | {pm(r, 'vs_dense')} | {pm(r, 'vs_tome')} | {pm(r, 'vs_tome_tuned')} | "
                     f"{r['agreement']:.2f} | {r['kl']:.4f} |")
    paired_rows = [r for r in rows if "vs_baseline" in r]
    if paired_rows:
        lines += ["", "| set | config | target | against | top-1 difference | agreement difference |",
                  "|---|---|---|---|---|---|"]
        for r in paired_rows:
            lines.append(f"| {r['set']} ({r['images']}) | {r['name']} | {r['target']:g} | {r['baseline']} | "
                         f"{pm(r, 'vs_baseline')} | {pm(r, 'agreement_vs_baseline')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.md:
        Path(a.md).write_text(text)


SEARCH_CASES = [("tome", 0.7, []), ("tome-protect", 0.6, ["--protect", "0.2"]), ("wpr-merge", 0.5, []),
                ("pitome", 0.8, [])]


def synthetic_score(tokens, L, N):
    """A deterministic stand-in for agreement: removal late in the model scores higher, with a
    penalty on large single steps; the tie-break favours fewer pruning steps."""
    r, n = [0] * L, N
    for b, k in tokens:
        r[b] = n - k
        n = k
    agree = sum(x * (i + 1) for i, x in enumerate(r)) - sum(x * x for x in r) // 8
    return {"agree": agree, "images": N, "kl": len(tokens) / 100}


def cmd_search_fixture(a):
    model = pr.ViT(pr.PRUNE_FIX / "tiny-timm-deep")
    out = []
    for policy, limit, opts in SEARCH_CASES:
        space = Space(model, policy, opts, limit, rounds=2)
        tried = []
        best = space.search(lambda t: synthetic_score(t, model.L, model.num_patches), tried.append)
        out.append({"policy": policy, "limit": limit, "options": opts,
                    "candidates": [{"how": c["how"], "tokens": ",".join(f"{b}:{k}" for b, k in c["tokens"]),
                                    "cost": c["cost"], "agree": c["agree"]} for c in tried],
                    "best": ",".join(f"{b}:{k}" for b, k in best["tokens"])})
        print(f"{policy} @ {limit}: {len(tried)} candidates, best {out[-1]['best']}")
    d = pr.REPO / "tests" / "fixtures" / "search"
    d.mkdir(parents=True, exist_ok=True)
    (d / "tiny-timm-deep.json").write_text(json.dumps(out, indent=1) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--policy", required=True, choices=pr.POLICIES[1:])
    t.add_argument("--flops", type=float, required=True)
    t.add_argument("--rounds", type=int, default=2)
    t.add_argument("--options", default="", help="policy options, e.g. '--protect 0.1'")
    t.add_argument("--out", default=None)
    sub.add_parser("search-fixture")
    r = sub.add_parser("report")
    r.add_argument("--configs", required=True)
    r.add_argument("--split", choices=["cal", "eval"], default="eval")
    r.add_argument("--json", default=None)
    r.add_argument("--md", default=None)
    a = ap.parse_args()
    {"tune": cmd_tune, "report": cmd_report, "search-fixture": cmd_search_fixture}[a.cmd](a)


if __name__ == "__main__":
    main()
