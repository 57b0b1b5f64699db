#!/usr/bin/env python3
"""Independent reference of token pruning on BERT text encoders (post-LayerNorm, sentence-transformers).

Reuses the policy steps of prune_reference.py (torch, float32, CPU): step_select (evit, random, wpr,
zero-tprune, threshold), tome_step (tome), merge_step (tome-protect, pitome, wpr-merge), topk_keep and
its decision margins, compact, build_policy/parse_groups. What is new here is the text forward:

* Each text is tokenized alone ([CLS] words [SEP], no padding) and runs as a batch of one (b = 0).
* Row layout [CLS, SEP, t_1, ..., t_{n-2}]: two protected rows (P = 2). Each row takes the position
  embedding of its ORIGINAL text position (CLS 0, SEP n-1, t_i i) and token type 0. The row's
  "original index" (the random policy's hash input) is its layout index (CLS 0, SEP 1, t_i i+1).
* Post-LN layer with n rows: q, k, v = x W + b; A = softmax(Q K^T / sqrt(dh) + log(size_j)) (the bias from
  the layer after the first merge on); y = LN1(x + proj(A V)). The pruning step runs HERE on y, with A,
  K (key projection, all heads, [n, D]) and the sizes; then y = y + fc2(gelu(fc1(y))); x = LN2(y).
  A threshold step keeps c rows; with one text per batch the masked rows are simply dropped (keys
  j >= c would get probability 0 and masked query rows are never read, so this is the same).
* Pooling: (sum(size_i x_i) over the surviving rows (CLS and SEP included) + sum over the tokens a
  dropping policy removed of R(y_d)) / (sum(size_i) + dropped), then L2-normalised. y_d is the dropped
  token's state at the pruning point of layer i, R(v) = (v - beta1_i) / gamma1_i * gamma2_last + beta2_last
  re-affines it from LN1_i to the last LN2 (components with |gamma1| < 1e-6 give beta2_last).
* FLOPs per text: sum over layers of 2nD*3D + 4n^2 D + 2nD^2 + 4mDI (n rows entering, m rows after
  the step; no embedding / pooling FLOPs).
* Reported kept tokens of a step: the text positions (1..n-2) of the surviving non-protected rows, ascending.

Writes (run from the repo root: python3 tests/reference/prune_text_reference.py):
  tests/fixtures/tiny-bert-prune/        tiny random BERT (4 layers, D 32, 4 heads, I 64, 64 positions) as a
                                         sentence-transformers folder, reference.safetensors (dense)
  tests/fixtures/text/prune-texts.json   {"tiny": [6 texts], "minilm": [3 texts]}
  tests/fixtures/text/prune-cases.json   the cases (name, model, texts, policy, args, file, schedule, counts,
                                         min_rel_margin, wpr_iters)
  tests/fixtures/text/prune-<name>.safetensors   kept.{s} i32 [T, Kmax] (-1 padded), count.{s} i32 [T],
                                         embeddings f32 [T, D], flops f64 [T]
Texts are chosen deterministically from the test split of ../shared/data/sentence-polarity (file order),
one per token-count band, the first whose every case is unambiguous (every decision margin >= 1e-4 and the
same decisions when each WPR power iteration stops one iteration earlier or later).
"""
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file as save_np
from safetensors.torch import load_file
from tokenizers import Tokenizer, normalizers, pre_tokenizers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import numpy_bert as nb  # noqa: E402  (numpy + safetensors + tokenizers)
import prune_reference as pr  # noqa: E402  (torch; no grad)

torch.set_num_threads(1)  # tiny tensors: one thread is faster and the results do not depend on the machine's cores

REPO = HERE.parents[1]
SHARED = REPO.parent / "shared"
FIX = REPO / "tests" / "fixtures"
TEXT_FIX = FIX / "text"
TINY_NAME = "tiny-bert-prune"
TINY_DIR = FIX / TINY_NAME
MINILM_DIR = SHARED / "models" / "all-minilm-l6-v2"
SENTENCES = SHARED / "data" / "sentence-polarity" / "sentences.tsv"
P = 2  # protected rows: CLS, SEP
MIN_MARGIN = 1e-4
TINY_SEED = 8
TINY_DIMS = dict(d=32, layers=4, heads=4, inter=64, positions=64)
VOCAB_SENTENCES = 200  # the tiny vocabulary: every word of the first 200 test sentences
TINY_BANDS = [(10, 15), (16, 21), (22, 27), (28, 33), (34, 39), (40, 45)]
MINILM_BANDS = [(10, 20), (21, 32), (33, 45)]

