//! A text encoder ready to run on one device: lays out a padded batch, plays the forward pass and
//! pools the states into one embedding per text (and a classifier's logits where the model has one).
//!
//! It plays its program the way [`crate::Session`] does, one submit per forward pass, with the
//! same pruning point ([`PrunePlan`]); it keeps its own small cache, because text batches change
//! shape with every batch (rows = the longest text) and schedules change with the length.

use std::collections::HashMap;

use super::pruning::{geometry, Dropped, TextPruning};
use crate::error::{Error, Result};
use crate::gpu::buffers::{read_buffer, staging_buffer};
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::bert::{BertConfig, BertWeights, ClassifierWeights, Pooling};
use crate::model::hook::Dense;
use crate::model::text_encoder::{TextActivations, TextEncoder, PROTECTED_ROWS};
use crate::prune::{PrunePlan, Pruning, TokenLayout};
use crate::text::Encoded;

/// Batch shapes (batch, tokens, schedule) whose buffers and program a session keeps (least
/// recently used go first).
pub const KEEP_SHAPES: usize = 4;

/// What one text gives.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOutput {
    /// The pooled embedding (L2-normalised where the model says so).
    pub embedding: Vec<f32>,
    /// The output states of the rows that reach the end, in text order, `[rows, D]`: every
    /// token when nothing is pruned.
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

/// The text position of layout row `row` of a text of `n` tokens: the host lays a text out as
/// `[CLS, SEP, t1, ..., t(n-2)]` so that both special tokens are protected rows.
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

struct Shape {
    acts: TextActivations,
    program: Program,
    plan: Option<PrunePlan>,
    /// Per layer, where its step drops tokens and the model mean-pools: the states at the
    /// pruning point, which the dropped tokens leave with ([`ExitPooling`]).
    exits: Vec<Option<GpuTensor>>,
    /// Rows per text after the last layer.
    rows_out: usize,
    /// The final states, then every step's kept rows, the last step's sizes and the exit snapshots.
    staging: wgpu::Buffer,
    staging_bytes: u64,
    last_used: u64,
}

impl Shape {
    /// The buffers read back after a run, in staging order.
    fn readback(&self) -> Vec<&GpuTensor> {
        let mut out = vec![&self.acts.x];
        if let Some(plan) = &self.plan {
            out.extend(plan.steps.iter().map(|s| &s.kept));
            out.extend(plan.steps.last().and_then(|l| l.sizes.as_ref()));
            out.extend(
                plan.steps
                    .iter()
                    .filter_map(|s| self.exits[s.step.block].as_ref()),
            );
        }
        out
    }
}

/// (batch, tokens, schedule, whether dropped tokens stay in the mean).
type ShapeKey = (usize, usize, Pruning, bool);

/// How mean pooling counts a token a step dropped: with its state `y` at the pruning point of its
/// layer, re-affined from that layer's LN1 to the last layer's output LayerNorm,
/// `(y - beta1) / gamma1 * gamma_last + beta_last`. Each LayerNorm has its own affine, so a raw
/// mid-network state would sit at another offset than the final ones; after the re-affine it is a
/// stand-in for the final state (on 300 calibration sentences this recovered about 5 of the 11
/// points of accuracy dropping policies lost with the dropped tokens left out of the mean, and
/// the plain layer input was worse; docs/text.md, "Pooling").
struct ExitPooling {
    /// Per layer: 1 / gamma1 (0 where |gamma1| < 1e-6) and beta1 of its LN1.
    ln1: Vec<(Vec<f32>, Vec<f32>)>,
    /// gamma and beta of the last layer's LN2.
    last: (Vec<f32>, Vec<f32>),
}

impl ExitPooling {
    fn new(w: &BertWeights) -> Self {
        let ln1 = w
            .layers
            .iter()
            .map(|l| {
                let inv = l
                    .norm1
                    .w
                    .iter()
                    .map(|&g| if g.abs() < 1e-6 { 0.0 } else { 1.0 / g })
                    .collect();
                (inv, l.norm1.b.clone())
            })
            .collect();
        let last = w
            .layers
            .last()
            .map_or((vec![], vec![]), |l| (l.norm2.w.clone(), l.norm2.b.clone()));
        ExitPooling { ln1, last }
    }

