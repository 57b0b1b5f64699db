//! The config files beside the weights, as typed structs: timm's `config.json`, and Hugging Face's
//! `config.json` + `preprocessor_config.json`. Unknown fields are skipped (real files have many); a
//! known field of the wrong type is an error naming the file and the field's path. What a file states
//! is then checked against the weights' own shapes, which fill in whatever it leaves out.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::config::{CropOffset, Interpolation, Pool, Preprocess, Resize, ViTConfig};
use super::names::{Layout, ModelNames};
use super::pos_embed::{position_prefixes, square_grid};
use super::weights::{ConfigFiles, Inferred};
use crate::error::{Error, Result};
use crate::gpu::kernels::Activation;

// ------------------------------------------------------------------------------------------------
// timm

/// timm's `config.json` (as `timm.models.push_to_hf_hub` writes it).
#[derive(Debug, Default, Deserialize)]
struct TimmConfig {
    architecture: Option<String>,
    num_classes: Option<usize>,
    global_pool: Option<String>,
    label_names: Option<Vec<String>>,
    /// The model constructor's arguments; often absent, then the weights' shapes tell.
    model_args: Option<TimmModelArgs>,
    pretrained_cfg: Option<TimmPretrainedCfg>,
}

#[derive(Debug, Default, Deserialize)]
struct TimmModelArgs {
    img_size: Option<ImageSize>,
    patch_size: Option<usize>,
    in_chans: Option<usize>,
    embed_dim: Option<usize>,
    depth: Option<usize>,
    num_heads: Option<usize>,
    mlp_ratio: Option<f64>,
    /// `"gelu"` (default) or `"quick_gelu"` (timm's OpenAI CLIP towers).
    act_layer: Option<String>,
    /// As the top-level `global_pool`, which it overrides where both are given.
    global_pool: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct TimmPretrainedCfg {
    /// `[channels, height, width]`.
    input_size: Option<Vec<usize>>,
    crop_pct: Option<f64>,
    crop_mode: Option<String>,
    interpolation: Option<Resample>,
    mean: Option<Vec<f32>>,
    std: Option<Vec<f32>>,
    label_names: Option<Vec<String>>,
}

// ------------------------------------------------------------------------------------------------
// Hugging Face

/// Hugging Face's `config.json` of a `ViTForImageClassification` or `DeiTForImageClassification`
/// (`WithTeacher`).
#[derive(Debug, Default, Deserialize)]
struct HfConfig {
    hidden_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    intermediate_size: Option<usize>,
    image_size: Option<ImageSize>,
    patch_size: Option<usize>,
    num_channels: Option<usize>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    id2label: Option<BTreeMap<usize, String>>,
    /// DINOv2 giant's SwiGLU MLP.
    use_swiglu_ffn: Option<bool>,
    /// A CLIPModel's image tower.
    vision_config: Option<Box<HfConfig>>,
}

/// Hugging Face's `preprocessor_config.json` (`ViTImageProcessor`, `DeiTImageProcessor`).
#[derive(Debug, Default, Deserialize)]
struct HfPreprocessorConfig {
    size: Option<ProcessorSize>,
    crop_size: Option<ProcessorSize>,
    do_center_crop: Option<bool>,
    resample: Option<Resample>,
    image_mean: Option<Vec<f32>>,
    image_std: Option<Vec<f32>>,
}

// ------------------------------------------------------------------------------------------------
// Fields that take several shapes.

/// An image size: one side of a square, or `[height, width]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged, expecting = "expected an integer or [height, width]")]
enum ImageSize {
    Square(usize),
    HeightWidth([usize; 2]),
}

impl ImageSize {
    fn get(self) -> (usize, usize) {
        match self {
            ImageSize::Square(s) => (s, s),
            ImageSize::HeightWidth([h, w]) => (h, w),
        }
    }
}

/// A Hugging Face image processor's `size` or `crop_size`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(
    untagged,
    expecting = "expected an integer, {\"height\", \"width\"} or {\"shortest_edge\"}"
)]
enum ProcessorSize {
    Square(usize),
    /// `{"height", "width"}`.
    HeightWidth {
        height: usize,
        width: usize,
    },
    ShortestEdge {
        shortest_edge: usize,
    },
}