TINY_CASES = [
    ("none", []),
    ("evit", ["--keep", "0.6@0,1,2"]),
    ("evit", ["--keep", "0.5@1;0.8@3"]),
    ("random", ["--keep", "0.6@0,1,2"]),
    ("random", ["--keep", "0.5@1;0.75@3", "--seed", "7"]),
    ("wpr", ["--keep", "0.7@1,2,3"]),
    ("wpr", ["--keep", "0.6@0,2", "--heads", "mean", "--iters", "5"]),
    ("zero-tprune", ["--keep", "0.6@0,1,2"]),
    ("zero-tprune", ["--keep", "0.7@1,3", "--sim", "0.3", "--heads", "rms"]),
    ("zero-tprune", ["--keep", "0.65@0,2", "--heads", "mean", "--iters", "5"]),
    ("threshold", ["--threshold", "1.0@1,2"]),
    ("threshold", ["--threshold", "0.8@0;1.2@2,3"]),
    ("tome", ["--keep", "0.6@0,1,2"]),
    ("tome", ["--keep", "0.75@0,1,2,3"]),
    ("tome-protect", ["--keep", "0.75@0,1,2"]),
    ("tome-protect", ["--keep", "0.8@1,2,3", "--protect", "0.2", "--heads", "mean"]),
    ("pitome", ["--keep", "0.75@0,1,2"]),
    ("wpr-merge", ["--keep", "0.7@0,2"]),
    ("wpr-merge", ["--keep", "0.6@1,2,3", "--heads", "rms"]),
    ("zero-tprune-merge", ["--keep", "0.7@0,2"]),
    ("zero-tprune-merge", ["--keep", "0.4@1,3", "--heads", "mean"]),
    ("zero-tprune-adaptive", ["--threshold", "0.5@1,2,3"]),
    ("token-transforming", ["--keep", "0.7@0,2"]),
]
MINILM_CASES = [
    ("zero-tprune", ["--keep", "0.7@1,2,3"]),
    ("threshold", ["--threshold", "0.5@1,2,3"]),
    ("zero-tprune-adaptive", ["--threshold", "0.25@1,2,3,4,5"]),
    ("tome", ["--keep", "0.8@0,1,2,3,4,5"]),
    ("evit", ["--keep", "0.7@1,2,3"]),
    ("token-transforming", ["--keep", "0.7@1,2,3"]),
]
# Policies whose decisions go through WPR power iterations (checked for a +-1 iteration change).
WPR_POLICIES = pr.WPR_POLICIES


# ----------------------------------------------------------------------------------------------
# model
class TextModel:
    def __init__(self, model_dir: Path, rel: str):
        self.dir, self.rel = Path(model_dir), rel
        self.cfg = json.loads((self.dir / "config.json").read_text())
        sd = {k: v.float().contiguous() for k, v in load_file(str(self.dir / "model.safetensors")).items()}
        g = lambda k: sd[k]  # noqa: E731
        wb = lambda k: (sd[k + ".weight"], sd[k + ".bias"])  # noqa: E731
        self.D, self.H = self.cfg["hidden_size"], self.cfg["num_attention_heads"]
        self.dh, self.L, self.I = self.D // self.H, self.cfg["num_hidden_layers"], self.cfg["intermediate_size"]
        self.eps = self.cfg["layer_norm_eps"]
        self.word = g("embeddings.word_embeddings.weight")
        self.pos = g("embeddings.position_embeddings.weight")
        self.type0 = g("embeddings.token_type_embeddings.weight")[0]
        self.emb_ln = wb("embeddings.LayerNorm")
        self.layers = []
        for i in range(self.L):
            p = f"encoder.layer.{i}."
            self.layers.append(dict(
                q=wb(p + "attention.self.query"), k=wb(p + "attention.self.key"), v=wb(p + "attention.self.value"),
                o=wb(p + "attention.output.dense"), ln1=wb(p + "attention.output.LayerNorm"),
                fc1=wb(p + "intermediate.dense"), fc2=wb(p + "output.dense"), ln2=wb(p + "output.LayerNorm")))
        tok = Tokenizer.from_file(str(self.dir / "tokenizer.json"))
        tok.no_padding()
        st = self.dir / "sentence_bert_config.json"
        self.max_len = json.loads(st.read_text())["max_seq_length"] if st.exists() else self.cfg["max_position_embeddings"]
        tok.enable_truncation(max_length=self.max_len)
        self.tok = tok
        self.unk = tok.token_to_id("[UNK]")

    def encode(self, text):
        return self.tok.encode(text).ids

    def shim(self, n):
        """what prune_reference's step functions and build_policy read of a 'model' (ViT) for one text"""
        class S:  # noqa: N801
            pass
        s = S()
        s.P, s.H, s.dh, s.D, s.L, s.num_patches = P, self.H, self.dh, self.D, self.L, n - P
        return s

    def attn_flops(self, n):
        D = self.D
        return 2 * n * D * 3 * D + 4 * n * n * D + 2 * n * D * D

    def mlp_flops(self, m):
        return 4 * m * self.D * self.I


