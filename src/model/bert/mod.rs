//! The BERT family: BERT-style text encoders (all-MiniLM-L6-v2 and other sentence-transformers
//! folders, BERT sequence classifiers) in the Hugging Face layout.
//!
//! A batch of texts is padded to its longest: row `t` of text `b` is real while `t < counts[b]`,
//! and the attention reads those counts (padded keys get probability 0, padded rows are never
//! scored, kept, pooled or counted). The host lays each text out as `[CLS, SEP, t1, ..., t(n-2)]`
//! (positions are added on the host, so the order is free), which puts both special tokens in
//! front, where the pruning point protects rows. The embedding lookup (`word + position + type`) is
//! done on the host while laying out the batch: a gather of `tokens x D` values, which the upload
//! costs anyway. Pooling (mean or [CLS]) and a classifier's head run on the host too.
//!
//! - `config.rs`: the config and the sentence-transformers files; `weights.rs`: the weights;
//! - `graph.rs`: the post-LayerNorm forward pass on the GPU; `pooling.rs`: embeddings and logits.

pub mod config;
pub mod graph;
pub mod pooling;
pub mod weights;

pub use config::{BertConfig, Pooling, TextModelFiles};
pub use graph::{Encoder, TextActivations};
pub use pooling::pool;
pub use weights::{BertWeights, ClassifierWeights};

use pooling::ExitPooling;

use super::family::{BatchShape, Dropped, Family, ItemOutput, Readback};
use super::TokenGeometry;
use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::TokenHook;
use crate::text::Encoded;

/// Leading rows of every text that pruning never touches: [CLS] and [SEP].
pub const PROTECTED_ROWS: usize = 2;

/// What one text gives.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOutput {
    /// The pooled embedding (L2-normalised where the model says so).
    pub embedding: Vec<f32>,
    /// The output states of the rows that reach the end, in text order, `[rows, D]`: every
    /// token when nothing is pruned. Empty (as are `positions` and `sizes`) from `run_all`,
    /// which keeps a long input's summaries only.
    pub states: Vec<f32>,
    /// The text position of each state row.
    pub positions: Vec<u32>,
    /// How many original tokens each state row stands for (1 unless merged).
    pub sizes: Vec<f32>,
    /// A sequence classifier's logits; empty without one.
    pub logits: Vec<f32>,
    /// For each pruning step, the text positions of the tokens that survive it ([CLS] and [SEP],
    /// never pruned, are not listed), ascending.
    pub kept: Vec<Vec<u32>>,
    /// Tokens of the text, [CLS] and [SEP] included.
    pub tokens: usize,
    /// FLOPs of this text's forward pass, from the tokens each step kept.
    pub flops: f64,
}

impl ItemOutput for TextOutput {
    fn flops(&self) -> f64 {
        self.flops
    }
    fn kept(&self) -> &[Vec<u32>] {
        &self.kept
    }
    fn summarise(&mut self) {
        self.states = Vec::new();
        self.positions = Vec::new();
        self.sizes = Vec::new();
    }
}

/// The text position of layout row `row` of a text of `n` tokens ([`PROTECTED_ROWS`]).
pub fn text_position(row: usize, n: usize) -> usize {
    match row {
        0 => 0,
        1 if n >= 2 => n - 1,
        r => r - 1,
    }
}

/// The layout row of text position `pos` ([`text_position`]'s inverse).
fn layout_row(pos: usize, n: usize) -> usize {
    if pos == 0 {
        0
    } else if n >= 2 && pos == n - 1 {
        1
    } else {
        pos + 1
    }
}

/// The embedding tables the host gathers from.
struct Tables {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
}

/// A BERT encoder ready to run: its layers on the GPU, and what the host does before and after.
pub struct TextEncoder {
    pub config: BertConfig,
    pub encoder: Encoder,
    tables: Tables,
    classifier: Option<ClassifierWeights>,
    exit_pooling: ExitPooling,
    storage: Elem,
}

impl super::family::Weights for BertWeights {
    type Family = TextEncoder;
    fn source(&self) -> &str {
        &self.source
    }
    fn upload(&self, gpu: &GpuContext, storage: Elem) -> Result<TextEncoder> {
        Ok(TextEncoder {
            config: self.config.clone(),
            encoder: Encoder::upload(gpu, self, storage)?,
            tables: Tables {
                word: self.word_embeddings.clone(),
                position: self.position_embeddings.clone(),
                token_type: self.token_type_embeddings.clone(),
            },
            classifier: self.classifier.clone(),
            exit_pooling: ExitPooling::new(self),
            storage,
        })
    }
}

