//! Every tensor name of a ViT / DeiT checkpoint, in timm's layout or in Hugging Face transformers':
//! the one place that spells them. The loaders in `weights.rs` only ever ask this map.

use crate::error::{Error, Result};
use crate::model::names::{BlockNames, LayerNames, QkvNames};

/// Which library's tensor names a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Timm,
    /// Hugging Face transformers, with the model prefix (`vit.`, `deit.` or empty).
    HuggingFace,
    /// Hugging Face's DINOv2 (`Dinov2Model`, `Dinov2WithRegistersModel`): its blocks name their
    /// layers `norm1`, `mlp.fc1`, ... and scale both branches.
    Dinov2,
    /// Hugging Face's CLIP vision tower (`CLIPVisionModel`, `...WithProjection`, or the image half
    /// of a `CLIPModel`): a LayerNorm before the blocks, `self_attn.q_proj`, ..., a projection.
    Clip,
    /// Hugging Face's SigLIP image tower (`SiglipVisionModel`, or the image half of a
    /// `SiglipModel`): no class token, CLIP's block names, an attention-pooling head.
    Siglip,
}

/// The tensors of a whole model.
#[derive(Debug, Clone)]
pub struct ModelNames {
    pub layout: Layout,
    pub cls_token: String,
    /// Distilled DeiT's distillation token; `None` when the checkpoint has none.
    pub dist_token: Option<String>,
    /// Register tokens `[1, R, D]` (timm's `reg_token`), where the checkpoint has them.
    pub reg_tokens: String,
    pub pos_embed: String,
    /// The patch embedding convolution.
    pub patch_embed: LayerNames,
    /// Block `i`'s tensors all start with `{block_prefix}{i}.`.
    pub block_prefix: String,
    /// The final LayerNorm.
    pub norm: LayerNames,
    /// The classifier (absent from a backbone); for distilled models the class token's head.
    pub head: LayerNames,
    /// Distilled models' second classifier, on the distillation token.
    pub head_dist: Option<LayerNames>,
    /// The LayerNorm over every token before the blocks (CLIP's `pre_layrnorm`).
    pub norm_pre: LayerNames,
    /// The LayerNorm after average pooling (timm's `fc_norm`).
    pub fc_norm: LayerNames,
    /// The projection of the pooled embedding, `[P, D]` without bias (CLIP's `visual_projection`).
    pub projection: String,
    /// SigLIP's attention-pooling head: tensors start with this (`head.probe`, ...).
    pub map_head: String,
}

impl ModelNames {
    /// `prefix`: Hugging Face's model prefix (`vit.`, `deit.` or empty); timm has none.
    fn new(layout: Layout, prefix: &str, distilled: bool) -> Self {
        let p = prefix;
        match layout {
            Layout::Timm => ModelNames {
                layout,
                cls_token: "cls_token".into(),
                dist_token: distilled.then(|| "dist_token".into()),
                reg_tokens: "reg_token".into(),
                pos_embed: "pos_embed".into(),
                patch_embed: LayerNames::new("patch_embed.proj"),
                block_prefix: "blocks.".into(),
                norm: LayerNames::new("norm"),
                head: LayerNames::new("head"),
                head_dist: distilled.then(|| LayerNames::new("head_dist")),
                norm_pre: LayerNames::new("norm_pre"),
                fc_norm: LayerNames::new("fc_norm"),
                projection: "head.proj".into(),
                map_head: "attn_pool.".into(),
            },
            Layout::HuggingFace | Layout::Dinov2 => ModelNames {
                layout,
                cls_token: format!("{p}embeddings.cls_token"),
                dist_token: distilled.then(|| format!("{p}embeddings.distillation_token")),
                reg_tokens: format!("{p}embeddings.register_tokens"),
                pos_embed: format!("{p}embeddings.position_embeddings"),
                patch_embed: LayerNames::new(format!("{p}embeddings.patch_embeddings.projection")),
                block_prefix: format!("{p}encoder.layer."),
                norm: LayerNames::new(format!("{p}layernorm")),
                // DeiTForImageClassificationWithTeacher renames the classifier beside the second one.
                head: LayerNames::new(if distilled {
                    "cls_classifier"
                } else {
                    "classifier"
                }),
                head_dist: distilled.then(|| LayerNames::new("distillation_classifier")),
                norm_pre: LayerNames::new(format!("{p}pre_layrnorm")),
                fc_norm: LayerNames::new(format!("{p}fc_norm")),
                projection: "visual_projection.weight".into(),
                map_head: format!("{p}head."),
            },
            Layout::Clip | Layout::Siglip => ModelNames {
                layout,
                cls_token: format!("{p}embeddings.class_embedding"),
                dist_token: None,
                reg_tokens: format!("{p}embeddings.register_tokens"),
                pos_embed: format!("{p}embeddings.position_embedding.weight"),
                patch_embed: LayerNames::new(format!("{p}embeddings.patch_embedding")),
                block_prefix: format!("{p}encoder.layers."),
                norm: LayerNames::new(format!("{p}post_layernorm")),
                head: LayerNames::new("classifier"),
                head_dist: None,
                norm_pre: LayerNames::new(format!("{p}pre_layrnorm")),
                fc_norm: LayerNames::new(format!("{p}fc_norm")),
                projection: "visual_projection.weight".into(),
                map_head: format!("{p}head."),
            },
        }
    }

