//! Loading a ViT/DeiT from safetensors in timm's or Hugging Face's tensor names, into one canonical
//! host-side form: f32, linear weights transposed to `[in, out]` so every GEMM reads `x . W`.

use std::collections::BTreeSet;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};
use serde_json::Value;

use super::config::{Interpolation, Preprocess, ViTConfig};
use crate::error::{Error, Result};

/// One transformer block, weights already in GEMM order (`[in, out]`).
#[derive(Debug, Clone)]
pub struct BlockWeights {
    pub norm1_w: Vec<f32>,
    pub norm1_b: Vec<f32>,
    /// `[D, 3D]`: columns are q (all heads), then k, then v.
    pub qkv_w: Vec<f32>,
    pub qkv_b: Vec<f32>,
    pub proj_w: Vec<f32>,
    pub proj_b: Vec<f32>,
    pub norm2_w: Vec<f32>,
    pub norm2_b: Vec<f32>,
    pub fc1_w: Vec<f32>,
    pub fc1_b: Vec<f32>,
    pub fc2_w: Vec<f32>,
    pub fc2_b: Vec<f32>,
}

/// A whole model on the host.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub config: ViTConfig,
    /// `[C * p * p, D]`, rows in (channel, kernel row, kernel column) order.
    pub patch_w: Vec<f32>,
    pub patch_b: Vec<f32>,
    /// `[prefix, D]`: CLS, then the distillation token where there is one.
    pub prefix_tokens: Vec<f32>,
    /// `[tokens, D]`.
    pub pos_embed: Vec<f32>,
    pub blocks: Vec<BlockWeights>,
    pub norm_w: Vec<f32>,
    pub norm_b: Vec<f32>,
    /// `[prefix * D, classes]`. For distilled DeiT both heads stacked and halved, so one GEMM over the
    /// normalised [CLS, DIST] pair gives the mean of the two heads.
    pub head_w: Vec<f32>,
    pub head_b: Vec<f32>,
    /// Where the model was read from, for messages.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Timm,
    /// Hugging Face transformers, with the model prefix (`vit.`, `deit.` or empty).
    HuggingFace,
}

/// Tensor names of one layout.
struct Names {
    layout: Layout,
    prefix: String,
}

impl Names {
    fn cls(&self) -> String {
        match self.layout {
            Layout::Timm => "cls_token".into(),
            Layout::HuggingFace => format!("{}embeddings.cls_token", self.prefix),
        }
    }
    fn dist(&self) -> String {
        match self.layout {
            Layout::Timm => "dist_token".into(),
            Layout::HuggingFace => format!("{}embeddings.distillation_token", self.prefix),
        }
    }
    fn pos(&self) -> String {
        match self.layout {
            Layout::Timm => "pos_embed".into(),
            Layout::HuggingFace => format!("{}embeddings.position_embeddings", self.prefix),
        }
    }
    fn patch(&self, what: &str) -> String {
        match self.layout {
            Layout::Timm => format!("patch_embed.proj.{what}"),
            Layout::HuggingFace => {
                format!(
                    "{}embeddings.patch_embeddings.projection.{what}",
                    self.prefix
                )
            }
        }
    }
    fn block(&self, i: usize, part: &str) -> String {
        match self.layout {
            Layout::Timm => format!("blocks.{i}.{part}"),
            Layout::HuggingFace => format!("{}encoder.layer.{i}.{part}", self.prefix),
        }
    }
    fn block_prefix(&self) -> String {
        match self.layout {
            Layout::Timm => "blocks.".into(),
            Layout::HuggingFace => format!("{}encoder.layer.", self.prefix),
        }
    }
    fn norm(&self, what: &str) -> String {
        match self.layout {
            Layout::Timm => format!("norm.{what}"),
            Layout::HuggingFace => format!("{}layernorm.{what}", self.prefix),
        }
    }
    /// Classifier names: (main head, distillation head).
    fn heads(&self, distilled: bool) -> (&'static str, &'static str) {
        match (self.layout, distilled) {
            (Layout::Timm, _) => ("head", "head_dist"),
            (Layout::HuggingFace, false) => ("classifier", ""),
            (Layout::HuggingFace, true) => ("cls_classifier", "distillation_classifier"),
        }
    }
}