impl TextEncoder {
    /// Dense FLOPs of one text of `tokens` tokens: its geometry's, nothing for padding.
    pub fn flops(c: &BertConfig, tokens: usize) -> f64 {
        c.geometry(tokens).dense_flops()
    }

    /// The summed embeddings of a padded batch, `[B, T, D]` in the `[CLS, SEP, tokens...]` row
    /// layout ([`text_position`]), padding rows zero.
    fn embed(&self, texts: &[Vec<u32>], tokens: usize) -> Result<Vec<f32>> {
        let c = &self.config;
        let d = c.hidden_size;
        let mut y = vec![0.0f32; texts.len() * tokens * d];
        for (b, ids) in texts.iter().enumerate() {
            if ids.len() > c.max_positions {
                return Err(Error::param(
                    "text",
                    format!(
                        "text {} has {} tokens, over the model's {} positions",
                        b + 1,
                        ids.len(),
                        c.max_positions
                    ),
                ));
            }
            for (t, &id) in ids.iter().enumerate() {
                let id = id as usize;
                if id >= c.vocab_size {
                    return Err(Error::param(
                        "text",
                        format!(
                            "text {} has token id {id}, beyond the model's {} embeddings",
                            b + 1,
                            c.vocab_size
                        ),
                    ));
                }
                let row = layout_row(t, ids.len());
                let row = &mut y[(b * tokens + row) * d..][..d];
                let (w, p, ty) = (
                    &self.tables.word[id * d..][..d],
                    &self.tables.position[t * d..][..d],
                    &self.tables.token_type[..d],
                );
                for j in 0..d {
                    row[j] = w[j] + p[j] + ty[j];
                }
            }
        }
        Ok(y)
    }

    /// The dropped tokens of text `b`, each with its state at the pruning point of the step that
    /// dropped it, re-affined ([`ExitPooling`]): their sum and count.
    fn exited(&self, r: &Readback, b: usize) -> (Vec<f64>, f64) {
        let d = self.config.hidden_size;
        let mut exited = (vec![0.0f64; d], 0.0f64);
        for (i, st) in r.steps.iter().enumerate() {
            let Some(snapshot) = st.exits else { continue };
            // The rows live entering the step: what the step before left, or all of them.
            let live_in: Vec<u32> = match i.checked_sub(1) {
                Some(j) => r.kept(j, b),
                None => (0..st.rows_in as u32).collect(),
            };
            let kept_now = r.kept(i, b);
            for (row, &orig) in live_in.iter().enumerate() {
                if orig as usize >= PROTECTED_ROWS && !kept_now.contains(&orig) {
                    let state = &snapshot[(b * st.rows_in + row) * d..][..d];
                    self.exit_pooling.add(st.block, state, &mut exited.0);
                    exited.1 += 1.0;
                }
            }
        }
        exited
    }
}

impl Family for TextEncoder {
    type Config = BertConfig;
    type Input = Encoded;
    type Output = TextOutput;
    type Buffers = TextActivations;

    fn config(&self) -> &BertConfig {
        &self.config
    }

    fn storage(&self) -> Elem {
        self.storage
    }

    fn shape(&self, enc: &Encoded) -> Result<BatchShape> {
        if enc.ids.is_empty() || enc.ids.iter().any(Vec::is_empty) {
            return Err(Error::param("texts", "no text to run"));
        }
        Ok(BatchShape {
            batch: enc.ids.len(),
            rows: enc.ids.iter().map(Vec::len).max().unwrap_or(0),
        })
    }

    fn item_rows(&self, enc: &Encoded, b: usize) -> usize {
        enc.ids[b].len()
    }

    fn geometry(&self, rows: usize) -> TokenGeometry {
        self.config.geometry(rows)
    }

    fn largest_geometry(&self) -> TokenGeometry {
        self.config.largest_geometry()
    }

    fn max_batch(&self, rows: usize, max_bytes: u64) -> usize {
        TextActivations::max_batch(&self.config, rows, max_bytes)
    }

    fn groups(&self, enc: &Encoded, pruned: bool) -> Option<Vec<Vec<usize>>> {
        if !pruned {
            return None;
        }
        let mut lengths: Vec<usize> = enc.ids.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        if lengths.len() < 2 {
            return None;
        }
        Some(
            lengths
                .into_iter()
                .map(|n| {
                    (0..enc.ids.len())
                        .filter(|&i| enc.ids[i].len() == n)
                        .collect()
                })
                .collect(),
        )
    }

    fn len(&self, enc: &Encoded) -> usize {
        enc.ids.len()
    }

