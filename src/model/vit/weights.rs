//! A ViT/DeiT's weights on the host, read from safetensors in timm's or Hugging Face's tensor names
//! (the shared layers in `model/tensors.rs`); each layer loads its own tensors, by the names
//! [`ModelNames`] gives.

use std::collections::BTreeSet;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use super::config::{Pool, ViTConfig};
use super::config_json::read_config;
use super::names::ModelNames;
use super::pos_embed::{position_prefixes, square_grid};
use crate::error::{Error, Result};
use crate::model::tensors::{BlockWeights, LinearWeights, NormWeights, Tensors};

/// Architectures recognised by a tensor they have and the ViT family does not read, for the
/// error: what is not supported, by name.
const UNSUPPORTED: [(&str, &str); 6] = [
    ("relative_position", "relative position biases (BEiT, Swin)"),
    ("rope", "rotary position embeddings (EVA-02)"),
    ("freqs", "rotary position embeddings (EVA-02)"),
    ("weights_in", "a SwiGLU MLP (DINOv2 giant)"),
    ("w12", "a SwiGLU MLP"),
    ("attn_pool", "an attention-pooling head in timm's layout"),
];

/// Tensors left unread mean an architecture the ViT family does not implement: an error naming
/// the feature where it is a known one, and the tensors, rather than a silently wrong model.
fn check_all_used(t: &Tensors) -> Result<()> {
    let mut unused: Vec<&str> =
        t.st.names()
            .into_iter()
            .filter(|s| !t.used.contains(*s) && !ModelNames::not_needed(s))
            .collect();
    if unused.is_empty() {
        return Ok(());
    }
    unused.sort();
    let feature = UNSUPPORTED
        .iter()
        .find(|(part, _)| unused.iter().any(|n| n.contains(part)))
        .map_or(String::new(), |(_, what)| {
            format!("not supported: {what}; ")
        });
    Err(Error::UnknownLayout {
        file: t.file.clone(),
        reason: format!(
            "{feature}{} tensors this ViT family does not use (e.g. {:?}): the architecture differs",
            unused.len(),
            &unused[..unused.len().min(4)]
        ),
    })
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
    /// The LayerNorm over every token before the blocks (CLIP), where the model has one.
    pub norm_pre: Option<NormWeights>,
    pub blocks: Vec<BlockWeights>,
    /// The final LayerNorm over the tokens (absent where average pooling goes to `fc_norm`).
    pub norm: Option<NormWeights>,
    /// The LayerNorm after average pooling (timm's `fc_norm`).
    pub fc_norm: Option<NormWeights>,
    /// SigLIP's attention-pooling head.
    pub map_head: Option<MapHeadWeights>,
    /// `[head tokens * D, classes]`. For distilled DeiT both heads stacked and halved, so one GEMM
    /// over the normalised [CLS, DIST] pair gives the mean of the two heads. `None` for a backbone
    /// (DINOv2 as the hub ships it): the model then embeds and does not classify.
    pub head: Option<LinearWeights>,
    /// `[P, D]`, row-major: the projection of the pooled embedding (CLIP's `visual_projection`),
    /// applied on the host to the embedding read back (P x D per image).
    pub projection: Option<Vec<f32>>,
    /// Where the model was read from, for messages.
    pub source: String,
}

/// SigLIP's attention-pooling head as stored (`head.probe`, `head.attention.in_proj_*`, ...),
/// PyTorch's `[out, in]` order.
#[derive(Debug, Clone)]
pub struct MapHeadWeights {
    /// `[D]`: the learned query.
    pub probe: Vec<f32>,
    /// `[3D, D]` and `[3D]`: query, key and value projections stacked.
    pub in_proj_w: Vec<f32>,
    pub in_proj_b: Vec<f32>,
    /// `[D, D]` and `[D]`.
    pub out: (Vec<f32>, Vec<f32>),
    pub ln: NormWeights,
    /// `[M, D]`, `[M]` and `[D, M]`, `[D]`.
    pub fc1: (Vec<f32>, Vec<f32>),
    pub fc2: (Vec<f32>, Vec<f32>),
}

