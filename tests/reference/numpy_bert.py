#!/usr/bin/env python3
"""NumPy reference for BERT-family text encoders (no torch): writes the fixtures of the text tests.

A from-scratch BERT forward pass in float64, following Hugging Face's BertModel exactly:
  x = LN(word[ids] + position[0..T) + token_type[0]);
  each layer: x = LN1(x + dense(attn(x))), x = LN2(x + out(gelu(inter(x)))), exact erf GELU;
  padded keys get probability 0 (HF adds the most negative float to their logits).
Pooling as sentence-transformers does it: the mean of the hidden states over the non-padding tokens, then
L2 normalisation; a sequence classifier takes tanh(pooler(x[CLS])) into its classifier.
Tokenisation is the Python `tokenizers` package reading the same tokenizer.json, fixed padding switched off,
truncation at the model's own max_seq_length / max_position_embeddings.

Writes (run from the repo root; needs numpy, safetensors, tokenizers):
  tests/fixtures/tiny-bert/             BertModel names, config.json, a 160-word tokenizer.json, reference.safetensors
  tests/fixtures/tiny-bert-st/          the same weights as a sentence-transformers folder (modules.json, pooling, max_seq_length 12)
  tests/fixtures/tiny-bert-cls/         BertForSequenceClassification (`bert.` prefix, pooler, classifier, id2label)
  tests/fixtures/text/minilm-reference.safetensors   all-MiniLM-L6-v2 on real sentences of different lengths
  tests/fixtures/text/sentences.json    those sentences (and the tiny models' sentences)
reference.safetensors holds `ids` [B, T] i32 (0-padded), `lengths` [B] i32, `hidden` [B, T, D] f32 (last
layer; padded rows are 0), `embeddings` [B, D] f32 (mean-pooled and normalised), and `logits` [B, C] for the
classifier. Rerun: python3 tests/reference/numpy_bert.py
"""
import json
import math
import os
import sys

import numpy as np
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
FIX = os.path.join(REPO, "tests", "fixtures")
_erf = np.vectorize(math.erf)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def bert_forward(t, cfg, ids, lengths, prefix=""):
    """Last hidden states [B, T, D] (float64) of a padded batch."""
    g = lambda name: t[prefix + name].astype(np.float64)
    eps = cfg["layer_norm_eps"]
    heads = cfg["num_attention_heads"]
    b, n = ids.shape
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.position_embeddings.weight")[:n][None]
    x = x + g("embeddings.token_type_embeddings.weight")[0][None, None]
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    d = x.shape[-1]
    dh = d // heads
    valid = np.arange(n)[None, :] < lengths[:, None]  # [B, T]
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        lin = lambda h, name: h @ g(p + name + ".weight").T + g(p + name + ".bias")
        q = lin(x, "attention.self.query").reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
        k = lin(x, "attention.self.key").reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
        v = lin(x, "attention.self.value").reshape(b, n, heads, dh).transpose(0, 2, 1, 3)
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh)
        s = np.where(valid[:, None, None, :], s, -np.inf)
        s = s - s.max(-1, keepdims=True)
        e = np.exp(s)
        probs = e / e.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        x = layer_norm(x + lin(ctx, "attention.output.dense"),
                       g(p + "attention.output.LayerNorm.weight"), g(p + "attention.output.LayerNorm.bias"), eps)
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(x + lin(h, "output.dense"),
                       g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
    return np.where(valid[:, :, None], x, 0.0)


def mean_pool(hidden, lengths):
    valid = (np.arange(hidden.shape[1])[None, :] < lengths[:, None]).astype(np.float64)
    pooled = (hidden * valid[:, :, None]).sum(1) / valid.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=-1, keepdims=True)


