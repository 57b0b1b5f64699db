//! A ViT/DeiT's weights on the host, read from safetensors in timm's or Hugging Face's tensor names
//! into one canonical form: f32, linear weights transposed to `[in, out]` so every GEMM reads `x . W`.
//! Each layer loads its own tensors, by the names [`ModelNames`] gives.

use std::collections::BTreeSet;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

use super::config::ViTConfig;
use super::config_json::read_config;
use super::names::{BlockNames, LayerNames, ModelNames, QkvNames};
use crate::error::{Error, Result};

/// The tensors of a safetensors file, read as f32; remembers which were read.
pub(super) struct Tensors<'a> {
    pub(super) st: SafeTensors<'a>,
    pub(super) file: String,
    used: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    /// The tensors of safetensors `bytes`, their layout checked first; `file` names them in errors.
    pub(super) fn open(file: &str, bytes: &'a [u8]) -> Result<Self> {
        super::safetensors_check::check(file, bytes)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            file: file.into(),
            reason: e.to_string(),
        })?;
        Ok(Tensors {
            st,
            file: file.into(),
            used: BTreeSet::new(),
        })
    }

    /// Names no loader has read, sorted.
    pub(super) fn unused(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .st
            .names()
            .into_iter()
            .filter(|s| !self.used.contains(*s))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    pub(super) fn missing(&self, name: &str) -> Error {
        Error::MissingTensor {
            file: self.file.clone(),
            name: name.into(),
        }
    }

    pub(super) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.st
            .tensor(name)
            .map(|t| t.shape().to_vec())
            .map_err(|_| self.missing(name))
    }

    /// The tensor `name` as f32, checked against `expected` (leading 1s of the stored shape are ignored).
    pub(super) fn get(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self.st.tensor(name).map_err(|_| self.missing(name))?;
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
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Safetensors {
                file: self.file.clone(),
                reason: format!(
                    "tensor `{name}` holds {v} at index {i}: weights must be finite numbers"
                ),
            });
        }
        self.used.insert(name.to_string());
        Ok(values)
    }

    /// Tensors left unread mean an architecture this plain ViT/DeiT does not implement (layer scale,
    /// fc_norm, register tokens, ...): an error rather than a silently wrong model.
    fn check_all_used(&self) -> Result<()> {
        let mut unused: Vec<&str> = self
            .st
            .names()
            .into_iter()
            .filter(|s| !self.used.contains(*s) && !ModelNames::not_needed(s))
            .collect();
        if unused.is_empty() {
            return Ok(());
        }
        unused.sort();
        Err(Error::UnknownLayout {
            file: self.file.clone(),
            reason: format!(
                "{} tensors this plain ViT/DeiT does not use (e.g. {:?}): the architecture differs",
                unused.len(),
                &unused[..unused.len().min(4)]
            ),
        })
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// A linear layer `y = x . w + b`.
#[derive(Debug, Clone)]
pub struct LinearWeights {
    /// `[in, out]`: GEMM order, PyTorch's `[out, in]` transposed.
    pub w: Vec<f32>,
    /// `[out]`.
    pub b: Vec<f32>,
}

impl LinearWeights {
    /// PyTorch's `[out, in]` weight and `[out]` bias.
    pub(super) fn load(t: &mut Tensors, n: &LayerNames, out: usize, inp: usize) -> Result<Self> {
        let w = t.get(&n.weight, &[out, inp])?;
        Ok(LinearWeights {
            w: transpose(&w, out, inp),
            b: t.get(&n.bias, &[out])?,
        })
    }

    /// As [`load`](Self::load), with a zero bias where the checkpoint has none (`qkv_bias=False`).
    fn load_optional_bias(t: &mut Tensors, n: &LayerNames, out: usize, inp: usize) -> Result<Self> {
        if t.has(&n.bias) {
            return Self::load(t, n, out, inp);
        }
        let w = t.get(&n.weight, &[out, inp])?;
        Ok(LinearWeights {
            w: transpose(&w, out, inp),
            b: vec![0.0; out],
        })
    }

    /// The patch embedding: a `[D, C, p, p]` convolution with stride `p` is a linear layer on
    /// flattened patches, rows in (channel, kernel row, kernel column) order.
    fn load_patch_embed(
        t: &mut Tensors,
        n: &LayerNames,
        d: usize,
        c: usize,
        p: usize,
    ) -> Result<Self> {
        let w = t.get(&n.weight, &[d, c, p, p])?;
        Ok(LinearWeights {
            w: transpose(&w, d, c * p * p),
            b: t.get(&n.bias, &[d])?,
        })
    }

    /// Layers on the same input side by side, as one: outputs of `parts[0]`, then `parts[1]`, ...
    fn concat_outputs(parts: &[LinearWeights]) -> Self {
        let inp = parts.first().map_or(0, |p| p.inp());
        let mut w = Vec::with_capacity(parts.iter().map(|p| p.w.len()).sum());
        for r in 0..inp {
            for p in parts {
                w.extend_from_slice(&p.w[r * p.out()..(r + 1) * p.out()]);
            }
        }
        LinearWeights {
            w,
            b: parts.iter().flat_map(|p| p.b.iter().copied()).collect(),
        }
    }

    /// Distilled DeiT's two heads as one layer: the mean of `cls_head(CLS)` and `dist_head(DIST)` is
    /// `[W_cls; W_dist] / 2` applied to the concatenated `[CLS, DIST]` pair, plus the mean bias.
    fn mean_of_two(cls_head: LinearWeights, dist_head: LinearWeights) -> Self {
        let (a, b) = (cls_head, dist_head);
        LinearWeights {
            w: a.w.iter().chain(&b.w).map(|x| 0.5 * x).collect(),
            b: a.b.iter().zip(&b.b).map(|(x, y)| 0.5 * (x + y)).collect(),
        }
    }

    pub fn inp(&self) -> usize {
        self.w.len() / self.out().max(1)
    }

    pub fn out(&self) -> usize {
        self.b.len()
    }
}

/// A LayerNorm's scale and shift, `[D]` each.
#[derive(Debug, Clone)]
pub struct NormWeights {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl NormWeights {
    pub(super) fn load(t: &mut Tensors, n: &LayerNames, d: usize) -> Result<Self> {
        Ok(NormWeights {
            w: t.get(&n.weight, &[d])?,
            b: t.get(&n.bias, &[d])?,
        })
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    pub norm1: NormWeights,
    /// `[D, 3D]`: columns are q (all heads), then k, then v.
    pub qkv: LinearWeights,
    pub proj: LinearWeights,
    pub norm2: NormWeights,
    pub fc1: LinearWeights,
    pub fc2: LinearWeights,
}

impl BlockWeights {
    /// Block weights of width `d` and MLP width `mlp`.
    pub(super) fn load(t: &mut Tensors, n: &BlockNames, d: usize, mlp: usize) -> Result<Self> {
        let norm1 = NormWeights::load(t, &n.norm1, d)?;
        let qkv = match &n.qkv {
            QkvNames::Fused(qkv) => LinearWeights::load_optional_bias(t, qkv, 3 * d, d)?,
            QkvNames::Separate(parts) => {
                let parts = parts
                    .iter()
                    .map(|p| LinearWeights::load_optional_bias(t, p, d, d))
                    .collect::<Result<Vec<_>>>()?;
                LinearWeights::concat_outputs(&parts)
            }
        };
        Ok(BlockWeights {
            norm1,
            qkv,
            proj: LinearWeights::load(t, &n.proj, d, d)?,
            norm2: NormWeights::load(t, &n.norm2, d)?,
            fc1: LinearWeights::load(t, &n.fc1, mlp, d)?,
            fc2: LinearWeights::load(t, &n.fc2, d, mlp)?,
        })
    }
}

/// A whole model on the host.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub config: ViTConfig,
    /// The patch embedding, `[C * p * p, D]`.
    pub patch: LinearWeights,
    /// `[prefix, D]`: CLS, then the distillation token where there is one.
    pub prefix_tokens: Vec<f32>,
    /// `[tokens, D]`.
    pub pos_embed: Vec<f32>,
    pub blocks: Vec<BlockWeights>,
    pub norm: NormWeights,
    /// `[prefix * D, classes]`. For distilled DeiT both heads stacked and halved, so one GEMM over the
    /// normalised [CLS, DIST] pair gives the mean of the two heads.
    pub head: LinearWeights,
    /// Where the model was read from, for messages.
    pub source: String,
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
            if p.exists() {
                crate::limits::read_text(p, "a config file").map(Some)
            } else {
                Ok(None)
            }
        };
        let (file, config, preprocessor) = if path.is_dir() {
            let file = path.join("model.safetensors");
            if !file.exists() {
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
        let bytes = crate::limits::read_file(
            &file,
            crate::limits::MAX_MODEL_FILE_BYTES,
            "a safetensors model file",
        )?;
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
        let mut t = Tensors::open(name, bytes)?;
        let names = ModelNames::detect(name, &t.st.names())?;
        let inferred = Inferred::from_shapes(&t, &names)?;
        let config = read_config(&files, name, &names, &inferred)?;

        // Each layer reads its own tensors, checked against the config's shapes.
        let (d, c, p) = (config.embed_dim, config.in_chans, config.patch_size);
        let patch = LinearWeights::load_patch_embed(&mut t, &names.patch_embed, d, c, p)?;
        let mut prefix_tokens = t.get(&names.cls_token, &[1, 1, d])?;
        if let Some(dist) = &names.dist_token {
            prefix_tokens.extend(t.get(dist, &[1, 1, d])?);
        }
        let pos_embed = t.get(&names.pos_embed, &[1, config.num_tokens(), d])?;
        let blocks = (0..config.depth)
            .map(|i| BlockWeights::load(&mut t, &names.block(i), d, config.mlp_dim))
            .collect::<Result<Vec<_>>>()?;
        let norm = NormWeights::load(&mut t, &names.norm, d)?;
        let classes = config.num_classes;
        let mut head = LinearWeights::load(&mut t, &names.head, classes, d)?;
        if let Some(head_dist) = &names.head_dist {
            let dist_head = LinearWeights::load(&mut t, head_dist, classes, d)?;
            head = LinearWeights::mean_of_two(head, dist_head);
        }
        t.check_all_used()?;
        debug_assert_eq!(prefix_tokens.len(), config.num_prefix_tokens() * d);
        Ok(ModelWeights {
            config,
            patch,
            prefix_tokens,
            pos_embed,
            blocks,
            norm,
            head,
            source: name.to_string(),
        })
    }

    /// Parameter count of the model as stored (the distillation head included).
    pub fn parameter_count(&self) -> usize {
        let linear = |l: &LinearWeights| l.w.len() + l.b.len();
        let norm = |n: &NormWeights| n.w.len() + n.b.len();
        let blocks: usize = self
            .blocks
            .iter()
            .map(|b| {
                norm(&b.norm1)
                    + linear(&b.qkv)
                    + linear(&b.proj)
                    + norm(&b.norm2)
                    + linear(&b.fc1)
                    + linear(&b.fc2)
            })
            .sum();
        // The two heads' biases were merged into one.
        let merged_bias = if self.config.distilled {
            self.head.b.len()
        } else {
            0
        };
        blocks
            + linear(&self.patch)
            + self.prefix_tokens.len()
            + self.pos_embed.len()
            + norm(&self.norm)
            + linear(&self.head)
            + merged_bias
    }
}

/// What the weights themselves say about the model's shape.
pub(super) struct Inferred {
    pub(super) embed_dim: usize,
    pub(super) in_chans: usize,
    pub(super) patch_size: usize,
    pub(super) depth: usize,
    /// Rows of the position embedding: prefix tokens and patches.
    pub(super) tokens: usize,
    pub(super) mlp_dim: usize,
    pub(super) num_classes: usize,
    pub(super) distilled: bool,
}

/// The output size of a linear weight `[out, in]`; anything but a 2-d tensor is an error (a zero
/// size is reported by the caller, which knows what the rows are).
fn first_dim(t: &Tensors, name: &str, inp: usize) -> Result<usize> {
    let s = t.shape(name)?;
    match s.as_slice() {
        [out, _] => Ok(*out),
        _ => Err(Error::TensorShape {
            file: t.file.clone(),
            name: name.into(),
            got: s,
            expected: vec![0, inp],
        }),
    }
}

impl Inferred {
    fn from_shapes(t: &Tensors, n: &ModelNames) -> Result<Self> {
        let file = &t.file;
        let embed_dim = *t.shape(&n.cls_token)?.last().unwrap_or(&0);
        if embed_dim == 0 {
            return Err(Error::UnknownLayout {
                file: file.clone(),
                reason: format!(
                    "tensor `{}` has shape {:?}: a model needs a width of at least 1",
                    n.cls_token,
                    t.shape(&n.cls_token)?
                ),
            });
        }
        let patch = &n.patch_embed.weight;
        let pw = t.shape(patch)?;
        if pw.len() != 4 || pw[2] != pw[3] || pw[0] != embed_dim || pw[1] == 0 || pw[2] == 0 {
            let p = pw.get(2).copied().filter(|&p| p > 0).unwrap_or(16);
            return Err(Error::TensorShape {
                file: file.clone(),
                name: patch.clone(),
                got: pw,
                expected: vec![embed_dim, 3, p, p],
            });
        }
        // Depth = blocks numbered 0, 1, 2, ... without a gap; a stray index beyond them is left unread
        // and reported with the other unused tensors.
        let indices: BTreeSet<usize> =
            t.st.names()
                .iter()
                .filter_map(|s| n.block_index(s))
                .collect();
        let depth = (0..).take_while(|i| indices.contains(i)).count();
        if depth == 0 {
            return Err(t.missing(&format!("{}0.*", n.block_prefix)));
        }
        let pos = t.shape(&n.pos_embed)?;
        let tokens = if pos.len() >= 2 {
            pos[pos.len() - 2]
        } else {
            0
        };
        let mlp_dim = first_dim(t, &n.block(0).fc1.weight, embed_dim)?;
        let head = &n.head.weight;
        if !t.has(head) {
            return Err(Error::UnknownLayout {
                file: file.clone(),
                reason: format!(
                    "no classifier head (`{head}`): a headless backbone cannot classify"
                ),
            });
        }
        let num_classes = first_dim(t, head, embed_dim)?;
        for (value, tensor, what) in [
            (tokens, &n.pos_embed, "positions"),
            (mlp_dim, &n.block(0).fc1.weight, "MLP units"),
            (num_classes, head, "classes"),
        ] {
            if value == 0 {
                return Err(Error::UnknownLayout {
                    file: file.clone(),
                    reason: format!(
                        "tensor `{tensor}` has shape {:?}: no {what} (a model needs at least one)",
                        t.shape(tensor)?
                    ),
                });
            }
        }
        Ok(Inferred {
            embed_dim,
            in_chans: pw[1],
            patch_size: pw[2],
            depth,
            tokens,
            mlp_dim,
            num_classes,
            distilled: n.dist_token.is_some(),
        })
    }
}
