//! Reading `config.json` (timm or Hugging Face) and `preprocessor_config.json` into a [`ViTConfig`],
//! checked against what the weights themselves say.

use serde_json::Value;

use super::config::{Interpolation, Preprocess, ViTConfig};
use super::weights::{infer, Layout, Names, Tensors};
use crate::error::{Error, Result};

pub(super) fn parse_json(text: Option<&str>, model: &str, what: &str) -> Result<Option<Value>> {
    text.map(|s| {
        serde_json::from_str(s)
            .map_err(|e| Error::config(format!("{what} of {model}"), e.to_string()))
    })
    .transpose()
}

/// Read a positive integer field.
fn field_usize(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|x| x as usize)
}

fn image_size_of(v: &Value) -> Option<(usize, usize)> {
    match v {
        Value::Number(n) => n.as_u64().map(|s| (s as usize, s as usize)),
        Value::Array(a) if a.len() == 2 => Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)),
        _ => None,
    }
}

/// Head counts of the standard timm model names, for configs that do not state them.
fn heads_from_architecture(arch: &str) -> Option<usize> {
    let a = arch.to_lowercase();
    [
        ("tiny", 3),
        ("small", 6),
        ("medium", 8),
        ("base", 12),
        ("large", 16),
        ("huge", 16),
    ]
    .iter()
    .find(|(k, _)| a.contains(k))
    .map(|&(_, h)| h)
}

fn interpolation_from(v: &Value) -> Option<Interpolation> {
    match v {
        Value::String(s) => match s.to_lowercase().as_str() {
            "bicubic" => Some(Interpolation::Bicubic),
            "bilinear" => Some(Interpolation::Bilinear),
            "nearest" => Some(Interpolation::Nearest),
            "lanczos" => Some(Interpolation::Lanczos),
            _ => None,
        },
        // PIL resample codes, as Hugging Face image processors store them.
        Value::Number(n) => match n.as_u64()? {
            0 => Some(Interpolation::Nearest),
            1 => Some(Interpolation::Lanczos),
            2 => Some(Interpolation::Bilinear),
            3 => Some(Interpolation::Bicubic),
            _ => None,
        },
        _ => None,
    }
}

fn f32x3(v: &Value, key: &str, file: &str) -> Result<Option<[f32; 3]>> {
    let Some(a) = v.get(key) else {
        return Ok(None);
    };
    let vals: Option<Vec<f32>> = a
        .as_array()
        .and_then(|a| a.iter().map(|x| x.as_f64().map(|x| x as f32)).collect());
    match vals {
        Some(v) if v.len() == 3 && v.iter().all(|x| x.is_finite()) => Ok(Some([v[0], v[1], v[2]])),
        _ => Err(Error::config(
            file,
            format!("`{key}` must be a list of 3 finite numbers, not {a}"),
        )),
    }
}

/// Standard deviations divide the pixels: they must be positive.
fn positive_std(std: [f32; 3], key: &str, file: &str) -> Result<[f32; 3]> {
    if std.iter().all(|&s| s > 0.0) {
        Ok(std)
    } else {
        Err(Error::config(
            file,
            format!("`{key}` {std:?} must be positive"),
        ))
    }
}

