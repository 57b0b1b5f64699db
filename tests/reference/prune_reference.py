#!/usr/bin/env python3
"""Independent torch (float32, CPU) reference of the token-pruning policies of docs/pruning.md.

Own ViT/DeiT forward (timm layout, pre-norm blocks, exact-erf GELU, LayerNorm eps 1e-6; distilled
models average the CLS and distillation heads; also the variants: register tokens after CLS, layer
scale, positions for the patches only, a LayerNorm before the blocks and quick GELU, as DINOv2 and
CLIP have them) with a pruning hook after `x = x + proj(attn)` of each block. Policies: none, evit, random, wpr, zero-tprune, tome, tome-protect, pitome, wpr-merge,
token-transforming,
threshold. Written from the text of docs/pruning.md, not from the Rust/WGSL code.

Sub-commands (run from the repo root):
  fixtures   write tests/fixtures/prune/ (tiny-timm-deep model, per-case safetensors, cases.json)
  sweep      accuracy / FLOPs sweep on ../shared/data/imagenet-val-1300 at FLOPs targets
  run        one policy + schedule on the val images (or a fixture model's reference input)
  embed      pruned pooled embeddings against dense (cosine, nearest-neighbour agreement, recall@1),
             every policy at FLOPs targets, on the 1300 val images or the 400 photos

Schedule / policy options (the same strings are stored in tests/fixtures/prune/cases.json):
  --keep R@I,J[;R2@K]   --tokens I:K,J:L   --flops F   --threshold T@I,J[;T2@K]
  --blocks I,J,...      (blocks used by --flops; default every other block from 2 to L-2, i.e.
                        2,4,6,8,10 for 12 blocks; tome and models under 6 blocks: every block)
  --sim S (zero-tprune, default 0.5)  --heads mean|rms|band (default band)  --seed N (random)
  --iters T             (WPR iteration cap for every block; default: 30 / 10 / 1 rule of the doc)
  --protect P           (tome-protect: share of patch tokens never merged away, default 0.1)

Examples:
  python3 tests/reference/prune_reference.py fixtures
  python3 tests/reference/prune_reference.py sweep --policies random,evit,zero-tprune:sim=0.25:heads=rms --targets 0.8,0.65
  python3 tests/reference/prune_reference.py run --policy zero-tprune --flops 0.65 --limit 256
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
DEIT_DIR = SHARED / "models" / "deit-tiny-patch16-224"
VAL_DIR = SHARED / "data" / "imagenet-val-1300"
VAL_CACHE = Path("/tmp/zp_val1300.npy")
PRUNE_FIX = REPO / "tests" / "fixtures" / "prune"
sys.path.insert(0, str(HERE))

torch.set_num_threads(2)
torch.set_grad_enabled(False)

POLICIES = ["none", "evit", "random", "wpr", "zero-tprune", "zero-tprune-merge", "zero-tprune-adaptive", "tome",
            "tome-protect", "pitome", "wpr-merge", "token-transforming", "threshold"]
# Policies that merge what they remove (token sizes, proportional attention).
MERGING = ("tome", "tome-protect", "pitome", "wpr-merge", "zero-tprune-merge", "zero-tprune-adaptive",
           "token-transforming")
# Policies whose count is decided per image by a threshold (--threshold; masked rows).
THRESHOLD_POLICIES = ("threshold", "zero-tprune-adaptive")
# Policies with a Weighted PageRank stage (--heads, --iters).
WPR_POLICIES = ("wpr", "zero-tprune", "zero-tprune-merge", "tome-protect", "wpr-merge", "token-transforming")
# token-transforming: kept tokens each removed token spreads over, and the shares' temperature.
SPREAD, SPREAD_TAU = 2, 0.02
INF = float("inf")
M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# pcg hash (wrapping u32)
def pcg_int(v: int) -> int:
    """Plain Python int version (the validation oracle)."""
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


def pcg_t(v: torch.Tensor) -> torch.Tensor:
    """int64 tensor holding u32 values -> int64 tensor of u32 values."""
    v = v & M32
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


# ----------------------------------------------------------------------------------------------
# model
class ViT:
    def __init__(self, model_dir: Path):
        model_dir = Path(model_dir)
        self.dir = model_dir
        self.cfg = json.loads((model_dir / "config.json").read_text())
        ma = self.cfg["model_args"]
        sd = load_file(str(model_dir / "model.safetensors"))
        sd = {k: v.float().contiguous() for k, v in sd.items()}
        self.D = ma["embed_dim"]
        self.H = ma["num_heads"]
        self.dh = self.D // self.H
        self.p = ma["patch_size"]
        img = ma["img_size"]
        self.grid = img // self.p
        self.num_patches = self.grid * self.grid
        # Tokens the head reads (none with average pooling and no class token).
        self.HP = ("cls_token" in sd) + ("dist_token" in sd)
        self.avg_pool = (ma.get("global_pool") or self.cfg.get("global_pool")) == "avg"
        self.fc_norm = (sd["fc_norm.weight"], sd["fc_norm.bias"]) if "fc_norm.weight" in sd else None
        self.reg = sd["reg_token"].reshape(1, -1, sd["reg_token"].shape[-1]) if "reg_token" in sd else None
        self.R = 0 if self.reg is None else self.reg.shape[1]
        self.P = self.HP + self.R  # prefix tokens, never pruned
        self.quick_gelu = ma.get("act_layer") == "quick_gelu"
        self.norm_pre = (sd["norm_pre.weight"], sd["norm_pre.bias"]) if "norm_pre.weight" in sd else None
        self.L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        self.mlp_dim = sd["blocks.0.mlp.fc1.weight"].shape[0]
        self.classes = sd["head.weight"].shape[0]
        # timm builds the patch convolution without bias where a LayerNorm follows it (pre_norm).
        self.patch_w, self.patch_b = sd["patch_embed.proj.weight"], sd.get("patch_embed.proj.bias")
        self.cls = sd["cls_token"].reshape(1, 1, -1) if "cls_token" in sd else None
        self.dist = sd["dist_token"].reshape(1, 1, -1) if self.HP == 2 else None
        self.pos = sd["pos_embed"]
        # Positions for every prefix token, or for the patches only (timm's no_embed_class).
        assert self.pos.shape[1] in (self.P + self.num_patches, self.num_patches), self.pos.shape
        self.norm = (sd["norm.weight"], sd["norm.bias"]) if "norm.weight" in sd else None
        self.head = (sd["head.weight"], sd["head.bias"])
        self.head_dist = (sd["head_dist.weight"], sd["head_dist.bias"]) if "head_dist.weight" in sd else None
        self.blocks = []
        for i in range(self.L):
            b = f"blocks.{i}."
            g = lambda k: sd[b + k]
            self.blocks.append(dict(
                ln1=(g("norm1.weight"), g("norm1.bias")), qkv=(g("attn.qkv.weight"), g("attn.qkv.bias")),
                proj=(g("attn.proj.weight"), g("attn.proj.bias")), ln2=(g("norm2.weight"), g("norm2.bias")),
                fc1=(g("mlp.fc1.weight"), g("mlp.fc1.bias")), fc2=(g("mlp.fc2.weight"), g("mlp.fc2.bias")),
                ls1=sd.get(b + "ls1.gamma"), ls2=sd.get(b + "ls2.gamma")))

    # FLOPs (2 per multiply-add), python ints
    def stem_flops(self) -> int:
        head_rows = 1 if self.avg_pool else self.HP
        return 2 * self.num_patches * (3 * self.p * self.p) * self.D + 2 * head_rows * self.D * self.classes

    def attn_flops(self, n):
        D = self.D
        return 2 * n * D * 3 * D + 4 * n * n * D + 2 * n * D * D

    def mlp_flops(self, m):
        return 4 * m * self.D * self.mlp_dim

    def dense_flops(self) -> int:
        n = self.P + self.num_patches
        return self.stem_flops() + self.L * (self.attn_flops(n) + self.mlp_flops(n))


def ln(x, wb):
    return F.layer_norm(x, (x.shape[-1],), wb[0], wb[1], 1e-6)


def lin(x, wb):
    return F.linear(x, wb[0], wb[1])


def scaled(x, gamma):
    """A layer-scaled branch (DeiT III, DINOv2): x * gamma, or x where the block has none."""
    return x if gamma is None else x * gamma


def mlp_act(model, x):
    return x * torch.sigmoid(1.702 * x) if model.quick_gelu else F.gelu(x)


# ----------------------------------------------------------------------------------------------
# policy / schedule
class Policy:
    """name, steps: {block: (kind, value)} with kind 'rate' | 'count' | 'theta'; options."""

    def __init__(self, name, steps, sim=0.5, heads="band", seed=0, iters=None, protect=0.1, desc=""):
        self.name, self.steps, self.sim, self.heads, self.seed, self.iters = name, steps, sim, heads, seed, iters
        self.protect = protect
        self.desc = desc

    def opts(self):
        if self.name == "zero-tprune":
            s = f"sim={self.sim:g} heads={self.heads}"
        elif self.name in ("wpr", "wpr-merge", "zero-tprune-merge", "token-transforming"):
            s = f"heads={self.heads}"
        elif self.name == "tome-protect":
            s = f"protect={self.protect:g} heads={self.heads}"
        elif self.name == "random":
            s = f"seed={self.seed}"
        else:
            s = ""
        if self.iters is not None and self.name in WPR_POLICIES:
            s += f" iters={self.iters}"
        return s.strip()


def default_blocks(policy: str, L: int):
    """docs/pruning.md: every other block from 2 to L-2 (2,4,6,8,10 for 12 blocks); every block for
    ToMe, tome-protect, PiToMe and for models shallower than 6 blocks; from L/4 to the last block
    for zero-tprune-adaptive."""
    if policy == "zero-tprune-adaptive":
        return list(range(L // 4, L))
    if policy in ("tome", "tome-protect", "pitome") or L < 6:
        return list(range(L))
    return list(range(2, L - 1, 2))


def protected_count(protect: float, n: int) -> int:
    """tome-protect: ceil(protect * n - 1e-9) patch tokens never merge away."""
    return max(0, math.ceil(protect * n - 1e-9))


def max_removed(policy: str, n_in: int, protect: float = 0.1) -> int:
    """the most patch tokens one step may remove (docs/pruning.md)."""
    if policy in ("tome", "pitome"):
        return n_in // 2
    if policy == "tome-protect":
        return max(0, n_in // 2 - protected_count(protect, n_in))
    return n_in - 1


def n_keep_rate(R: float, n_in: int) -> int:
    return max(1, math.ceil(R * n_in - 1e-6))


def wpr_iters(i: int, L: int) -> int:
    return 30 if i < 3 else (1 if i >= L - 3 else 10)


def parse_groups(spec: str, what: str):
    """'R@I,J;R2@K' -> [(I,R),(J,R),(K,R2)]"""
    out = []
    for grp in spec.split(";"):
        grp = grp.strip()
        if not grp:
            continue
        if "@" not in grp:
            raise ValueError(f"{what}: expected VALUE@BLOCKS, got {grp!r}")
        v, bl = grp.split("@", 1)
        for b in bl.split(","):
            out.append((int(b), float(v)))
    return out


def simulate_counts(model: ViT, policy: str, steps: dict, protect: float = 0.1):
    """patch-token counts entering/leaving each step for count/rate schedules; checks the per-step
    limits of the merging policies."""
    n = model.num_patches
    res = {}
    for blk in sorted(steps):
        kind, v = steps[blk]
        n_in = n
        k = v if kind == "count" else n_keep_rate(v, n_in)
        if k > n_in or k < 1:
            raise ValueError(f"block {blk}: cannot keep {k} of {n_in} patch tokens")
        if n_in - k > max_removed(policy, n_in, protect):
            raise ValueError(f"{policy} block {blk}: {n_in - k} removed > {max_removed(policy, n_in, protect)}")
        res[blk] = (n_in, k)
        n = k
    return res


def schedule_flops(model: ViT, policy: str, steps: dict, protect: float = 0.1) -> int:
    cnt = simulate_counts(model, policy, steps, protect)
    n = model.num_patches + model.P
    f = model.stem_flops()
    for i in range(model.L):
        f += model.attn_flops(n)
        if i in cnt:
            n = cnt[i][1] + model.P
        f += model.mlp_flops(n)
    return f


def rate_for_flops(model: ViT, policy: str, F_: float, blocks, protect: float = 0.1):
    target = F_ * model.dense_flops()
    for k in range(1000, 0, -1):
        R = k / 1000
        steps = {b: ("rate", R) for b in blocks}
        try:
            fl = schedule_flops(model, policy, steps, protect)
        except ValueError:
            break  # past the policy's per-step limit from here down
        if fl <= target:
            return R
    raise ValueError(f"{policy}: no keep rate in (0,1] reaches {F_} x dense FLOPs at blocks {blocks}")


# ----------------------------------------------------------------------------------------------
# Schedule families (docs/pruning.md, "Schedule search"; src/prune/search.rs): the search's
# starting points, and each policy's default shape for --flops without --blocks.

def rnd(x):
    """round half away from zero, for x >= 0"""
    return max(0, math.floor(x + 0.5))


def families(L):
    return [
        ("uniform@all", [1.0] * L),
        ("uniform@late", [float(i >= L // 4) for i in range(L)]),
        ("uniform@every-other", [float(i >= 2 and i + 1 < L and i % 2 == 0) for i in range(L)]),
        ("rising", [(i + 1) / L for i in range(L)]),
        ("falling", [(L - i) / L for i in range(L)]),
        ("late-heavy", [((i + 1) / L) * ((i + 1) / L) for i in range(L)]),
    ]


class Space:
    def __init__(self, model, policy, options, limit, rounds=2):
        self.model, self.policy, self.options, self.limit, self.rounds = model, policy, options, limit, rounds
        self.N, self.L = model.num_patches, model.L

    def schedule(self, removal):
        """the tokens list ((block, kept), ...) that removes removal[i] at block i, or None"""
        n, tokens = self.N, []
        for b, r in enumerate(removal):
            if r == 0:
                continue
            k = n - r
            if k < 1:
                return None
            tokens.append((b, k))
            n = k
        if not tokens:
            return None
        try:
            self.policy_of(tokens)
        except ValueError:
            return None
        return tuple(tokens)

    def policy_of(self, tokens):
        spec = ",".join(f"{b}:{k}" for b, k in tokens)
        return policy_from_args(self.policy, ["--tokens", spec] + self.options, self.model)

    def removal(self, tokens):
        r, n = [0] * self.L, self.N
        for b, k in tokens:
            r[b] = n - k
            n = k
        return r

    def cost(self, tokens):
        steps = {b: ("count", k) for b, k in tokens}
        prot = self.policy_of(tokens).protect
        return schedule_flops(self.model, self.policy, steps, prot) / self.model.dense_flops()

    def fit_profile(self, profile):
        at = lambda t: [rnd(t * w) for w in profile]  # noqa: E731
        lo, hi = 0.0, float(self.N)
        if self.schedule(at(hi)) is None:
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if self.schedule(at(mid)) is not None:
                    lo = mid
                else:
                    hi = mid
            hi = lo
        strongest = self.schedule(at(hi))
        if strongest is None:
            return None
        c = self.cost(strongest)
        if c > self.limit:
            return None
        best, lo = (strongest, c), 0.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if at(mid) == at(hi) or at(mid) == at(lo):
                break
            p = self.schedule(at(mid))
            if p is not None:
                c = self.cost(p)
                if c <= self.limit:
                    hi, best = mid, (p, c)
                else:
                    lo = mid
            else:
                lo = mid
        return best

    def fit_keep_rate(self, blocks):
        def at(milli):
            try:
                pol = policy_from_args(self.policy, ["--keep", f"{milli / 1000:g}@{','.join(map(str, blocks))}"]
                                          + self.options, self.model)
            except ValueError:
                return None
            cnt = simulate_counts(self.model, self.policy, pol.steps, pol.protect)
            return self.schedule(self.removal([(b, cnt[b][1]) for b in sorted(cnt)]))
        lo, hi = 0, 1000
        if at(1) is not None:
            hi = 1
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if at(mid) is not None:
                    hi = mid
                else:
                    lo = mid
        lowest = at(hi)
        if lowest is None:
            return None
        c = self.cost(lowest)
        if c > self.limit:
            return None
        best, lo, hi = (lowest, c), hi, 1001
        while hi - lo > 1:
            mid = (lo + hi) // 2
            p = at(mid)
            if p is None:
                hi = mid
                continue
            c = self.cost(p)
            if c <= self.limit:
                best, lo = (p, c), mid
            else:
                hi = mid
        return best

    def refit(self, removal):
        last = max((i for i, r in enumerate(removal) if r > 0), default=None)
        if last is None:
            return None
        p = self.schedule(removal)
        if p is None:
            return None
        c = self.cost(p)
        while c > self.limit:
            removal[last] += 1
            p = self.schedule(removal)
            if p is None:
                return None
            c = self.cost(p)
        while removal[last] > 1:
            fewer = list(removal)
            fewer[last] -= 1
            q = self.schedule(fewer)
            if q is None:
                break
            cq = self.cost(q)
            if cq > self.limit:
                break
            removal, p, c = fewer, q, cq
        return p, c

    def search(self, score, report):
        seen, best = [], None

        def better(a, b):
            return a["agree"] > b["agree"] or (a["agree"] == b["agree"] and a["kl"] < b["kl"])

        def evaluate(how, p, c):
            s = score(p)
            cand = dict(how=how, tokens=p, cost=c, **s)
            report(cand)
            return cand

        starts = []
        for name, profile in families(self.L):
            r = self.fit_profile(profile)
            if r is not None:
                starts.append((name, *r))
        r = self.fit_keep_rate(default_blocks(self.policy, self.L))
        if r is not None:
            starts.append(("keep-rate@default", *r))
        if not starts:
            raise ValueError(f"no schedule of {self.policy} reaches {self.limit}")
        for how, p, c in starts:
            if p in seen:
                continue
            seen.append(p)
            cand = evaluate(how, p, c)
            if best is None or better(cand, best):
                best = cand
        step = max(1, rnd(0.02 * self.N))
        for _ in range(self.rounds):
            removal = self.removal(best["tokens"])
            improved = False
            for i in range(self.L - 1):
                for frm, to in ((i + 1, i), (i, i + 1)):
                    if removal[frm] < step:
                        continue
                    moved = list(removal)
                    moved[frm] -= step
                    moved[to] += step
                    r = self.refit(moved)
                    if r is None or r[0] in seen:
                        continue
                    seen.append(r[0])
                    cand = evaluate(f"move {step} from {frm} to {to}", *r)
                    if better(cand, best):
                        improved, best = True, cand
            if not improved:
                break
        return best


# docs/pruning.md, "Default schedules": how --flops without --blocks spreads the removal, per policy:
# the first of its families (the ones the search found best on the calibration images) that reaches
# the target; keep-rate@default for the others.
KEEP_RATE = "keep-rate@default"
DEFAULT_SHAPE = {
    "tome": ["uniform@late", "uniform@every-other", "falling"],
    "tome-protect": ["uniform@late", "uniform@every-other", KEEP_RATE],
    "pitome": ["late-heavy", "uniform@every-other", "falling"],
    "wpr-merge": ["uniform@late", KEEP_RATE],
    "token-transforming": ["uniform@late", KEEP_RATE],
    "zero-tprune-merge": ["uniform@late", "uniform@all", KEEP_RATE],
    "zero-tprune": ["late-heavy", KEEP_RATE],
}


def flops_schedule(model: ViT, name: str, F_: float, protect: float):
    """--flops F without --blocks: ([(block, kind, value)], description) in the policy's default shape."""
    space = Space(model, name, ["--protect", repr(protect)], F_)
    for family in DEFAULT_SHAPE.get(name, [KEEP_RATE]):
        if family == KEEP_RATE:
            blocks = default_blocks(name, model.L)
            try:
                R = rate_for_flops(model, name, F_, blocks, protect)
            except ValueError:
                continue
            return [(b, "rate", R) for b in blocks], f"flops {F_:g} -> keep {R:g}@{','.join(map(str, blocks))}"
        fit = space.fit_profile(dict(families(model.L))[family])
        if fit is not None:
            spec = ",".join(f"{b}:{k}" for b, k in fit[0])
            return [(b, "count", k) for b, k in fit[0]], f"flops {F_:g} -> {family} {spec}"
    raise ValueError(f"{name}: none of {DEFAULT_SHAPE.get(name, [KEEP_RATE])} reaches {F_} x dense FLOPs")