def ln(x, wb, eps):
    return F.layer_norm(x, (x.shape[-1],), wb[0], wb[1], eps)


def lin(x, wb):
    return F.linear(x, wb[0], wb[1])


# ----------------------------------------------------------------------------------------------
# instrumentation of prune_reference's WPR: head-band margin, iteration counts, +-1 iteration shifts
_WPR = pr.wpr
_COMBINE = pr.combine_heads
INSTR = {"band": math.inf, "iters": [], "shift": 0, "near": 0}
NEAR_EPS = 2.0  # |delta / eps| in [1/2, 2]: the GPU (f32, other summation order) might decide otherwise


def wpr_history(A, S, T):
    """{t: s after exactly t iterations} for t = 0..T, the same operations as prune_reference.wpr"""
    B, H, n, _ = A.shape
    Sf = S.to(A.dtype)
    As = A * Sf[:, None, :, None] * Sf[:, None, None, :]
    rs = As.sum(-1, keepdim=True)
    Ap = torch.where(rs > 0, As / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(As))
    nS = Sf.sum(1)
    s = (Sf / nS[:, None])[:, None, :].expand(B, H, n).contiguous()
    hist = {0: s}
    for t in range(1, T + 1):
        s = (s.unsqueeze(-2) @ Ap).squeeze(-2)
        hist[t] = s
    return hist


def wpr_instrumented(A, S, T, eps=1e-6):
    s, its = _WPR(A, S, T, eps)
    INSTR["iters"].append((int(its.min()), int(its.max()), T))
    d = INSTR["shift"]
    if d:
        # A head whose convergence test `delta < eps` was close (delta within a factor NEAR_EPS of eps)
        # stops one iteration later (d = +1: it stopped with delta_its < eps, not at the cap) or one
        # earlier (d = -1: delta_{its-1} >= eps was close); the others are unchanged.
        hist = wpr_history(A, S, T)
        B, H, n = s.shape
        delta = lambda t: (hist[t] - hist[t - 1]).abs().sum(-1)  # noqa: E731
        tgt = its.clone()
        for b in range(B):
            for h in range(H):
                k = int(its[b, h])
                assert torch.equal(hist[k][b, h], s[b, h])
                if d > 0 and k < T and float(delta(k)[b, h]) * NEAR_EPS >= eps:
                    tgt[b, h] = k + 1
                if d < 0 and k > 1 and float(delta(k - 1)[b, h]) <= eps * NEAR_EPS:
                    tgt[b, h] = k - 1
        INSTR["near"] += int((tgt != its).sum())
        out = s.clone()
        for t in sorted(set(tgt.flatten().tolist())):
            sel = tgt == t
            out[sel] = hist[t][sel]
        s = out
    return s, its


def combine_instrumented(s, S, P_, mode):
    if mode == "band":
        # distance of every head's variance to the band edges [0.01, 0.7], relative to the edge
        B, H, n = s.shape
        nS = S.sum(1).to(s.dtype)
        pm = (S & (torch.arange(n)[None, :] >= P_)).to(s.dtype)
        cnt = pm.sum(1)
        vals = nS[:, None, None] * s
        mu = (vals * pm[:, None, :]).sum(-1) / cnt[:, None]
        var = (((vals - mu[..., None]) ** 2) * pm[:, None, :]).sum(-1) / cnt[:, None]
        v = var.double()
        m = torch.minimum((v - 0.01).abs() / 0.01, (v - 0.7).abs() / 0.7)
        INSTR["band"] = min(INSTR["band"], float(m.min()))
    return _COMBINE(s, S, P_, mode)