impl MapHeadWeights {
    fn load(t: &mut Tensors, prefix: &str, d: usize, mlp: usize) -> Result<Self> {
        let name = |s: &str| format!("{prefix}{s}");
        let mut linear = |s: &str, out: usize, inp: usize| -> Result<(Vec<f32>, Vec<f32>)> {
            Ok((
                t.get(&name(&format!("{s}.weight")), &[out, inp])?,
                t.get(&name(&format!("{s}.bias")), &[out])?,
            ))
        };
        let out = linear("attention.out_proj", d, d)?;
        let fc1 = linear("mlp.fc1", mlp, d)?;
        let fc2 = linear("mlp.fc2", d, mlp)?;
        Ok(MapHeadWeights {
            probe: t.get(&name("probe"), &[1, 1, d])?,
            in_proj_w: t.get(&name("attention.in_proj_weight"), &[3 * d, d])?,
            in_proj_b: t.get(&name("attention.in_proj_bias"), &[3 * d])?,
            out,
            ln: NormWeights::load(
                t,
                &crate::model::names::LayerNames::new(name("layernorm")),
                d,
            )?,
            fc1,
            fc2,
        })
    }
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
            (
                path.join("model.safetensors"),
                read_text(&path.join("config.json"))?,
                read_text(&path.join("preprocessor_config.json"))?,
            )
        } else {
            (path.to_path_buf(), None, None)
        };
        let index = path.join("model.safetensors.index.json");
        let (file, bytes) = if path.is_dir() && !file.exists() && index.is_file() {
            // A sharded checkpoint (large hub models): the shards joined into one buffer.
            (index.clone(), crate::model::shards::join_shards(&index)?)
        } else {
            if path.is_dir() && !file.exists() {
                let hint = if path.join("pytorch_model.bin").is_file() {
                    "only safetensors weights are read; convert pytorch_model.bin to model.safetensors"
                } else {
                    "the folder has no model.safetensors (nor model.safetensors.index.json)"
                };
                return Err(Error::io(
                    &file,
                    std::io::Error::new(std::io::ErrorKind::NotFound, hint),
                ));
            }
            let bytes = crate::limits::read_file(
                &file,
                crate::limits::MAX_MODEL_FILE_BYTES,
                "a safetensors model file",
            )?;
            (file, bytes)
        };
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
        let mut prefix_tokens = if config.class_token {
            get_rows(&mut t, &names.cls_token, 1, d)?
        } else {
            Vec::new()
        };
        if let Some(dist) = &names.dist_token {
            prefix_tokens.extend(get_rows(&mut t, dist, 1, d)?);
        }
        if config.registers > 0 {
            prefix_tokens.extend(get_rows(&mut t, &names.reg_tokens, config.registers, d)?);
        }
        let norm_pre = if config.pre_norm {
            Some(NormWeights::load(&mut t, &names.norm_pre, d)?)
        } else {
            None
        };
        let projection = match config.projection_dim {
            Some(p) => Some(t.get(&names.projection, &[p, d])?),
            None => None,
        };
        let pos_embed = position_rows(&mut t, &names, &config, inferred.tokens)?;
        let blocks = (0..config.depth)
            .map(|i| {
                let mut b = BlockWeights::load(&mut t, &names.block(i), d, config.mlp_dim)?;
                let [ls1, ls2] = names.layer_scales(i);
                // Layer scale multiplies a layer's output channels: folded into its weight and
                // bias, it costs nothing at run time.
                if t.has(&ls1) || t.has(&ls2) {
                    b.proj.scale_outputs(&t.get(&ls1, &[d])?);
                    b.fc2.scale_outputs(&t.get(&ls2, &[d])?);
                }
                Ok(b)
            })
            .collect::<Result<Vec<_>>>()?;
        // The class-token head reads the final-normed token; average pooling may norm after the
        // mean instead (fc_norm), with no norm over the tokens.
        let norm = if config.pool == Pool::Token || t.has(&names.norm.weight) {
            Some(NormWeights::load(&mut t, &names.norm, d)?)
        } else {
            None
        };
        let fc_norm = if config.fc_norm {
            Some(NormWeights::load(&mut t, &names.fc_norm, d)?)
        } else {
            None
        };
        let map_head = if config.pool == Pool::Map {
            Some(MapHeadWeights::load(
                &mut t,
                &names.map_head,
                d,
                config.mlp_dim,
            )?)
        } else {
            None
        };
        let classes = config.num_classes;
        let head = if classes == 0 {
            None
        } else {
            let mut head = LinearWeights::load(&mut t, &names.head, classes, d)?;
            if let Some(head_dist) = &names.head_dist {
                let dist_head = LinearWeights::load(&mut t, head_dist, classes, d)?;
                head = LinearWeights::mean_of_two(head, dist_head);
            }
            Some(head)
        };
        check_all_used(&t)?;
        debug_assert_eq!(prefix_tokens.len(), config.num_prefix_tokens() * d);
        Ok(ModelWeights {
            config,
            patch,
            prefix_tokens,
            pos_embed,
            norm_pre,
            projection,
            blocks,
            norm,
            fc_norm,
            map_head,
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
        let merged_bias = match &self.head {
            Some(h) if self.config.distilled => h.b.len(),
            _ => 0,
        };
        blocks
            + linear(&self.patch)
            + self.prefix_tokens.len()
            + self.pos_embed.len()
            + self.norm.as_ref().map_or(0, norm)
            + self.fc_norm.as_ref().map_or(0, norm)
            + self.head.as_ref().map_or(0, linear)
            + merged_bias
    }
}

