//! A BERT encoder's forward pass as plain code, beside the ViT's (`vit/graph.rs`), on the same layers.
//! Post-LayerNorm blocks: `x = LN1(x + proj(attn(x)))`, then `x = LN2(x + fc2(gelu(fc1(x))))`.
//!
//! A batch of texts is padded to its longest: row `t` of text `b` is real while `t < counts[b]`.
//! The attention reads those counts: padded keys get probability 0 and padded queries are not
//! computed (the same masked rows threshold pruning leaves), so padding never changes a real token.
//! The embedding lookup (`word + position + type`) is done on the host while laying out the batch:
//! it is a gather of `tokens x D` values, which the upload costs anyway.

use super::{BertConfig, BertWeights, PROTECTED_ROWS};
use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::kernels::{Activation, AttentionBias, Features, LiveRows, RowView};
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::{TokenHook, TokenState};
use crate::model::layers::{attention_steps, fits, LayerNorm, Linear};

/// Buffers of one (batch, tokens) shape, allocated once and reused.
pub struct TextActivations {
    pub batch: usize,
    /// Rows per text: the longest text of the batch.
    pub tokens: usize,
    /// `[B, T, D]`: the residual stream; after the last layer, the output states.
    pub x: GpuTensor,
    /// `[B, T, D]`: the other half of each post-LayerNorm step.
    pub y: GpuTensor,
    pub qkv: GpuTensor,
    /// `[B, H, T, T]`.
    pub probs: GpuTensor,
    pub attn: GpuTensor,
    pub hidden: GpuTensor,
    /// `[B]` u32: each text's token count.
    pub counts: GpuTensor,
}

impl TextActivations {
    /// Values per text of each buffer at `tokens` rows.
    fn per_text(c: &BertConfig, tokens: usize) -> [(&'static str, usize); 5] {
        let (n, d) = (tokens, c.hidden_size);
        [
            ("tokens", n * d),
            ("qkv", n * 3 * d),
            ("attention probabilities", c.num_heads * n * n),
            ("mlp hidden", n * c.intermediate_size),
            ("attention output", n * d),
        ]
    }

    /// The largest batch of `tokens`-row texts whose every buffer fits one binding of `max_bytes`.
    pub fn max_batch(c: &BertConfig, tokens: usize, max_bytes: u64) -> usize {
        Self::per_text(c, tokens)
            .iter()
            .map(|(_, v)| (max_bytes / (4 * (*v).max(1) as u64)) as usize)
            .min()
            .unwrap_or(0)
    }

    /// The buffers of `batch` texts of `tokens` rows; those that only feed a GEMM (attention
    /// output, MLP hidden) are stored as `storage`, the rest as f32.
    pub fn new(
        gpu: &GpuContext,
        c: &BertConfig,
        batch: usize,
        tokens: usize,
        storage: Elem,
    ) -> Result<Self> {
        let max = Self::max_batch(c, tokens, gpu.max_binding_bytes());
        if batch == 0 || tokens == 0 {
            return Err(Error::param("texts", "a batch needs at least one text"));
        }
        if batch > max {
            return Err(Error::BatchTooLarge {
                batch,
                max,
                reason: format!(
                    "texts of {tokens} tokens would exceed the device's {} byte storage binding limit",
                    gpu.max_binding_bytes()
                ),
            });
        }
        let sizes = Self::per_text(c, tokens);
        let z = |i: usize, label: &str| GpuTensor::zeros(gpu, label, batch * sizes[i].1);
        let h =
            |i: usize, label: &str| GpuTensor::zeros_of(gpu, label, batch * sizes[i].1, storage);
        Ok(TextActivations {
            batch,
            tokens,
            x: z(0, "x"),
            y: z(0, "y"),
            qkv: z(1, "qkv"),
            probs: z(2, "attention probabilities"),
            hidden: h(3, "mlp hidden"),
            attn: h(4, "attention output"),
            counts: GpuTensor::from_slice(gpu, "token counts", &vec![0u32; batch]),
        })
    }
}

/// One post-LayerNorm layer.
pub struct TextLayer {
    pub qkv: Linear,
    pub proj: Linear,
    pub norm1: LayerNorm,
    pub fc1: Linear,
    pub fc2: Linear,
    pub norm2: LayerNorm,
}

/// A BERT encoder's layers on the GPU (the family, with its host parts, is `super::TextEncoder`).
pub struct Encoder {
    pub config: BertConfig,
    /// The LayerNorm over the summed embeddings.
    pub embeddings_norm: LayerNorm,
    pub layers: Vec<TextLayer>,
}

impl Encoder {
    /// The layers on the GPU, the linear weights stored as `storage`.
    pub fn upload(gpu: &GpuContext, w: &BertWeights, storage: Elem) -> Result<Self> {
        let eps = w.config.layer_norm_eps;
        let linear = |name: &str, l| Linear::upload(gpu, name, l, storage);
        fits(gpu, "word embeddings", 4 * w.word_embeddings.len())?;
        let layers = w
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let n = |s: &str| format!("layer{i}.{s}");
                Ok(TextLayer {
                    qkv: linear(&n("qkv"), &l.qkv)?,
                    proj: linear(&n("proj"), &l.proj)?,
                    norm1: LayerNorm::upload(gpu, &n("norm1"), &l.norm1, eps),
                    fc1: linear(&n("fc1"), &l.fc1)?,
                    fc2: linear(&n("fc2"), &l.fc2)?,
                    norm2: LayerNorm::upload(gpu, &n("norm2"), &l.norm2, eps),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            config: w.config.clone(),
            embeddings_norm: LayerNorm::upload(gpu, "embeddings.norm", &w.embeddings_norm, eps),
            layers,
        })
    }