def tokenize(tokenizer_path, texts, max_len):
    tok = Tokenizer.from_file(tokenizer_path)
    tok.no_padding()
    tok.enable_truncation(max_length=max_len)
    enc = [tok.encode(s) for s in texts]
    lengths = np.array([len(e.ids) for e in enc], dtype=np.int64)
    ids = np.zeros((len(texts), lengths.max()), dtype=np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
    return ids, lengths


def reference(t, cfg, tokenizer_path, texts, max_len, prefix="", classifier=False):
    ids, lengths = tokenize(tokenizer_path, texts, max_len)
    hidden = bert_forward(t, cfg, ids, lengths, prefix)
    out = {
        "ids": ids.astype(np.int32),
        "lengths": lengths.astype(np.int32),
        "hidden": hidden.astype(np.float32),
        "embeddings": mean_pool(hidden, lengths).astype(np.float32),
    }
    if classifier:
        g = lambda name: t[name].astype(np.float64)
        pooled = np.tanh(hidden[:, 0] @ g("bert.pooler.dense.weight").T + g("bert.pooler.dense.bias"))
        out["logits"] = (pooled @ g("classifier.weight").T + g("classifier.bias")).astype(np.float32)
    return out


# ---- tiny random models -------------------------------------------------------------------------

def tiny_tokenizer(path, words):
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = specials + words + letters + ["##" + c for c in letters] + list(".,'!?-")
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tok.save(path)
    return len(vocab)


def tiny_weights(rng, vocab, d, layers, inter, positions, prefix=""):
    t = {}
    def mat(name, out, inp, scale=1.0):
        t[prefix + name + ".weight"] = (rng.standard_normal((out, inp)) * scale / math.sqrt(inp)).astype(np.float32)
        t[prefix + name + ".bias"] = (0.1 * rng.standard_normal(out)).astype(np.float32)
    def norm(name):
        t[prefix + name + ".weight"] = (1 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        t[prefix + name + ".bias"] = (0.1 * rng.standard_normal(d)).astype(np.float32)
    t[prefix + "embeddings.word_embeddings.weight"] = (0.5 * rng.standard_normal((vocab, d))).astype(np.float32)
    t[prefix + "embeddings.position_embeddings.weight"] = (0.5 * rng.standard_normal((positions, d))).astype(np.float32)
    t[prefix + "embeddings.token_type_embeddings.weight"] = (0.5 * rng.standard_normal((2, d))).astype(np.float32)
    norm("embeddings.LayerNorm")
    for i in range(layers):
        p = f"encoder.layer.{i}."
        mat(p + "attention.self.query", d, d, 2.0)
        mat(p + "attention.self.key", d, d, 2.0)
        mat(p + "attention.self.value", d, d)
        mat(p + "attention.output.dense", d, d)
        norm(p + "attention.output.LayerNorm")
        mat(p + "intermediate.dense", inter, d)
        mat(p + "output.dense", d, inter)
        norm(p + "output.LayerNorm")
    mat("pooler.dense", d, d)
    return t


def bert_config(vocab, d, layers, heads, inter, positions, arch="BertModel", **extra):
    return {"architectures": [arch], "model_type": "bert", "vocab_size": vocab, "hidden_size": d,
            "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": inter,
            "hidden_act": "gelu", "max_position_embeddings": positions, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "pad_token_id": 0, **extra}


def write_folder(name, tensors, cfg, tokenizer_src, ref, extra_files=None):
    out = os.path.join(FIX, name)
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(tokenizer_src) as src, open(os.path.join(out, "tokenizer.json"), "w") as dst:
        dst.write(src.read())
    save_file(ref, os.path.join(out, "reference.safetensors"))
    for rel, content in (extra_files or {}).items():
        p = os.path.join(out, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            json.dump(content, f, indent=2)


def main():
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(SHARED, "data/sentence-polarity/sentences.tsv"))][1:]
    test = [r[2] for r in rows if r[0] == "test"]
    # Real sentences of different lengths (shortest, longest and between), in one padded batch.
    by_len = sorted(test, key=len)
    real = [by_len[0], by_len[len(by_len) // 4], by_len[len(by_len) // 2], by_len[-1], test[0], test[1]]
    tiny_texts = [real[0], "a triumph, relentless and beautiful!", real[2], real[3]]

    words = sorted({w for s in test[:200] for w in s.lower().replace(",", " ").split() if w.isalpha()})[:160]
    tmp_tok = os.path.join(FIX, "tiny-bert-tokenizer.json")
    os.makedirs(FIX, exist_ok=True)
    vocab = tiny_tokenizer(tmp_tok, words)
    d, layers, heads, inter, positions = 32, 2, 4, 64, 64
    rng = np.random.default_rng(20261204)
    t = tiny_weights(rng, vocab, d, layers, inter, positions)
    cfg = bert_config(vocab, d, layers, heads, inter, positions)
    write_folder("tiny-bert", t, cfg, tmp_tok, reference(t, cfg, tmp_tok, tiny_texts, positions))

    # The same weights as a sentence-transformers folder that truncates at 12 tokens.
    st_files = {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
        "1_Pooling/config.json": {"word_embedding_dimension": d, "pooling_mode_cls_token": False,
                                  "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                                  "pooling_mode_mean_sqrt_len_tokens": False},
        "sentence_bert_config.json": {"max_seq_length": 12, "do_lower_case": False},
    }
    write_folder("tiny-bert-st", t, cfg, tmp_tok, reference(t, cfg, tmp_tok, tiny_texts, 12), st_files)

    # A sequence classifier: `bert.` prefix, pooler and classifier, two labels.
    rng = np.random.default_rng(20261205)
    tc = tiny_weights(rng, vocab, d, layers, inter, positions, prefix="bert.")
    tc["classifier.weight"] = (rng.standard_normal((2, d)) / math.sqrt(d)).astype(np.float32)
    tc["classifier.bias"] = (0.1 * rng.standard_normal(2)).astype(np.float32)
    cfgc = bert_config(vocab, d, layers, heads, inter, positions, arch="BertForSequenceClassification",
                       id2label={"0": "negative", "1": "positive"}, label2id={"negative": 0, "positive": 1})
    write_folder("tiny-bert-cls", tc, cfgc, tmp_tok,
                 reference(tc, cfgc, tmp_tok, tiny_texts, positions, prefix="bert.", classifier=True))
    os.remove(tmp_tok)

    # all-MiniLM-L6-v2 on real sentences (max_seq_length 256 from sentence_bert_config.json).
    m = os.path.join(SHARED, "models/all-minilm-l6-v2")
    mt = load_file(os.path.join(m, "model.safetensors"))
    mcfg = json.load(open(os.path.join(m, "config.json")))
    ref = reference(mt, mcfg, os.path.join(m, "tokenizer.json"), real, 256)
    del ref["hidden"]
    os.makedirs(os.path.join(FIX, "text"), exist_ok=True)
    save_file(ref, os.path.join(FIX, "text", "minilm-reference.safetensors"))
    with open(os.path.join(FIX, "text", "sentences.json"), "w") as f:
        json.dump({"minilm": real, "tiny": tiny_texts}, f, indent=2)
    print("lengths (MiniLM):", ref["lengths"].tolist())
    print("wrote", ", ".join(["tiny-bert", "tiny-bert-st", "tiny-bert-cls", "text/"]))


if __name__ == "__main__":
    sys.exit(main())