pr.wpr = wpr_instrumented
pr.combine_heads = combine_instrumented


# ----------------------------------------------------------------------------------------------
# one text through the pruned encoder
def run_step(M, shim, pol, i, sidx, y, size, A, K, orig):
    """one pruning step on y [1,n,D] -> (y, size, orig, margins, keep mask)"""
    n = y.shape[1]
    kind, val = pol.steps[i]
    if kind == "theta" and pol.name in pr.MERGING:
        # zero-tprune-adaptive: the text's own count, its removed rows merged
        if size is None:
            size = torch.ones(1, n)
        y, size, keep, score, mg = pr.adaptive_step(pol, shim, y, size, A, K, torch.tensor([n]), val)
        m = int(keep.sum())
        y, orig, size = pr.compact(keep, [y, orig, size], m)
        return y, size, orig, mg, keep
    if kind == "theta":
        c = torch.tensor([n])
        keep, score, mg = pr.step_select(pol, shim, i, sidx, A, K, orig, c, val)
        if mg["fallback"]:
            # every row under theta: the single row kept is the top-1 of s; prune_reference does not
            # return the margin of that decision, so it is taken here
            _, mg["fallback_top1"] = pr.topk_keep(pr.received_attention(A, c)[:, P:], 1)
        m = int(keep.sum())
        y, orig = pr.compact(keep, [y, orig], m)
        if size is not None:
            size = pr.compact(keep, [size], m)[0]
        return y, size, orig, mg, keep
    n_keep = pr.n_keep_rate(val, n - P) if kind == "rate" else val
    if pol.name in pr.MERGING:
        if size is None:
            size = torch.ones(1, n)
        if pol.name == "tome":
            y, size, keep, score, mg = pr.tome_step(shim, y, size, K, n_keep)
        else:
            y, size, keep, score, mg = pr.merge_step(pol, shim, i, y, size, A, K, n_keep)
        y, orig, size = pr.compact(keep, [y, orig, size], P + n_keep)
    else:
        keep, score, mg = pr.step_select(pol, shim, i, sidx, A, K, orig, None, n_keep)
        y, orig = pr.compact(keep, [y, orig], P + n_keep)
    return y, size, orig, mg, keep