    /// The names of the checkpoint holding `tensors` (read from `file`, for the message).
    pub fn detect(file: &str, tensors: &[&str]) -> Result<Self> {
        let has = |name: &str| tensors.contains(&name);
        let hf_prefix = tensors
            .iter()
            .find_map(|n| n.strip_suffix("embeddings.cls_token"));
        let clip_prefix = tensors
            .iter()
            .find_map(|n| n.strip_suffix("embeddings.class_embedding"));
        // timm: `blocks.N.*` and the patch embedding (the class token is optional: timm's
        // `class_token=False` models have none).
        let (layout, prefix) = if (has("cls_token") || has("patch_embed.proj.weight"))
            && tensors.iter().any(|n| n.starts_with("blocks."))
        {
            (Layout::Timm, "")
        } else if let Some(prefix) = tensors.iter().find_map(|n| n.strip_suffix("head.probe")) {
            (Layout::Siglip, prefix)
        } else if let Some(prefix) = clip_prefix {
            (Layout::Clip, prefix)
        } else if let Some(prefix) = hf_prefix {
            if has(&format!("{prefix}encoder.layer.0.norm1.weight")) {
                (Layout::Dinov2, prefix)
            } else {
                (Layout::HuggingFace, prefix)
            }
        } else {
            let mut sample = tensors.to_vec();
            sample.sort();
            sample.truncate(6);
            return Err(Error::UnknownLayout {
                file: file.into(),
                reason: format!(
                    "neither timm (`cls_token`, `blocks.N.*`) nor Hugging Face (`vit.embeddings.cls_token`, \
                     `vit.encoder.layer.N.*`; CLIP's `vision_model.embeddings.class_embedding`) tensor \
                     names; found {} tensors such as {:?}",
                    tensors.len(),
                    sample
                ),
            });
        };
        // A distillation token makes a distilled DeiT, whose heads are named differently.
        let distilled = Self::new(layout, prefix, true)
            .dist_token
            .is_some_and(|dist| has(&dist));
        Ok(Self::new(layout, prefix, distilled))
    }

    pub fn block(&self, i: usize) -> BlockNames {
        let b = format!("{}{i}.", self.block_prefix);
        let layer = |part: &str| LayerNames::new(format!("{b}{part}"));
        match self.layout {
            Layout::Timm => BlockNames {
                norm1: layer("norm1"),
                qkv: QkvNames::Fused(layer("attn.qkv")),
                proj: layer("attn.proj"),
                norm2: layer("norm2"),
                fc1: layer("mlp.fc1"),
                fc2: layer("mlp.fc2"),
            },
            Layout::HuggingFace => BlockNames {
                norm1: layer("layernorm_before"),
                qkv: QkvNames::Separate(
                    ["query", "key", "value"].map(|p| layer(&format!("attention.attention.{p}"))),
                ),
                proj: layer("attention.output.dense"),
                norm2: layer("layernorm_after"),
                fc1: layer("intermediate.dense"),
                fc2: layer("output.dense"),
            },
            Layout::Dinov2 => BlockNames {
                norm1: layer("norm1"),
                qkv: QkvNames::Separate(
                    ["query", "key", "value"].map(|p| layer(&format!("attention.attention.{p}"))),
                ),
                proj: layer("attention.output.dense"),
                norm2: layer("norm2"),
                fc1: layer("mlp.fc1"),
                fc2: layer("mlp.fc2"),
            },
            Layout::Clip | Layout::Siglip => BlockNames {
                norm1: layer("layer_norm1"),
                qkv: QkvNames::Separate(
                    ["q", "k", "v"].map(|p| layer(&format!("self_attn.{p}_proj"))),
                ),
                proj: layer("self_attn.out_proj"),
                norm2: layer("layer_norm2"),
                fc1: layer("mlp.fc1"),
                fc2: layer("mlp.fc2"),
            },
        }
    }

    /// Block `i`'s layer scales (DeiT III, DINOv2): per-channel factors on the attention's and the
    /// MLP's output before each residual add, where the checkpoint has them.
    pub fn layer_scales(&self, i: usize) -> [String; 2] {
        let b = format!("{}{i}.", self.block_prefix);
        match self.layout {
            Layout::Timm => [format!("{b}ls1.gamma"), format!("{b}ls2.gamma")],
            Layout::HuggingFace | Layout::Dinov2 | Layout::Clip | Layout::Siglip => [
                format!("{b}layer_scale1.lambda1"),
                format!("{b}layer_scale2.lambda1"),
            ],
        }
    }

    /// How the position embedding's grid is resampled for another input size, as the library that
    /// wrote the checkpoint does: transformers' `Dinov2WithRegistersModel` (the DINOv2 layout with
    /// registers) antialiases, `Dinov2Model` and the rest do not.
    pub fn position_resample(&self, registers: usize) -> super::pos_embed::Resample {
        use super::pos_embed::Resample;
        if self.layout == Layout::Dinov2 && registers > 0 {
            Resample::BicubicAntialias
        } else {
            Resample::Bicubic
        }
    }

    /// The index of the block `tensor` belongs to, if it is a block's.
    pub fn block_index(&self, tensor: &str) -> Option<usize> {
        let rest = tensor.strip_prefix(self.block_prefix.as_str())?;
        rest.split('.').next()?.parse().ok()
    }

    /// Tensors inference never reads, so they are not reported as unused: Hugging Face's pooler,
    /// BatchNorm step counters, DINOv2's mask token (masked-image training only).
    pub fn not_needed(tensor: &str) -> bool {
        tensor.contains("pooler.")
            || tensor.ends_with("num_batches_tracked")
            || tensor.ends_with("embeddings.mask_token")
            // A whole CLIPModel: its text tower and the similarity's temperature.
            || tensor.starts_with("text_model.")
            || tensor.starts_with("text_projection.")
            || tensor == "logit_scale"
            || tensor == "logit_bias"
    }
}