    /// The forward pass over the summed embeddings in `a.y` (written by the caller); the output
    /// states end in `a.x`, `[B, n, D]` with `n` the rows the hook leaves. The pruning point of a
    /// layer is after `y = LN1(x + proj(attn))`: the residual stream of a post-LayerNorm block,
    /// which the MLP then reads (rows of every text: the two protected rows, [CLS] and [SEP],
    /// first).
    pub fn forward(
        &self,
        k: &Kernels,
        a: &TextActivations,
        hook: &mut dyn TokenHook,
    ) -> Result<Program> {
        let c = &self.config;
        let (b, d, h) = (a.batch, c.hidden_size, c.num_heads);
        let mut n = a.tokens;
        let dense = |t| RowView::dense(t, d);
        let mut p = Program::default();
        self.embeddings_norm.forward(
            k,
            &mut p,
            "embeddings.norm",
            dense(&a.y),
            dense(&a.x),
            b * n,
        )?;
        for (i, l) in self.layers.iter().enumerate() {
            let name = |s: &str| format!("layer{i}.{s}");
            let p = &mut p;
            // Rows masked by an earlier threshold step: row-wise kernels run over the packed live
            // rows. Before any, the padding counts mask the attention (padded rows are computed
            // by the row-wise kernels, finite and never read).
            let masked = i.checked_sub(1).and_then(|i| hook.live_rows(i)).cloned();
            let live = masked.as_ref().map(|m| LiveRows::Packed { map: &m.map });
            let live_map = masked.as_ref().map(|m| &m.map);
            let rows = b * n;
            l.qkv.forward(
                k,
                p,
                &name("qkv"),
                &a.x,
                &a.qkv,
                rows,
                (Activation::None, false),
                live,
            )?;
            let bias = hook.attention_bias(i);
            let valid = bias.valid.unwrap_or(&a.counts);
            let probs = attention_steps(
                k,
                p,
                &name(""),
                (&a.qkv, &a.probs, &a.attn),
                (b, n, d, h),
                hook.needs_attention_probs(i),
                AttentionBias {
                    log_size: bias.log_size,
                    valid: Some(valid),
                },
                Some(valid),
            )?;
            // x += proj(attn); y = LN1(x): the pruning point; y += fc2(gelu(fc1(y))); x = LN2(y).
            l.proj.forward(
                k,
                p,
                &name("proj"),
                &a.attn,
                &a.x,
                rows,
                (Activation::None, true),
                live,
            )?;
            l.norm1.forward(
                k,
                p,
                &name("norm1"),
                dense(&a.x).live(live_map),
                dense(&a.y),
                rows,
            )?;
            let state = TokenState {
                block: i,
                batch: b,
                rows: n,
                protected: PROTECTED_ROWS,
                heads: h,
                tokens: &a.y,
                width: d,
                probs: probs.then_some(&a.probs),
                keys: Features::qkv_keys(&a.qkv, n, d),
            };
            n = hook.after_attention(k, p, &state)?;
            let masked = hook.live_rows(i).cloned();
            let live = masked.as_ref().map(|m| LiveRows::Packed { map: &m.map });
            let live_map = masked.as_ref().map(|m| &m.map);
            let rows = b * n;
            // After a pruning step the survivors are in its compacted rows: the MLP reads them,
            // and fc2 writes rows + MLP(rows) into y.
            let compacted = hook.compacted_rows(i).cloned();
            l.fc1.forward(
                k,
                p,
                &name("fc1"),
                compacted.as_ref().unwrap_or(&a.y),
                &a.hidden,
                rows,
                (Activation::Gelu, false),
                live,
            )?;
            l.fc2.forward_residual(
                k,
                p,
                &name("fc2"),
                &a.hidden,
                (&a.y, compacted.as_ref()),
                rows,
                live,
            )?;
            l.norm2.forward(
                k,
                p,
                &name("norm2"),
                dense(&a.y).live(live_map),
                dense(&a.x),
                rows,
            )?;
        }
        Ok(p)
    }
}
