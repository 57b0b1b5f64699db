//! Model configuration: the shape of a ViT/DeiT and how its input images are prepared.
//!
//! Read from timm's `config.json` (`architecture`, `model_args`, `pretrained_cfg`) or from a Hugging Face
//! `config.json` + `preprocessor_config.json`; missing fields are inferred from the weights' shapes.

use serde::{Deserialize, Serialize};

/// How the shorter side of an image is resized before the center crop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    Nearest,
    Bilinear,
    Bicubic,
    Lanczos,
}

/// How the head's input is pooled from the final tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The class (and distillation) token, final-normed on the GPU.
    #[default]
    Token,
    /// The mean of the patch tokens (timm's `global_pool="avg"`), each counted by the tokens it
    /// stands for after merging, then `fc_norm`: on the host, from the final tokens read back.
    Avg,
    /// SigLIP's attention-pooling head: a learned probe attends over the final tokens (merged
    /// tokens weighted by their sizes, as in proportional attention), then an MLP; on the host.
    Map,
}

/// How an image is resized before the center crop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// timm: the shorter side to `floor(input / crop_pct)`, keeping the aspect ratio.
    #[default]
    CropPct,
    /// Hugging Face's `{"shortest_edge": S}`: the shorter side to S, keeping the aspect ratio.
    ShortestEdge(usize),
    /// Hugging Face's `{"height": H, "width": W}`: exactly H x W, the aspect ratio not kept.
    Exact(usize, usize),
}

/// Where the center crop starts when the margin is odd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CropOffset {
    /// torchvision's `round(margin / 2)`, half to even (timm).
    #[default]
    Round,
    /// Hugging Face's `margin // 2`.
    Floor,
}

/// Image preprocessing, as timm's `pretrained_cfg` or a Hugging Face processor describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Model input height and width in pixels: the center crop.
    pub input_size: (usize, usize),
    /// With [`Resize::CropPct`]: resize the shorter side to `floor(input / crop_pct)`.
    pub crop_pct: f32,
    pub interpolation: Interpolation,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    #[serde(default)]
    pub resize: Resize,
    #[serde(default)]
    pub crop_offset: CropOffset,
}

impl Preprocess {
    /// Why this preprocessing cannot run, if it cannot: the resize before the crop,
    /// `floor(size / crop_pct)`, must stay within [`crate::limits::MAX_RESIZE_SIDE`].
    pub fn problem(&self) -> Option<String> {
        let (h, w) = self.input_size;
        let max = crate::limits::MAX_RESIZE_SIDE;
        match self.resize {
            Resize::CropPct => {}
            Resize::ShortestEdge(s) | Resize::Exact(s, _) | Resize::Exact(_, s) if s > max => {
                return Some(format!(
                    "the processor resizes to {s} pixels before the crop, over the limit of {max}"
                ))
            }
            Resize::ShortestEdge(_) | Resize::Exact(..) => return None,
        }
        let side = h.max(w) as f64 / self.crop_pct as f64;
        // Written so that a NaN side (crop_pct NaN) is a problem too.
        let fits = side <= max as f64;
        (!fits).then(|| {
            format!(
                "crop_pct {} resizes a {h}x{w} input's shorter side to {side:.0} pixels before the \
                 crop, over the limit of {max}",
                self.crop_pct
            )
        })
    }

    /// timm's ImageNet defaults: bicubic, crop_pct 0.875, ImageNet mean/std.
    pub fn imagenet(size: usize) -> Self {
        Preprocess {
            input_size: (size, size),
            crop_pct: 0.875,
            interpolation: Interpolation::Bicubic,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            resize: Resize::CropPct,
            crop_offset: CropOffset::Round,
        }
    }
}

fn yes() -> bool {
    true
}

fn gelu() -> crate::gpu::kernels::Activation {
    crate::gpu::kernels::Activation::Gelu
}