    fn subset(&self, enc: &Encoded, items: &[usize]) -> Encoded {
        Encoded {
            ids: items.iter().map(|&i| enc.ids[i].clone()).collect(),
            truncated: items.iter().map(|&i| enc.truncated[i]).collect(),
        }
    }

    /// Texts of similar length together: a dense batch pads to its longest, so sorting by length
    /// wastes little on padding; pruned, a batch never spans two lengths (one forward pass each).
    fn batches(&self, enc: &Encoded, batch: usize, pruned: bool) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..enc.ids.len()).collect();
        order.sort_by_key(|&i| enc.ids[i].len());
        let mut out = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let n = enc.ids[order[start]].len();
            let mut end = (start + batch.max(1)).min(order.len());
            if pruned {
                end = start
                    + order[start..end]
                        .iter()
                        .take_while(|&&i| enc.ids[i].len() == n)
                        .count();
            }
            out.push(order[start..end].to_vec());
            start = end;
        }
        out
    }

    /// Dropped tokens stay in the mean ([`Dropped::Restate`]) from the states they leave with.
    fn records_exits(&self) -> bool {
        self.config.pooling == Pooling::Mean
    }

    fn buffers(&self, gpu: &GpuContext, shape: BatchShape) -> Result<TextActivations> {
        TextActivations::new(gpu, &self.config, shape.batch, shape.rows, self.storage)
    }

    fn forward(
        &self,
        k: &Kernels,
        a: &TextActivations,
        hook: &mut dyn TokenHook,
    ) -> Result<Program> {
        self.encoder.forward(k, a, hook)
    }

    fn write(&self, gpu: &GpuContext, a: &TextActivations, enc: &Encoded) -> Result<()> {
        let y = self.embed(&enc.ids, a.tokens)?;
        let counts: Vec<u32> = enc.ids.iter().map(|t| t.len() as u32).collect();
        gpu.queue
            .write_buffer(&a.y.buffer, 0, bytemuck::cast_slice(&y));
        gpu.queue
            .write_buffer(&a.counts.buffer, 0, bytemuck::cast_slice(&counts));
        Ok(())
    }

    fn readback<'a>(&self, a: &'a TextActivations) -> Vec<&'a GpuTensor> {
        vec![&a.x]
    }

    fn decode(&self, enc: &Encoded, r: &Readback, dropped: Dropped) -> Result<Vec<TextOutput>> {
        let c = &self.config;
        let (d, rows) = (c.hidden_size, r.rows_out);
        let x = r.buffers[0];
        let mut out = Vec::with_capacity(enc.ids.len());
        for (b, ids) in enc.ids.iter().enumerate() {
            let n = ids.len();
            let kept: Vec<Vec<u32>> = (0..r.steps.len())
                .map(|s| {
                    let mut k: Vec<u32> = r
                        .kept(s, b)
                        .into_iter()
                        .filter(|&row| row as usize >= PROTECTED_ROWS)
                        .map(|row| text_position(row as usize, n) as u32)
                        .collect();
                    k.sort_unstable();
                    k
                })
                .collect();
            let mut rows_of: Vec<(u32, usize, f32)> = r
                .final_rows(b, n)
                .into_iter()
                .map(|(row, orig, size)| (text_position(orig as usize, n) as u32, row, size))
                .collect();
            rows_of.sort_unstable_by_key(|&(pos, _, _)| pos);
            let mut states = Vec::with_capacity(rows_of.len() * d);
            for &(_, row, _) in &rows_of {
                states.extend(
                    x[(b * rows + row) * d..][..d]
                        .iter()
                        .map(|&w| f32::from_bits(w)),
                );
            }
            if let Some(v) = states.iter().find(|v| !v.is_finite()) {
                let hint = if self.storage == Elem::F16 {
                    "; f16 storage overflows past 65504: try --precision f32"
                } else {
                    ""
                };
                return Err(Error::NonFinite(format!(
                    "the model's output for text {} is not finite ({v}): an activation \
                     overflowed{hint}",
                    b + 1
                )));
            }
            let sizes: Vec<f32> = rows_of.iter().map(|r| r.2).collect();
            let exited = match dropped {
                Dropped::Restate => self.exited(r, b),
                Dropped::Omit => (vec![0.0; d], 0.0),
            };
            let embedding = pool(c, &states, &sizes, &exited);
            let logits = self
                .classifier
                .as_ref()
                .map_or_else(Vec::new, |h| pooling::classify(h, &states[..d]));
            out.push(TextOutput {
                embedding,
                states,
                positions: rows_of.iter().map(|r| r.0).collect(),
                sizes,
                logits,
                kept,
                tokens: n,
                flops: r.flops[b],
            });
        }
        Ok(out)
    }
}
