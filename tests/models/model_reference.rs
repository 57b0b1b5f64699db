//! The whole model against PyTorch references (timm and Hugging Face transformers) on tiny random
//! models: `tests/reference/make_fixtures.py` wrote the weights, inputs and logits.

use crate::common::{fixture, gpu, max_rel_err, read_tensor};
use zeroprune::gpu::kernel::Elem;
use zeroprune::model::Precision;
use zeroprune::prune::Pruning;
use zeroprune::{ModelWeights, Session};

/// f32 on the GPU against f32 PyTorch: the logits agree to this fraction of the largest logit.
const TOL: f32 = 1e-4;

fn check(name: &str) {
    let dir = fixture(name);
    let weights = ModelWeights::load(&dir).unwrap();
    let (shape, input) = read_tensor(&dir.join("reference.safetensors"), "input");
    let (_, want) = read_tensor(&dir.join("reference.safetensors"), "logits");
    let mut session = Session::new(gpu(), &weights).unwrap();
    let got: Vec<f32> = session.run(&input, &Pruning::dense()).unwrap().logits();
    let err = max_rel_err(&got, &want);
    eprintln!("{name}: batch {} max relative error {err:.2e}", shape[0]);
    assert!(
        err < TOL,
        "{name}: logits differ from PyTorch by {err} (> {TOL})"
    );
    // One image at a time gives the same logits as the batch.
    let per = input.len() / shape[0];
    let single: Vec<f32> = session
        .run(&input[per..2 * per], &Pruning::dense())
        .unwrap()
        .logits();
    let classes = want.len() / shape[0];
    assert!(max_rel_err(&single, &want[classes..2 * classes]) < TOL);
    // f16 storage (weights and GEMM-only activations as halves, f32 sums) against the same f32
    // PyTorch logits: an f16 rounding per stored value, so a looser bound.
    if gpu().has_f16() {
        let mut half = Session::with_precision(gpu(), &weights, Precision::F16).unwrap();
        assert_eq!(half.storage(), Elem::F16);
        let got: Vec<f32> = half.run(&input, &Pruning::dense()).unwrap().logits();
        let err = max_rel_err(&got, &want);
        eprintln!("{name} f16: max relative error {err:.2e}");
        assert!(
            err < TOL_F16,
            "{name}: f16 logits differ from PyTorch by {err}"
        );
    }
}

/// f16 storage against f32 PyTorch.
const TOL_F16: f32 = 1e-2;

#[test]
fn timm_vit_matches_pytorch() {
    check("tiny-timm");
}

#[test]
fn timm_distilled_deit_matches_pytorch() {
    check("tiny-timm-distilled");
}

#[test]
fn hf_vit_matches_transformers() {
    check("tiny-hf-vit");
}

#[test]
fn hf_distilled_deit_matches_transformers() {
    check("tiny-hf-deit-distilled");
}

/// DeiT III's shape: layer scale on both residual branches, no position for the class token.
#[test]
fn timm_layer_scale_matches_pytorch() {
    check("tiny-timm-deit3");
}

/// DINOv2's shape as timm builds it: four register tokens after CLS, layer scale, positions for
/// the patches only.
#[test]
fn timm_registers_match_pytorch() {
    let w = ModelWeights::load(&fixture("tiny-timm-reg")).unwrap();
    assert_eq!((w.config.registers, w.config.num_prefix_tokens()), (4, 5));
    check("tiny-timm-reg");
}

/// The dense run of fixture `name`'s reference input: its embeddings, checked against the
/// fixture's tensor `tensor` (PyTorch's pooled or projected output) to [`TOL`], and its outputs.
fn check_embedding(name: &str, tensor: &str) -> Vec<zeroprune::ImageOutput> {
    let dir = fixture(name);
    let weights = ModelWeights::load(&dir).unwrap();
    let (_, input) = read_tensor(&dir.join("reference.safetensors"), "input");
    let (_, want) = read_tensor(&dir.join("reference.safetensors"), tensor);
    let mut session = Session::new(gpu(), &weights).unwrap();
    let out = session.run(&input, &Pruning::dense()).unwrap().items;
    let got: Vec<f32> = out.iter().flat_map(|o| o.embedding.clone()).collect();
    let err = max_rel_err(&got, &want);
    eprintln!("{name}: {tensor} max relative error {err:.2e}");
    assert!(err < TOL, "{name}: {tensor} differs from PyTorch by {err}");
    out
}