    /// Add the re-affined `row` (f32 bits) of layer `layer` to `sum`.
    fn add(&self, layer: usize, row: &[u32], sum: &mut [f64]) {
        let (inv, b1) = &self.ln1[layer];
        let (g2, b2) = &self.last;
        for j in 0..sum.len() {
            let y = f32::from_bits(row[j]);
            sum[j] += (((y - b1[j]) * inv[j]) * g2[j] + b2[j]) as f64;
        }
    }
}

/// The embedding tables the host gathers from.
struct Tables {
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
}

pub struct TextSession {
    gpu: GpuContext,
    kernels: Kernels,
    encoder: TextEncoder,
    tables: Tables,
    classifier: Option<ClassifierWeights>,
    exit_pooling: ExitPooling,
    shapes: HashMap<ShapeKey, Shape>,
    clock: u64,
}

impl TextSession {
    /// Measure the kernels on this adapter (cached across processes) and upload the weights.
    pub async fn create(gpu: &GpuContext, w: &BertWeights) -> Result<Self> {
        let kernels = Kernels::new(gpu);
        kernels.tune().await?;
        let encoder = gpu
            .scoped("uploading the text model", || TextEncoder::upload(gpu, w))
            .await?;
        Ok(TextSession {
            gpu: gpu.clone(),
            kernels,
            encoder,
            tables: Tables {
                word: w.word_embeddings.clone(),
                position: w.position_embeddings.clone(),
                token_type: w.token_type_embeddings.clone(),
            },
            classifier: w.classifier.clone(),
            exit_pooling: ExitPooling::new(w),
            shapes: HashMap::new(),
            clock: 0,
        })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(gpu: &GpuContext, w: &BertWeights) -> Result<Self> {
        pollster::block_on(Self::create(gpu, w))
    }

    pub fn config(&self) -> &BertConfig {
        &self.encoder.config
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// Dense FLOPs of one text of `tokens` tokens (multiply-adds count 2): the linear layers,
    /// the attention products and nothing for padding, which no text pays for.
    pub fn flops(c: &BertConfig, tokens: usize) -> f64 {
        let (n, d, m) = (
            tokens as f64,
            c.hidden_size as f64,
            c.intermediate_size as f64,
        );
        let per_layer = 2.0 * n * d * (3.0 * d + d + 2.0 * m) + 2.0 * 2.0 * n * n * d;
        per_layer * c.num_layers as f64
    }

    /// The summed embeddings of a padded batch, `[B, T, D]` in the `[CLS, SEP, tokens...]` row
    /// layout ([`text_position`]), padding rows zero.
    fn embed(&self, texts: &[&[u32]], tokens: usize) -> Result<Vec<f32>> {
        let c = &self.encoder.config;
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

    fn shape(&mut self, key: &ShapeKey) -> Result<()> {
        self.clock += 1;
        if !self.shapes.contains_key(key) {
            let (batch, tokens, pruning, restate) = key;
            let c = &self.encoder.config;
            let acts = TextActivations::new(&self.gpu, c, *batch, *tokens)?;
            // Dropped tokens leave the mean with their last state; merged ones live on in their
            // destination (with its size).
            let pool_exits = *restate
                && c.pooling == Pooling::Mean
                && !pruning.is_dense()
                && !pruning.policy.def().merges();
            let exits: Vec<Option<GpuTensor>> = (0..c.num_layers)
                .map(|i| {
                    (pool_exits && pruning.steps.iter().any(|s| s.block == i)).then(|| {
                        GpuTensor::zeros(&self.gpu, "exit states", batch * tokens * c.hidden_size)
                    })
                })
                .collect();
            let (program, plan, rows_out) = if pruning.is_dense() {
                let (program, rows) =
                    self.encoder
                        .forward(&self.kernels, &acts, &mut Dense, &exits)?;
                (program, None, rows)
            } else {
                let layout = TokenLayout {
                    batch: *batch,
                    rows: *tokens,
                    protected: PROTECTED_ROWS,
                    heads: c.num_heads,
                    depth: c.num_layers,
                };
                let mut plan = PrunePlan::new(&self.gpu, layout, pruning);
                let (program, rows) =
                    self.encoder
                        .forward(&self.kernels, &acts, &mut plan, &exits)?;
                (program, Some(plan), rows)
            };
            let mut shape = Shape {
                acts,
                program,
                plan,
                exits,
                rows_out,
                staging: staging_buffer(&self.gpu, 4),
                staging_bytes: 0,
                last_used: 0,
            };
            shape.staging_bytes = shape.readback().iter().map(|t| t.bytes()).sum();
            shape.staging = staging_buffer(&self.gpu, shape.staging_bytes);
            self.gpu.check()?;
            self.shapes.insert(key.clone(), shape);
            while self.shapes.len() > KEEP_SHAPES {
                let oldest = self
                    .shapes
                    .iter()
                    .filter(|(k, _)| *k != key)
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| k.clone());
                match oldest {
                    Some(k) => self.shapes.remove(&k),
                    None => break,
                };
            }
        }
        if let Some(s) = self.shapes.get_mut(key) {
            s.last_used = self.clock;
        }
        Ok(())
    }

    /// Run the encoded texts. Dense, they run as one batch padded to the longest. Pruned, texts
    /// of equal length run together, each length with its own schedule: a keep rate then gives
    /// every text of a batch the same count, no row is padding, and a text's result never depends
    /// on the texts beside it.
    pub async fn run_async(
        &mut self,
        enc: &Encoded,
        pruning: &mut TextPruning,
    ) -> Result<Vec<TextOutput>> {
        if enc.ids.is_empty() || enc.ids.iter().any(Vec::is_empty) {
            return Err(Error::param("texts", "no text to run"));
        }
        if pruning.is_dense()? {
            let texts: Vec<&[u32]> = enc.ids.iter().map(Vec::as_slice).collect();
            return self.run_batch(&texts, &Pruning::dense(), false).await;
        }
        let mut lengths: Vec<usize> = enc.ids.iter().map(Vec::len).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let mut out: Vec<Option<TextOutput>> = vec![None; enc.ids.len()];
        for n in lengths {
            let schedule = pruning.for_tokens(self.config(), n)?;
            let group: Vec<usize> = (0..enc.ids.len())
                .filter(|&i| enc.ids[i].len() == n)
                .collect();
            let texts: Vec<&[u32]> = group.iter().map(|&i| enc.ids[i].as_slice()).collect();
            for (&i, o) in group.iter().zip(
                self.run_batch(&texts, &schedule, pruning.dropped == Dropped::Restate)
                    .await?,
            ) {
                out[i] = Some(o);
            }
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every text ran"))
            .collect())
    }

    /// One forward pass over `texts` (padded to the longest; pruned batches have no padding).
    async fn run_batch(
        &mut self,
        texts: &[&[u32]],
        pruning: &Pruning,
        restate: bool,
    ) -> Result<Vec<TextOutput>> {
        let batch = texts.len();
        let tokens = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let y = self.embed(texts, tokens)?;
        let counts: Vec<u32> = texts.iter().map(|t| t.len() as u32).collect();
        let key = (batch, tokens, pruning.clone(), restate);
        let gpu = self.gpu.clone();
        let prepared = gpu
            .scoped(
                &format!("preparing {batch} texts of {tokens} tokens"),
                || self.shape(&key),
            )
            .await;
        if let Err(e) = prepared {
            self.shapes.remove(&key);
            return Err(e);
        }
        let s = &self.shapes[&key];
        gpu.queue
            .write_buffer(&s.acts.y.buffer, 0, bytemuck::cast_slice(&y));
        gpu.queue
            .write_buffer(&s.acts.counts.buffer, 0, bytemuck::cast_slice(&counts));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        s.program.encode(&mut encoder);
        let mut at = 0;
        for t in s.readback() {
            encoder.copy_buffer_to_buffer(&t.buffer, 0, &s.staging, at, t.bytes());
            at += t.bytes();
        }
        gpu.scoped("running the text encoder", || {
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })
        .await?;
        let words: Vec<u32> = read_buffer(&gpu, &s.staging, s.staging_bytes).await?;
        self.outputs(s, texts, pruning, &words)
    }

    /// Every text's output from the words read back.
    fn outputs(
        &self,
        s: &Shape,
        texts: &[&[u32]],
        pruning: &Pruning,
        words: &[u32],
    ) -> Result<Vec<TextOutput>> {
        let c = &self.encoder.config;
        let (d, rows) = (c.hidden_size, s.rows_out);
        let mut parts = Vec::new();
        let mut rest = words;
        for t in s.readback() {
            let (head, tail) = rest.split_at(t.len);
            parts.push(head);
            rest = tail;
        }
        let x = parts[0];
        let steps = s.plan.as_ref().map_or(&[][..], |p| &p.steps[..]);
        let kept_of = |i: usize| parts[1 + i];
        // Rows a step left to text `b` (protected included): its kept slots before the first empty.
        let counts_of = |i: usize, b: usize| {
            let rows = steps[i].rows_out;
            kept_of(i)[b * rows..][..rows]
                .iter()
                .take_while(|&&r| r != u32::MAX)
                .count()
        };
        let last = steps.last();
        let sizes = last
            .and_then(|l| l.sizes.as_ref())
            .map(|_| parts[1 + steps.len()]);
        // The exit snapshots, in step order, of the steps that have one.
        let mut snapshots = parts[1 + steps.len() + sizes.is_some() as usize..].iter();
        let exits: Vec<Option<&[u32]>> = steps
            .iter()
            .map(|st| {
                s.exits[st.step.block]
                    .as_ref()
                    .and_then(|_| snapshots.next().copied())
            })
            .collect();
        let mut out = Vec::with_capacity(texts.len());
        for (b, ids) in texts.iter().enumerate() {
            let n = ids.len();
            let kept: Vec<Vec<u32>> = steps
                .iter()
                .enumerate()
                .map(|(i, st)| {
                    let mut k: Vec<u32> = kept_of(i)[b * st.rows_out..][..st.rows_out]
                        .iter()
                        .filter(|&&r| r != u32::MAX && r as usize >= PROTECTED_ROWS)
                        .map(|&r| text_position(r as usize, n) as u32)
                        .collect();
                    k.sort_unstable();
                    k
                })
                .collect();
            // The live rows at the end: what the last step left (masked rows past a threshold
            // step's count are not), or the real rows of a padded dense text.
            let live = match steps.len() {
                0 => n,
                s => counts_of(s - 1, b),
            };
            let mut rows_of: Vec<(u32, usize, f32)> = (0..live)
                .map(|r| {
                    let layout =
                        last.map_or(r, |l| kept_of(steps.len() - 1)[b * l.rows_out + r] as usize);
                    let size = sizes.map_or(1.0, |sz| f32::from_bits(sz[b * rows + r]));
                    (text_position(layout, n) as u32, r, size)
                })
                .collect();
            rows_of.sort_unstable_by_key(|&(pos, _, _)| pos);
            let mut states = Vec::with_capacity(live * d);
            for &(_, r, _) in &rows_of {
                states.extend(
                    x[(b * rows + r) * d..][..d]
                        .iter()
                        .map(|&w| f32::from_bits(w)),
                );
            }
            if let Some(v) = states.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "the model's output for text {} is not finite ({v}): an activation overflowed",
                    b + 1
                )));
            }
            let sizes: Vec<f32> = rows_of.iter().map(|r| r.2).collect();
            // The tokens each step dropped, with their state at its pruning point.
            let mut exited = (vec![0.0f64; d], 0.0f64);
            for (i, st) in steps.iter().enumerate() {
                let Some(snapshot) = exits[i] else { continue };
                let prev = i.checked_sub(1).map(|j| (&steps[j], kept_of(j)));
                let live_in = match prev {
                    Some((p, _)) if p.masked.is_some() => counts_of(i - 1, b),
                    _ => st.rows_in,
                };
                let kept_now = &kept_of(i)[b * st.rows_out..][..st.rows_out];
                for r in 0..live_in {
                    let layout = prev.map_or(r as u32, |(p, k)| k[b * p.rows_out + r]);
                    if layout as usize >= PROTECTED_ROWS && !kept_now.contains(&layout) {
                        let row = &snapshot[(b * st.rows_in + r) * d..][..d];
                        self.exit_pooling.add(st.step.block, row, &mut exited.0);
                        exited.1 += 1.0;
                    }
                }
            }
            let embedding = pool(c, &states, &sizes, &exited);
            let logits = self
                .classifier
                .as_ref()
                .map_or_else(Vec::new, |h| classify(h, &states[..d]));
            let flops = if pruning.is_dense() {
                Self::flops(c, n)
            } else {
                let counts: Vec<usize> = kept.iter().map(Vec::len).collect();
                pruning.flops_with(&geometry(c, n), &counts)
            };
            out.push(TextOutput {
                embedding,
                states,
                positions: rows_of.iter().map(|r| r.0).collect(),
                sizes,
                logits,
                kept,
                tokens: n,
                flops,
            });
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&mut self, enc: &Encoded, pruning: &mut TextPruning) -> Result<Vec<TextOutput>> {
        pollster::block_on(self.run_async(enc, pruning))
    }

    /// Run many texts in batches of at most `batch`, texts of similar length together (a dense
    /// batch pads to its longest, so sorting by length wastes little on padding; pruned, equal
    /// lengths run together); the outputs come back in input order. `done` is called with the
    /// texts finished after each batch.
    pub async fn run_all_async(
        &mut self,
        enc: &Encoded,
        pruning: &mut TextPruning,
        batch: usize,
        mut done: impl FnMut(usize),
    ) -> Result<Vec<TextOutput>> {
        let mut order: Vec<usize> = (0..enc.ids.len()).collect();
        order.sort_by_key(|&i| enc.ids[i].len());
        let mut out: Vec<Option<TextOutput>> = vec![None; enc.ids.len()];
        let dense = pruning.is_dense()?;
        let mut start = 0;
        while start < order.len() {
            // Pruned: a chunk never spans two lengths, so each is one forward pass.
            let n = enc.ids[order[start]].len();
            let mut end = (start + batch.max(1)).min(order.len());
            if !dense {
                end = start
                    + order[start..end]
                        .iter()
                        .take_while(|&&i| enc.ids[i].len() == n)
                        .count();
            }
            let chunk = &order[start..end];
            let part = Encoded {
                ids: chunk.iter().map(|&i| enc.ids[i].clone()).collect(),
                truncated: chunk.iter().map(|&i| enc.truncated[i]).collect(),
            };
            for (&i, o) in chunk.iter().zip(self.run_async(&part, pruning).await?) {
                out[i] = Some(o);
            }
            done(chunk.len());
            start = end;
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every text ran"))
            .collect())
    }

    /// [`TextSession::run_all_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_all(
        &mut self,
        enc: &Encoded,
        pruning: &mut TextPruning,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<Vec<TextOutput>> {
        pollster::block_on(self.run_all_async(enc, pruning, batch, done))
    }

    /// The scale of the threshold policy's thresholds that brings the mean FLOPs of `enc`'s
    /// texts to the request's target (a fraction of their dense FLOPs), by bisection; sets it on
    /// `pruning` and returns it with the FLOPs fraction reached. `done` is called after each probe.
    pub async fn calibrate_async(
        &mut self,
        enc: &Encoded,
        pruning: &mut TextPruning,
        batch: usize,
        mut done: impl FnMut(usize),
    ) -> Result<(f32, f64)> {
        let target = pruning
            .flops_target()
            .ok_or_else(|| Error::param("flops", "calibration needs a FLOPs target"))?;
        let c = self.config().clone();
        let dense: f64 = enc.ids.iter().map(|ids| Self::flops(&c, ids.len())).sum();
        // Larger thresholds drop more: find a bracket, then halve it.
        let (mut lo, mut hi) = (0.0f32, 1.0f32);
        let mut best = loop {
            pruning.set_scale(hi);
            let out = self.run_all_async(enc, pruning, batch, |_| {}).await?;
            done(1);
            let f = out.iter().map(|o| o.flops).sum::<f64>() / dense;
            if f <= target || hi >= MAX_THRESHOLD_SCALE {
                break (hi, f);
            }
            lo = hi;
            hi *= 2.0;
        };
        for _ in 0..CALIBRATION_PROBES {
            let mid = 0.5 * (lo + hi);
            pruning.set_scale(mid);
            let out = self.run_all_async(enc, pruning, batch, |_| {}).await?;
            done(1);
            let f = out.iter().map(|o| o.flops).sum::<f64>() / dense;
            if f <= target {
                hi = mid;
                best = (mid, f);
            } else {
                lo = mid;
            }
        }
        pruning.set_scale(best.0);
        Ok(best)
    }

    /// [`TextSession::calibrate_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn calibrate(
        &mut self,
        enc: &Encoded,
        pruning: &mut TextPruning,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<(f32, f64)> {
        pollster::block_on(self.calibrate_async(enc, pruning, batch, done))
    }
}