impl ProcessorSize {
    fn side(self) -> usize {
        match self {
            ProcessorSize::Square(s)
            | ProcessorSize::HeightWidth { height: s, .. }
            | ProcessorSize::ShortestEdge { shortest_edge: s } => s,
        }
    }
}

/// An interpolation by name (timm: `"bicubic"`) or by PIL resample code (Hugging Face: `3`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected an interpolation name or a PIL resample code"
)]
enum Resample {
    Name(String),
    Pil(u64),
}

impl Resample {
    fn interpolation(&self) -> Option<Interpolation> {
        match self {
            Resample::Name(s) => match s.to_lowercase().as_str() {
                "bicubic" => Some(Interpolation::Bicubic),
                "bilinear" => Some(Interpolation::Bilinear),
                "nearest" => Some(Interpolation::Nearest),
                "lanczos" => Some(Interpolation::Lanczos),
                _ => None,
            },
            Resample::Pil(code) => match code {
                0 => Some(Interpolation::Nearest),
                1 => Some(Interpolation::Lanczos),
                2 => Some(Interpolation::Bilinear),
                3 => Some(Interpolation::Bicubic),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Resample {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Resample::Name(s) => write!(f, "{s:?}"),
            Resample::Pil(code) => write!(f, "{code}"),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Reading.

/// `text` as a `T`, or `T`'s defaults when there is no file. Errors name `file` and the field's path:
/// `config.json of X: model_args.depth: invalid type: string "2", expected usize at line 6 column 16`.
fn parse<T: DeserializeOwned + Default>(text: Option<&str>, file: &str) -> Result<T> {
    match text {
        Some(text) => crate::json::parse(text, file),
        None => Ok(T::default()),
    }
}

/// The [`ViTConfig`] of a checkpoint: its config files (those of `n`'s layout) checked against
/// and completed from its weights' shapes `w`. `source` names the checkpoint in messages.
pub(super) fn read_config(
    files: &ConfigFiles,
    source: &str,
    n: &ModelNames,
    w: &Inferred,
) -> Result<ViTConfig> {
    let file = match files.config {
        Some(_) => format!("config.json of {source}"),
        None => format!("{source} (no config.json)"),
    };
    let stated = match n.layout {
        Layout::Timm => parse::<TimmConfig>(files.config, &file)?.stated(file, w)?,
        Layout::HuggingFace | Layout::Dinov2 | Layout::Clip | Layout::Siglip => {
            let config: HfConfig = parse(files.config, &file)?;
            // A whole CLIPModel's config describes its image tower in `vision_config`.
            let config = match config.vision_config {
                Some(vision) => *vision,
                None => config,
            };
            let pre_file = format!("preprocessor_config.json of {source}");
            let pre: HfPreprocessorConfig = parse(files.preprocessor, &pre_file)?;
            let mut stated = config.stated(file, &pre, &pre_file, n.layout == Layout::Dinov2)?;
            if n.layout == Layout::Siglip {
                stated.pool = Pool::Map;
            }
            stated
        }
    };
    stated.check(w, n)
}

/// What a config file states about the model, whichever its layout: `None` where it is silent.
/// Dimensions the weights also have come with their name in that file, for messages.
struct Stated {
    /// The file, for messages: `config.json of X`, or `X (no config.json)`.
    file: String,
    embed_dim: (&'static str, Option<usize>),
    depth: (&'static str, Option<usize>),
    patch_size: (&'static str, Option<usize>),
    in_chans: (&'static str, Option<usize>),
    /// timm's `num_classes`; Hugging Face gives only id2label, which may be a placeholder.
    num_classes: Option<usize>,
    mlp_dim: (&'static str, Option<usize>),
    image_size: Option<(usize, usize)>,
    /// The size the model runs at where it is not `image_size`: DINOv2 resamples its position
    /// embedding to whatever it is given, and its processor crops a smaller image (224 of 518).
    run_size: Option<(usize, usize)>,
    num_heads: Option<usize>,
    layer_norm_eps: f32,
    /// The MLP's activation (GELU unless the file names quick GELU).
    activation: Activation,
    /// How the head's input is pooled (timm's `global_pool`; the class token elsewhere).
    pool: Pool,
    class_names: Option<Vec<String>>,
    /// Its `input_size` is set by [`Stated::check`], once the image size is known.
    preprocess: Preprocess,
}

impl TimmConfig {
    fn stated(self, file: String, w: &Inferred) -> Result<Stated> {
        let args = self.model_args.unwrap_or_default();
        let pool = match args.global_pool.as_deref().or(self.global_pool.as_deref()) {
            None | Some("token") => Pool::Token,
            Some("avg") => Pool::Avg,
            Some("map") => {
                return Err(Error::config(
                    &file,
                    "global_pool \"map\": the attention-pooling head is not supported yet",
                ))
            }
            Some(other) => {
                return Err(Error::config(
                    &file,
                    format!(
                        "global_pool {other:?} is not supported (\"token\": the class token, or \
                         \"avg\": the mean of the patch tokens)"
                    ),
                ))
            }
        };
        let pcfg = self.pretrained_cfg.unwrap_or_default();
        let input_size = match pcfg.input_size.as_deref() {
            None => None,
            Some(&[_, h, w]) => Some((h, w)),
            Some(other) => {
                return Err(Error::config(
                    &file,
                    format!("pretrained_cfg.input_size {other:?} is not [channels, height, width]"),
                ))
            }
        };
        let arch = self.architecture.as_deref().unwrap_or("");
        let preprocess = pcfg.preprocess(&file)?;
        let activation = activation(args.act_layer.as_deref(), "model_args.act_layer", &file)?;
        Ok(Stated {
            embed_dim: ("embed_dim", args.embed_dim),
            depth: ("depth", args.depth),
            patch_size: ("patch_size", args.patch_size),
            in_chans: ("in_chans", args.in_chans),
            num_classes: self.num_classes,
            // timm gives the MLP width as a ratio of the embedding width.
            mlp_dim: (
                "mlp_ratio * embed_dim",
                args.mlp_ratio
                    .map(|r| (r * w.embed_dim as f64).round() as usize),
            ),
            image_size: args.img_size.map(ImageSize::get).or(input_size),
            run_size: None,
            num_heads: args.num_heads.or_else(|| heads_from_architecture(arch)),
            // timm builds every ViT's LayerNorm with eps 1e-6.
            layer_norm_eps: 1e-6,
            activation,
            pool,
            class_names: self.label_names.or(pcfg.label_names),
            preprocess,
            file,
        })
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

impl TimmPretrainedCfg {
    fn preprocess(&self, file: &str) -> Result<Preprocess> {
        // timm's defaults; the input size is set once known.
        let mut p = Preprocess::imagenet(0);
        if let Some(mode) = self.crop_mode.as_deref().filter(|&m| m != "center") {
            return Err(Error::config(
                file,
                format!("crop_mode {mode:?} is not supported (only \"center\")"),
            ));
        }
        if let Some(c) = self.crop_pct {
            if !(c > 0.0 && c <= 1.0) {
                return Err(Error::config(
                    file,
                    format!("crop_pct {c} is outside (0, 1]"),
                ));
            }
            p.crop_pct = c as f32;
        }
        set_resample_mean_std(
            &mut p,
            ("interpolation", &self.interpolation),
            ("mean", &self.mean),
            ("std", &self.std),
            file,
        )?;
        Ok(p)
    }
}

impl HfConfig {
    fn stated(
        self,
        file: String,
        pre: &HfPreprocessorConfig,
        pre_file: &str,
        interpolates: bool,
    ) -> Result<Stated> {
        if self.use_swiglu_ffn == Some(true) {
            return Err(Error::config(
                &file,
                "use_swiglu_ffn: the SwiGLU MLP (DINOv2 giant) is not supported (only the GELU MLP)",
            ));
        }
        let activation = activation(self.hidden_act.as_deref(), "hidden_act", &file)?;
        // id2label names every class, or none: ids 0, 1, 2, ... without a gap.
        let class_names = self
            .id2label
            .filter(|m| m.keys().copied().eq(0..m.len()))
            .map(|m| m.into_values().collect());
        Ok(Stated {
            embed_dim: ("hidden_size", self.hidden_size),
            depth: ("num_hidden_layers", self.num_hidden_layers),
            patch_size: ("patch_size", self.patch_size),
            in_chans: ("num_channels", self.num_channels),
            num_classes: None,
            mlp_dim: ("intermediate_size", self.intermediate_size),
            image_size: self.image_size.map(ImageSize::get),
            run_size: interpolates.then(|| pre.model_input()).flatten(),
            num_heads: self.num_attention_heads,
            layer_norm_eps: self.layer_norm_eps.unwrap_or(1e-12) as f32,
            activation,
            pool: Pool::Token,
            class_names,
            preprocess: pre.preprocess(pre_file)?,
            file,
        })
    }
}

impl HfPreprocessorConfig {
    /// The square the processor hands the model: its crop where it crops, else its resize.
    fn model_input(&self) -> Option<(usize, usize)> {
        let do_crop = self.do_center_crop.unwrap_or(self.crop_size.is_some());
        let side = match (self.crop_size, do_crop) {
            (Some(c), true) => c.side(),
            _ => match self.size? {
                ProcessorSize::ShortestEdge { .. } => return None,
                s => s.side(),
            },
        };
        Some((side, side))
    }

    /// The processors resize as `size` says (the shorter side to `shortest_edge`, or exactly to
    /// `height` x `width`, the aspect ratio not kept), then center-crop `crop_size` where they
    /// crop (the crop offset floored, as their `center_crop` does).
    fn preprocess(&self, file: &str) -> Result<Preprocess> {
        let mut p = Preprocess {
            input_size: (0, 0),
            crop_pct: 1.0,
            interpolation: Interpolation::Bilinear,
            mean: [0.5; 3],
            std: [0.5; 3],
            resize: Resize::CropPct,
            crop_offset: CropOffset::Floor,
        };
        p.resize = match self.size {
            None => Resize::CropPct,
            Some(ProcessorSize::ShortestEdge { shortest_edge }) => {
                Resize::ShortestEdge(shortest_edge)
            }
            Some(ProcessorSize::HeightWidth { height, width }) => Resize::Exact(height, width),
            Some(ProcessorSize::Square(s)) => Resize::Exact(s, s),
        };
        if let Resize::ShortestEdge(0) | Resize::Exact(0, _) | Resize::Exact(_, 0) = p.resize {
            return Err(Error::config(file, "size must be at least 1 pixel"));
        }
        let resize = self.size.map(ProcessorSize::side);
        let crop = self.crop_size.map(ProcessorSize::side);
        let do_crop = self.do_center_crop.unwrap_or(crop.is_some());
        if let (Some(r), Some(c), true) = (resize, crop, do_crop) {
            if c > r || c == 0 {
                return Err(Error::config(
                    file,
                    format!("crop_size {c} is larger than size {r}"),
                ));
            }
        }
        set_resample_mean_std(
            &mut p,
            ("resample", &self.resample),
            ("image_mean", &self.image_mean),
            ("image_std", &self.image_std),
            file,
        )?;
        Ok(p)
    }
}

/// Interpolation, mean and std where the file gives them, each with its field name for messages.
fn set_resample_mean_std(
    p: &mut Preprocess,
    (interpolation_key, interpolation): (&str, &Option<Resample>),
    (mean_key, mean): (&str, &Option<Vec<f32>>),
    (std_key, std): (&str, &Option<Vec<f32>>),
    file: &str,
) -> Result<()> {
    if let Some(r) = interpolation {
        p.interpolation = r
            .interpolation()
            .ok_or_else(|| Error::config(file, format!("unknown {interpolation_key} {r}")))?;
    }
    if let Some(m) = rgb(mean, mean_key, file)? {
        p.mean = m;
    }
    if let Some(s) = rgb(std, std_key, file)? {
        // Standard deviations divide the pixels.
        if !s.iter().all(|&x| x > 0.0) {
            return Err(Error::config(
                file,
                format!("`{std_key}` {s:?} must be positive"),
            ));
        }
        p.std = s;
    }
    Ok(())
}

/// One value per RGB channel.
fn rgb(v: &Option<Vec<f32>>, key: &str, file: &str) -> Result<Option<[f32; 3]>> {
    match v.as_deref() {
        None => Ok(None),
        Some(&[r, g, b]) if [r, g, b].iter().all(|x| x.is_finite()) => Ok(Some([r, g, b])),
        Some(other) => Err(Error::config(
            file,
            format!("`{key}` must be a list of 3 finite numbers, not {other:?}"),
        )),
    }
}

impl Stated {
    /// Every stated dimension must match the weights; the rest comes from them.
    fn check(self, w: &Inferred, n: &ModelNames) -> Result<ViTConfig> {
        let file = &self.file;
        let check =
            |(what, stated): (&str, Option<usize>), actual: usize, tensor: &str| match stated {
                Some(s) if s != actual => Err(Error::config(
                    file,
                    format!("{what} is {s}, but the weights have {actual} (tensor `{tensor}`)"),
                )),
                _ => Ok(()),
            };
        check(self.embed_dim, w.embed_dim, &n.cls_token)?;
        check(self.depth, w.depth, &format!("{}N.*", n.block_prefix))?;
        check(self.patch_size, w.patch_size, &n.patch_embed.weight)?;
        check(self.in_chans, w.in_chans, &n.patch_embed.weight)?;
        check(
            ("num_classes", self.num_classes),
            w.num_classes,
            &n.head.weight,
        )?;
        check(self.mlp_dim, w.mlp_dim, &n.block(0).fc1.weight)?;

        let image_size = self.image_size(w, n)?;
        let num_heads = self
            .num_heads
            .or_else(|| w.embed_dim.is_multiple_of(64).then_some(w.embed_dim / 64))
            .ok_or_else(|| {
                Error::config(
                    file,
                    format!(
                        "the head count is not stated and embed_dim {} is not a multiple of 64",
                        w.embed_dim
                    ),
                )
            })?;
        if self.pool == Pool::Token && !w.class_token {
            return Err(Error::config(
                file,
                format!(
                    "the head reads the class token (global_pool \"token\"), but the weights have \
                     none (`{}`)",
                    n.cls_token
                ),
            ));
        }
        if self.pool == Pool::Token && w.fc_norm {
            return Err(Error::config(
                file,
                format!(
                    "`{}` (a LayerNorm after pooling) with the class token's head is not supported",
                    n.fc_norm.weight
                ),
            ));
        }
        if w.in_chans != 3 {
            return Err(Error::config(
                file,
                format!(
                    "the weights take {} input channels (tensor `{}`); only RGB models (3 channels) \
                     are supported, since every image is preprocessed to RGB",
                    w.in_chans, n.patch_embed.weight
                ),
            ));
        }
        if !(self.layer_norm_eps.is_finite()
            && self.layer_norm_eps > 0.0
            && self.layer_norm_eps < 1.0)
        {
            return Err(Error::config(
                file,
                format!(
                    "layer_norm_eps {} must be a small positive number (it keeps LayerNorm's \
                     division away from zero)",
                    self.layer_norm_eps
                ),
            ));
        }
        if num_heads == 0 || !w.embed_dim.is_multiple_of(num_heads) {
            return Err(Error::config(
                file,
                format!(
                    "embed_dim {} is not divisible by {num_heads} heads",
                    w.embed_dim
                ),
            ));
        }
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
            registers: w.registers,
            class_token: w.class_token,
            pool: self.pool,
            fc_norm: w.fc_norm,
            activation: self.activation,
            pre_norm: w.pre_norm,
            projection_dim: w.projection_dim,
            layer_norm_eps: self.layer_norm_eps,
            // Names for another class count are dropped, not an error: the classifier decides.
            class_names: self.class_names.filter(|c| c.len() == w.num_classes),
            preprocess: {
                let p = Preprocess {
                    input_size: image_size,
                    ..self.preprocess
                };
                if let Some(problem) = p.problem() {
                    return Err(Error::config(file, problem));
                }
                p
            },
        })
    }

    /// The stated image size, or the square grid of the position embedding's patches; either must
    /// give exactly the position embedding's token count.
    fn image_size(&self, w: &Inferred, n: &ModelNames) -> Result<(usize, usize)> {
        let file = &self.file;
        let head = w.class_token as usize + w.distilled as usize;
        let prefixes = position_prefixes(head + w.registers, head);
        // The patch grid of the position embedding itself.
        let stored_grid = square_grid(w.tokens, &prefixes).map(|(_, g)| g);
        if let Some(size) = self.run_size {
            // A model that resamples its position embedding: any square grid will do.
            if stored_grid.is_none() {
                return Err(Error::config(
                    file,
                    format!(
                        "the {} rows of `{}` are not a square grid of patches after {} prefix rows: \
                         they cannot be resampled",
                        w.tokens,
                        n.pos_embed,
                        prefixes
                            .iter()
                            .map(|k| k.to_string())
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                ));
            }
            return checked_size(size, w.patch_size, file);
        }
        let size = match self.image_size {
            Some(s) => s,
            None => {
                let Some(g) = stored_grid else {
                    return Err(Error::config(
                        file,
                        format!(
                            "image size not stated and the {} rows of `{}` are not a square grid \
                             of patches after {}",
                            w.tokens,
                            n.pos_embed,
                            prefixes
                                .iter()
                                .map(|k| format!("{k} prefix rows"))
                                .collect::<Vec<_>>()
                                .join(" or ")
                        ),
                    ));
                };
                (g * w.patch_size, g * w.patch_size)
            }
        };
        checked_size(size, w.patch_size, file)?;
        let patches = (size.0 / w.patch_size) * (size.1 / w.patch_size);
        if !prefixes.iter().any(|&k| patches + k == w.tokens) {
            let rows: Vec<String> = prefixes.iter().map(|k| (patches + k).to_string()).collect();
            return Err(Error::config(
                file,
                format!(
                    "image size {size:?} with patch {} gives {patches} patches, so `{}` needs {} \
                     rows (the patches and the prefix tokens that have a position), but it has {}",
                    w.patch_size,
                    n.pos_embed,
                    rows.join(" or "),
                    w.tokens,
                ),
            ));
        }
        Ok(size)
    }
}

/// The MLP activation a config names (`None`: GELU).
fn activation(name: Option<&str>, key: &str, file: &str) -> Result<Activation> {
    match name {
        None | Some("gelu") => Ok(Activation::Gelu),
        Some("quick_gelu") => Ok(Activation::QuickGelu),
        Some("gelu_pytorch_tanh" | "gelu_tanh") => Ok(Activation::GeluTanh),
        Some(other) => Err(Error::config(
            file,
            format!("{key} {other:?} is not supported (only exact \"gelu\", \"quick_gelu\" and \"gelu_pytorch_tanh\")"),
        )),
    }
}

/// An image size the model can run at: within `1..=65536` pixels a side, whole patches.
fn checked_size(size: (usize, usize), patch: usize, file: &str) -> Result<(usize, usize)> {
    const MAX_SIDE: usize = 1 << 16;
    if size.0 == 0 || size.1 == 0 || size.0 > MAX_SIDE || size.1 > MAX_SIDE {
        return Err(Error::config(
            file,
            format!("image size {size:?} is outside 1..={MAX_SIDE} pixels"),
        ));
    }
    if !size.0.is_multiple_of(patch) || !size.1.is_multiple_of(patch) {
        return Err(Error::config(
            file,
            format!("image size {size:?} is not a multiple of the patch size {patch}"),
        ));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err<T: DeserializeOwned + Default + fmt::Debug>(text: &str) -> String {
        let e = parse::<T>(Some(text), "config.json of m").unwrap_err();
        eprintln!("{e}");
        e.to_string()
    }

    #[test]
    fn a_wrong_type_names_the_file_and_the_field() {
        let e = err::<HfConfig>(r#"{"hidden_size": "48"}"#);
        assert!(
            e.starts_with(
                r#"config.json of m: hidden_size: invalid type: string "48", expected usize"#
            ),
            "{e}"
        );
        let e = err::<TimmConfig>(r#"{"model_args": {"depth": 2, "img_size": "224"}}"#);
        assert!(
            e.starts_with(
                "config.json of m: model_args.img_size: expected an integer or [height, width]"
            ),
            "{e}"
        );
        let e = err::<TimmConfig>(r#"{"label_names": ["cat", 7]}"#);
        assert!(e.contains("label_names[1]: invalid type"), "{e}");
        let e = err::<HfPreprocessorConfig>(r#"{"size": {"longest_edge": 1333}}"#);
        assert!(e.contains("size: expected an integer, {"), "{e}");
    }

    #[test]
    fn fields_of_several_shapes() {
        let c: TimmConfig = parse(
            Some(r#"{"model_args": {"img_size": [224, 192]}, "pretrained_cfg": {"interpolation": "bilinear"}, "other": {"x": [1]}}"#),
            "f",
        )
        .unwrap();
        assert_eq!(
            c.model_args.unwrap().img_size.map(ImageSize::get),
            Some((224, 192))
        );
        let interpolation = c.pretrained_cfg.unwrap().interpolation.unwrap();
        assert_eq!(interpolation.interpolation(), Some(Interpolation::Bilinear));
        for (size, side) in [
            ("224", 224),
            (r#"{"height": 256, "width": 256}"#, 256),
            (r#"{"shortest_edge": 288, "longest_edge": 1333}"#, 288),
        ] {
            let text = format!(r#"{{"size": {size}, "resample": 1}}"#);
            let p: HfPreprocessorConfig = parse(Some(&text), "f").unwrap();
            assert_eq!(p.size.map(ProcessorSize::side), Some(side), "{size}");
            let lanczos = p.resample.and_then(|r| r.interpolation());
            assert_eq!(lanczos, Some(Interpolation::Lanczos));
        }
    }

    #[test]
    fn id2label_is_read_in_index_order() {
        // A 2x2 grid of 4-pixel patches, 64 wide, 11 classes, in Hugging Face's names.
        let names = ModelNames::detect("m", &["vit.embeddings.cls_token"]).unwrap();
        let w = Inferred {
            embed_dim: 64,
            in_chans: 3,
            patch_size: 4,
            depth: 1,
            tokens: 5,
            mlp_dim: 128,
            num_classes: 11,
            distilled: false,
            registers: 0,
            class_token: true,
            fc_norm: false,
            pre_norm: false,
            projection_dim: None,
        };
        let class_names = |id2label: &str| {
            let text = format!(r#"{{"id2label": {id2label}}}"#);
            let files = ConfigFiles {
                config: Some(&text),
                preprocessor: None,
            };
            read_config(&files, "m", &names, &w).unwrap().class_names
        };
        // Ids are numbers: "10" comes after "9".
        let all: Vec<String> = (0..11).map(|i| format!("\"{i}\": \"c{i}\"")).collect();
        let want: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
        assert_eq!(class_names(&format!("{{{}}}", all.join(","))), Some(want));
        // A gap, or names for another class count, are dropped (the head decides).
        assert_eq!(class_names(&format!("{{{}}}", all[1..].join(","))), None);
        assert_eq!(class_names(r#"{"0": "LABEL_0", "1": "LABEL_1"}"#), None);
    }
}
