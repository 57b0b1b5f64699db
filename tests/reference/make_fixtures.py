#!/usr/bin/env python3
"""Build tiny random ViT/DeiT models (timm + HF transformers) and write reference logits.

Writes, under tests/fixtures/:
  tiny-timm/                 timm VisionTransformer            (cls token)
  tiny-timm-distilled/       timm VisionTransformerDistilled   (cls + dist token, mean of heads)
  tiny-hf-vit/               transformers ViTForImageClassification
  tiny-hf-deit-distilled/    transformers DeiTForImageClassificationWithTeacher
  tiny-timm-deit3/           timm VisionTransformer as DeiT III: layer scale, no position for CLS
  tiny-timm-reg/             timm VisionTransformer with 4 register tokens and layer scale (DINOv2's shape)
  tiny-hf-dinov2/            transformers Dinov2Model: a headless backbone (reference: pooler_output)
  tiny-hf-dinov2-reg/        transformers Dinov2WithRegistersModel, 4 registers, run at 40 pixels by its
                             processor's crop while its position embedding is a 32-pixel grid (resampled)
  tiny-timm-gap/             timm VisionTransformer without a class token, average pooling and fc_norm
  tiny-timm-gap-cls/         timm VisionTransformer with a class token, average pooling and fc_norm (MAE-style)
  tiny-hf-siglip/            transformers SiglipVisionModel: no class token, tanh GELU, the attention-pooling
                             head (reference: pooler_output)
  processors/                a 173x131 crop of a real photo (PNG) and what four Hugging Face image processors
                             make of it (CLIP, SigLIP, DeiT, DINOv2: their resize rules, crops, interpolations)
  tiny-hf-clip/              transformers CLIPVisionModelWithProjection: LayerNorm before the blocks,
                             quick GELU, the projection (reference: image_embeds and pooler_output)
each with model.safetensors, config.json (+ preprocessor_config.json for HF) and
reference.safetensors = {input [3,3,H,W] f32 (already normalised), logits [3,C] f32}.

Everything is deterministic (fixed seeds); all weights are float32 and every parameter is
re-initialised with non-trivial random values so that a wrong transpose / missing bias shows.

Run: python3 tests/reference/make_fixtures.py [NAME ...]   (no name: all of them)
"""
import json
import math
import os
import sys
from pathlib import Path

import torch
import timm
import timm.layers
from timm.models.vision_transformer import VisionTransformer
from timm.models.deit import VisionTransformerDistilled
from safetensors.torch import save_file, load_file
import transformers
from transformers import (
    ViTConfig,
    ViTForImageClassification,
    DeiTConfig,
    DeiTForImageClassificationWithTeacher,
)

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# plain (non-fused) attention everywhere so that the reference is the textbook computation
timm.layers.set_fused_attn(False)
torch.set_grad_enabled(False)