/// The position embedding as one row per token, `[tokens, D]`: a checkpoint that gives no position
/// to its registers (DINOv2), or to any prefix token (timm's `no_embed_class`), has zero rows there;
/// a patch grid of another size than the model runs at (DINOv2: 37x37 stored, 16x16 run) is
/// resampled bicubically.
fn position_rows(
    t: &mut Tensors,
    names: &ModelNames,
    c: &ViTConfig,
    rows: usize,
) -> Result<Vec<f32>> {
    let d = c.embed_dim;
    let given = get_rows(t, &names.pos_embed, rows, d)?;
    // The config check allowed only these prefix row counts: all, the head's tokens, none; then
    // the patches of the run grid, or (a model that resamples) a square grid.
    let prefixes = position_prefixes(c.num_prefix_tokens(), c.head_tokens());
    let exact = prefixes
        .iter()
        .find(|&&k| rows.checked_sub(k) == Some(c.num_patches()))
        .map(|&k| (k, c.grid()));
    let square = || square_grid(rows, &prefixes).map(|(k, g)| (k, (g, g)));
    let (with_position, stored) = exact.or_else(square).ok_or_else(|| {
        Error::config(
            &t.file,
            format!(
                "`{}` has {rows} rows: not the {} patches of a {:?} grid nor a square grid after \
                 the prefix tokens",
                names.pos_embed,
                c.num_patches(),
                c.grid()
            ),
        )
    })?;
    let mut full = vec![0.0f32; c.num_tokens() * d];
    full[..with_position * d].copy_from_slice(&given[..with_position * d]);
    let patches = super::pos_embed::resize_grid(
        &given[with_position * d..],
        stored,
        c.grid(),
        d,
        names.position_resample(c.registers),
    );
    full[c.num_prefix_tokens() * d..].copy_from_slice(&patches);
    Ok(full)
}

/// A `[rows, d]` table stored as `[1, rows, d]` (timm, most of Hugging Face), `[rows, d]` (CLIP's
/// position embedding) or, for one row, `[d]` (CLIP's class embedding).
fn get_rows(t: &mut Tensors, name: &str, rows: usize, d: usize) -> Result<Vec<f32>> {
    let shape = t.shape(name)?;
    match shape.as_slice() {
        [r, dd] if *r == rows && *dd == d => t.get(name, &[rows, d]),
        [dd] if rows == 1 && *dd == d => t.get(name, &[d]),
        _ => t.get(name, &[1, rows, d]),
    }
}