def make_argparser():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--keep", action="append", default=[])
    ap.add_argument("--tokens", action="append", default=[])
    ap.add_argument("--flops", type=float, default=None)
    ap.add_argument("--threshold", action="append", default=[])
    ap.add_argument("--blocks", default=None)
    ap.add_argument("--sim", type=float, default=0.5)
    ap.add_argument("--heads", choices=["mean", "rms", "band"], default="band")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--protect", type=float, default=0.1)
    return ap


def build_policy(name: str, args, model: ViT) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name}")
    steps, desc = {}, []

    def add(b, kind, v):
        if b in steps:
            raise ValueError(f"block {b} listed twice")
        steps[b] = (kind, v)

    for s in args.keep:
        for b, v in parse_groups(s, "--keep"):
            if not 0 < v <= 1:
                raise ValueError(f"--keep rate {v} not in (0,1]")
            add(b, "rate", v)
        desc.append(f"keep {s}")
    for s in args.tokens:
        for item in s.split(","):
            b, k = item.split(":")
            add(int(b), "count", int(k))
        desc.append(f"tokens {s}")
    for s in args.threshold:
        for b, v in parse_groups(s, "--threshold"):
            add(b, "theta", v)
        desc.append(f"threshold {s}")
    if args.flops is not None:
        if name in THRESHOLD_POLICIES:
            raise ValueError(f"--flops with {name}: use the sweep (bisection on the threshold)")
        if args.blocks:
            blocks = [int(b) for b in args.blocks.split(",")]
            R = rate_for_flops(model, name, args.flops, blocks, args.protect)
            fitted, how = [(b, "rate", R) for b in blocks], f"flops {args.flops:g} -> keep {R:g}@{args.blocks}"
        else:
            fitted, how = flops_schedule(model, name, args.flops, args.protect)
        for b, kind, v in fitted:
            add(b, kind, v)
        desc.append(how)
    blocks = sorted(steps)
    if blocks != list(dict.fromkeys(blocks)) or any(not 0 <= b < model.L for b in blocks):
        raise ValueError(f"blocks {blocks} not inside the model (depth {model.L})")
    kinds = {k for k, _ in steps.values()}
    if name == "none" and steps:
        raise ValueError("policy none takes no schedule")
    if name != "none" and not steps:
        raise ValueError(f"policy {name} needs a schedule")
    if name in THRESHOLD_POLICIES and kinds != {"theta"}:
        raise ValueError(f"{name} takes --threshold only")
    if name not in THRESHOLD_POLICIES and "theta" in kinds:
        raise ValueError("--threshold is for the threshold policies")
    if name not in THRESHOLD_POLICIES and steps:
        # order of definition of --keep / --tokens groups must be increasing blocks
        simulate_counts(model, name, steps, args.protect)  # validates counts and per-step limits
    return Policy(name, steps, sim=args.sim, heads=args.heads, seed=args.seed, iters=args.iters,
                  protect=args.protect, desc="; ".join(desc) or "dense")


