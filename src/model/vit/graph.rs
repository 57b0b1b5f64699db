//! The ViT / DeiT forward pass as plain code: one struct per layer holding its GPU weights, and
//! `forward` functions that say in order what happens. They only append steps; the session plays them.

use super::config::Pool;
use super::{ModelWeights, ViTConfig};
use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::kernels::{Activation, Features, Gemm, LiveRows, MatView, RowView};
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::{TokenHook, TokenState};
use crate::model::layers::{attention_steps, fits, LayerNorm, Linear, NormLinear};
use crate::model::tensors::{LinearWeights, NormWeights};

/// Intermediate buffers of one (model, batch), allocated once and reused by every run.
pub struct Activations {
    pub batch: usize,
    /// `[B, C, H, W]` normalised pixels.
    pub image: GpuTensor,
    /// `[B * patches, C * p * p]`.
    pub patches: GpuTensor,
    /// `[B, N, D]`: the residual stream (the blocks' LayerNorms are folded into the GEMMs that
    /// read it, so there is no normed copy).
    pub x: GpuTensor,
    /// `[B, N, 3D]`.
    pub qkv: GpuTensor,
    /// `[B, H, N, N]`: attention probabilities, kept for token scoring.
    pub probs: GpuTensor,
    /// `[B, N, D]`: attention output before the projection.
    pub attn: GpuTensor,
    /// `[B, N, mlp]`.
    pub hidden: GpuTensor,
    /// `[B, head tokens * D]`: final-normed CLS (and distillation) rows.
    pub head_in: GpuTensor,
    /// `[B, classes]`.
    pub logits: GpuTensor,
}

impl Activations {
    /// Values per image of each buffer, by name: what decides the largest batch a device can hold.
    pub fn per_image(c: &ViTConfig) -> Vec<(&'static str, usize)> {
        let n = c.num_tokens();
        let d = c.embed_dim;
        vec![
            ("image", c.in_chans * c.image_size.0 * c.image_size.1),
            (
                "patches",
                c.num_patches() * c.in_chans * c.patch_size * c.patch_size,
            ),
            ("tokens", n * d),
            ("qkv", n * 3 * d),
            ("attention probabilities", c.num_heads * n * n),
            ("mlp hidden", n * c.mlp_dim),
            // Without a class token (average pooling) the buffer is unused: one row keeps it valid.
            ("head input", c.head_tokens().max(1) * d),
            // A backbone has no classes; one unused value keeps the buffer valid.
            ("logits", c.num_classes.max(1)),
        ]
    }

    /// The largest batch whose every buffer fits in one storage binding of `max_bytes`.
    pub fn max_batch(c: &ViTConfig, max_bytes: u64) -> (usize, &'static str) {
        Self::per_image(c)
            .into_iter()
            .map(|(name, v)| ((max_bytes / (4 * v.max(1) as u64)) as usize, name))
            .min()
            .unwrap_or((0, "none"))
    }

    /// The buffers of `batch` images; those that only feed a GEMM (normed rows, attention context,
    /// MLP hidden, head input) are stored as `storage`, the rest as f32.
    pub fn new(gpu: &GpuContext, c: &ViTConfig, batch: usize, storage: Elem) -> Result<Self> {
        if batch == 0 {
            return Err(Error::param("batch", "must be at least 1"));
        }
        let (max, limiting) = Self::max_batch(c, gpu.max_binding_bytes());
        if batch > max {
            return Err(Error::BatchTooLarge {
                batch,
                max,
                reason: format!(
                    "the {limiting} buffer would exceed the device's {} byte storage binding limit",
                    gpu.max_binding_bytes()
                ),
            });
        }
        let sizes: std::collections::HashMap<_, _> = Self::per_image(c).into_iter().collect();
        let t = |name: &'static str, label: &str| GpuTensor::zeros(gpu, label, batch * sizes[name]);
        let h = |name: &'static str, label: &str| {
            GpuTensor::zeros_of(gpu, label, batch * sizes[name], storage)
        };
        Ok(Activations {
            batch,
            image: t("image", "image"),
            patches: t("patches", "patches"),
            x: t("tokens", "x"),
            qkv: t("qkv", "qkv"),
            probs: t("attention probabilities", "attention probabilities"),
            attn: h("tokens", "attention output"),
            hidden: h("mlp hidden", "mlp hidden"),
            head_in: h("head input", "head input"),
            logits: t("logits", "logits"),
        })
    }
}