/// What the weights themselves say about the model's shape.
pub(crate) struct Inferred {
    pub(crate) embed_dim: usize,
    pub(crate) in_chans: usize,
    pub(crate) patch_size: usize,
    pub(crate) depth: usize,
    /// Rows of the position embedding: prefix tokens and patches.
    pub(crate) tokens: usize,
    pub(crate) mlp_dim: usize,
    pub(crate) num_classes: usize,
    pub(crate) distilled: bool,
    /// Register tokens (`reg_token`, `register_tokens`: `[1, R, D]`).
    pub(crate) registers: usize,
    /// A LayerNorm before the blocks (CLIP's `pre_layrnorm`, timm's `norm_pre`).
    pub(crate) pre_norm: bool,
    pub(crate) class_token: bool,
    /// A LayerNorm after average pooling (timm's `fc_norm`).
    pub(crate) fc_norm: bool,
    /// The projection's output width (CLIP's `visual_projection`: `[P, D]`).
    pub(crate) projection_dim: Option<usize>,
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
        let class_token = t.has(&n.cls_token);
        // The width: the class token's, or the patch embedding's where there is no class token.
        let width_of = if class_token {
            &n.cls_token
        } else {
            &n.patch_embed.weight
        };
        let shape = t.shape(width_of)?;
        let embed_dim = if class_token {
            *shape.last().unwrap_or(&0)
        } else {
            *shape.first().unwrap_or(&0)
        };
        if embed_dim == 0 {
            return Err(Error::UnknownLayout {
                file: file.clone(),
                reason: format!(
                    "tensor `{width_of}` has shape {shape:?}: a model needs a width of at least 1"
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
        // Each block adds GPU objects to every compiled program; past some tens of thousands a
        // driver dies without an error (crate::limits::MAX_DEPTH).
        if depth > crate::limits::MAX_DEPTH {
            return Err(Error::UnknownLayout {
                file: file.clone(),
                reason: format!(
                    "{depth} blocks (`{}0.*` to `{}{}.*`) are over the limit of {}",
                    n.block_prefix,
                    n.block_prefix,
                    depth - 1,
                    crate::limits::MAX_DEPTH
                ),
            });
        }
        let pos = t.shape(&n.pos_embed)?;
        let tokens = if pos.len() >= 2 {
            pos[pos.len() - 2]
        } else {
            0
        };
        let mlp_dim = first_dim(t, &n.block(0).fc1.weight, embed_dim)?;
        // No classifier: a backbone (DINOv2 as the hub ships it), which embeds and does not
        // classify.
        let head = &n.head.weight;
        let num_classes = if t.has(head) {
            first_dim(t, head, embed_dim)?
        } else {
            0
        };
        let fc1 = n.block(0).fc1.weight;
        let mut counts = vec![
            (tokens, &n.pos_embed, "positions"),
            (mlp_dim, &fc1, "MLP units"),
        ];
        if t.has(head) {
            counts.push((num_classes, head, "classes"));
        }
        for (value, tensor, what) in counts {
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
        let registers = if t.has(&n.reg_tokens) {
            match t.shape(&n.reg_tokens)?.as_slice() {
                [1, r, dd] if *dd == embed_dim && *r <= crate::limits::MAX_DEPTH => *r,
                other => {
                    return Err(Error::TensorShape {
                        file: file.clone(),
                        name: n.reg_tokens.clone(),
                        got: other.to_vec(),
                        expected: vec![1, 4, embed_dim],
                    })
                }
            }
        } else {
            0
        };
        let projection_dim = if t.has(&n.projection) {
            Some(first_dim(t, &n.projection, embed_dim)?).filter(|&p| p > 0)
        } else {
            None
        };
        Ok(Inferred {
            registers,
            class_token,
            fc_norm: t.has(&n.fc_norm.weight),
            pre_norm: t.has(&n.norm_pre.weight),
            projection_dim,
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