def policy_from_args(name: str, argv: list, model: ViT) -> Policy:
    return build_policy(name, make_argparser().parse_args(argv), model)


# ----------------------------------------------------------------------------------------------
# building blocks of the policies
# The decision margins are a per-image Python loop, there to qualify test fixtures; timing runs
# (bench/torch_cpu.py) switch them off. The keep mask is the same either way.
MARGINS = True


def topk_keep(score, k, valid=None):
    """Top-k rule: sort by (score desc, position asc) among `valid`, keep the first k.
    score [B,N] f32; k int or LongTensor [B]; returns (keep [B,N] bool, min relative margin;
    inf when MARGINS is off)."""
    B, N = score.shape
    order = torch.argsort(-score, dim=1, stable=True)
    if valid is not None:
        inv = (~valid).gather(1, order).to(torch.int32)
        order = order.gather(1, torch.argsort(inv, dim=1, stable=True))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N).expand(B, N).contiguous())
    if not torch.is_tensor(k):
        k = torch.full((B,), int(k), dtype=torch.long)
    keep = rank < k[:, None]
    nv = valid.sum(1) if valid is not None else torch.full((B,), N, dtype=torch.long)
    if valid is not None:
        keep &= valid
    if not MARGINS:
        return keep, INF
    # margin between the k-th and (k+1)-th
    srt = score.gather(1, order).double()
    margin = INF
    for b in range(B):
        kb, nb = int(k[b]), int(nv[b])
        if 0 < kb < nb:
            v = srt[b, :nb]
            fin = v[torch.isfinite(v)]
            scale = float(fin.abs().max()) if fin.numel() else 1.0
            gap = float(v[kb - 1] - v[kb])
            margin = min(margin, gap / max(scale, 1e-30))
    return keep, margin


def received_attention(A, c=None):
    """s[i] = 1/(H c) sum_h sum_{j<c} A_h[j,i]  ([B,n]); c [B] or None (= n)."""
    B, H, n, _ = A.shape
    if c is None:
        return A.sum(dim=(1, 2)) / float(H * n)
    qmask = (torch.arange(n)[None, :] < c[:, None]).to(A.dtype)  # [B,n] query rows
    tot = (A * qmask[:, None, :, None]).sum(dim=(1, 2))
    return tot / (H * c.to(A.dtype))[:, None]


def wpr(A, S, T, eps=1e-6):
    """Weighted PageRank per head on the survivor set S ([B,n] bool). Returns s [B,H,n], iterations [B,H]."""
    B, H, n, _ = A.shape
    Sf = S.to(A.dtype)
    As = A * Sf[:, None, :, None] * Sf[:, None, None, :]
    rs = As.sum(-1, keepdim=True)
    Ap = torch.where(rs > 0, As / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(As))
    nS = Sf.sum(1)
    s = (Sf / nS[:, None])[:, None, :].expand(B, H, n).contiguous()
    active = torch.ones(B, H, dtype=torch.bool)
    its = torch.zeros(B, H, dtype=torch.long)
    for _ in range(T):
        s_new = (s.unsqueeze(-2) @ Ap).squeeze(-2)  # s_new[i] = sum_j s[j] A'[j,i]
        delta = (s_new - s).abs().sum(-1)
        s = torch.where(active[..., None], s_new, s)
        its += active.long()
        active = active & ~(delta < eps)
        if not bool(active.any()):
            break
    return s, its


def combine_heads(s, S, P, mode):
    """s [B,H,n] -> [B,n]"""
    if mode == "mean":
        return s.mean(1)
    if mode == "rms":
        return torch.sqrt((s * s).mean(1))
    assert mode == "band", mode
    B, H, n = s.shape
    nS = S.sum(1).to(s.dtype)
    pm = (S & (torch.arange(n)[None, :] >= P)).to(s.dtype)  # patch tokens in S
    cnt = pm.sum(1)
    vals = nS[:, None, None] * s
    mu = (vals * pm[:, None, :]).sum(-1) / cnt[:, None]
    var = (((vals - mu[..., None]) ** 2) * pm[:, None, :]).sum(-1) / cnt[:, None]  # [B,H]
    used = (var >= 0.01) & (var <= 0.7)
    used[~used.any(1)] = True
    u = used.to(s.dtype)
    return torch.sqrt(((s * s) * u[..., None]).sum(1) / u.sum(1)[:, None])


def cosine(u, v):
    """u [B,a,d], v [B,b,d] -> [B,a,b], cos = u.v / (max(|u|,1e-12) max(|v|,1e-12))"""
    nu = u.norm(dim=-1).clamp_min(1e-12)
    nv = v.norm(dim=-1).clamp_min(1e-12)
    return (u @ v.transpose(-1, -2)) / (nu[:, :, None] * nv[:, None, :])