/// The raw tensors of a safetensors file, read as f32.
struct Tensors<'a> {
    st: SafeTensors<'a>,
    file: String,
    used: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.st
            .tensor(name)
            .map(|t| t.shape().to_vec())
            .map_err(|_| Error::MissingTensor {
                file: self.file.clone(),
                name: name.into(),
            })
    }

    /// The tensor `name` as f32, checked against `expected` (leading 1s of the stored shape are ignored).
    fn get(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self.st.tensor(name).map_err(|_| Error::MissingTensor {
            file: self.file.clone(),
            name: name.into(),
        })?;
        let got = view.shape().to_vec();
        let squeeze = |s: &[usize]| -> Vec<usize> {
            let first = s.iter().position(|&d| d != 1).unwrap_or(s.len());
            s[first..].to_vec()
        };
        if squeeze(&got) != squeeze(expected) {
            return Err(Error::TensorShape {
                file: self.file.clone(),
                name: name.into(),
                got,
                expected: expected.to_vec(),
            });
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::TensorDtype {
                    file: self.file.clone(),
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        self.used.insert(name.to_string());
        Ok(values)
    }

    /// A linear layer stored as PyTorch's `[out, in]`, returned transposed to `[in, out]`.
    fn linear(&mut self, name: &str, out: usize, inp: usize) -> Result<Vec<f32>> {
        let w = self.get(name, &[out, inp])?;
        Ok(transpose(&w, out, inp))
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
pub fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// Config files found beside the weights.
#[derive(Default)]
pub struct ConfigFiles<'a> {
    /// `config.json` text (timm or Hugging Face).
    pub config: Option<&'a str>,
    /// Hugging Face `preprocessor_config.json` text.
    pub preprocessor: Option<&'a str>,
}

impl ModelWeights {
    /// Load a model folder (`model.safetensors` + optional `config.json`, `preprocessor_config.json`)
    /// or a bare `.safetensors` file (every dimension inferred from the tensor shapes).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &Path) -> Result<Self> {
        let read_text = |p: &Path| -> Result<Option<String>> {
            if p.is_file() {
                std::fs::read_to_string(p)
                    .map(Some)
                    .map_err(|e| Error::io(p, e))
            } else {
                Ok(None)
            }
        };
        let (file, config, preprocessor) = if path.is_dir() {
            let file = path.join("model.safetensors");
            if !file.is_file() {
                let hint = if path.join("model.safetensors.index.json").is_file() {
                    "sharded checkpoints are not supported; merge the shards into one model.safetensors"
                } else if path.join("pytorch_model.bin").is_file() {
                    "only safetensors weights are read; convert pytorch_model.bin to model.safetensors"
                } else {
                    "the folder has no model.safetensors"
                };
                return Err(Error::io(
                    &file,
                    std::io::Error::new(std::io::ErrorKind::NotFound, hint),
                ));
            }
            (
                file,
                read_text(&path.join("config.json"))?,
                read_text(&path.join("preprocessor_config.json"))?,
            )
        } else {
            (path.to_path_buf(), None, None)
        };
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        Self::from_bytes(
            &file.display().to_string(),
            &bytes,
            ConfigFiles {
                config: config.as_deref(),
                preprocessor: preprocessor.as_deref(),
            },
        )
    }

    /// Parse safetensors bytes plus optional config texts. `name` is used in messages.
    pub fn from_bytes(name: &str, bytes: &[u8], files: ConfigFiles) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            file: name.into(),
            reason: e.to_string(),
        })?;
        let mut t = Tensors {
            st,
            file: name.into(),
            used: BTreeSet::new(),
        };
        let names = detect_layout(&t)?;
        let config_json = parse_json(files.config, name, "config.json")?;
        let pre_json = parse_json(files.preprocessor, name, "preprocessor_config.json")?;
        let config = build_config(&t, &names, config_json.as_ref(), pre_json.as_ref())?;
        load_weights(&mut t, &names, config, name)
    }
}