/// One transformer block: `x += proj(attn(ln1(x)))`, then `x += fc2(gelu(fc1(ln2(x))))`. Each
/// LayerNorm is folded into the linear layer after it: `qkv` is `qkv(ln1(.))`, `fc1` is `fc1(ln2(.))`.
pub struct Block {
    pub qkv: NormLinear,
    pub proj: Linear,
    pub fc1: NormLinear,
    pub fc2: Linear,
}

impl Block {
    /// Append the block's steps for `tokens` tokens per image; returns the tokens it leaves.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        k: &Kernels,
        p: &mut Program,
        a: &Activations,
        c: &ViTConfig,
        index: usize,
        tokens: usize,
        hook: &mut dyn TokenHook,
    ) -> Result<usize> {
        let (b, n, d, h) = (a.batch, tokens, c.embed_dim, c.num_heads);
        let name = |s: &str| format!("block{index}.{s}");
        // Rows masked by an earlier threshold step: row-wise kernels run over the packed live rows,
        // attention per (image, head) over each image's live queries.
        let masked = index
            .checked_sub(1)
            .and_then(|i| hook.live_rows(i))
            .cloned();
        let live = masked.as_ref().map(|m| LiveRows::Packed { map: &m.map });

        self.qkv.forward(
            k,
            p,
            &name("qkv"),
            &a.x,
            &a.qkv,
            b * n,
            (Activation::None, false),
            live,
        )?;

        let probs = attention_steps(
            k,
            p,
            &name(""),
            (&a.qkv, &a.probs, &a.attn),
            (b, n, d, h),
            hook.needs_attention_probs(index),
            hook.attention_bias(index),
            masked.as_ref().map(|m| &m.counts),
        )?;
        self.proj.forward(
            k,
            p,
            &name("proj"),
            &a.attn,
            &a.x,
            b * n,
            (Activation::None, true),
            live,
        )?;

        // The pruning point: the probabilities where the unfused path wrote them; the keys are the
        // middle third of every qkv row.
        let state = TokenState {
            block: index,
            batch: b,
            rows: n,
            protected: c.num_prefix_tokens(),
            heads: h,
            tokens: &a.x,
            width: d,
            probs: probs.then_some(&a.probs),
            keys: Features::qkv_keys(&a.qkv, n, d),
        };
        let n = hook.after_attention(k, p, &state)?;
        let masked = hook.live_rows(index).cloned();
        let live = masked.as_ref().map(|m| LiveRows::Packed { map: &m.map });
        // After a pruning step the survivors are in its compacted rows: the MLP reads them, and
        // fc2 writes rows + MLP(rows) into the residual stream.
        let compacted = hook.compacted_rows(index).cloned();
        let rows = b * n;
        self.fc1.forward(
            k,
            p,
            &name("fc1"),
            compacted.as_ref().unwrap_or(&a.x),
            &a.hidden,
            rows,
            (c.activation, false),
            live,
        )?;
        self.fc2.forward_residual(
            k,
            p,
            &name("fc2"),
            &a.hidden,
            (&a.x, compacted.as_ref()),
            rows,
            live,
        )?;
        Ok(n)
    }
}

/// A ViT / DeiT with its weights on the GPU.
pub struct VisionTransformer {
    pub config: ViTConfig,
    pub patch_embed: Linear,
    pub prefix_tokens: GpuTensor,
    pub pos_embed: GpuTensor,
    /// The LayerNorm over every token before the blocks (CLIP).
    pub norm_pre: Option<LayerNorm>,
    pub blocks: Vec<Block>,
    /// The final LayerNorm of the class-token head (on the GPU); average pooling norms on the host.
    pub norm: Option<LayerNorm>,
    /// `None` for a backbone: the output is the normed class token alone.
    pub head: Option<Linear>,
    /// How the linear weights (and the activations that feed them) are stored: f32 or f16.
    pub storage: Elem,
    /// `[P, D]`: CLIP's projection of the pooled embedding, applied on the host after readback.
    pub projection: Option<Vec<f32>>,
    /// Average pooling's head, on the host: a few thousand multiply-adds per image.
    pub pooled: Option<PooledHead>,
}

/// A pooled head on the host, from the final tokens read back: the final LayerNorm on each token
/// (where the model has one), then their mean weighted by the tokens each stands for and
/// `fc_norm` (average pooling), or SigLIP's attention pooling; then the classifier.
pub struct PooledHead {
    pub norm: Option<NormWeights>,
    pub fc_norm: Option<NormWeights>,
    /// SigLIP's attention-pooling head, in place of the mean.
    pub map: Option<MapHead>,
    pub head: Option<LinearWeights>,
    pub eps: f32,
}