# ----------------------------------------------------------------------------------------------
# one pruning step. Returns dict with keep [B,n] (rows kept, prefix included), score [B,n-P]
def step_select(pol: Policy, model: ViT, blk: int, step_idx: int, A, K, orig, c, n_keep):
    B, H, n, _ = A.shape
    P = model.P
    npatch = n - P
    margins = {}
    pre = torch.zeros(B, P, dtype=torch.bool)
    if pol.name == "evit":
        s = A[:, :, 0, :].sum(1) / H
        score = s[:, P:]
        kp, margins["keep"] = topk_keep(score, n_keep)
    elif pol.name == "random":
        b = torch.arange(B, dtype=torch.long)[:, None]
        h = pcg_t(pol.seed + pcg_t(step_idx + pcg_t(b + pcg_t(orig[:, P:]))))
        score = (h >> 8).to(torch.float32)
        kp, margins["keep"] = topk_keep(score, n_keep)
    elif pol.name == "wpr":
        S = torch.ones(B, n, dtype=torch.bool)
        T = pol.iters if pol.iters is not None else wpr_iters(blk, model.L)
        s, its = wpr(A, S, T)
        margins["wpr_iters"] = (int(its.min()), int(its.max()))
        score = combine_heads(s, S, P, pol.heads)[:, P:]
        kp, margins["keep"] = topk_keep(score, n_keep)
    elif pol.name in ("zero-tprune", "zero-tprune-merge"):
        drop = npatch - n_keep
        x = (1.0 if pol.name == "zero-tprune-merge" else pol.sim) * drop
        r = min(int(math.floor(x + 0.5)), npatch // 2)  # round half away from zero
        # 1. pre-rank
        ra = received_attention(A)[:, P:]
        nI = (npatch + 1) // 2
        isI, margins["prerank"] = topk_keep(ra, nI)
        # 2. similarity: best cos over I for each candidate
        Kp = K[:, P:, :]
        cs = cosine(Kp, Kp)  # [B,np,np]
        cs = cs.masked_fill(~isI[:, None, :], -INF)
        best = cs.max(-1).values  # for candidates
        cand = ~isI
        keepC, margins["sim"] = topk_keep(-best, npatch - nI - r, valid=cand)
        inS = isI | keepC
        S = torch.cat([~pre, inS], 1)
        T = pol.iters if pol.iters is not None else wpr_iters(blk, model.L)
        s, its = wpr(A, S, T)
        margins["wpr_iters"] = (int(its.min()), int(its.max()))
        sc = combine_heads(s, S, P, pol.heads)[:, P:]
        score = torch.where(inS, sc, torch.full_like(sc, -INF))
        kp, margins["keep"] = topk_keep(score, n_keep, valid=inS)
        margins["r_sim"] = r
    elif pol.name == "threshold":
        theta = n_keep  # passed through
        s = received_attention(A, c)
        cs = (c.to(s.dtype)[:, None] * s)[:, P:]
        valid = torch.arange(npatch)[None, :] < (c - P)[:, None]
        kp = (cs >= theta) & valid
        none = ~kp.any(1)
        if bool(none.any()):
            top, _ = topk_keep(s[:, P:], 1, valid=valid)
            kp = torch.where(none[:, None], top, kp)
        d = (cs - theta).abs().masked_fill(~valid, INF)
        margins["theta"] = float(d.min())
        margins["fallback"] = int(none.sum())
        score = cs.masked_fill(~valid, -INF)
    else:
        raise AssertionError(pol.name)
    keep = torch.cat([~pre, kp], 1)
    return keep, score, margins


def tome_step(model: ViT, x, size, K, n_keep):
    B, n, D = x.shape
    P, H, dh = model.P, model.H, model.dh
    npatch = n - P
    r = npatch - n_keep
    assert 0 <= r <= npatch // 2
    m = K.view(B, n, H, dh).sum(2) / H
    src = torch.arange(P, n, 2)
    dst = torch.arange(P + 1, n, 2)
    sim = cosine(m[:, src], m[:, dst])  # [B,nA,nB]
    best, arg = sim.max(-1)  # first max
    # second best for the margin of the destination choice
    margins = {}
    if sim.shape[-1] > 1:
        top2 = sim.topk(2, dim=-1).values
        margins["dst"] = float((top2[..., 0] - top2[..., 1]).min())
    keepA, margins["merge"] = topk_keep(-best, src.numel() - r)
    merged = ~keepA  # [B,nA]
    # size-weighted merge
    xs = x * size[..., None]
    num = xs.clone()
    sz = size.clone()
    dst_rows = dst[arg]  # [B,nA] row index of each source's destination
    for b in range(B):
        ms = merged[b]
        num[b].index_add_(0, dst_rows[b][ms], xs[b, src[ms]])
        sz[b].index_add_(0, dst_rows[b][ms], size[b, src[ms]])
    xn = torch.where(torch.isin(torch.arange(n), dst)[None, :, None], num / sz[..., None], x)
    keep = torch.ones(B, n, dtype=torch.bool)
    keep[:, src] = keepA
    score = torch.full((B, npatch), INF)
    score[:, src - P] = -best
    return xn, sz, keep, score, margins


def merge_into(x, size, merged, dst_rows):
    """Size-weighted merge: every row flagged in `merged` [B,n] goes into row dst_rows[b, row];
    returns the new rows and sizes (rows that received nothing are unchanged)."""
    B, n, D = x.shape
    xs = x * size[..., None]
    num, sz = xs.clone(), size.clone()
    received = torch.zeros(B, n, dtype=torch.bool)
    for b in range(B):
        ms = merged[b]
        num[b].index_add_(0, dst_rows[b][ms], xs[b, ms])
        sz[b].index_add_(0, dst_rows[b][ms], size[b, ms])
        received[b, dst_rows[b][ms]] = True
    return torch.where(received[..., None], num / sz[..., None], x), sz


def best_destination(m, is_src, is_dst):
    """For every patch row, the destination with the highest cosine (the first on ties) among
    `is_dst` ([B,np] bool), on the metric rows m [B,np,d]; best is -inf for non-sources."""
    cs = cosine(m, m).masked_fill(~is_dst[:, None, :], -INF)
    best, arg = cs.max(-1)  # first maximum: the lowest position
    margin = INF
    if int(is_dst.sum(1).min()) > 1:
        top2 = cs.topk(2, dim=-1).values
        gap = (top2[..., 0] - top2[..., 1]).masked_fill(~is_src, INF)
        margin = float(gap.min())
    return best.masked_fill(~is_src, -INF), arg, margin


def spread_into(x, size, P, m, kept, k, tau):
    """token-transforming (docs/pruning.md): every removed patch row a (~kept [B,np]) gives each of
    its k most similar kept patch rows t (cosine on m [B,np,d]; ties to the lower row) the share
    w[a,t] = softmax over them of cos / tau, of its size and of its size-weighted state:
    x'[t] = (size[t] x[t] + sum_a w[a,t] size[a] x[a]) / size'[t], size'[t] = size[t] + sum_a
    w[a,t] size[a]. As a matrix, Y = W X over the size-weighted rows (many-to-many).
    Returns (x, size, margin: the smallest gap between a row's k-th and (k+1)-th cosine)."""
    B, n, D = x.shape
    cs = cosine(m, m).masked_fill(~kept[:, None, :], -INF)  # [B,np,np], columns: kept rows
    kk = min(k + 1, cs.shape[-1])
    order = torch.sort(-cs, dim=-1, stable=True)  # descending cosine, ties in row order
    top, idx = -order.values[..., :kk], order.indices[..., :kk]
    margin = INF
    if kk > k:
        gap = (top[..., k - 1] - top[..., k]).masked_fill(kept | ~torch.isfinite(top[..., k]), INF)
        margin = float(gap.min())
    top, idx = top[..., :k], idx[..., :k]
    w = torch.softmax(top / tau, dim=-1).masked_fill(~torch.isfinite(top), 0.0)
    W = torch.zeros_like(cs).scatter_(-1, idx, w) * (~kept)[..., None].to(x.dtype)  # [B,np(a),np(t)]
    xs, sp = x[:, P:] * size[:, P:, None], size[:, P:]
    num = xs + W.transpose(1, 2) @ xs
    den = sp + (W * sp[..., None]).sum(1)
    xn, sz = x.clone(), size.clone()
    xn[:, P:] = torch.where(kept[..., None], num / den[..., None], x[:, P:])
    sz[:, P:] = torch.where(kept, den, sp)
    return xn, sz, margin


def merge_step(pol: Policy, model: ViT, blk: int, x, size, A, K, n_keep):
    """tome-protect, pitome and wpr-merge (docs/pruning.md): which patch rows merge and where.
    Returns (x, size, keep [B,n], score [B,n-P], margins)."""
    B, n, D = x.shape
    P, H, dh = model.P, model.H, model.dh
    npatch = n - P
    r = npatch - n_keep
    m = (K.view(B, n, H, dh).sum(2) / H)[:, P:]  # ToMe's head-averaged keys of the patch rows
    pos = torch.arange(npatch)
    margins = {}
    if pol.name == "tome-protect":
        S = torch.ones(B, n, dtype=torch.bool)
        T = pol.iters if pol.iters is not None else wpr_iters(blk, model.L)
        s, _ = wpr(A, S, T)
        imp = combine_heads(s, S, P, pol.heads)[:, P:]
        prot, margins["protect"] = topk_keep(imp, protected_count(pol.protect, npatch))
        is_src = (pos % 2 == 0)[None, :] & ~prot
        is_dst = (pos % 2 == 1)[None, :].expand(B, npatch)
        best, arg, margins["dst"] = best_destination(m, is_src, is_dst)
        keep_src, margins["merge"] = topk_keep(-best, is_src.sum(1) - r, valid=is_src)
        merged = is_src & ~keep_src
        score = torch.where(is_src, -best, torch.full_like(best, INF))
    elif pol.name == "pitome":
        margin = 0.9 - 0.8 * blk / model.L
        energy = F.elu(cosine(m, m) - margin, alpha=1.0).mean(-1)
        order = torch.argsort(-energy, dim=1, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(npatch).expand(B, npatch).contiguous())
        is_src = (rank < 2 * r) & (rank % 2 == 0)
        is_dst = (rank < 2 * r) & (rank % 2 == 1)
        # every order decision inside the first 2r + 1 ranks matters (roles alternate)
        srt = energy.gather(1, order).double()
        k = min(2 * r + 1, npatch)
        if k > 1:
            gaps = (srt[:, : k - 1] - srt[:, 1:k]) / srt[:, :k].abs().max(1, keepdim=True).values
            margins["energy"] = float(gaps.min())
        best, arg, margins["dst"] = best_destination(m, is_src, is_dst)
        merged = is_src
        score = energy
    elif pol.name in ("wpr-merge", "token-transforming"):
        # WPR's kept set; the removed rows merge whole into their best match, or spread.
        S = torch.ones(B, n, dtype=torch.bool)
        T = pol.iters if pol.iters is not None else wpr_iters(blk, model.L)
        s, _ = wpr(A, S, T)
        score = combine_heads(s, S, P, pol.heads)[:, P:]
        kept, margins["keep"] = topk_keep(score, n_keep)
        if pol.name == "token-transforming":
            xn, sz, margins["dst"] = spread_into(x, size, P, m, kept, SPREAD, SPREAD_TAU)
            return xn, sz, torch.cat([torch.ones(B, P, dtype=torch.bool), kept], 1), score, margins
        best, arg, margins["dst"] = best_destination(m, ~kept, kept)
        merged = ~kept
    elif pol.name == "zero-tprune-merge":
        # Zero-TPrune's stages (the similarity stage takes the whole removal it can) choose the
        # survivors; every other patch row merges into its most similar survivor.
        keep, score, margins = step_select(pol, model, blk, 0, A, K, None, None, n_keep)
        kept = keep[:, P:]
        best, arg, margins["dst"] = best_destination(m, ~kept, kept)
        merged = ~kept
    else:
        raise AssertionError(pol.name)
    pre = torch.zeros(B, P, dtype=torch.bool)
    merged_rows = torch.cat([pre, merged], 1)
    dst_rows = torch.cat([torch.zeros(B, P, dtype=torch.long), arg + P], 1)
    xn, sz = merge_into(x, size, merged_rows, dst_rows)
    return xn, sz, ~merged_rows, score, margins


def adaptive_step(pol: Policy, model: ViT, x, size, A, K, c, theta):
    """zero-tprune-adaptive (docs/pruning.md): the important half of the c[b] valid rows by
    received attention; every candidate whose full key is within cosine distance theta of an
    important key (1 - cos < theta, compared as -cos >= theta - 1 in f32) merges into its most
    similar survivor by head-averaged keys. Returns (x, size, keep [B,n], score [B,n-P], margins)."""
    B, n, D = x.shape
    P, H, dh = model.P, model.H, model.dh
    npatch = n - P
    margins = {}
    valid = torch.arange(npatch)[None, :] < (c - P)[:, None]
    ra = received_attention(A, c)[:, P:].masked_fill(~valid, -INF)
    isI, margins["prerank"] = topk_keep(ra, (c - P + 1) // 2, valid=valid)
    Kp = K[:, P:, :]
    cs = cosine(Kp, Kp).masked_fill(~isI[:, None, :], -INF)
    best = cs.max(-1).values
    cand = valid & ~isI
    lim = torch.tensor(theta, dtype=torch.float32) - 1.0
    score = torch.where(cand, -best, torch.full_like(best, INF))
    merged = cand & ~(score >= lim)
    kept = valid & ~merged
    if MARGINS and bool(cand.any()):
        margins["theta"] = float((score - lim).abs().masked_fill(~cand, INF).min())
    m = (K.view(B, n, H, dh).sum(2) / H)[:, P:]
    _, arg, margins["dst"] = best_destination(m, merged, kept)
    pre = torch.zeros(B, P, dtype=torch.bool)
    merged_rows = torch.cat([pre, merged], 1)
    dst_rows = torch.cat([torch.zeros(B, P, dtype=torch.long), arg + P], 1)
    xn, sz = merge_into(x, size, merged_rows, dst_rows)
    return xn, sz, torch.cat([~pre, kept], 1), score, margins


def compact(keep, tensors, fixed_n):
    """stable gather of kept rows first. fixed_n: int -> rows kept; None -> keep all rows (masked)."""
    B, n = keep.shape
    key = (~keep).long() * n + torch.arange(n)[None, :]
    idx = key.argsort(1)
    if fixed_n is not None:
        idx = idx[:, :fixed_n]
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
        elif t.dim() == 3:
            out.append(t.gather(1, idx[..., None].expand(-1, -1, t.shape[-1])))
        else:
            out.append(t.gather(1, idx))
    return out


def embed(model: ViT, img):
    B, D = img.shape[0], model.D
    t = F.conv2d(img.float(), model.patch_w, model.patch_b, stride=model.p).flatten(2).transpose(1, 2)
    pre = ([model.cls.expand(B, 1, D)] if model.cls is not None else []) + \
        ([model.dist.expand(B, 1, D)] if model.dist is not None else [])
    if model.reg is not None:
        pre.append(model.reg.expand(B, model.R, D))
    if model.pos.shape[1] == model.num_patches:  # positions for the patches only
        x = torch.cat(pre + [t + model.pos], 1)
    else:
        x = torch.cat(pre + [t], 1) + model.pos
    return x if model.norm_pre is None else ln(x, model.norm_pre)


def forward(model: ViT, img, pol: Policy, record=False, compact_rows=False, stop_after_last=False,
            start=None, stop_before=None, pooled_out=None):
    """img [B,3,H,W] normalised -> (logits [B,C] or None, flops [B] float64, steps record list).
    start=(i0, hidden): resume at block i0 from the dense hidden state (sweep cache; img unused);
    stop_before=i: return the hidden state entering block i (dense prefix only)."""
    P, D, H, dh = model.P, model.D, model.H, model.dh
    i0 = 0
    if start is not None:
        i0, t = start
    else:
        t = embed(model, img)
    B, n = t.shape[0], t.shape[1]
    orig = torch.arange(n)[None, :].expand(B, n).contiguous()
    size = None  # tome sizes (from the first merge on)
    c = None  # threshold valid-row counts
    flops = torch.full((B,), float(model.stem_flops()), dtype=torch.float64)
    nd = P + model.num_patches
    flops += i0 * float(model.attn_flops(nd) + model.mlp_flops(nd))
    recs = []
    last = max(pol.steps) if pol.steps else -1
    assert not pol.steps or min(pol.steps) >= i0
    for i, blk in enumerate(model.blocks):
        if i < i0:
            continue
        if stop_before is not None and i == stop_before:
            return t
        n = t.shape[1]
        qkv = lin(ln(t, blk["ln1"]), blk["qkv"]).view(B, n, 3, H, dh)
        q = qkv[:, :, 0].transpose(1, 2)
        k = qkv[:, :, 1].transpose(1, 2)
        v = qkv[:, :, 2].transpose(1, 2)
        K = qkv[:, :, 1].reshape(B, n, D)
        logits = (q * (dh ** -0.5)) @ k.transpose(-1, -2)
        if size is not None:
            logits = logits + size.log()[:, None, None, :]
        if c is not None:
            km = torch.arange(n)[None, :] >= c[:, None]
            logits = logits.masked_fill(km[:, None, None, :], -INF)
        A = logits.softmax(-1)
        o = (A @ v).transpose(1, 2).reshape(B, n, D)
        t = t + scaled(lin(o, blk["proj"]), blk["ls1"])
        na = c if c is not None else torch.full((B,), n, dtype=torch.long)
        flops += torch.tensor([model.attn_flops(int(v_)) for v_ in na], dtype=torch.float64)
        if i in pol.steps:
            kind, val = pol.steps[i]
            sidx = sorted(pol.steps).index(i)
            npatch = n - P
            if kind == "theta":
                if c is None:
                    c = torch.full((B,), n, dtype=torch.long)
                if pol.name in MERGING:
                    if size is None:
                        size = torch.ones(B, n)
                    t, size, keep, score, mg = adaptive_step(pol, model, t, size, A, K, c, val)
                    t, orig, size = compact(keep, [t, orig, size], None)
                else:
                    keep, score, mg = step_select(pol, model, i, sidx, A, K, orig, c, val)
                    t, orig = compact(keep, [t, orig], None)
                c = keep.sum(1)
                rowvalid = torch.arange(n)[None, :] < c[:, None]
                t = t * rowvalid[..., None].to(t.dtype)
                orig = torch.where(rowvalid, orig, torch.full_like(orig, -1))
                if size is not None:
                    # Masked rows stand for nothing; size 1 keeps their log-size bias finite.
                    size = torch.where(rowvalid, size, torch.ones_like(size))
                if compact_rows:
                    mx = int(c.max())
                    t, orig = t[:, :mx].contiguous(), orig[:, :mx].contiguous()
                    if size is not None:
                        size = size[:, :mx].contiguous()
            else:
                n_keep = val if kind == "count" else n_keep_rate(val, npatch)
                if pol.name in MERGING:
                    if size is None:
                        size = torch.ones(B, n)
                    if pol.name == "tome":
                        t, size, keep, score, mg = tome_step(model, t, size, K, n_keep)
                    else:
                        t, size, keep, score, mg = merge_step(pol, model, i, t, size, A, K, n_keep)
                    t, orig, size = compact(keep, [t, orig, size], P + n_keep)
                else:
                    keep, score, mg = step_select(pol, model, i, sidx, A, K, orig, None, n_keep)
                    t, orig = compact(keep, [t, orig], P + n_keep)
            if record:
                cnt = (orig[:, P:] >= 0).sum(1) if c is not None else torch.full((B,), t.shape[1] - P)
                kept = orig[:, P:] - P
                kept = torch.where(orig[:, P:] >= 0, kept, torch.full_like(kept, -1))
                kmax = int(cnt.max())
                recs.append(dict(block=i, kept=kept[:, :kmax].to(torch.int32).contiguous(),
                                 count=cnt.to(torch.int32), score=score.float().contiguous(), margins=mg))
            if stop_after_last and i == last:
                if c is not None:
                    m_ = c
                else:
                    m_ = torch.full((B,), t.shape[1], dtype=torch.long)
                flops += torch.tensor([model.mlp_flops(int(v_)) for v_ in m_], dtype=torch.float64)
                n_ = m_
                for _ in range(i + 1, model.L):
                    flops += torch.tensor([model.attn_flops(int(v_)) + model.mlp_flops(int(v_)) for v_ in n_],
                                          dtype=torch.float64)
                return None, flops, recs
        m_ = c if c is not None else torch.full((B,), t.shape[1], dtype=torch.long)
        flops += torch.tensor([model.mlp_flops(int(v_)) for v_ in m_], dtype=torch.float64)
        t = t + scaled(lin(mlp_act(model, lin(ln(t, blk["ln2"]), blk["fc1"])), blk["fc2"]), blk["ls2"])
        if c is not None:
            t = t * (torch.arange(t.shape[1])[None, :] < c[:, None])[..., None].to(t.dtype)
    if model.norm is not None:
        t = ln(t, model.norm)
    if model.avg_pool:
        # The mean of the patch tokens left, each counted by the tokens it stands for (merged),
        # masked rows (threshold) out; then fc_norm.
        w = size[:, P:] if size is not None else torch.ones(B, t.shape[1] - P)
        if c is not None:
            w = w * (torch.arange(P, t.shape[1])[None, :] < c[:, None]).to(w.dtype)
        pooled = (t[:, P:] * w[..., None]).sum(1) / w.sum(1, keepdim=True)
        if model.fc_norm is not None:
            pooled = ln(pooled, model.fc_norm)
        if pooled_out is not None:
            pooled_out.append(pooled)
        return lin(pooled, model.head), flops, recs
    if pooled_out is not None:
        # The pooled embedding `zeroprune embed` gives: the final-normed class token (and the
        # distillation token's, averaged).
        pooled_out.append(t[:, :model.HP].mean(1))
    logits = lin(t[:, 0], model.head)
    if model.head_dist is not None:
        logits = (logits + lin(t[:, 1], model.head_dist)) / 2
    return logits, flops, recs


# ----------------------------------------------------------------------------------------------
# validation helpers
def self_checks(model: ViT, x):
    """pcg vs plain ints, WPR sums to 1, tome sizes sum to the token count, dense FLOPs."""
    vals = [0, 1, 2, 7, 12345, 0xFFFFFFFF, 0x80000000, 2891336453, 747796405, 3000000000]
    got = pcg_t(torch.tensor(vals, dtype=torch.long)).tolist()
    assert got == [pcg_int(v) for v in vals], (got, [pcg_int(v) for v in vals])
    nested = pcg_int((5 + pcg_int((1 + pcg_int((2 + pcg_int(17)) & M32)) & M32)) & M32)
    assert int(pcg_t(5 + pcg_t(1 + pcg_t(2 + pcg_t(torch.tensor([17])))))[0]) == nested
    # WPR sums
    B = x.shape[0]
    n = model.P + model.num_patches
    g = torch.Generator().manual_seed(0)
    A = torch.rand(B, model.H, n, n, generator=g).softmax(-1)
    S = torch.rand(B, n, generator=g) > 0.3
    S[:, : model.P] = True
    s, _ = wpr(A, S, 30)
    assert torch.allclose(s.sum(-1), torch.ones(B, model.H), atol=1e-5), s.sum(-1)
    assert float((s * (~S)[:, None, :]).abs().max()) == 0.0
    # tome sizes
    pol = Policy("tome", {b: ("rate", 0.75) for b in range(min(model.L, 3))})
    orig_n = model.num_patches + model.P
    # run and check that sizes sum to the token count after every merge
    tt = {"ok": True}
    _orig = tome_step

    def checked(model_, x_, size_, K_, n_keep_):
        r = _orig(model_, x_, size_, K_, n_keep_)
        # r = (x, size, keep, score, margins): sizes of the surviving rows sum to the token count
        tot = (r[1] * r[2]).sum(1)
        tt["ok"] &= bool(torch.equal(tot, torch.full((x_.shape[0],), float(orig_n))))
        tt["steps"] = tt.get("steps", 0) + 1
        return r

    globals()["tome_step"] = checked
    try:
        forward(model, x, pol)
    finally:
        globals()["tome_step"] = _orig
    assert tt["ok"] and tt["steps"] == len(pol.steps), "tome sizes do not sum to the token count"
    return True


# ----------------------------------------------------------------------------------------------
# fixtures
def rel(p: Path) -> str:
    return os.path.relpath(Path(p).resolve(), REPO)


def make_deep_model(out: Path, extra=None, seed=5):
    """A 4-block timm ViT of 64 patches; `extra`: architecture arguments of a variant."""
    import make_fixtures as mf  # noqa: E402  (torch + timm + transformers)
    from timm.models.vision_transformer import VisionTransformer
    out.mkdir(parents=True, exist_ok=True)
    args = dict(img_size=64, patch_size=8, embed_dim=48, depth=4, num_heads=3, mlp_ratio=2.0, qkv_bias=True,
                **(extra or {}))
    torch.manual_seed(seed)
    tm = VisionTransformer(num_classes=10, **args).eval()
    mf.timm_disable_fused(tm)
    mf.reinit_(tm, seed=100 + seed)
    sd = {k: v.detach().clone().contiguous() for k, v in tm.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    mf.check_roundtrip(tm, out / "model.safetensors")
    mf.write_json(out / "config.json", mf.timm_config("vit_deep_test", 10, 48, args, 64))
    x = mf.make_input(200 + seed, 64, 64)
    logits = tm(x)
    mf.save_reference(out, x, logits)
    return x, logits


# The architecture variants (issue 26): DINOv2 with registers and CLIP's tower, as timm builds them.
# Each with its seed (the one its committed fixture was built with).
VARIANTS = {
    "reg": (11, dict(reg_tokens=4, init_values=1e-5, no_embed_class=True)),
    "clip": (12, dict(pre_norm=True, act_layer="quick_gelu")),
    "gap": (11, dict(class_token=False, global_pool="avg", fc_norm=True)),
}
VARIANT_CASES = [
    ("none", []),
    ("evit", ["--keep", "0.6@0,2"]),
    ("random", ["--keep", "0.6@0,1", "--seed", "5"]),
    ("wpr", ["--keep", "0.7@0,2"]),
    ("zero-tprune", ["--keep", "0.7@0,2"]),
    ("zero-tprune", ["--tokens", "0:48,2:30", "--heads", "mean"]),
    ("tome", ["--keep", "0.75@0,1,2"]),
    ("tome-protect", ["--keep", "0.75@0,1,2"]),
    ("pitome", ["--keep", "0.75@0,1,2"]),
    ("wpr-merge", ["--keep", "0.7@0,2"]),
    ("zero-tprune-merge", ["--keep", "0.7@0,2"]),
    ("zero-tprune-adaptive", ["--threshold", "0.5@1,2"]),
    ("threshold", ["--threshold", "1.0@1,2"]),
    ("token-transforming", ["--keep", "0.7@0,2"]),
]


def save_case(path: Path, logits, recs, flops):
    d = {"logits": logits.float().contiguous(), "flops": flops.double().contiguous()}
    for s, r in enumerate(recs):
        d[f"kept.{s}"] = r["kept"]
        d[f"count.{s}"] = r["count"]
        d[f"score.{s}"] = r["score"]
    save_file(d, str(path))
    os.chmod(path, 0o644)


def min_margin(recs):
    out = {}
    for r in recs:
        for k, v in r["margins"].items():
            if k in ("wpr_iters", "r_sim", "fallback"):
                continue
            out[k] = min(out.get(k, INF), v)
    return {k: (None if v == INF else float(f"{v:.3g}")) for k, v in out.items()}


TINY_CASES_DEEP = [
    ("none", []),
    ("evit", ["--keep", "0.5@0,1,3"]),
    ("evit", ["--tokens", "1:40,3:20"]),
    ("random", ["--keep", "0.6@0,1,2"]),
    ("random", ["--keep", "0.5@1;0.75@3", "--seed", "7"]),
    ("wpr", ["--keep", "0.7@0,2", "--heads", "mean"]),
    ("wpr", ["--tokens", "0:48,1:40,3:16", "--heads", "rms"]),
    ("wpr", ["--keep", "0.75@1,2,3"]),
    ("zero-tprune", ["--keep", "0.7@0,2"]),
    ("zero-tprune", ["--keep", "0.6@0,1,2", "--heads", "mean"]),
    ("zero-tprune", ["--keep", "0.65@0,1,3", "--heads", "rms"]),
    ("zero-tprune", ["--tokens", "0:48,2:30", "--sim", "0"]),
    ("zero-tprune", ["--keep", "0.7@1,3", "--sim", "1"]),
    ("zero-tprune", ["--keep", "0.7@0;0.6@1,2", "--sim", "0.25", "--iters", "5"]),
    ("tome", ["--keep", "0.75@0,1,2"]),
    ("tome", ["--tokens", "0:40,1:24,3:14"]),
    ("threshold", ["--threshold", "1.0@1,2"]),
    ("threshold", ["--threshold", "0.8@0;1.2@2,3"]),
    ("threshold", ["--threshold", "0.5@0;4@2"]),
]
TINY_CASES_DEEP += [
    ("tome-protect", ["--keep", "0.75@0,1,2"]),
    ("tome-protect", ["--tokens", "0:46,1:34,3:24", "--protect", "0.2", "--heads", "mean"]),
    ("pitome", ["--keep", "0.75@0,1,2"]),
    ("pitome", ["--tokens", "0:40,1:24,3:14"]),
    ("wpr-merge", ["--keep", "0.7@0,2"]),
    ("wpr-merge", ["--tokens", "0:48,1:40,3:16", "--heads", "rms"]),
    ("zero-tprune-merge", ["--keep", "0.75@0,1,2"]),
    # a step that removes more than half: the importance stage removes the rest
    ("zero-tprune-merge", ["--tokens", "0:40,1:14,3:6", "--heads", "mean"]),
    # counts that differ per image at every step (masked rows merging)
    ("zero-tprune-adaptive", ["--threshold", "0.5@1,2,3"]),
    ("zero-tprune-adaptive", ["--threshold", "0.3@0;0.9@2,3"]),
    ("token-transforming", ["--keep", "0.7@0,2"]),
    ("token-transforming", ["--tokens", "0:48,1:40,3:16", "--heads", "rms"]),
]
TINY_CASES_DIST = [
    ("none", []),
    ("evit", ["--keep", "0.7@0,1"]),
    ("random", ["--keep", "0.5@0,1", "--seed", "3"]),
    ("wpr", ["--tokens", "0:12,1:8", "--heads", "mean"]),
    ("wpr", ["--keep", "0.7@0,1"]),
    ("zero-tprune", ["--keep", "0.75@0,1"]),
    ("zero-tprune", ["--keep", "0.6@0,1", "--sim", "1", "--heads", "rms"]),
    ("zero-tprune", ["--tokens", "0:10,1:6", "--sim", "0", "--heads", "mean"]),
    ("tome", ["--keep", "0.75@0,1"]),
    ("tome-protect", ["--keep", "0.75@0,1"]),
    ("pitome", ["--keep", "0.75@0,1"]),
    ("wpr-merge", ["--keep", "0.7@0,1"]),
    ("zero-tprune-merge", ["--keep", "0.4@0,1", "--iters", "3"]),
    ("zero-tprune-adaptive", ["--threshold", "0.8@0,1"]),
    ("threshold", ["--threshold", "1.0@0,1"]),
    ("token-transforming", ["--keep", "0.7@0,1"]),
]
REAL_CASES = [
    ("none", []),
    ("evit", ["--keep", "0.7@3,6,9"]),
    ("random", ["--keep", "0.7@3,6,9"]),
    ("wpr", ["--keep", "0.7@3,6,9"]),
    ("zero-tprune", ["--keep", "0.7@3,6,9"]),
    ("tome", ["--flops", "0.65"]),
    ("tome-protect", ["--flops", "0.65"]),
    ("pitome", ["--flops", "0.65"]),
    ("wpr-merge", ["--flops", "0.65"]),
    ("zero-tprune-merge", ["--flops", "0.65"]),
    ("zero-tprune-adaptive", ["--threshold", "0.2@3,4,5,6,7,8,9,10,11"]),
    ("threshold", ["--threshold", "1.0@3,6,9"]),
    ("token-transforming", ["--flops", "0.65"]),
]


def case_name(prefix, policy, argv, used):
    base = f"{prefix}-{policy}"
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def check_own_forward(name, model, x, ref_logits):
    """The reference's own forward against the library's logits on the same input."""
    logits, _, _ = forward(model, x, Policy("none", {}))
    err = float((logits - ref_logits).abs().max())
    print(f"{name}: own forward vs reference max|diff| = {err:.2e}")
    assert err < 1e-4, err


def run_cases(cases, used, prefix, model, x, lst, d, extra=None):
    """Run each (policy, argv) of `lst` on `model`, save its case under `d`, append its entry."""
    d.mkdir(parents=True, exist_ok=True)
    for policy, argv in lst:
        if policy == "evit" and model.cls is None:
            continue  # EViT reads the class token's attention
        pol = policy_from_args(policy, argv, model)
        logits, fl, recs = forward(model, x, pol, record=True)
        name = case_name(prefix, policy, argv, used)
        f = d / f"{name}.safetensors"
        save_case(f, logits, recs, fl)
        mm = min_margin(recs)
        entry = {"name": name, "model": rel(model.dir), "policy": policy, "args": argv, "file": rel(f)}
        if extra:
            entry.update(extra)
        entry["schedule"] = pol.desc
        entry["counts"] = [r["count"].tolist() for r in recs]
        entry["min_rel_margin"] = mm
        cases.append(entry)
        print(f"{name:28s} {' '.join(argv):42s} counts={entry['counts']} margins={mm}")


def run_variants(cases, used, names):
    """The architecture variants' models (timm-built) and their cases."""
    for v in names:
        vdir = PRUNE_FIX / f"tiny-timm-{v}"
        seed, args = VARIANTS[v]
        x, ref_logits = make_deep_model(vdir, args, seed=seed)
        model = ViT(vdir)
        check_own_forward(f"tiny-timm-{v}", model, x, ref_logits)
        run_cases(cases, used, v, model, x, VARIANT_CASES, PRUNE_FIX)


def write_cases(cases):
    out = PRUNE_FIX
    (out / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(cases)} cases, fixtures total {total / 1024:.0f} KiB")
    assert total < 3 * 1024 * 1024


def cmd_fixtures(a):
    out = PRUNE_FIX
    if a.variants:
        # Only these variants, merged into the existing cases.
        names = a.variants.split(",")
        cases = [c for c in json.loads((out / "cases.json").read_text())
                 if not any(c["name"].startswith(f"{v}-") for v in names)]
        used = {c["name"] for c in cases}
        run_variants(cases, used, names)
        return write_cases(cases)
    out.mkdir(parents=True, exist_ok=True)
    deep_dir = out / "tiny-timm-deep"
    x_deep, ref_logits = make_deep_model(deep_dir)
    deep = ViT(deep_dir)
    check_own_forward("tiny-timm-deep", deep, x_deep, ref_logits)
    assert self_checks(deep, x_deep)
    dist_dir = REPO / "tests" / "fixtures" / "tiny-timm-distilled"
    dist = ViT(dist_dir)
    rd = load_file(str(dist_dir / "reference.safetensors"))
    check_own_forward("tiny-timm-distilled", dist, rd["input"], rd["logits"])
    assert self_checks(dist, rd["input"])

    cases, used = [], set()
    run_cases(cases, used, "deep", deep, x_deep, TINY_CASES_DEEP, out)
    run_cases(cases, used, "dist", dist, rd["input"], TINY_CASES_DIST, out)
    # real model, first 2 images by file name
    import numpy_deit as nd
    real = ViT(DEIT_DIR)
    files = sorted(p.name for p in (VAL_DIR / "images").glob("*.JPEG"))[:2]
    xr = torch.from_numpy(np.stack([nd.preprocess(VAL_DIR / "images" / f, "resize", real.cfg) for f in files]))
    run_cases(cases, used, "real", real, xr, REAL_CASES, out / "real",
              extra={"images": [rel(VAL_DIR / "images" / f) for f in files]})
    run_variants(cases, used, list(VARIANTS))
    write_cases(cases)


# ----------------------------------------------------------------------------------------------
# val set
def load_labels():
    labels = {}
    for line in (VAL_DIR / "labels.tsv").read_text().splitlines():
        if line.strip():
            f, lab = line.split("\t")
            labels[f] = int(lab)
    files = sorted(labels)
    return files, np.array([labels[f] for f in files])


def load_val(model: ViT):
    files, labels = load_labels()
    if VAL_CACHE.exists():
        x = np.load(VAL_CACHE, mmap_mode="r")
        if x.shape[0] == len(files):
            return x, labels
    import numpy_deit as nd
    t0 = time.time()
    x = np.stack([nd.preprocess(VAL_DIR / "images" / f, "resize", model.cfg) for f in files]).astype(np.float32)
    np.save(VAL_CACHE, x)
    print(f"preprocessed {len(files)} images in {time.time() - t0:.0f}s -> {VAL_CACHE}", file=sys.stderr)
    return x, labels


PREFIX_CACHE = {}  # (model dir, image array, first step block, batch start, batch end) -> dense hidden state


def evaluate(model, X, pol, batch=64, limit=None, stop_after_last=False, cache_prefix=True):
    N = X.shape[0] if limit is None else min(limit, X.shape[0])
    top5s, fls, lps = [], [], []
    f = min(pol.steps) if pol.steps else 0
    for i in range(0, N, batch):
        j = min(N, i + batch)
        xb = torch.from_numpy(np.array(X[i:j]))
        start = None
        if cache_prefix and f > 0:
            key = (str(model.dir), id(X), f, i, j)
            if key not in PREFIX_CACHE:
                PREFIX_CACHE[key] = forward(model, xb, Policy("none", {}), stop_before=f)
            start = (f, PREFIX_CACHE[key])
        logits, fl, _ = forward(model, xb, pol, compact_rows=True, stop_after_last=stop_after_last, start=start)
        fls.append(fl)
        if logits is not None:
            top5s.append(logits.topk(5, dim=-1).indices)
            lps.append(logits.log_softmax(-1))
    fl = torch.cat(fls).numpy()
    if not top5s:
        return None, fl, None
    return torch.cat(top5s).numpy(), fl, torch.cat(lps)


def kl_to_dense(dense_lp, lp):
    """mean over images of KL(p_dense || p): a low-variance companion of the agreement"""
    n = lp.shape[0]
    d = dense_lp[:n]
    return float((d.exp() * (d - lp)).sum(-1).mean())


def metrics(top5, labels, dense_top1):
    n = top5.shape[0]
    lab = labels[:n]
    t1 = 100 * float((top5[:, 0] == lab).mean())
    t5 = 100 * float((top5 == lab[:, None]).any(1).mean())
    agr = 100 * float((top5[:, 0] == dense_top1[:n]).mean())
    return t1, t5, agr


def spec_to_argv(spec: str):
    """'zero-tprune:sim=0.25:heads=rms:blocks=2,4,6' -> ('zero-tprune', ['--sim','0.25',...])"""
    parts = spec.split(":")
    argv = []
    for kv in parts[1:]:
        k, v = kv.split("=", 1)
        argv += [f"--{k}", v]
    return parts[0], argv


# The threshold a threshold policy's scale multiplies (PolicyDef::default_threshold).
DEFAULT_THRESHOLD = {"threshold": 0.5, "zero-tprune-adaptive": 0.14}


def calibrate_scale(model, X, policy, target, blocks=None):
    """Session::calibrate, step for step: the scale of the policy's default threshold (f32) whose
    mean FLOPs over the images X reach `target` (a fraction of dense): a bracket from 1 doubling,
    then 8 halvings, keeping the last scale at or under the target. Returns (scale, threshold,
    fraction reached)."""
    base = np.float32(DEFAULT_THRESHOLD[policy])
    bl = ",".join(map(str, blocks or default_blocks(policy, model.L)))
    dense = model.dense_flops()

    def reached(scale):
        th = np.float32(base * np.float32(scale))
        pol = policy_from_args(policy, ["--threshold", f"{float(th)!r}@{bl}"], model)
        _, fl, _ = evaluate(model, X, pol, stop_after_last=True)
        return float(fl.mean() / dense)

    lo, hi = np.float32(0), np.float32(1)
    while True:
        f = reached(hi)
        if f <= target or hi >= 64:
            best = (hi, f)
            break
        lo, hi = hi, np.float32(hi * 2)
    for _ in range(8):
        mid = np.float32(np.float32(0.5) * (lo + hi))
        f = reached(mid)
        if f <= target:
            hi, best = mid, (mid, f)
        else:
            lo = mid
    return float(best[0]), float(np.float32(base * best[0])), best[1]


def bisect_threshold(model, X, target, blocks, limit=256, iters=16):
    dense = model.dense_flops()
    bl = ",".join(map(str, blocks))
    lo, hi = 0.0, 4.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        pol = policy_from_args("threshold", ["--threshold", f"{mid:.6g}@{bl}"], model)
        _, fl, _ = evaluate(model, X, pol, limit=limit, stop_after_last=True)
        if fl.mean() > target * dense:
            lo = mid
        else:
            hi = mid
            if fl.mean() > 0.998 * target * dense:
                break
    return float(f"{hi:.6g}")


def cmd_sweep(a):
    model = ViT(a.model)
    X, labels = load_set(model, a.data)
    X, labels = X[a.skip:], labels[a.skip:]
    N = X.shape[0] if a.limit is None else min(a.limit, X.shape[0])
    dense_fl = model.dense_flops()
    rows = []
    t0 = time.time()
    cache = Path(f"/tmp/zp_dense_{Path(a.model).name}_{a.data}_{a.skip}_{N}.pt")
    if cache.exists():
        top5, fl, dense_lp = torch.load(cache)
        top5, fl = top5.numpy(), fl.numpy()
    else:
        top5, fl, dense_lp = evaluate(model, X, Policy("none", {}), limit=N)
        torch.save((torch.from_numpy(top5), torch.from_numpy(fl), dense_lp), cache)
    dense_top1 = top5[:, 0]
    t1, t5, agr = metrics(top5, labels, dense_top1)
    print(f"dense: {fl.mean() / 1e9:.4f} GFLOPs, top-1 {t1:.2f} top-5 {t5:.2f} ({time.time() - t0:.0f}s, {N} images)",
          file=sys.stderr)
    rows.append(dict(policy="none", options="", schedule="dense", target=1.0, gflops=fl.mean() / 1e9,
                     rel=fl.mean() / dense_fl, top1=t1, top5=t5, agree=agr, kl=0.0,
                     pred=top5[:, 0].tolist(), labels=labels[:N].tolist()))
    header = ("| policy | options | schedule | target | GFLOPs | rel | top-1 % | top-5 % | agree % | d top-1 | KL |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|")

    def fmt(r):
        return (f"| {r['policy']} | {r['options']} | {r['schedule']} | {r['target']:g} | {r['gflops']:.4f} | "
                f"{r['rel']:.3f} | {r['top1']:.2f} | {r['top5']:.2f} | {r['agree']:.2f} | "
                f"{r['top1'] - rows[0]['top1']:+.2f} | {r['kl']:.4f} |")

    if a.md:
        with open(a.md, "a") as fh:
            fh.write(f"\n### sweep {time.strftime('%H:%M:%S')} ({N} images) {' '.join(sys.argv[1:])}\n\n{header}\n{fmt(rows[0])}\n")
    print(header)
    print(fmt(rows[0]), flush=True)
    specs = split_specs(a.policies)
    for tgt in [float(t) for t in a.targets.split(",")]:
        for spec in specs:
            name, argv = spec_to_argv(spec)
            t0 = time.time()
            try:
                if name == "threshold":
                    ns = make_argparser().parse_args(argv)
                    blocks = [int(b) for b in ns.blocks.split(",")] if ns.blocks else default_blocks(name, model.L)
                    th = bisect_threshold(model, X, tgt, blocks, limit=min(256, N))
                    argv2 = [x for x in argv if True]
                    if "--blocks" in argv2:
                        j = argv2.index("--blocks")
                        del argv2[j:j + 2]
                    pol = policy_from_args(name, argv2 + ["--threshold", f"{th:g}@{','.join(map(str, blocks))}"],
                                           model)
                elif any(x_ in argv for x_ in ("--keep", "--tokens", "--threshold")):
                    pol = policy_from_args(name, argv, model)  # explicit schedule: target is only a label
                else:
                    pol = policy_from_args(name, argv + ["--flops", str(tgt)], model)
            except ValueError as e:
                print(f"{spec} @ {tgt}: {e}", file=sys.stderr)
                continue
            top5, fl, lp = evaluate(model, X, pol, limit=N)
            t1, t5, agr = metrics(top5, labels, dense_top1)
            r = dict(policy=name, options=pol.opts(), schedule=pol.desc, target=tgt, gflops=fl.mean() / 1e9,
                     rel=fl.mean() / dense_fl, top1=t1, top5=t5, agree=agr,
                     kl=kl_to_dense(dense_lp, lp), secs=time.time() - t0, pred=top5[:, 0].tolist())
            rows.append(r)
            print(fmt(r) + f"  ({r['secs']:.0f}s)", flush=True)
            if a.md:
                with open(a.md, "a") as fh:
                    fh.write(fmt(r) + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


PHOTOS_DIR = SHARED / "data" / "imagenet-samples-400"


def load_set(model: ViT, which: str):
    """val: the 1300 validation images; photos: the 400 full-size photos (PIL, timm's transform)."""
    if which == "val":
        return load_val(model)
    import numpy_deit as nd
    pairs = [l.split("\t") for l in (PHOTOS_DIR / "labels.tsv").read_text().splitlines() if l.strip()]
    pairs.sort()
    cache = Path("/tmp/zp_photos400.npy")
    if cache.exists():
        x = np.load(cache)
    else:
        x = np.stack([nd.preprocess(PHOTOS_DIR / f, "resize", model.cfg) for f, _ in pairs]).astype(np.float32)
        np.save(cache, x)
    return x, np.array([int(l) for _, l in pairs])


def pooled_embeddings(model, X, pol, batch=64):
    """Every image's pooled embedding under `pol`, and its FLOPs."""
    out, fls = [], []
    f = min(pol.steps) if pol.steps else 0
    for i in range(0, X.shape[0], batch):
        xb = torch.from_numpy(np.array(X[i:i + batch]))
        start = None
        if f > 0:
            key = (str(model.dir), id(X), f, i, i + xb.shape[0])
            if key not in PREFIX_CACHE:
                PREFIX_CACHE[key] = forward(model, xb, Policy("none", {}), stop_before=f)
            start = (f, PREFIX_CACHE[key])
        pooled = []
        _, fl, _ = forward(model, xb, pol, compact_rows=True, start=start, pooled_out=pooled)
        out.append(pooled[0])
        fls.append(fl)
    return torch.cat(out), torch.cat(fls).numpy()


def embedding_quality(e, dense, labels):
    """Mean cosine to dense (and its SE), nearest-neighbour agreement with dense, recall@1 (the
    nearest other image has the same label), as `zeroprune eval --task embed` reports them."""
    n = e.shape[0]
    cos = F.cosine_similarity(e, dense, dim=-1).double()
    def nearest(v):
        u = F.normalize(v, dim=-1)
        sim = u @ u.T
        sim.fill_diagonal_(-INF)
        return sim.argmax(-1)
    nn_e, nn_d = nearest(e), nearest(dense)
    agree = (nn_e == nn_d).double()
    lab = torch.as_tensor(labels[:n])
    recall = (lab[nn_e] == lab).double()
    se = lambda v: float(v.std() / math.sqrt(n))
    return dict(cosine=float(cos.mean()), cosine_se=se(cos), nn_agreement=float(agree.mean()),
                nn_agreement_se=se(agree), recall_at_1=float(recall.mean()))


def cmd_embed(a):
    """Pruned embeddings against dense, every policy at FLOPs targets, on one image set."""
    model = ViT(a.model)
    X, labels = load_set(model, a.data)
    dense, dfl = pooled_embeddings(model, X, Policy("none", {}))
    base = embedding_quality(dense, dense, labels)
    rows = [dict(policy="none", target=1.0, flops_ratio=1.0, **base)]
    print(f"{a.data}: {X.shape[0]} images, dense recall@1 {base['recall_at_1']:.4f}", file=sys.stderr)
    policies = [p for p in POLICIES if p not in ("none", "threshold")]
    for tgt in [float(t) for t in a.targets.split(",")]:
        for name in policies:
            t0 = time.time()
            try:
                pol = policy_from_args(name, ["--flops", str(tgt)], model)
            except ValueError as e:
                print(f"{name} @ {tgt}: {e}", file=sys.stderr)
                continue
            e, fl = pooled_embeddings(model, X, pol)
            q = embedding_quality(e, dense, labels)
            r = dict(policy=name, target=tgt, flops_ratio=float(fl.mean() / dfl.mean()), **q)
            rows.append(r)
            print(f"{name:13s} {tgt:.2f} flops {r['flops_ratio']:.3f} cosine {q['cosine']:.4f} +- {q['cosine_se']:.4f} "
                  f"NN {q['nn_agreement']:.4f} recall@1 {q['recall_at_1']:.4f} ({time.time() - t0:.0f}s)",
                  file=sys.stderr, flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1) + "\n")


def split_specs(s: str):
    """split 'a,b:blocks=2,4,6,c' on commas that start a new policy name."""
    out = []
    for tok in s.split(","):
        head = tok.split(":")[0]
        if out and head not in POLICIES:
            out[-1] += "," + tok
        else:
            out.append(tok)
    return out


def cmd_run(a, rest):
    model = ViT(a.model)
    pol = policy_from_args(a.policy, rest, model)
    print(f"{pol.name} {pol.opts()} {pol.desc}")
    if a.fixture_input:
        x = load_file(str(Path(a.model) / "reference.safetensors"))["input"]
        logits, fl, recs = forward(model, x, pol, record=True)
        for s, r in enumerate(recs):
            print(f"step {s} block {r['block']}: count {r['count'].tolist()} kept {r['kept'].tolist()} margins {r['margins']}")
        print("logits", logits)
        print("GFLOPs", (fl / 1e9).tolist())
        return
    X, labels = load_val(model)
    t0 = time.time()
    d5, _, dlp = evaluate(model, X, Policy("none", {}), limit=a.limit)
    top5, fl, lp = evaluate(model, X, pol, limit=a.limit)
    t1, t5, agr = metrics(top5, labels, d5[:, 0])
    dt1 = metrics(d5, labels, d5[:, 0])[0]
    print(f"{top5.shape[0]} images: GFLOPs {fl.mean() / 1e9:.4f} ({fl.mean() / model.dense_flops():.3f} x dense) "
          f"top-1 {t1:.2f} (dense {dt1:.2f}) top-5 {t5:.2f} agree {agr:.2f} KL {kl_to_dense(dlp, lp):.4f}  [{time.time() - t0:.0f}s]")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixtures", help="write tests/fixtures/prune/")
    fx.add_argument("--variants", default=None,
                    help="only these architecture variants (reg, clip), merged into cases.json")
    sw = sub.add_parser("sweep", help="accuracy at FLOPs targets on the 1300 val images")
    sw.add_argument("--policies", default="random,evit,wpr,zero-tprune,tome,threshold",
                    help="comma list of NAME[:key=value]... (keys: sim, heads, seed, iters, blocks)")
    sw.add_argument("--targets", default="0.8,0.65")
    sw.add_argument("--limit", type=int, default=None)
    sw.add_argument("--data", choices=["val", "photos"], default="val", help="the 1300 val images or the 400 photos")
    sw.add_argument("--skip", type=int, default=0, help="leave out the first N (the calibration images)")
    sw.add_argument("--json", default=None)
    sw.add_argument("--md", default=None, help="append markdown rows to this file as they finish")
    sw.add_argument("--model", type=Path, default=DEIT_DIR)
    em = sub.add_parser("embed", help="pruned embeddings against dense: every policy at FLOPs targets")
    em.add_argument("--data", choices=["val", "photos"], default="val")
    em.add_argument("--model", type=Path, default=DEIT_DIR)
    em.add_argument("--targets", default="0.8,0.65,0.5")
    em.add_argument("--json", default=None)
    rn = sub.add_parser("run", help="one policy: run POLICY [schedule/options]")
    rn.add_argument("--policy", required=True, choices=POLICIES)
    rn.add_argument("--model", type=Path, default=DEIT_DIR)
    rn.add_argument("--limit", type=int, default=None)
    rn.add_argument("--fixture-input", action="store_true", help="use the model dir's reference.safetensors input")
    a, rest = ap.parse_known_args()
    if a.cmd == "fixtures":
        cmd_fixtures(a)
    elif a.cmd == "sweep":
        cmd_sweep(a)
    elif a.cmd == "embed":
        cmd_embed(a)
    else:
        cmd_run(a, rest)


if __name__ == "__main__":
    main()