pub(super) fn build_config(
    t: &Tensors,
    n: &Names,
    cfg: Option<&Value>,
    pre: Option<&Value>,
) -> Result<ViTConfig> {
    let w = infer(t, n)?;
    let cfg_file = if cfg.is_some() {
        format!("config.json of {}", t.file)
    } else {
        format!("{} (no config.json)", t.file)
    };
    let empty = Value::Null;
    let cfg_v = cfg.unwrap_or(&empty);
    // The config's own view of each dimension, by layout.
    let (args, pcfg) = match n.layout {
        Layout::Timm => (
            cfg_v.get("model_args").unwrap_or(&empty),
            cfg_v.get("pretrained_cfg").unwrap_or(&empty),
        ),
        Layout::HuggingFace => (cfg_v, &empty),
    };
    // The layout's own name for a field.
    let name_of = |timm: &'static str, hf: &'static str| match n.layout {
        Layout::Timm => timm,
        Layout::HuggingFace => hf,
    };
    let key = |timm: &'static str, hf: &'static str| field_usize(args, name_of(timm, hf));
    let check = |what: &str, stated: Option<usize>, actual: usize, tensor: &str| -> Result<()> {
        match stated {
            Some(s) if s != actual => Err(Error::config(
                &cfg_file,
                format!("{what} is {s}, but the weights have {actual} (tensor `{tensor}`)"),
            )),
            _ => Ok(()),
        }
    };
    let dims = [
        ("embed_dim", "hidden_size", w.embed_dim, n.cls()),
        (
            "depth",
            "num_hidden_layers",
            w.depth,
            format!("{}N.*", n.block_prefix()),
        ),
        ("patch_size", "patch_size", w.patch_size, n.patch("weight")),
        ("in_chans", "num_channels", w.in_chans, n.patch("weight")),
    ];
    for (timm, hf, actual, tensor) in dims {
        check(name_of(timm, hf), key(timm, hf), actual, &tensor)?;
    }
    check(
        "num_classes",
        field_usize(cfg_v, "num_classes"),
        w.num_classes,
        &format!("{}.weight", n.heads(w.distilled).0),
    )?;
    if n.layout == Layout::Timm {
        if let Some(r) = args.get("mlp_ratio").and_then(Value::as_f64) {
            let stated = (r * w.embed_dim as f64).round() as usize;
            check(
                "mlp_ratio * embed_dim",
                Some(stated),
                w.mlp_dim,
                "blocks.0.mlp.fc1.weight",
            )?;
        }
        if let Some(pool) = cfg_v.get("global_pool").and_then(Value::as_str) {
            if pool != "token" {
                return Err(Error::config(
                    &cfg_file,
                    format!(
                        "global_pool {pool:?} is not supported (only \"token\": the CLS token)"
                    ),
                ));
            }
        }
    } else {
        check(
            "intermediate_size",
            field_usize(args, "intermediate_size"),
            w.mlp_dim,
            &n.block(0, "intermediate.dense.weight"),
        )?;
        if let Some(act) = args.get("hidden_act").and_then(Value::as_str) {
            if act != "gelu" {
                return Err(Error::config(
                    &cfg_file,
                    format!("hidden_act {act:?} is not supported (only exact \"gelu\")"),
                ));
            }
        }
    }

    let prefix = if w.distilled { 2 } else { 1 };
    let num_patches = w.tokens.saturating_sub(prefix);
    let stated_size = match n.layout {
        Layout::Timm => args.get("img_size").and_then(image_size_of).or_else(|| {
            let s = pcfg.get("input_size")?.as_array()?;
            Some((s.get(1)?.as_u64()? as usize, s.get(2)?.as_u64()? as usize))
        }),
        Layout::HuggingFace => args.get("image_size").and_then(image_size_of),
    };
    let image_size = match stated_size {
        Some(s) => s,
        None => {
            let g = (num_patches as f64).sqrt().round() as usize;
            if g * g != num_patches {
                return Err(Error::config(
                    &cfg_file,
                    format!(
                        "image size not stated and {num_patches} patches are not a square grid"
                    ),
                ));
            }
            (g * w.patch_size, g * w.patch_size)
        }
    };
    const MAX_SIDE: usize = 1 << 16;
    if image_size.0 == 0 || image_size.1 == 0 || image_size.0 > MAX_SIDE || image_size.1 > MAX_SIDE
    {
        return Err(Error::config(
            &cfg_file,
            format!("image size {image_size:?} is outside 1..={MAX_SIDE} pixels"),
        ));
    }
    if image_size.0 % w.patch_size != 0 || image_size.1 % w.patch_size != 0 {
        return Err(Error::config(
            &cfg_file,
            format!(
                "image size {image_size:?} is not a multiple of the patch size {}",
                w.patch_size
            ),
        ));
    }
    let grid_tokens = (image_size.0 / w.patch_size) * (image_size.1 / w.patch_size) + prefix;
    if grid_tokens != w.tokens {
        return Err(Error::config(
            &cfg_file,
            format!(
                "image size {image_size:?} with patch {} gives {grid_tokens} tokens, but `{}` has {}",
                w.patch_size,
                n.pos(),
                w.tokens
            ),
        ));
    }

    let arch = cfg_v
        .get("architecture")
        .and_then(Value::as_str)
        .unwrap_or("");
    let num_heads = key("num_heads", "num_attention_heads")
        .or_else(|| heads_from_architecture(arch))
        .or_else(|| (w.embed_dim % 64 == 0).then_some(w.embed_dim / 64))
        .ok_or_else(|| {
            Error::config(
                &cfg_file,
                format!(
                    "the head count is not stated and embed_dim {} is not a multiple of 64",
                    w.embed_dim
                ),
            )
        })?;
    if num_heads == 0 || w.embed_dim % num_heads != 0 {
        return Err(Error::config(
            &cfg_file,
            format!(
                "embed_dim {} is not divisible by {num_heads} heads",
                w.embed_dim
            ),
        ));
    }
    let layer_norm_eps = match n.layout {
        Layout::Timm => 1e-6,
        Layout::HuggingFace => args
            .get("layer_norm_eps")
            .and_then(Value::as_f64)
            .unwrap_or(1e-12) as f32,
    };

    // Class names: HF id2label, or timm's label_names.
    let class_names = match n.layout {
        Layout::HuggingFace => args
            .get("id2label")
            .and_then(Value::as_object)
            .and_then(|m| {
                let mut v = vec![String::new(); w.num_classes];
                for (k, name) in m {
                    let i: usize = k.parse().ok()?;
                    *v.get_mut(i)? = name.as_str()?.to_string();
                }
                v.iter().all(|s| !s.is_empty()).then_some(v)
            }),
        Layout::Timm => cfg_v
            .get("label_names")
            .or_else(|| pcfg.get("label_names"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|v| v.len() == w.num_classes),
    };

    let preprocess = match n.layout {
        Layout::Timm => timm_preprocess(pcfg, image_size, &cfg_file)?,
        Layout::HuggingFace => hf_preprocess(
            pre,
            image_size,
            &format!("preprocessor_config.json of {}", t.file),
        )?,
    };

    Ok(ViTConfig {
        image_size,
        patch_size: w.patch_size,
        in_chans: w.in_chans,
        embed_dim: w.embed_dim,
        depth: w.depth,
        num_heads,
        mlp_dim: w.mlp_dim,
        num_classes: w.num_classes,
        distilled: w.distilled,
        layer_norm_eps,
        class_names,
        preprocess,
    })
}

fn timm_preprocess(pcfg: &Value, size: (usize, usize), file: &str) -> Result<Preprocess> {
    let mut p = Preprocess::imagenet(size.0);
    p.input_size = size;
    if pcfg.is_null() {
        return Ok(p);
    }
    if let Some(mode) = pcfg.get("crop_mode").and_then(Value::as_str) {
        if mode != "center" {
            return Err(Error::config(
                file,
                format!("crop_mode {mode:?} is not supported (only \"center\")"),
            ));
        }
    }
    if let Some(c) = pcfg.get("crop_pct").and_then(Value::as_f64) {
        if !(c > 0.0 && c <= 1.0) {
            return Err(Error::config(
                file,
                format!("crop_pct {c} is outside (0, 1]"),
            ));
        }
        p.crop_pct = c as f32;
    }
    read_resample_mean_std(&mut p, pcfg, ["interpolation", "mean", "std"], file)?;
    Ok(p)
}

/// Hugging Face image processors resize to `size` then (DeiT) center-crop `crop_size`; we express that
/// as crop_pct = crop / resize on the shorter side.
fn hf_preprocess(pre: Option<&Value>, size: (usize, usize), file: &str) -> Result<Preprocess> {
    let mut p = Preprocess {
        input_size: size,
        crop_pct: 1.0,
        interpolation: Interpolation::Bilinear,
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    let Some(pre) = pre else {
        return Ok(p);
    };
    let side = |v: Option<&Value>| -> Option<usize> {
        let v = v?;
        v.as_u64()
            .map(|x| x as usize)
            .or_else(|| field_usize(v, "height"))
            .or_else(|| field_usize(v, "shortest_edge"))
    };
    let resize = side(pre.get("size"));
    let crop = side(pre.get("crop_size"));
    let do_crop = pre
        .get("do_center_crop")
        .and_then(Value::as_bool)
        .unwrap_or(crop.is_some());
    if let (Some(r), Some(c), true) = (resize, crop, do_crop) {
        if c > r || c == 0 {
            return Err(Error::config(
                file,
                format!("crop_size {c} is larger than size {r}"),
            ));
        }
        p.crop_pct = c as f32 / r as f32;
    }
    read_resample_mean_std(&mut p, pre, ["resample", "image_mean", "image_std"], file)?;
    Ok(p)
}

/// Interpolation, mean and std, under the names each layout gives them.
fn read_resample_mean_std(
    p: &mut Preprocess,
    v: &Value,
    [interpolation, mean, std]: [&str; 3],
    file: &str,
) -> Result<()> {
    if let Some(i) = v.get(interpolation) {
        p.interpolation = interpolation_from(i)
            .ok_or_else(|| Error::config(file, format!("unknown {interpolation} {i}")))?;
    }
    if let Some(m) = f32x3(v, mean, file)? {
        p.mean = m;
    }
    if let Some(s) = f32x3(v, std, file)? {
        p.std = positive_std(s, std, file)?;
    }
    Ok(())
}