/// SigLIP's attention-pooling head, `h = MHA(probe, X, X); h + MLP(LN(h))`, with its constant
/// query folded into the keys: head `j`'s score of token `x` is `u_j . x + c_j` (`u_j` the key
/// projection's rows of that head times its query, over sqrt(head width)), and since the weights
/// of a softmax sum to one, the values are projected once, after the weighted mean of the tokens.
/// About `2 n D H` multiply-adds for the scores and a few D x D products per image, rather than
/// projecting every token's key and value.
pub struct MapHead {
    /// Per head: `u_j` `[D]` and `c_j`.
    scores: Vec<(Vec<f32>, f32)>,
    /// The value projection, `[D out, D in]` row-major, and its bias.
    value: (Vec<f32>, Vec<f32>),
    /// The output projection, `[D out, D in]`, and its bias.
    out: (Vec<f32>, Vec<f32>),
    ln: NormWeights,
    /// fc1 `[M, D]` + bias, fc2 `[D, M]` + bias, PyTorch order.
    fc1: (Vec<f32>, Vec<f32>),
    fc2: (Vec<f32>, Vec<f32>),
    activation: crate::gpu::kernels::Activation,
    heads: usize,
}

/// `w x + b` with `w` `[out, in]` row-major.
fn matvec(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    w.chunks(x.len())
        .zip(b)
        .map(|(row, &b)| b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>())
        .collect()
}

impl MapHead {
    fn new(w: &super::weights::MapHeadWeights, c: &ViTConfig) -> Self {
        let (d, h) = (c.embed_dim, c.num_heads);
        let dh = d / h;
        let scale = 1.0 / (dh as f32).sqrt();
        let (wq, bq) = (&w.in_proj_w[..d * d], &w.in_proj_b[..d]);
        let (wk, bk) = (&w.in_proj_w[d * d..2 * d * d], &w.in_proj_b[d..2 * d]);
        let q = matvec(wq, bq, &w.probe);
        let scores = (0..h)
            .map(|j| {
                let qj = &q[j * dh..][..dh];
                let u = (0..d)
                    .map(|i| {
                        scale
                            * (0..dh)
                                .map(|r| qj[r] * wk[(j * dh + r) * d + i])
                                .sum::<f32>()
                    })
                    .collect();
                let c = scale * (0..dh).map(|r| qj[r] * bk[j * dh + r]).sum::<f32>();
                (u, c)
            })
            .collect();
        MapHead {
            scores,
            value: (
                w.in_proj_w[2 * d * d..].to_vec(),
                w.in_proj_b[2 * d..].to_vec(),
            ),
            out: w.out.clone(),
            ln: w.ln.clone(),
            fc1: w.fc1.clone(),
            fc2: w.fc2.clone(),
            activation: c.activation,
            heads: h,
        }
    }

    /// The pooled vector of `states` (`[rows, D]`, each row standing for `sizes` tokens).
    fn run(&self, states: &[f32], sizes: &[f32], d: usize, eps: f32) -> Vec<f32> {
        let dh = d / self.heads;
        let mut attended = vec![0.0f32; d];
        for (j, (u, c)) in self.scores.iter().enumerate() {
            // Proportional attention: a token standing for s tokens weighs as s copies of it.
            let logits: Vec<f64> = states
                .chunks(d)
                .zip(sizes)
                .map(|(x, &s)| {
                    (u.iter().zip(x).map(|(u, x)| u * x).sum::<f32>() + c) as f64 + (s as f64).ln()
                })
                .collect();
            let top = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
            let total: f64 = e.iter().sum();
            let mut mean = vec![0.0f64; d];
            for (x, w) in states.chunks(d).zip(&e) {
                for (m, x) in mean.iter_mut().zip(x) {
                    *m += w / total * *x as f64;
                }
            }
            let mean: Vec<f32> = mean.iter().map(|&v| v as f32).collect();
            // This head's rows of the value projection.
            let rows = &self.value.0[j * dh * d..][..dh * d];
            let bias = &self.value.1[j * dh..][..dh];
            attended[j * dh..][..dh].copy_from_slice(&matvec(rows, bias, &mean));
        }
        let h = matvec(&self.out.0, &self.out.1, &attended);
        let normed = layer_norm(&h, &self.ln, eps);
        let hidden: Vec<f32> = matvec(&self.fc1.0, &self.fc1.1, &normed)
            .into_iter()
            .map(|v| activate(v, self.activation))
            .collect();
        let mlp = matvec(&self.fc2.0, &self.fc2.1, &hidden);
        h.iter().zip(&mlp).map(|(a, b)| a + b).collect()
    }
}