def reinit_(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter with deterministic, clearly non-trivial values.

    - LayerNorm weight: 1 + 0.1*randn; LayerNorm bias: 0.1*randn
    - weight matrices / conv kernels: randn * gain/sqrt(fan_in) (gain 1, 2 for attention
      q/k so that softmax is visibly non-uniform)
    - biases: 0.1*randn
    - tokens (cls/dist) and position embeddings: 0.5*randn
    """
    g = torch.Generator().manual_seed(seed)
    ln_params = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            if mod.weight is not None:
                ln_params.add(id(mod.weight))
            if mod.bias is not None:
                ln_params.add(id(mod.bias))
    for name, p in model.named_parameters():
        shape = p.shape
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if id(p) in ln_params:
            val = (1.0 + 0.1 * r) if name.endswith("weight") else 0.1 * r
        elif p.dim() >= 2 and not any(k in name for k in ("token", "pos_embed", "position_embeddings")):
            fan_in = math.prod(shape[1:])
            gain = 2.0 if any(k in name for k in ("qkv", "query", "key", "q_proj", "k_proj")) else 1.0
            val = r * (gain / math.sqrt(fan_in))
        elif p.dim() == 1:
            val = 0.1 * r
        else:  # cls / dist tokens, position embeddings
            val = 0.5 * r
        p.copy_(val.to(p.dtype))
    for name, b in model.named_buffers():
        if b.is_floating_point():
            raise RuntimeError(f"unexpected float buffer {name}")


def make_input(seed: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, 3, h, w, generator=g, dtype=torch.float32)


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def save_reference(out: Path, x: torch.Tensor, logits, **extra: torch.Tensor) -> None:
    tensors = {"input": x.contiguous().float()}
    if logits is not None:
        tensors["logits"] = logits.contiguous().float()
    tensors.update({k: v.contiguous().float() for k, v in extra.items()})
    save_file(tensors, str(out / "reference.safetensors"))
    (out / "reference.safetensors").chmod(0o644)


def report(name: str, out: Path, logits: torch.Tensor) -> None:
    size = sum(f.stat().st_size for f in out.iterdir())
    print(
        f"{name}: logits {tuple(logits.shape)} max|logit|={logits.abs().max():.4f} "
        f"std={logits.std():.4f}  argmax={logits.argmax(-1).tolist()}  folder={size/1024:.1f} KiB"
    )
    assert size < 300 * 1024, f"{out} too large"
    assert logits.abs().max() > 0.5, f"{name}: degenerate logits"


def timm_disable_fused(model: torch.nn.Module) -> None:
    n = 0
    for m in model.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
            n += 1
    assert n > 0


def timm_config(arch, num_classes, num_features, model_args, img):
    return {
        "architecture": arch,
        "num_classes": num_classes,
        "num_features": num_features,
        "global_pool": model_args.get("global_pool", "token"),
        "model_args": model_args,
        "pretrained_cfg": {
            "input_size": [3, img, img],
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "num_classes": num_classes,
            "first_conv": "patch_embed.proj",
            "classifier": "head",
        },
    }


def check_roundtrip(model, path: Path):
    sd = load_file(str(path))
    ref = model.state_dict()
    for k, v in sd.items():
        assert v.dtype == torch.float32, (k, v.dtype)
        assert torch.equal(v, ref[k]), k


# --------------------------------------------------------------------------------------
def make_tiny_timm():
    out = FIXTURES / "tiny-timm"
    out.mkdir(parents=True, exist_ok=True)
    args = dict(img_size=40, patch_size=8, embed_dim=40, depth=2, num_heads=2, mlp_ratio=3.0, qkv_bias=True)
    torch.manual_seed(1)
    model = VisionTransformer(num_classes=10, **args).eval()
    timm_disable_fused(model)
    reinit_(model, seed=101)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    check_roundtrip(model, out / "model.safetensors")
    write_json(out / "config.json", timm_config("vit_tiny_test", 10, 40, args, 40))
    x = make_input(201, 40, 40)
    logits = model(x)
    # independent sanity: forward_features -> norm -> head on token 0
    feats = model.forward_features(x)
    assert torch.allclose(model.head(feats[:, 0]), logits)
    save_reference(out, x, logits)
    report("tiny-timm", out, logits)


def make_tiny_timm_distilled():
    out = FIXTURES / "tiny-timm-distilled"
    out.mkdir(parents=True, exist_ok=True)
    args = dict(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=3, mlp_ratio=2.0, qkv_bias=True)
    torch.manual_seed(2)
    model = VisionTransformerDistilled(num_classes=10, **args).eval()
    timm_disable_fused(model)
    assert model.distilled_training is False
    reinit_(model, seed=102)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    assert "dist_token" in sd and "head_dist.weight" in sd
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    check_roundtrip(model, out / "model.safetensors")
    write_json(out / "config.json", timm_config("deit_tiny_distilled_test", 10, 48, args, 32))
    x = make_input(202, 32, 32)
    logits = model(x)
    assert isinstance(logits, torch.Tensor)
    feats = model.forward_features(x)
    expect = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2
    assert torch.allclose(expect, logits, atol=1e-6), (expect - logits).abs().max()
    save_reference(out, x, logits)
    report("tiny-timm-distilled", out, logits)


def make_timm_variant(name, seed, img, extra):
    """A timm VisionTransformer with the architecture arguments `extra` (layer scale, registers, ...)."""
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    args = dict(img_size=img, patch_size=8, embed_dim=32, depth=3, num_heads=2, mlp_ratio=2.0, qkv_bias=True, **extra)
    torch.manual_seed(seed)
    model = VisionTransformer(num_classes=6, **args).eval()
    timm_disable_fused(model)
    reinit_(model, seed=100 + seed)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    check_roundtrip(model, out / "model.safetensors")
    write_json(out / "config.json", timm_config(f"vit_{name}_test", 6, 32, args, img))
    x = make_input(200 + seed, img, img)
    logits = model(x)
    # The pooled embedding: what the head reads (the final-normed class token, or the average of
    # the patch tokens after fc_norm).
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.allclose(model.head(pooled), logits, atol=1e-6)
    save_reference(out, x, logits, pooled=pooled)
    report(name, out, logits)
    return sd


def make_tiny_timm_deit3():
    # DeiT III: layer scale (ls1.gamma, ls2.gamma) and no_embed_class (the position embedding
    # covers the patches only; CLS gets none).
    sd = make_timm_variant("tiny-timm-deit3", 5, 32, dict(init_values=1e-6, no_embed_class=True))
    assert "blocks.0.ls1.gamma" in sd and sd["pos_embed"].shape[1] == 16


def make_tiny_timm_gap():
    sd = make_timm_variant("tiny-timm-gap", 12, 32, dict(class_token=False, global_pool="avg", fc_norm=True))
    assert "cls_token" not in sd and "fc_norm.weight" in sd and "norm.weight" not in sd


def make_tiny_timm_gap_cls():
    sd = make_timm_variant("tiny-timm-gap-cls", 13, 32, dict(global_pool="avg"))
    assert "cls_token" in sd and "fc_norm.weight" in sd


def make_tiny_timm_reg():
    # DINOv2 with registers as timm builds it: 4 register tokens after CLS, layer scale, and no
    # position for either.
    sd = make_timm_variant("tiny-timm-reg", 6, 24, dict(reg_tokens=4, init_values=1e-5, no_embed_class=True))
    assert sd["reg_token"].shape == (1, 4, 32) and sd["pos_embed"].shape[1] == 9


def hf_preprocessor(size, mean, std):
    return {
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": mean,
        "image_processor_type": "ViTImageProcessor",
        "image_std": std,
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"height": size, "width": size},
    }


def hf_save(model, out: Path, x: torch.Tensor):
    """save_pretrained (safetensors, original/classic tensor names) and verify by reloading."""
    model.save_pretrained(str(out))
    st = out / "model.safetensors"
    assert st.exists(), list(out.iterdir())
    sd = load_file(str(st))
    # transformers 5 renames modules internally (q_proj, ...) but saves the classic names
    assert len(sd) == len(model.state_dict()), (len(sd), len(model.state_dict()))
    for k, v in sd.items():
        assert v.dtype == torch.float32, (k, v.dtype)
        assert not any(s in k for s in ("pooler", "q_proj", "k_proj", "v_proj", "o_proj", "layers.")), k
    cls = type(model)
    reloaded = cls.from_pretrained(str(out), attn_implementation="eager").eval()
    assert torch.equal(reloaded(pixel_values=x).logits, model(pixel_values=x).logits)


def make_hf_dinov2(name, seed, registers, run):
    """A headless DINOv2 backbone as the hub ships them, its config at 32 pixels and its processor
    cropping `run` (as the hub's: 518 and 224); the reference is its pooler_output (the final-normed
    class token, what `zeroprune embed` gives) at `run` pixels, where transformers resamples the
    position embedding."""
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel
    out = FIXTURES / name
    out.mkdir(parents=True, exist_ok=True)
    common = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=32,
                  patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu", layerscale_value=1.0)
    if registers:
        cfg, cls = Dinov2WithRegistersConfig(num_register_tokens=registers, **common), Dinov2WithRegistersModel
    else:
        cfg, cls = Dinov2Config(**common), Dinov2Model
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    reinit_(model, seed=100 + seed)
    x = make_input(200 + seed, run, run)
    model.save_pretrained(str(out))
    sd = load_file(str(out / "model.safetensors"))
    assert "encoder.layer.0.layer_scale1.lambda1" in sd and "encoder.layer.0.attention.attention.query.weight" in sd, list(sd)
    assert sd["embeddings.position_embeddings"].shape[1] == 17
    reloaded = cls.from_pretrained(str(out), attn_implementation="eager").eval()
    pooled = model(pixel_values=x).pooler_output
    assert torch.equal(reloaded(pixel_values=x).pooler_output, pooled)
    assert torch.allclose(pooled, model(pixel_values=x).last_hidden_state[:, 0])
    write_json(out / "preprocessor_config.json", {
        "crop_size": {"height": run, "width": run}, "do_center_crop": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD,
        "image_processor_type": "BitImageProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"shortest_edge": 2 * run},
    })
    save_reference(out, x, None, pooled=pooled)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"{name}: pooled {tuple(pooled.shape)} std={pooled.std():.4f} folder={size/1024:.1f} KiB")
    assert size < 300 * 1024 and pooled.std() > 0.1


def make_tiny_hf_dinov2():
    make_hf_dinov2("tiny-hf-dinov2", 7, 0, 32)


def make_tiny_hf_dinov2_reg():
    make_hf_dinov2("tiny-hf-dinov2-reg", 8, 4, 40)


def make_tiny_hf_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    out = FIXTURES / "tiny-hf-clip"
    out.mkdir(parents=True, exist_ok=True)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, projection_dim=24, hidden_act="quick_gelu")
    cfg._attn_implementation = "eager"
    torch.manual_seed(9)
    model = CLIPVisionModelWithProjection(cfg).eval()
    reinit_(model, seed=109)
    x = make_input(209, 32, 32)
    model.save_pretrained(str(out))
    sd = load_file(str(out / "model.safetensors"))
    assert "vision_model.pre_layrnorm.weight" in sd and "visual_projection.weight" in sd, list(sd)
    assert "vision_model.embeddings.patch_embedding.bias" not in sd
    o = model(pixel_values=x)
    reloaded = CLIPVisionModelWithProjection.from_pretrained(str(out), attn_implementation="eager").eval()
    assert torch.equal(reloaded(pixel_values=x).image_embeds, o.image_embeds)
    pooled = o.last_hidden_state[:, 0]
    pooled = model.vision_model.post_layernorm(pooled)
    assert torch.allclose(model.visual_projection(pooled), o.image_embeds, atol=1e-6)
    write_json(out / "preprocessor_config.json", {
        "crop_size": {"height": 32, "width": 32}, "do_center_crop": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "image_processor_type": "CLIPImageProcessor",
        "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": 32},
    })
    save_reference(out, x, None, pooled=pooled, embedding=o.image_embeds)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"tiny-hf-clip: image_embeds {tuple(o.image_embeds.shape)} std={o.image_embeds.std():.4f} folder={size/1024:.1f} KiB")
    assert size < 300 * 1024 and o.image_embeds.std() > 0.1


def make_tiny_hf_siglip():
    from transformers import SiglipVisionConfig, SiglipVisionModel
    out = FIXTURES / "tiny-hf-siglip"
    out.mkdir(parents=True, exist_ok=True)
    cfg = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=32, patch_size=8)
    cfg._attn_implementation = "eager"
    torch.manual_seed(10)
    model = SiglipVisionModel(cfg).eval()
    reinit_(model, seed=110)
    # The probe and the pooling head's attention: as non-trivial as the rest.
    g = torch.Generator().manual_seed(210)
    model.head.probe.copy_(0.5 * torch.randn(model.head.probe.shape, generator=g))
    x = make_input(210, 32, 32)
    model.save_pretrained(str(out))
    sd = load_file(str(out / "model.safetensors"))
    assert any(k.endswith("head.probe") for k in sd) and not any("class_embedding" in k for k in sd), list(sd)
    o = model(pixel_values=x)
    reloaded = SiglipVisionModel.from_pretrained(str(out), attn_implementation="eager").eval()
    assert torch.equal(reloaded(pixel_values=x).pooler_output, o.pooler_output)
    write_json(out / "preprocessor_config.json", {
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5], "image_processor_type": "SiglipImageProcessor", "resample": 2,
        "rescale_factor": 1 / 255, "size": {"height": 32, "width": 32},
    })
    save_reference(out, x, None, pooled=o.pooler_output)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"tiny-hf-siglip: pooled {tuple(o.pooler_output.shape)} std={o.pooler_output.std():.4f} folder={size/1024:.1f} KiB")
    assert size < 300 * 1024 and o.pooler_output.std() > 0.1


def make_processors():
    """Four processors' outputs on one non-square photo (odd margins), at sizes a 32-pixel model
    takes: the preprocessing each model's preprocessor_config.json asks for, as transformers runs it."""
    import numpy as np
    from PIL import Image
    import transformers as tf
    out = FIXTURES / "processors"
    out.mkdir(parents=True, exist_ok=True)
    photo = REPO.parent / "shared" / "data" / "imagenet-samples-400" / "n01514859_hen.JPEG"
    img = Image.open(photo).convert("RGB")
    img = img.crop((40, 30, 40 + 173, 30 + 131))
    img.save(out / "photo.png")
    img = Image.open(out / "photo.png").convert("RGB")
    clip_mean, clip_std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    # transformers 5 has two backends per processor: Pillow (`...Pil`, what zeroprune's resize
    # reproduces) and torchvision (the default, whose antialiased resize differs from Pillow by a
    # level here and there). Both are kept: the first is matched, the second bounded.
    cases = {
        "clip": ("CLIPImageProcessor", dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                                            resample=3, image_mean=clip_mean, image_std=clip_std)),
        "siglip": ("SiglipImageProcessor", dict(size={"height": 32, "width": 32}, resample=2,
                                                image_mean=[0.5] * 3, image_std=[0.5] * 3)),
        "deit": ("DeiTImageProcessor", dict(size={"height": 41, "width": 39}, crop_size={"height": 32, "width": 32},
                                            do_center_crop=True, resample=3, image_mean=IMAGENET_MEAN,
                                            image_std=IMAGENET_STD)),
        "dinov2": ("BitImageProcessor", dict(size={"shortest_edge": 37}, crop_size={"height": 32, "width": 32},
                                             do_center_crop=True, resample=3, image_mean=IMAGENET_MEAN,
                                             image_std=IMAGENET_STD)),
    }
    tensors = {}
    for name, (cls, kwargs) in cases.items():
        d = out / name
        d.mkdir(exist_ok=True)
        getattr(tf, cls)(**kwargs).save_pretrained(str(d))
        for key, proc in ((name, getattr(tf, cls + "Pil")(**kwargs)), (name + ".torchvision", getattr(tf, cls)(**kwargs))):
            x = torch.as_tensor(proc(images=img, return_tensors="np")["pixel_values"][0])
            assert x.shape == (3, 32, 32), (key, x.shape)
            tensors[key] = x.float().contiguous()
            print(f"processors/{key}: {tuple(x.shape)} mean={x.mean():.4f}")
    save_file(tensors, str(out / "reference.safetensors"))
    (out / "reference.safetensors").chmod(0o644)