/// The pooled embedding (`zeroprune embed` of an image model) is what timm's head reads,
/// `forward_head(forward_features(x), pre_logits=True)`: the final-normed class token, or the mean
/// of the patch tokens after `fc_norm`.
#[test]
fn pooled_embeddings_match_pytorch() {
    for name in [
        "tiny-timm-deit3",
        "tiny-timm-reg",
        "tiny-timm-gap",
        "tiny-timm-gap-cls",
    ] {
        check_embedding(name, "pooled");
    }
}

/// Hugging Face's DINOv2 backbones (`Dinov2Model`, `Dinov2WithRegistersModel`, no classifier):
/// the pooled embedding is transformers' `pooler_output`, and there are no logits.
#[test]
fn hf_dinov2_backbones_match_transformers() {
    for (name, registers) in [("tiny-hf-dinov2", 0), ("tiny-hf-dinov2-reg", 4)] {
        let dir = fixture(name);
        let weights = ModelWeights::load(&dir).unwrap();
        let c = &weights.config;
        assert_eq!(
            (c.registers, c.num_classes, c.layer_norm_eps),
            (registers, 0, 1e-6)
        );
        assert!(weights.head.is_none());
        let out = check_embedding(name, "pooled");
        assert!(out.iter().all(|o| o.logits.is_empty()));
    }
}

/// Hugging Face's CLIP image tower (`CLIPVisionModelWithProjection`): a LayerNorm over every token
/// before the blocks, quick GELU, no patch bias, the class embedding and position table as 1-d
/// and 2-d tensors; the embedding is transformers' `image_embeds` (the projected, post-normed class
/// token).
#[test]
fn hf_clip_vision_tower_matches_transformers() {
    let dir = fixture("tiny-hf-clip");
    let weights = ModelWeights::load(&dir).unwrap();
    let c = &weights.config;
    assert!(c.pre_norm && weights.head.is_none());
    assert_eq!(c.activation, zeroprune::gpu::kernels::Activation::QuickGelu);
    assert_eq!(
        (c.projection_dim, c.embedding_dim(), c.layer_norm_eps),
        (Some(24), 24, 1e-5)
    );
    check_embedding("tiny-hf-clip", "embedding");
}

/// Average pooling (timm's `global_pool="avg"` with `fc_norm`), without a class token and with one
/// (MAE-style): the head reads the mean of the patch tokens, pooled on the host.
#[test]
fn timm_average_pooling_matches_pytorch() {
    let w = ModelWeights::load(&fixture("tiny-timm-gap")).unwrap();
    assert!(!w.config.class_token && w.config.fc_norm && w.norm.is_none());
    assert_eq!(w.config.num_prefix_tokens(), 0);
    check("tiny-timm-gap");
    check("tiny-timm-gap-cls");
}

/// Hugging Face's SigLIP image tower (`SiglipVisionModel`): no class token, tanh GELU, and the
/// attention-pooling head (run on the host over the final tokens read back); the embedding is
/// transformers' `pooler_output`.
#[test]
fn hf_siglip_vision_tower_matches_transformers() {
    let dir = fixture("tiny-hf-siglip");
    let weights = ModelWeights::load(&dir).unwrap();
    let c = &weights.config;
    assert!(!c.class_token && weights.map_head.is_some() && weights.head.is_none());
    assert_eq!(c.pool, zeroprune::model::vit::Pool::Map);
    assert_eq!(c.activation, zeroprune::gpu::kernels::Activation::GeluTanh);
    check_embedding("tiny-hf-siglip", "pooled");
}
