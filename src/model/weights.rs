//! Loading a ViT/DeiT from safetensors in timm's or Hugging Face's tensor names, into one canonical
//! host-side form: f32, linear weights transposed to `[in, out]` so every GEMM reads `x . W`.

use std::collections::BTreeSet;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::config::ViTConfig;
use super::config_parse::{build_config, parse_json};
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
pub(super) enum Layout {
    Timm,
    /// Hugging Face transformers, with the model prefix (`vit.`, `deit.` or empty).
    HuggingFace,
}

/// Tensor names of one layout.
pub(super) struct Names {
    pub(super) layout: Layout,
    pub(super) prefix: String,
}

impl Names {
    pub(super) fn cls(&self) -> String {
        match self.layout {
            Layout::Timm => "cls_token".into(),
            Layout::HuggingFace => format!("{}embeddings.cls_token", self.prefix),
        }
    }
    pub(super) fn dist(&self) -> String {
        match self.layout {
            Layout::Timm => "dist_token".into(),
            Layout::HuggingFace => format!("{}embeddings.distillation_token", self.prefix),
        }
    }
    pub(super) fn pos(&self) -> String {
        match self.layout {
            Layout::Timm => "pos_embed".into(),
            Layout::HuggingFace => format!("{}embeddings.position_embeddings", self.prefix),
        }
    }
    pub(super) fn patch(&self, what: &str) -> String {
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
    pub(super) fn block(&self, i: usize, part: &str) -> String {
        match self.layout {
            Layout::Timm => format!("blocks.{i}.{part}"),
            Layout::HuggingFace => format!("{}encoder.layer.{i}.{part}", self.prefix),
        }
    }
    pub(super) fn block_prefix(&self) -> String {
        match self.layout {
            Layout::Timm => "blocks.".into(),
            Layout::HuggingFace => format!("{}encoder.layer.", self.prefix),
        }
    }
    pub(super) fn norm(&self, what: &str) -> String {
        match self.layout {
            Layout::Timm => format!("norm.{what}"),
            Layout::HuggingFace => format!("{}layernorm.{what}", self.prefix),
        }
    }
    /// Classifier names: (main head, distillation head).
    pub(super) fn heads(&self, distilled: bool) -> (&'static str, &'static str) {
        match (self.layout, distilled) {
            (Layout::Timm, _) => ("head", "head_dist"),
            (Layout::HuggingFace, false) => ("classifier", ""),
            (Layout::HuggingFace, true) => ("cls_classifier", "distillation_classifier"),
        }
    }
}

/// The raw tensors of a safetensors file, read as f32.
pub(super) struct Tensors<'a> {
    pub(super) st: SafeTensors<'a>,
    pub(super) file: String,
    used: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    pub(super) fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    pub(super) fn shape(&self, name: &str) -> Result<Vec<usize>> {
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

/// What the weights themselves say about the model's shape.
pub(super) struct Inferred {
    pub(super) embed_dim: usize,
    pub(super) in_chans: usize,
    pub(super) patch_size: usize,
    pub(super) depth: usize,
    pub(super) tokens: usize,
    pub(super) mlp_dim: usize,
    pub(super) num_classes: usize,
    pub(super) distilled: bool,
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

pub(super) fn infer(t: &Tensors, n: &Names) -> Result<Inferred> {
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