/// The shape of a Vision Transformer (ViT, DeiT, distilled DeiT, DeiT III, DINOv2, CLIP's tower).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViTConfig {
    /// Input image size (height, width) in pixels.
    pub image_size: (usize, usize),
    pub patch_size: usize,
    pub in_chans: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    /// Hidden width of the MLP (`mlp_ratio * embed_dim`).
    pub mlp_dim: usize,
    pub num_classes: usize,
    /// Distilled DeiT: a distillation token after CLS and a second head; logits are the mean of both heads.
    pub distilled: bool,
    /// Register tokens after the class (and distillation) token (DINOv2 with registers, timm's
    /// `reg_tokens`): attended to like any token, never pruned, read by no head.
    #[serde(default)]
    pub registers: usize,
    /// Whether the model has a class token (timm's `class_token=False` models have none).
    #[serde(default = "yes")]
    pub class_token: bool,
    /// How the head's input is pooled.
    #[serde(default)]
    pub pool: Pool,
    /// A LayerNorm after average pooling (timm's `fc_norm`).
    #[serde(default)]
    pub fc_norm: bool,
    /// The MLP's activation: the exact GELU, or OpenAI CLIP's quick GELU.
    #[serde(default = "gelu")]
    pub activation: crate::gpu::kernels::Activation,
    /// A LayerNorm over every token before the blocks (CLIP).
    #[serde(default)]
    pub pre_norm: bool,
    /// The width of the projection applied to the pooled embedding (CLIP), where there is one.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    pub layer_norm_eps: f32,
    /// Class names in index order, where the config has them.
    pub class_names: Option<Vec<String>>,
    pub preprocess: Preprocess,
}

impl ViTConfig {
    /// A backbone (no classifier head: DINOv2 as the hub ships it) embeds and cannot classify:
    /// the error a classifying command gives it.
    pub fn check_classifies(&self, what: &str) -> crate::error::Result<()> {
        if self.num_classes == 0 {
            return Err(crate::error::Error::param(
                what,
                "the model is a backbone without a classifier head: it embeds images \
                 (`zeroprune embed`, `eval --task embed`) and cannot classify them",
            ));
        }
        Ok(())
    }

    /// Patches along (height, width).
    pub fn grid(&self) -> (usize, usize) {
        (
            self.image_size.0 / self.patch_size,
            self.image_size.1 / self.patch_size,
        )
    }
    pub fn num_patches(&self) -> usize {
        let (h, w) = self.grid();
        h * w
    }
    /// The leading tokens the class-token head reads: CLS, and the distillation token where
    /// there is one (none without a class token).
    pub fn head_tokens(&self) -> usize {
        self.class_token as usize + self.distilled as usize
    }
    /// Tokens that are not patches and are never pruned: the head's tokens, then the registers.
    pub fn num_prefix_tokens(&self) -> usize {
        self.head_tokens() + self.registers
    }
    /// Token count of the dense model.
    pub fn num_tokens(&self) -> usize {
        self.num_patches() + self.num_prefix_tokens()
    }
    /// The width of the embedding `embed` gives: the projection's where there is one.
    pub fn embedding_dim(&self) -> usize {
        self.projection_dim.unwrap_or(self.embed_dim)
    }
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Values in one preprocessed image: `C * H * W`.
    pub fn image_len(&self) -> usize {
        self.in_chans * self.image_size.0 * self.image_size.1
    }

    /// What the pruning code sees of this model: the prefix tokens protected, the patches
    /// prunable, and the patch embedding and head as the FLOPs outside the blocks.
    pub fn geometry(&self) -> crate::model::TokenGeometry {
        let pp = (self.in_chans * self.patch_size * self.patch_size) as f64;
        let embed = 2.0 * self.num_patches() as f64 * pp * self.embed_dim as f64;
        let head_rows = match self.pool {
            Pool::Token => self.head_tokens(),
            Pool::Avg | Pool::Map => 1,
        };
        let d = self.embed_dim as f64;
        // SigLIP's pooling head: its value and output projections and its MLP on one vector
        // (the probe's scores are one dot product per token and head, left out).
        let pool_head = match self.pool {
            Pool::Map => 2.0 * (2.0 * d * d + 2.0 * d * self.mlp_dim as f64),
            _ => 0.0,
        };
        let head = 2.0 * (head_rows * self.embed_dim * self.num_classes) as f64 + pool_head;
        crate::model::TokenGeometry {
            modality: crate::model::Modality::Image,
            protected: self.num_prefix_tokens(),
            prunable: self.num_patches(),
            depth: self.depth,
            width: self.embed_dim,
            heads: self.num_heads,
            mlp: self.mlp_dim,
            fixed_flops: embed + head,
        }
    }
}
