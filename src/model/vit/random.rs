//! Random weights in the shape of a published ViT / DeiT: speed needs no trained weights, so
//! `bench` measures DeiT-Small and DeiT-Base without downloading them (`--model random:deit-small`).
//! The tensors go through the ordinary loader (timm's names and config), so the model is checked
//! like any file.

use safetensors::tensor::{Dtype, TensorView};

use super::{ConfigFiles, ModelWeights};
use crate::error::{Error, Result};

/// The shapes `random:NAME` knows: (name, width, heads); all have 12 blocks, 16-pixel patches,
/// 224-pixel images, an MLP 4x as wide and 1000 classes, like timm's `deit_*_patch16_224`.
pub const SHAPES: &[(&str, usize, usize)] = &[
    ("deit-tiny", 192, 3),
    ("deit-small", 384, 6),
    ("deit-base", 768, 12),
];

/// A model of the named shape with seeded random weights (uniform in +-0.02, LayerNorms at 1 and
/// 0, biases 0).
pub fn random_model(name: &str) -> Result<ModelWeights> {
    let &(_, d, heads) = SHAPES.iter().find(|s| s.0 == name).ok_or_else(|| {
        let known: Vec<_> = SHAPES.iter().map(|s| s.0).collect();
        Error::param(
            "--model",
            format!(
                "unknown random model 'random:{name}'; known: random:{}",
                known.join(", random:")
            ),
        )
    })?;
    let (depth, patch, img, classes) = (12usize, 16usize, 224usize, 1000usize);
    let tokens = (img / patch).pow(2) + 1;
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ d as u64;
    let mut uniform = move |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                // xorshift64*: reproducible and fast; the values only need to be finite and small.
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                let r =
                    (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
                (r - 0.5) * 0.04
            })
            .collect()
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add =
        |name: String, shape: Vec<usize>, data: Vec<f32>| tensors.push((name, shape, data));
    let ones = |n: usize| vec![1.0f32; n];
    let zeros = |n: usize| vec![0.0f32; n];
    add("cls_token".into(), vec![1, 1, d], uniform(d));
    add("pos_embed".into(), vec![1, tokens, d], uniform(tokens * d));
    add(
        "patch_embed.proj.weight".into(),
        vec![d, 3, patch, patch],
        uniform(d * 3 * patch * patch),
    );
    add("patch_embed.proj.bias".into(), vec![d], zeros(d));
    for i in 0..depth {
        let b = format!("blocks.{i}");
        add(format!("{b}.norm1.weight"), vec![d], ones(d));
        add(format!("{b}.norm1.bias"), vec![d], zeros(d));
        add(
            format!("{b}.attn.qkv.weight"),
            vec![3 * d, d],
            uniform(3 * d * d),
        );
        add(format!("{b}.attn.qkv.bias"), vec![3 * d], zeros(3 * d));
        add(format!("{b}.attn.proj.weight"), vec![d, d], uniform(d * d));
        add(format!("{b}.attn.proj.bias"), vec![d], zeros(d));
        add(format!("{b}.norm2.weight"), vec![d], ones(d));
        add(format!("{b}.norm2.bias"), vec![d], zeros(d));
        add(
            format!("{b}.mlp.fc1.weight"),
            vec![4 * d, d],
            uniform(4 * d * d),
        );
        add(format!("{b}.mlp.fc1.bias"), vec![4 * d], zeros(4 * d));
        add(
            format!("{b}.mlp.fc2.weight"),
            vec![d, 4 * d],
            uniform(4 * d * d),
        );
        add(format!("{b}.mlp.fc2.bias"), vec![d], zeros(d));
    }
    add("norm.weight".into(), vec![d], ones(d));
    add("norm.bias".into(), vec![d], zeros(d));
    add("head.weight".into(), vec![classes, d], uniform(classes * d));
    add("head.bias".into(), vec![classes], zeros(classes));

    let views = tensors
        .iter()
        .map(|(n, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map_err(|e| Error::Safetensors {
                    file: format!("random:{name}"),
                    reason: format!("tensor {n}: {e}"),
                })?;
            Ok((n.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, None).map_err(|e| Error::Safetensors {
        file: format!("random:{name}"),
        reason: e.to_string(),
    })?;
    let config = format!(
        r#"{{"architecture": "random_{name}", "num_classes": {classes}, "global_pool": "token",
            "model_args": {{"img_size": {img}, "patch_size": {patch}, "embed_dim": {d}, "depth": {depth},
                            "num_heads": {heads}, "mlp_ratio": 4.0, "qkv_bias": true}},
            "pretrained_cfg": {{"input_size": [3, {img}, {img}], "interpolation": "bicubic",
                                "crop_pct": 0.875, "crop_mode": "center",
                                "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}}}"#
    );
    ModelWeights::from_bytes(
        &format!("random:{name}"),
        &bytes,
        ConfigFiles {
            config: Some(&config),
            preprocessor: None,
        },
    )
}