fn parse_json(text: Option<&str>, model: &str, what: &str) -> Result<Option<Value>> {
    text.map(|s| {
        serde_json::from_str(s)
            .map_err(|e| Error::config(format!("{what} of {model}"), e.to_string()))
    })
    .transpose()
}

fn detect_layout(t: &Tensors) -> Result<Names> {
    let names = t.st.names();
    if t.has("cls_token") && names.iter().any(|n| n.starts_with("blocks.")) {
        return Ok(Names {
            layout: Layout::Timm,
            prefix: String::new(),
        });
    }
    if let Some(cls) = names.iter().find(|n| n.ends_with("embeddings.cls_token")) {
        let prefix = cls.trim_end_matches("embeddings.cls_token").to_string();
        return Ok(Names {
            layout: Layout::HuggingFace,
            prefix,
        });
    }
    let mut sample: Vec<&str> = names.clone();
    sample.sort();
    sample.truncate(6);
    Err(Error::UnknownLayout {
        file: t.file.clone(),
        reason: format!(
            "neither timm (`cls_token`, `blocks.N.*`) nor Hugging Face (`vit.embeddings.cls_token`, \
             `vit.encoder.layer.N.*`) tensor names; found {} tensors such as {:?}",
            names.len(),
            sample
        ),
    })
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

/// What the weights themselves say about the model's shape.
struct Inferred {
    embed_dim: usize,
    in_chans: usize,
    patch_size: usize,
    depth: usize,
    tokens: usize,
    mlp_dim: usize,
    num_classes: usize,
    distilled: bool,
}

/// The output size of a linear weight `[out, in]`; anything but a non-empty 2-d tensor is an error.
fn first_dim(t: &Tensors, name: &str, inp: usize) -> Result<usize> {
    let s = t.shape(name)?;
    match s.as_slice() {
        [out, _] if *out > 0 => Ok(*out),
        _ => Err(Error::TensorShape {
            file: t.file.clone(),
            name: name.into(),
            got: s,
            expected: vec![0, inp],
        }),
    }
}

fn infer(t: &Tensors, n: &Names) -> Result<Inferred> {
    let file = &t.file;
    let cls = t.shape(&n.cls())?;
    let embed_dim = *cls.last().unwrap_or(&0);
    let pw = t.shape(&n.patch("weight"))?;
    if pw.len() != 4 || pw[2] != pw[3] || pw[0] != embed_dim || pw[1] == 0 || pw[2] == 0 {
        let p = pw.get(2).copied().filter(|&p| p > 0).unwrap_or(16);
        return Err(Error::TensorShape {
            file: file.clone(),
            name: n.patch("weight"),
            got: pw,
            expected: vec![embed_dim, 3, p, p],
        });
    }
    // Depth = blocks numbered 0, 1, 2, ... without a gap; a stray index beyond them is left unread
    // and reported with the other unused tensors.
    let bp = n.block_prefix();
    let indices: BTreeSet<usize> =
        t.st.names()
            .iter()
            .filter_map(|s| s.strip_prefix(bp.as_str()))
            .filter_map(|s| s.split('.').next()?.parse::<usize>().ok())
            .collect();
    let depth = (0..).take_while(|i| indices.contains(i)).count();
    if depth == 0 {
        return Err(Error::MissingTensor {
            file: file.clone(),
            name: format!("{bp}0.*"),
        });
    }
    let pos = t.shape(&n.pos())?;
    let tokens = if pos.len() >= 2 {
        pos[pos.len() - 2]
    } else {
        0
    };
    let fc1 = match n.layout {
        Layout::Timm => n.block(0, "mlp.fc1.weight"),
        Layout::HuggingFace => n.block(0, "intermediate.dense.weight"),
    };
    let mlp_dim = first_dim(t, &fc1, embed_dim)?;
    let distilled = t.has(&n.dist());
    let (head, _) = n.heads(distilled);
    let head_w = format!("{head}.weight");
    if !t.has(&head_w) {
        return Err(Error::UnknownLayout {
            file: file.clone(),
            reason: format!("no classifier head (`{head_w}`): a headless backbone cannot classify"),
        });
    }
    let num_classes = first_dim(t, &head_w, embed_dim)?;
    Ok(Inferred {
        embed_dim,
        in_chans: pw[1],
        patch_size: pw[2],
        depth,
        tokens,
        mlp_dim,
        num_classes,
        distilled,
    })
}

fn build_config(
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
    if let Some(i) = pcfg.get("interpolation") {
        p.interpolation = interpolation_from(i)
            .ok_or_else(|| Error::config(file, format!("unknown interpolation {i}")))?;
    }
    if let Some(m) = f32x3(pcfg, "mean", file)? {
        p.mean = m;
    }
    if let Some(s) = f32x3(pcfg, "std", file)? {
        p.std = positive_std(s, "std", file)?;
    }
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
    if let Some(i) = pre.get("resample") {
        p.interpolation = interpolation_from(i)
            .ok_or_else(|| Error::config(file, format!("unknown resample {i}")))?;
    }
    if let Some(m) = f32x3(pre, "image_mean", file)? {
        p.mean = m;
    }
    if let Some(s) = f32x3(pre, "image_std", file)? {
        p.std = positive_std(s, "image_std", file)?;
    }
    Ok(p)
}

fn load_weights(
    t: &mut Tensors,
    n: &Names,
    config: ViTConfig,
    source: &str,
) -> Result<ModelWeights> {
    let d = config.embed_dim;
    let m = config.mlp_dim;
    let c = config.num_classes;
    let prefix = config.num_prefix_tokens();
    let tokens = config.num_tokens();
    let pp = config.in_chans * config.patch_size * config.patch_size;

    let patch_w = {
        let w = t.get(
            &n.patch("weight"),
            &[d, config.in_chans, config.patch_size, config.patch_size],
        )?;
        transpose(&w, d, pp)
    };
    let patch_b = t.get(&n.patch("bias"), &[d])?;
    let mut prefix_tokens = t.get(&n.cls(), &[1, 1, d])?;
    if config.distilled {
        prefix_tokens.extend(t.get(&n.dist(), &[1, 1, d])?);
    }
    let pos_embed = t.get(&n.pos(), &[1, tokens, d])?;

    let mut blocks = Vec::with_capacity(config.depth);
    for i in 0..config.depth {
        let b = |part: &str| n.block(i, part);
        let block = match n.layout {
            Layout::Timm => {
                let qkv_b = if t.has(&b("attn.qkv.bias")) {
                    t.get(&b("attn.qkv.bias"), &[3 * d])?
                } else {
                    vec![0.0; 3 * d]
                };
                BlockWeights {
                    norm1_w: t.get(&b("norm1.weight"), &[d])?,
                    norm1_b: t.get(&b("norm1.bias"), &[d])?,
                    qkv_w: t.linear(&b("attn.qkv.weight"), 3 * d, d)?,
                    qkv_b,
                    proj_w: t.linear(&b("attn.proj.weight"), d, d)?,
                    proj_b: t.get(&b("attn.proj.bias"), &[d])?,
                    norm2_w: t.get(&b("norm2.weight"), &[d])?,
                    norm2_b: t.get(&b("norm2.bias"), &[d])?,
                    fc1_w: t.linear(&b("mlp.fc1.weight"), m, d)?,
                    fc1_b: t.get(&b("mlp.fc1.bias"), &[m])?,
                    fc2_w: t.linear(&b("mlp.fc2.weight"), d, m)?,
                    fc2_b: t.get(&b("mlp.fc2.bias"), &[d])?,
                }
            }
            Layout::HuggingFace => {
                // Separate q, k, v projections, stacked into timm's fused [3D, D] order.
                let mut qkv = Vec::with_capacity(3 * d * d);
                let mut qkv_b = Vec::with_capacity(3 * d);
                for part in ["query", "key", "value"] {
                    qkv.extend(t.get(&b(&format!("attention.attention.{part}.weight")), &[d, d])?);
                    let bias = b(&format!("attention.attention.{part}.bias"));
                    if t.has(&bias) {
                        qkv_b.extend(t.get(&bias, &[d])?);
                    } else {
                        qkv_b.extend(std::iter::repeat_n(0.0, d));
                    }
                }
                BlockWeights {
                    norm1_w: t.get(&b("layernorm_before.weight"), &[d])?,
                    norm1_b: t.get(&b("layernorm_before.bias"), &[d])?,
                    qkv_w: transpose(&qkv, 3 * d, d),
                    qkv_b,
                    proj_w: t.linear(&b("attention.output.dense.weight"), d, d)?,
                    proj_b: t.get(&b("attention.output.dense.bias"), &[d])?,
                    norm2_w: t.get(&b("layernorm_after.weight"), &[d])?,
                    norm2_b: t.get(&b("layernorm_after.bias"), &[d])?,
                    fc1_w: t.linear(&b("intermediate.dense.weight"), m, d)?,
                    fc1_b: t.get(&b("intermediate.dense.bias"), &[m])?,
                    fc2_w: t.linear(&b("output.dense.weight"), d, m)?,
                    fc2_b: t.get(&b("output.dense.bias"), &[d])?,
                }
            }
        };
        blocks.push(block);
    }
    let norm_w = t.get(&n.norm("weight"), &[d])?;
    let norm_b = t.get(&n.norm("bias"), &[d])?;

    let (head, head_dist) = n.heads(config.distilled);
    let (head_w, head_b) = if config.distilled {
        // mean of two heads = [W1 | W2]/2 applied to [cls, dist], bias (b1 + b2)/2.
        let w1 = t.linear(&format!("{head}.weight"), c, d)?;
        let w2 = t.linear(&format!("{head_dist}.weight"), c, d)?;
        let b1 = t.get(&format!("{head}.bias"), &[c])?;
        let b2 = t.get(&format!("{head_dist}.bias"), &[c])?;
        let w: Vec<f32> = w1.iter().chain(&w2).map(|x| 0.5 * x).collect();
        let b = b1.iter().zip(&b2).map(|(x, y)| 0.5 * (x + y)).collect();
        (w, b)
    } else {
        (
            t.linear(&format!("{head}.weight"), c, d)?,
            t.get(&format!("{head}.bias"), &[c])?,
        )
    };

    // Tensors we did not read mean an architecture we do not implement (layer scale, fc_norm, ...).
    let ignorable = |s: &str| s.contains("pooler.") || s.ends_with("num_batches_tracked");
    let unused: Vec<&str> =
        t.st.names()
            .into_iter()
            .filter(|s| !t.used.contains(*s) && !ignorable(s))
            .collect();
    if !unused.is_empty() {
        let mut unused = unused;
        unused.sort();
        return Err(Error::UnknownLayout {
            file: t.file.clone(),
            reason: format!(
                "{} tensors this plain ViT/DeiT does not use (e.g. {:?}): the architecture differs",
                unused.len(),
                &unused[..unused.len().min(4)]
            ),
        });
    }
    debug_assert_eq!(prefix_tokens.len(), prefix * d);
    Ok(ModelWeights {
        config,
        patch_w,
        patch_b,
        prefix_tokens,
        pos_embed,
        blocks,
        norm_w,
        norm_b,
        head_w,
        head_b,
        source: source.to_string(),
    })
}

impl ModelWeights {
    /// Parameter count of the model as stored (the distillation head included).
    pub fn parameter_count(&self) -> usize {
        let b: usize = self
            .blocks
            .iter()
            .map(|b| {
                [
                    &b.norm1_w, &b.norm1_b, &b.qkv_w, &b.qkv_b, &b.proj_w, &b.proj_b, &b.norm2_w,
                    &b.norm2_b, &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b,
                ]
                .iter()
                .map(|v| v.len())
                .sum::<usize>()
            })
            .sum();
        b + self.patch_w.len()
            + self.patch_b.len()
            + self.prefix_tokens.len()
            + self.pos_embed.len()
            + self.norm_w.len()
            + self.norm_b.len()
            + self.head_w.len()
            + self.head_b.len()
            + if self.config.distilled {
                self.head_b.len()
            } else {
                0
            }
    }
}