/// The MLP activations on the host (f64 inside), as the GEMM epilogue computes them.
fn activate(x: f32, a: crate::gpu::kernels::Activation) -> f32 {
    use crate::gpu::kernels::Activation;
    let x = x as f64;
    let y = match a {
        Activation::None => x,
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
        Activation::QuickGelu => x / (1.0 + (-1.702 * x).exp()),
        Activation::GeluTanh => {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
        }
    };
    y as f32
}

/// erf by Abramowitz and Stegun 7.1.26 (|error| < 1.5e-7), as the kernels compute it.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    y.copysign(x)
}

/// LayerNorm of one vector, sums in f64.
fn layer_norm(x: &[f32], n: &NormWeights, eps: f32) -> Vec<f32> {
    let d = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / d;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
    let rstd = 1.0 / (var + eps as f64).sqrt();
    x.iter()
        .zip(n.w.iter().zip(&n.b))
        .map(|(&v, (&g, &b))| ((v as f64 - mean) * rstd) as f32 * g + b)
        .collect()
}

impl PooledHead {
    /// `states`: `[rows, D]` patch tokens; `sizes`: the tokens each row stands for. Returns the
    /// pooled embedding (after `fc_norm`) and the logits.
    pub fn run(&self, states: &[f32], sizes: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
        let norm = |x: &[f32], n: &NormWeights| layer_norm(x, n, self.eps);
        if let Some(map) = &self.map {
            let normed: Vec<f32> = match &self.norm {
                Some(n) => states.chunks(d).flat_map(|x| norm(x, n)).collect(),
                None => states.to_vec(),
            };
            let pooled = map.run(&normed, sizes, d, self.eps);
            let logits = self.logits(&pooled);
            return (pooled, logits);
        }
        let mut sum = vec![0.0f64; d];
        let mut total = 0.0f64;
        for (row, &size) in states.chunks(d).zip(sizes) {
            let row = match &self.norm {
                Some(n) => norm(row, n),
                None => row.to_vec(),
            };
            for (s, v) in sum.iter_mut().zip(&row) {
                *s += size as f64 * *v as f64;
            }
            total += size as f64;
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / total.max(1e-12)) as f32).collect();
        let pooled = match &self.fc_norm {
            Some(n) => norm(&mean, n),
            None => mean,
        };
        let logits = self.logits(&pooled);
        (pooled, logits)
    }

    /// The classifier on the pooled vector (none for a backbone).
    fn logits(&self, pooled: &[f32]) -> Vec<f32> {
        self.head.as_ref().map_or_else(Vec::new, |h| {
            let x: Vec<f64> = pooled.iter().map(|&v| v as f64).collect();
            h.apply(&x).into_iter().map(|v| v as f32).collect()
        })
    }
}