/// The largest scale [`TextSession::calibrate`] tries: thresholds 64x uniform drop nearly all.
pub const MAX_THRESHOLD_SCALE: f32 = 64.0;

/// Bisection steps of [`TextSession::calibrate`] after the bracket: the scale to 1/256 of it.
pub const CALIBRATION_PROBES: usize = 8;

/// One text's embedding from its `[rows, D]` states (in text order, [CLS] first) and the size
/// of each row: the [CLS] row, or the mean weighted by sizes (a merged token counts for the
/// tokens it stands for, so keeping everything gives the plain mean), with `exited` in the mean:
/// the sum of the dropped tokens' stand-in states and their count ([`ExitPooling`]); normalised
/// where the model says so. Sums in f64.
pub fn pool(c: &BertConfig, states: &[f32], sizes: &[f32], exited: &(Vec<f64>, f64)) -> Vec<f32> {
    let d = c.hidden_size;
    let mut v: Vec<f64> = match c.pooling {
        Pooling::Cls => states[..d].iter().map(|&x| x as f64).collect(),
        Pooling::Mean => {
            let (mut sum, mut total) = exited.clone();
            for (row, &size) in states.chunks_exact(d).zip(sizes) {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += size as f64 * x as f64;
                }
                total += size as f64;
            }
            sum.iter().map(|s| s / total.max(1e-30)).collect()
        }
    };
    if c.normalize {
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v.into_iter().map(|x| x as f32).collect()
}

/// A sequence classifier on the [CLS] state: `classifier(tanh(pooler(cls)))`.
fn classify(h: &ClassifierWeights, cls: &[f32]) -> Vec<f32> {
    let linear = |w: &crate::model::weights::LinearWeights, x: &[f64]| -> Vec<f64> {
        let (inp, out) = (w.inp(), w.out());
        (0..out)
            .map(|o| {
                w.b[o] as f64
                    + (0..inp)
                        .map(|i| x[i] * w.w[i * out + o] as f64)
                        .sum::<f64>()
            })
            .collect()
    };
    let cls: Vec<f64> = cls.iter().map(|&x| x as f64).collect();
    let pooled: Vec<f64> = linear(&h.pooler, &cls).into_iter().map(f64::tanh).collect();
    linear(&h.classifier, &pooled)
        .into_iter()
        .map(|x| x as f32)
        .collect()
}
