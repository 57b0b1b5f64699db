#!/usr/bin/env python3
"""Writes the configuration list of the quality study (tests/reference/quality.py report --configs):
for each FLOPs level, every policy's default schedule (`--flops F`, docs/pruning.md "Default
schedules"), the schedule `quality.py tune` found for it on the calibration images (SCHEDULES/
POLICY-F.json), ToMe as published (the same r at every block; at levels it cannot reach, the same
keep rate at every block), the keep-rate schedules that were
the defaults before (keep-rate@default), and random at Zero-TPrune's blocks.

  python3 bench/quality/configs.py SCHEDULES_DIR > configs.json
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "reference"))
import prune_reference as pr  # noqa: E402

pr.MARGINS = False
model = pr.ViT(pr.DEIT_DIR)
tuned_dir = Path(sys.argv[1])
configs = []


def schedule_of(policy, args):
    return pr.policy_from_args(policy, args, model).steps


for target in (0.8, 0.65, 0.5):
    seen = {}

    def add(name, policy, args=None, schedule=None):
        cfg = {"name": name, "target": target, "policy": policy}
        if schedule is not None:
            s = json.loads(Path(schedule).read_text())
            args = ["--tokens", s["tokens"]] + sum(([f"--{k}", str(s[k])] for k in ("heads", "protect", "sim")
                                                    if k in s), [])
        try:
            steps = schedule_of(policy, args)
        except ValueError as e:
            print(f"skip {name} @ {target}: {e}", file=sys.stderr)
            return
        key = (policy, tuple(sorted(steps.items())))
        if key in seen:
            print(f"{name} @ {target} is {seen[key]}", file=sys.stderr)
            return
        seen[key] = name
        configs.append({**cfg, "args": args})

    f = str(target)
    space = pr.Space(model, "tome", [], target)
    published = space.fit_profile(dict(pr.families(model.L))["uniform@all"])
    if published is not None:
        add("tome", "tome", ["--tokens", ",".join(f"{b}:{k}" for b, k in published[0])])
    else:  # the same r at every block cannot reach the target (half per step): a constant keep rate
        add("tome", "tome", ["--flops", f, "--blocks", ",".join(map(str, range(model.L)))])
    # The tuned ToMe first: the report pairs every row with it (a default equal to it is left out).
    if (tuned_dir / f"tome-{target}.json").exists():
        add("tome-tuned", "tome", schedule=tuned_dir / f"tome-{target}.json")
    for p in ("tome", "tome-protect", "pitome", "wpr-merge", "zero-tprune-merge", "zero-tprune", "wpr", "evit"):
        add(f"{p} (default)", p, ["--flops", f])
        path = tuned_dir / f"{p}-{target}.json"
        if path.exists() and p != "tome":
            add(f"{p} (tuned)", p, schedule=path)
    for p in ("tome", "tome-protect", "pitome", "wpr-merge"):
        blocks = ",".join(map(str, pr.default_blocks(p, model.L)))
        add(f"{p} (keep-rate, the old default)", p, ["--flops", f, "--blocks", blocks])
    add("random", "random", ["--flops", f, "--blocks", "2,4,6,8,10"])
json.dump(configs, sys.stdout, indent=1)
print()
