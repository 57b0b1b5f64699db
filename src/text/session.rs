//! A text encoder ready to run on one device: lays out a padded batch, plays the forward pass and
//! pools the states into one embedding per text (and a classifier's logits where the model has one).
//!
//! This is the dense path of issue 13's first part. It plays its program the way
//! [`crate::Session`] does, one submit per forward pass, but keeps its own small cache, because
//! text batches change shape with every batch (rows = the longest text). Pruning on text joins the
//! shared scheduler next.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::buffers::{read_buffer, staging_buffer};
use crate::gpu::{GpuContext, Kernels, Program};
use crate::model::bert::{BertConfig, BertWeights, ClassifierWeights, Pooling};
use crate::model::text_encoder::{TextActivations, TextEncoder};
use crate::text::Encoded;

/// Batch shapes whose buffers and program a session keeps (least recently used go first).
pub const KEEP_SHAPES: usize = 4;

/// What one text gives.
#[derive(Debug, Clone, PartialEq)]
pub struct TextOutput {
    /// The pooled embedding (L2-normalised where the model says so).
    pub embedding: Vec<f32>,
    /// The output states of the text's tokens, `[tokens, D]`.
    pub states: Vec<f32>,
    /// A sequence classifier's logits; empty without one.
    pub logits: Vec<f32>,
}

struct Shape {
    acts: TextActivations,
    program: Program,
    staging: wgpu::Buffer,
    last_used: u64,
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
    shapes: HashMap<(usize, usize), Shape>,
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

    /// The summed embeddings of a padded batch, `[B, T, D]`, padding rows zero.
    fn embed(&self, enc: &Encoded, tokens: usize) -> Result<Vec<f32>> {
        let c = &self.encoder.config;
        let d = c.hidden_size;
        let mut y = vec![0.0f32; enc.ids.len() * tokens * d];
        for (b, ids) in enc.ids.iter().enumerate() {
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
                let row = &mut y[(b * tokens + t) * d..][..d];
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

    fn shape(&mut self, batch: usize, tokens: usize) -> Result<&Shape> {
        self.clock += 1;
        let key = (batch, tokens);
        if !self.shapes.contains_key(&key) {
            let acts = TextActivations::new(&self.gpu, &self.encoder.config, batch, tokens)?;
            let program = self.encoder.forward(&self.kernels, &acts)?;
            let staging = staging_buffer(&self.gpu, acts.x.bytes());
            self.shapes.insert(
                key,
                Shape {
                    acts,
                    program,
                    staging,
                    last_used: 0,
                },
            );
            while self.shapes.len() > KEEP_SHAPES {
                let oldest = self
                    .shapes
                    .iter()
                    .filter(|(k, _)| **k != key)
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(k, _)| *k);
                match oldest {
                    Some(k) => self.shapes.remove(&k),
                    None => break,
                };
            }
        }
        let shape = self.shapes.get_mut(&key).expect("just inserted");
        shape.last_used = self.clock;
        Ok(shape)
    }

    /// Run the encoded texts as one padded batch.
    pub async fn run_async(&mut self, enc: &Encoded) -> Result<Vec<TextOutput>> {
        let batch = enc.ids.len();
        let tokens = enc.ids.iter().map(Vec::len).max().unwrap_or(0);
        if batch == 0 || tokens == 0 {
            return Err(Error::param("texts", "no text to run"));
        }
        let y = self.embed(enc, tokens)?;
        let counts: Vec<u32> = enc.ids.iter().map(|ids| ids.len() as u32).collect();
        let gpu = self.gpu.clone();
        let prepared = gpu
            .scoped(
                &format!("preparing {batch} texts of {tokens} tokens"),
                || self.shape(batch, tokens).map(|_| ()),
            )
            .await;
        if let Err(e) = prepared {
            self.shapes.remove(&(batch, tokens));
            return Err(e);
        }
        let s = &self.shapes[&(batch, tokens)];
        gpu.queue
            .write_buffer(&s.acts.y.buffer, 0, bytemuck::cast_slice(&y));
        gpu.queue
            .write_buffer(&s.acts.counts.buffer, 0, bytemuck::cast_slice(&counts));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        s.program.encode(&mut encoder);
        encoder.copy_buffer_to_buffer(&s.acts.x.buffer, 0, &s.staging, 0, s.acts.x.bytes());
        gpu.scoped("running the text encoder", || {
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })
        .await?;
        let x: Vec<f32> = read_buffer(&gpu, &s.staging, s.acts.x.bytes()).await?;
        let c = &self.encoder.config;
        let d = c.hidden_size;
        let mut out = Vec::with_capacity(batch);
        for (b, ids) in enc.ids.iter().enumerate() {
            let states = x[b * tokens * d..][..ids.len() * d].to_vec();
            if let Some(v) = states.iter().find(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "the model's output for text {} is not finite ({v}): an activation overflowed",
                    b + 1
                )));
            }
            let embedding = pool(c, &states);
            let logits = self
                .classifier
                .as_ref()
                .map_or_else(Vec::new, |h| classify(h, &states[..d]));
            out.push(TextOutput {
                embedding,
                states,
                logits,
            });
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&mut self, enc: &Encoded) -> Result<Vec<TextOutput>> {
        pollster::block_on(self.run_async(enc))
    }

    /// Run many texts in batches of at most `batch`, texts of similar length together (a batch
    /// pads to its longest, so sorting by length wastes little on padding); the outputs come back
    /// in input order. `done` is called with the texts finished after each batch.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_all(
        &mut self,
        enc: &Encoded,
        batch: usize,
        mut done: impl FnMut(usize),
    ) -> Result<Vec<TextOutput>> {
        let mut order: Vec<usize> = (0..enc.ids.len()).collect();
        order.sort_by_key(|&i| enc.ids[i].len());
        let mut out: Vec<Option<TextOutput>> = vec![None; enc.ids.len()];
        for chunk in order.chunks(batch.max(1)) {
            let part = Encoded {
                ids: chunk.iter().map(|&i| enc.ids[i].clone()).collect(),
                truncated: chunk.iter().map(|&i| enc.truncated[i]).collect(),
            };
            for (&i, o) in chunk.iter().zip(self.run(&part)?) {
                out[i] = Some(o);
            }
            done(chunk.len());
        }
        Ok(out
            .into_iter()
            .map(|o| o.expect("every text ran"))
            .collect())
    }
}

/// One text's embedding from its `[tokens, D]` states: the mean or the [CLS] row, normalised
/// where the model says so. Sums in f64.
pub fn pool(c: &BertConfig, states: &[f32]) -> Vec<f32> {
    let d = c.hidden_size;
    let rows = states.len() / d;
    let mut v: Vec<f64> = match c.pooling {
        Pooling::Cls => states[..d].iter().map(|&x| x as f64).collect(),
        Pooling::Mean => {
            let mut sum = vec![0.0f64; d];
            for row in states.chunks_exact(d) {
                for (s, &x) in sum.iter_mut().zip(row) {
                    *s += x as f64;
                }
            }
            sum.iter().map(|s| s / rows.max(1) as f64).collect()
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