def forward(M: TextModel, ids, pol, check_shift=False):
    """-> (embedding [D] f32, flops (int), steps [{kept, count, margins}], ok_shift)"""
    n0 = len(ids)
    H, dh, D, eps = M.H, M.dh, M.D, M.eps
    shim = M.shim(n0)
    layout = torch.tensor([0, n0 - 1] + list(range(1, n0 - 1)), dtype=torch.long)  # text position of each row
    x = M.word[torch.tensor(ids, dtype=torch.long)[layout]] + M.pos[layout] + M.type0
    x = ln(x, M.emb_ln, eps)[None]
    orig = torch.arange(n0)[None, :]  # layout index: CLS 0, SEP 1, t_i -> i + 1
    size = None
    flops = 0
    recs = []
    shift_ok = True
    order = sorted(pol.steps)
    exited, n_exited = torch.zeros(D), 0
    g2, b2 = M.layers[-1]["ln2"]
    for i, lay in enumerate(M.layers):
        n = x.shape[1]
        q = lin(x, lay["q"]).view(1, n, H, dh).transpose(1, 2)
        K = lin(x, lay["k"])  # [1, n, D], all heads
        k = K.view(1, n, H, dh).transpose(1, 2)
        v = lin(x, lay["v"]).view(1, n, H, dh).transpose(1, 2)
        logits = (q * (dh ** -0.5)) @ k.transpose(-1, -2)
        if size is not None:
            logits = logits + size.log()[:, None, None, :]
        A = logits.softmax(-1)
        o = (A @ v).transpose(1, 2).reshape(1, n, D)
        y = ln(x + lin(o, lay["o"]), lay["ln1"], eps)
        flops += M.attn_flops(n)
        if i in pol.steps:
            sidx = order.index(i)
            INSTR["band"], INSTR["iters"], INSTR["shift"] = math.inf, [], 0
            y0, size0, orig0 = y, size, orig
            y, size, orig, mg, keep = run_step(M, shim, pol, i, sidx, y0, size0, A, K, orig0)
            if pol.name not in pr.MERGING:
                g1, b1 = lay["ln1"]
                inv = torch.where(g1.abs() < 1e-6, torch.zeros_like(g1), 1.0 / g1)
                gone = y0[0][~keep[0]]
                exited = exited + (((gone - b1) * inv) * g2 + b2).sum(0)
                n_exited += int(gone.shape[0])
            mg = dict(mg)
            if INSTR["band"] < math.inf:
                mg["band"] = INSTR["band"]
            if INSTR["iters"]:
                mg["wpr_iters"] = INSTR["iters"]
            if check_shift and pol.name in WPR_POLICIES:
                INSTR["near"] = 0
                for d in (-1, 1):
                    INSTR["shift"] = d
                    y2, _, _, _, keep2 = run_step(M, shim, pol, i, sidx, y0, size0, A, K, orig0)
                    INSTR["shift"] = 0
                    if not torch.equal(keep2, keep) or y2.shape != y.shape or not torch.allclose(y2, y, atol=1e-6):
                        shift_ok = False
                mg["wpr_near_eps"] = INSTR["near"]
            pos = orig[0, P:] + 1 - P  # layout index -> text position
            assert bool((pos[1:] > pos[:-1]).all())
            recs.append(dict(block=i, kept=pos.tolist(), count=len(pos), margins=mg))
        m = y.shape[1]
        flops += M.mlp_flops(m)
        y = y + lin(F.gelu(lin(y, lay["fc1"])), lay["fc2"])
        x = ln(y, lay["ln2"], eps)
    w = size[0] if size is not None else torch.ones(x.shape[1])
    if size is not None:
        # sizes add up to the token count (to rounding where token-transforming splits them)
        assert abs(float(w.sum()) - n0) <= 1e-5 * n0, (float(w.sum()), n0)
    # Dropped tokens stay in the mean with their state at the pruning point, re-affined from that
    # layer's LN1 to the last layer's LN2 (docs/text.md, "Pooling"); merged ones live in their destination.
    pooled = ((x[0] * w[:, None]).sum(0) + exited) / (w.sum() + n_exited)
    emb = pooled / pooled.norm().clamp_min(1e-12)
    return emb, flops, recs, shift_ok


def policy_for(M, name, argv, n):
    return pr.policy_from_args(name, argv, M.shim(n))


def min_margins(all_recs):
    """{key: min over texts and steps}; wpr_iters/r_sim/fallback are information, not margins"""
    out = {}
    for recs in all_recs:
        for r in recs:
            for k, v in r["margins"].items():
                if k in ("wpr_iters", "r_sim", "fallback", "wpr_near_eps"):
                    continue
                out[k] = min(out.get(k, math.inf), v)
    return out


def fmt_margins(m):
    return {k: (None if v == math.inf else float(f"{v:.3g}")) for k, v in sorted(m.items())}


def text_ok(M, ids, cases):
    """every case valid for this text and unambiguous; returns (ok, why)"""
    for name, argv in cases:
        try:
            pol = policy_for(M, name, argv, len(ids))
        except ValueError as e:
            return False, f"{name} {' '.join(argv)}: {e}"
        _, _, recs, shift_ok = forward(M, ids, pol, check_shift=True)
        mm = min_margins([recs])
        bad = {k: v for k, v in mm.items() if v < MIN_MARGIN}
        if bad or not shift_ok:
            return False, f"{name} {' '.join(argv)}: margins {fmt_margins(bad)} shift_ok={shift_ok}"
    return True, ""


def choose_texts(M, pool, bands, cases, label):
    chosen = {}
    tried = 0
    for s in pool:
        ids = M.encode(s)
        if M.unk is not None and M.unk in ids:
            continue
        n = len(ids)
        band = next((b for b in bands if b[0] <= n <= b[1]), None)
        if band is None or band in chosen:
            continue
        tried += 1
        ok, why = text_ok(M, ids, cases)
        if ok:
            chosen[band] = s
            if len(chosen) == len(bands):
                break
        else:
            print(f"  [{label}] skip n={n}: {why}")
    missing = [b for b in bands if b not in chosen]
    assert not missing, f"{label}: no unambiguous text in bands {missing}"
    print(f"  [{label}] {tried} texts tried")
    return [chosen[b] for b in bands]