impl VisionTransformer {
    /// The weights on the GPU, the linear layers stored as `storage`.
    pub fn upload(gpu: &GpuContext, w: &ModelWeights, storage: Elem) -> Result<Self> {
        let eps = w.config.layer_norm_eps;
        let linear = |name: &str, l| Linear::upload(gpu, name, l, storage);
        let blocks = w
            .blocks
            .iter()
            .enumerate()
            .map(|(i, bw)| {
                let n = |s: &str| format!("block{i}.{s}");
                let normed =
                    |name: &str, norm, l| NormLinear::upload(gpu, &n(name), norm, l, eps, storage);
                Ok(Block {
                    qkv: normed("qkv", &bw.norm1, &bw.qkv)?,
                    proj: linear(&n("proj"), &bw.proj)?,
                    fc1: normed("fc1", &bw.norm2, &bw.fc1)?,
                    fc2: linear(&n("fc2"), &bw.fc2)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(VisionTransformer {
            config: w.config.clone(),
            patch_embed: linear("patch_embed", &w.patch)?,
            prefix_tokens: GpuTensor::from_slice(gpu, "prefix tokens", &w.prefix_tokens),
            pos_embed: {
                fits(gpu, "pos_embed", 4 * w.pos_embed.len())?;
                GpuTensor::from_slice(gpu, "pos_embed", &w.pos_embed)
            },
            norm_pre: w
                .norm_pre
                .as_ref()
                .map(|n| LayerNorm::upload(gpu, "norm_pre", n, eps)),
            blocks,
            norm: w
                .norm
                .as_ref()
                .map(|n| LayerNorm::upload(gpu, "norm", n, eps)),
            // Average pooling's head runs on the host (`pooled`).
            head: match w.config.pool {
                Pool::Token => w.head.as_ref().map(|h| linear("head", h)).transpose()?,
                Pool::Avg | Pool::Map => None,
            },
            storage,
            projection: w.projection.clone(),
            pooled: (w.config.pool != Pool::Token).then(|| PooledHead {
                norm: w.norm.clone(),
                fc_norm: w.fc_norm.clone(),
                map: w.map_head.as_ref().map(|m| MapHead::new(m, &w.config)),
                head: w.head.clone(),
                eps,
            }),
        })
    }

    /// Patch embedding: unfold, project into rows `prefix..` of every image, add prefix tokens and
    /// positions; with a LayerNorm before the blocks (CLIP), the embeddings are built in the qkv
    /// buffer (free until the first block) and normed from there into the residual stream.
    pub fn embed(&self, k: &Kernels, p: &mut Program, a: &Activations) -> Result<()> {
        let c = &self.config;
        let (b, n, d, np) = (a.batch, c.num_tokens(), c.embed_dim, c.num_patches());
        let target = if self.norm_pre.is_some() {
            &a.qkv
        } else {
            &a.x
        };
        let pp = self.patch_embed.inp;
        p.push(k.im2col(
            "patch_embed.im2col",
            &a.image,
            &a.patches,
            b,
            c.in_chans,
            c.image_size,
            c.patch_size,
        )?);
        let g = Gemm {
            outer: b,
            bias: Some(&self.patch_embed.b),
            ..Gemm::new(np, d, pp)
        };
        p.push(
            k.gemm(
                "patch_embed.proj",
                MatView::rows(&a.patches, pp).batched(np * pp, 0),
                MatView::rows(&self.patch_embed.w, d),
                MatView::rows(target, d)
                    .at(c.num_prefix_tokens() * d)
                    .batched(n * d, 0),
                g,
            )?,
        );
        p.push(k.add_prefix_pos(
            "patch_embed.pos",
            target,
            &self.prefix_tokens,
            &self.pos_embed,
            (b, n, d, c.num_prefix_tokens()),
        )?);
        if let Some(norm) = &self.norm_pre {
            norm.forward(
                k,
                p,
                "norm_pre",
                RowView::dense(&a.qkv, d),
                RowView::dense(&a.x, d),
                b * n,
            )?;
        }
        Ok(())
    }

    /// Final LayerNorm on the CLS (and distillation) rows only (the registers after them are not
    /// read), then the classifier. Average pooling runs on the host from the tokens read back
    /// ([`PooledHead`]): nothing here.
    pub fn classify(
        &self,
        k: &Kernels,
        p: &mut Program,
        a: &Activations,
        tokens: usize,
    ) -> Result<()> {
        let c = &self.config;
        let Some(norm) = (c.pool == Pool::Token)
            .then_some(())
            .and(self.norm.as_ref())
        else {
            return Ok(());
        };
        let (d, pre) = (c.embed_dim, c.head_tokens());
        let rows_in = RowView {
            t: &a.x,
            off: 0,
            group: pre,
            group_stride: tokens * d,
            row_stride: d,
            live: None,
        };
        let rows_out = RowView {
            t: &a.head_in,
            off: 0,
            group: pre,
            group_stride: pre * d,
            row_stride: d,
            live: None,
        };
        norm.forward(k, p, "norm", rows_in, rows_out, a.batch * pre)?;
        if let Some(head) = &self.head {
            head.forward(
                k,
                p,
                "head",
                &a.head_in,
                &a.logits,
                a.batch,
                (Activation::None, false),
                None,
            )?;
        }
        Ok(())
    }

    /// The forward pass, every step in order; `hook` may prune tokens between attention and MLP.
    pub fn forward(
        &self,
        k: &Kernels,
        a: &Activations,
        hook: &mut dyn TokenHook,
    ) -> Result<Program> {
        let mut p = Program::default();
        let mut n = self.config.num_tokens();
        self.embed(k, &mut p, a)?;
        for (i, block) in self.blocks.iter().enumerate() {
            n = block.forward(k, &mut p, a, &self.config, i, n, hook)?;
        }
        self.classify(k, &mut p, a, n)?;
        Ok(p)
    }
}