def make_tiny_hf_vit():
    out = FIXTURES / "tiny-hf-vit"
    out.mkdir(parents=True, exist_ok=True)
    n = 7
    cfg = ViTConfig(
        hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        image_size=32, patch_size=8, num_channels=3, num_labels=n, qkv_bias=True,
        layer_norm_eps=1e-12, hidden_act="gelu",
        id2label={i: f"class-{i}" for i in range(n)},
        label2id={f"class-{i}": i for i in range(n)},
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(3)
    model = ViTForImageClassification(cfg).eval()
    assert model.vit.pooler is None
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    reinit_(model, seed=103)
    x = make_input(203, 32, 32)
    hf_save(model, out, x)
    mean, std = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
    write_json(out / "preprocessor_config.json", hf_preprocessor(32, mean, std))
    logits = model(pixel_values=x).logits
    save_reference(out, x, logits)
    report("tiny-hf-vit", out, logits)


def make_tiny_hf_deit_distilled():
    out = FIXTURES / "tiny-hf-deit-distilled"
    out.mkdir(parents=True, exist_ok=True)
    n = 5
    cfg = DeiTConfig(
        hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        image_size=24, patch_size=8, num_channels=3, num_labels=n, qkv_bias=True,
        layer_norm_eps=1e-12, hidden_act="gelu",
        id2label={i: f"class-{i}" for i in range(n)},
        label2id={f"class-{i}": i for i in range(n)},
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(4)
    model = DeiTForImageClassificationWithTeacher(cfg).eval()
    assert model.deit.pooler is None
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    reinit_(model, seed=104)
    x = make_input(204, 24, 24)
    hf_save(model, out, x)
    write_json(out / "preprocessor_config.json", hf_preprocessor(24, IMAGENET_MEAN, IMAGENET_STD))
    o = model(pixel_values=x)
    logits = o.logits
    assert torch.allclose(logits, (o.cls_logits + o.distillation_logits) / 2, atol=1e-6)
    save_reference(out, x, logits)
    report("tiny-hf-deit-distilled", out, logits)


def main():
    FIXTURES.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, timm {timm.__version__}, transformers {transformers.__version__}")
    makers = {
        "tiny-timm": make_tiny_timm,
        "tiny-timm-distilled": make_tiny_timm_distilled,
        "tiny-hf-vit": make_tiny_hf_vit,
        "tiny-hf-deit-distilled": make_tiny_hf_deit_distilled,
        "tiny-timm-deit3": make_tiny_timm_deit3,
        "tiny-timm-reg": make_tiny_timm_reg,
        "tiny-timm-gap": make_tiny_timm_gap,
        "tiny-timm-gap-cls": make_tiny_timm_gap_cls,
        "tiny-hf-dinov2": make_tiny_hf_dinov2,
        "tiny-hf-dinov2-reg": make_tiny_hf_dinov2_reg,
        "tiny-hf-clip": make_tiny_hf_clip,
        "tiny-hf-siglip": make_tiny_hf_siglip,
        "processors": make_processors,
    }
    for name in sys.argv[1:] or makers:
        makers[name]()
    for d in FIXTURES.glob("tiny-*"):
        for f in d.iterdir():
            f.chmod(0o644)
    total = sum(f.stat().st_size for d in FIXTURES.glob("tiny-*") for f in d.iterdir())
    print(f"total tiny fixtures: {total/1024:.1f} KiB")


if __name__ == "__main__":
    main()