# ----------------------------------------------------------------------------------------------
# fixtures
def test_sentences():
    rows = [l.rstrip("\n").split("\t") for l in open(SENTENCES, encoding="utf-8")][1:]
    return [r[2] for r in rows if r[0] == "test"]


def make_tiny_model(vocab_texts, seed=TINY_SEED):
    """the tiny random BERT as a sentence-transformers folder (reference.safetensors written later)"""
    pt, nm = pre_tokenizers.BertPreTokenizer(), normalizers.BertNormalizer(lowercase=True)
    words = sorted({p for s in vocab_texts for p, _ in pt.pre_tokenize_str(nm.normalize_str(s)) if p.isalpha()})
    d, L, H, I, npos = (TINY_DIMS[k] for k in ("d", "layers", "heads", "inter", "positions"))
    with tempfile.TemporaryDirectory() as tmp:
        tok = os.path.join(tmp, "tokenizer.json")
        vocab = nb.tiny_tokenizer(tok, words)
        rng = np.random.default_rng(seed)
        t = nb.tiny_weights(rng, vocab, d, L, I, npos)
        cfg = nb.bert_config(vocab, d, L, H, I, npos)
        st_files = {
            "modules.json": [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
            "1_Pooling/config.json": {"word_embedding_dimension": d, "pooling_mode_cls_token": False,
                                      "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                                      "pooling_mode_mean_sqrt_len_tokens": False},
            "sentence_bert_config.json": {"max_seq_length": npos, "do_lower_case": False},
        }
        # placeholder reference (rewritten once the texts are chosen)
        nb.write_folder(TINY_NAME, t, cfg, tok, {"ids": np.zeros((1, 1), np.int32)}, st_files)
    return t, cfg, vocab


def dense_check(M, texts, label):
    """policy none / keep 1.0 / threshold 0 against numpy_bert's float64 dense forward (original layout)"""
    t = {k: v.numpy() for k, v in load_file(str(M.dir / "model.safetensors")).items()}
    ref = nb.reference(t, M.cfg, str(M.dir / "tokenizer.json"), texts, M.max_len)
    blocks = ",".join(map(str, range(M.L)))
    checks = [("none", [])] + [(p, ["--keep", f"1.0@{blocks}"]) for p in
                               ("evit", "random", "wpr", "zero-tprune", "tome", "tome-protect", "pitome", "wpr-merge")]
    checks.append(("threshold", ["--threshold", f"0@{blocks}"]))
    worst = 1.0
    for j, s in enumerate(texts):
        ids = M.encode(s)
        assert ids == ref["ids"][j, : ref["lengths"][j]].tolist()
        n = len(ids)
        dense_fl = M.L * (M.attn_flops(n) + M.mlp_flops(n))
        for name, argv in checks:
            emb, fl, recs, _ = forward(M, ids, policy_for(M, name, argv, n))
            cos = float(np.dot(emb.double().numpy(), ref["embeddings"][j].astype(np.float64)) /
                        np.linalg.norm(ref["embeddings"][j].astype(np.float64)))
            worst = min(worst, cos)
            assert cos > 0.999999, (label, name, j, cos)
            assert fl == dense_fl, (fl, dense_fl)
            assert all(r["count"] == n - P for r in recs)
    print(f"  [{label}] dense / keep 1.0 / threshold 0 vs numpy_bert: min cosine {worst:.9f} "
          f"({len(texts)} texts x {len(checks)} runs)")
    return ref


def write_case(path, M, texts, name, argv):
    embs, fls, per_text = [], [], []
    for s in texts:
        ids = M.encode(s)
        pol = policy_for(M, name, argv, len(ids))
        emb, fl, recs, shift_ok = forward(M, ids, pol, check_shift=True)
        assert shift_ok
        embs.append(emb.numpy())
        fls.append(fl)
        per_text.append(recs)
    d = {"embeddings": np.stack(embs).astype(np.float32), "flops": np.array(fls, dtype=np.float64)}
    nsteps = len(per_text[0])
    counts, iters, fallbacks, near = [], [], [], 0
    for st in range(nsteps):
        kmax = max(r[st]["count"] for r in per_text)
        kept = np.full((len(texts), kmax), -1, dtype=np.int32)
        for j, recs in enumerate(per_text):
            kept[j, : recs[st]["count"]] = recs[st]["kept"]
        d[f"kept.{st}"] = kept
        d[f"count.{st}"] = np.array([r[st]["count"] for r in per_text], dtype=np.int32)
        counts.append([r[st]["count"] for r in per_text])
        near += sum(recs[st]["margins"].get("wpr_near_eps", 0) for recs in per_text)
        fallbacks.append(sum(recs[st]["margins"].get("fallback", 0) for recs in per_text))
        its = [it for recs in per_text for it in recs[st]["margins"].get("wpr_iters", [])]
        if its:
            iters.append([min(a for a, _, _ in its), max(b for _, b, _ in its), its[0][2]])
    save_np(d, str(path))
    os.chmod(path, 0o644)
    mm = min_margins(per_text)
    assert all(v >= MIN_MARGIN for v in mm.values()), mm
    extra = {}
    if iters:
        extra["wpr_iters"] = iters  # per step: [fewest, most iterations of any head, cap]
        extra["wpr_near_eps"] = near  # head stops within a factor 2 of eps (decisions checked at +-1 iteration)
    if name == "threshold":
        extra["fallbacks"] = fallbacks  # per step: texts where every row was under theta (top-1 kept)
    return pol.desc, counts, fmt_margins(mm), extra


def rel(p):
    return os.path.relpath(Path(p).resolve(), REPO)


def main():
    t0 = time.time()
    test = test_sentences()
    pool = test[:VOCAB_SENTENCES]

    print(f"tiny model {TINY_NAME} (seed {TINY_SEED}, vocabulary of the first {VOCAB_SENTENCES} test sentences)")
    make_tiny_model(pool)
    tiny = TextModel(TINY_DIR, rel(TINY_DIR))
    tiny_texts = choose_texts(tiny, pool, TINY_BANDS, TINY_CASES, "tiny")
    ref = dense_check(tiny, tiny_texts, "tiny")
    save_np(ref, str(TINY_DIR / "reference.safetensors"))
    for f in TINY_DIR.rglob("*"):
        if f.is_file():
            os.chmod(f, 0o644)

    print("all-MiniLM-L6-v2")
    minilm = TextModel(MINILM_DIR, rel(MINILM_DIR))
    minilm_texts = choose_texts(minilm, test, MINILM_BANDS, MINILM_CASES, "minilm")
    dense_check(minilm, minilm_texts, "minilm")

    TEXT_FIX.mkdir(parents=True, exist_ok=True)
    (TEXT_FIX / "prune-texts.json").write_text(json.dumps({"tiny": tiny_texts, "minilm": minilm_texts}, indent=2) + "\n")
    for f in TEXT_FIX.glob("prune-*.safetensors"):
        f.unlink()
    cases, used = [], set()
    print(f"{'case':24s} {'args':44s} counts per step (per text) | min margins")
    for label, M, texts, lst in (("tiny", tiny, tiny_texts, TINY_CASES), ("minilm", minilm, minilm_texts, MINILM_CASES)):
        lens = [len(M.encode(s)) for s in texts]
        print(f"-- {label}: token counts {lens}")
        for policy, argv in lst:
            name = pr.case_name(label, policy, argv, used)
            path = TEXT_FIX / f"prune-{name}.safetensors"
            desc, counts, mm, extra = write_case(path, M, texts, policy, argv)
            e = {"name": name, "model": M.rel, "texts": label, "policy": policy, "args": argv, "file": rel(path),
                 "schedule": desc, "counts": counts, "min_rel_margin": mm, **extra}
            cases.append(e)
            print(f"{name:24s} {' '.join(argv):44s} {counts} | {mm} {extra if extra else ''}")
    (TEXT_FIX / "prune-cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    total = sum(p.stat().st_size for p in TEXT_FIX.glob("prune-*")) + sum(
        p.stat().st_size for p in TINY_DIR.rglob("*") if p.is_file())
    print(f"{len(cases)} cases, fixtures {total / 1024:.0f} KiB, {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
