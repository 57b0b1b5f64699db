//! The ViT family: ViT and DeiT (distilled or not) image classifiers, in timm's or Hugging Face's
//! layout. A batch of images is `[B, 3, H, W]` preprocessed pixels; every image has the same rows
//! (its prefix tokens, which are protected, then its patches); the output is the classifier's
//! logits and, per pruning step, the patches kept.
//!
//! - `config.rs`, `config_json.rs`: the shape and preprocessing, from timm's or Hugging Face's files;
//! - `names.rs`: every tensor name of both layouts; `weights.rs`: the weights on the host;
//! - `graph.rs`: the forward pass on the GPU; `random.rs`: seeded random weights of known shapes.

pub mod config;
mod config_json;
pub mod graph;
pub mod names;
pub(crate) mod pos_embed;
pub mod random;
pub mod weights;

pub use config::{CropOffset, Interpolation, Pool, Preprocess, Resize, ViTConfig};
pub use graph::{Activations, Block, VisionTransformer};
pub use weights::{ConfigFiles, MapHeadWeights, ModelWeights};

use super::family::{BatchShape, Dropped, Family, ItemOutput, Readback};
use super::TokenGeometry;
use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};
use crate::model::hook::TokenHook;

/// What one image's forward pass produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageOutput {
    pub logits: Vec<f32>,
    /// For each pruning step, the patch indices (0-based, row-major over the grid, prefix tokens
    /// excluded) that survive it, in their original order.
    pub kept: Vec<Vec<u32>>,
    /// FLOPs of this image's forward pass, counted from the tokens each step kept.
    pub flops: f64,
    /// The pooled features the head reads: the final-normed CLS row (distilled: the mean of the
    /// CLS and distillation rows, as timm's `pre_logits`), the image's embedding.
    #[serde(skip)]
    pub embedding: Vec<f32>,
}

impl ItemOutput for ImageOutput {
    fn flops(&self) -> f64 {
        self.flops
    }
    fn kept(&self) -> &[Vec<u32>] {
        &self.kept
    }
}

impl super::family::Weights for ModelWeights {
    type Family = VisionTransformer;
    fn source(&self) -> &str {
        &self.source
    }
    fn upload(&self, gpu: &GpuContext, storage: Elem) -> Result<VisionTransformer> {
        VisionTransformer::upload(gpu, self, storage)
    }
}

impl Family for VisionTransformer {
    type Config = ViTConfig;
    type Input = [f32];
    type Output = ImageOutput;
    type Buffers = Activations;

    fn config(&self) -> &ViTConfig {
        &self.config
    }

    fn storage(&self) -> Elem {
        self.storage
    }

    fn shape(&self, images: &[f32]) -> Result<BatchShape> {
        let c = &self.config;
        let per = c.image_len();
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::param(
                "images",
                format!(
                    "expected a multiple of {per} values ({} x {} x {}), got {}",
                    c.in_chans,
                    c.image_size.0,
                    c.image_size.1,
                    images.len()
                ),
            ));
        }
        Ok(BatchShape {
            batch: images.len() / per,
            rows: c.num_tokens(),
        })
    }

    fn item_rows(&self, _images: &[f32], _b: usize) -> usize {
        self.config.num_tokens()
    }

    fn geometry(&self, _rows: usize) -> TokenGeometry {
        self.config.geometry()
    }

    fn largest_geometry(&self) -> TokenGeometry {
        self.config.geometry()
    }

    fn max_batch(&self, _rows: usize, max_bytes: u64) -> usize {
        Activations::max_batch(&self.config, max_bytes).0
    }

    fn len(&self, images: &[f32]) -> usize {
        images.len() / self.config.image_len().max(1)
    }

    fn subset(&self, images: &[f32], items: &[usize]) -> Vec<f32> {
        let per = self.config.image_len();
        items
            .iter()
            .flat_map(|&i| images[i * per..][..per].iter().copied())
            .collect()
    }

    fn buffers(&self, gpu: &GpuContext, shape: BatchShape) -> Result<Activations> {
        Activations::new(gpu, &self.config, shape.batch, self.storage)
    }

    fn forward(&self, k: &Kernels, a: &Activations, hook: &mut dyn TokenHook) -> Result<Program> {
        VisionTransformer::forward(self, k, a, hook)
    }

    fn write(&self, gpu: &GpuContext, a: &Activations, images: &[f32]) -> Result<()> {
        gpu.queue
            .write_buffer(&a.image.buffer, 0, bytemuck::cast_slice(images));
        Ok(())
    }

    fn readback<'a>(&self, a: &'a Activations) -> Vec<&'a GpuTensor> {
        match self.pooled {
            // Average pooling reads the final tokens back.
            Some(_) => vec![&a.logits, &a.head_in, &a.x],
            None => vec![&a.logits, &a.head_in],
        }
    }

    fn decode(&self, _images: &[f32], r: &Readback, _dropped: Dropped) -> Result<Vec<ImageOutput>> {
        let c = &self.config;
        let prefix = c.num_prefix_tokens() as u32;
        let classes = c.num_classes;
        let logits = &r.buffers[0][..r.shape.batch * classes];
        let (d, pre) = (c.embed_dim, c.head_tokens());
        let head_in =
            crate::gpu::buffers::words_to_f32(r.buffers[1], self.storage, r.shape.batch * pre * d);
        let mut images = Vec::with_capacity(r.shape.batch);
        // Average pooling: the patch tokens each image has left, weighted by what they stand for.
        let pooled_of = |b: usize| -> Option<(Vec<f32>, Vec<f32>)> {
            let head = self.pooled.as_ref()?;
            let x = r.buffers[2];
            let (mut states, mut sizes) = (Vec::new(), Vec::new());
            for (row, orig, size) in r.final_rows(b, c.num_tokens()) {
                if orig >= prefix {
                    let at = (b * r.rows_out + row) * d;
                    states.extend(x[at..at + d].iter().map(|&w| f32::from_bits(w)));
                    sizes.push(size);
                }
            }
            Some(head.run(&states, &sizes, d))
        };
        for b in 0..r.shape.batch {
            let pooled = pooled_of(b);
            let l = &logits[b * classes..][..classes];
            let logits: Vec<f32> = match &pooled {
                Some((_, logits)) => logits.clone(),
                None => l.iter().map(|&w| f32::from_bits(w)).collect(),
            };
            // A NaN or an infinity is no answer: say so rather than print "NaN%".
            if let Some(v) = logits.iter().find(|v| !v.is_finite()) {
                let hint = if self.storage == Elem::F16 {
                    "; f16 storage overflows past 65504: try --precision f32"
                } else {
                    ""
                };
                return Err(Error::NonFinite(format!(
                    "the model's output for image {b} of the batch is not finite ({v}): an activation \
                     overflowed{hint}"
                )));
            }
            // Original token index -> patch index; prefix rows dropped.
            let kept = (0..r.steps.len())
                .map(|s| {
                    r.kept(s, b)
                        .into_iter()
                        .filter(|&t| t >= prefix)
                        .map(|t| t - prefix)
                        .collect()
                })
                .collect();
            let rows = &head_in[b * pre * d..][..pre * d];
            let pooled: Vec<f32> = match pooled {
                Some((embedding, _)) => embedding,
                None => (0..d)
                    .map(|j| (0..pre).map(|t| rows[t * d + j]).sum::<f32>() / pre as f32)
                    .collect(),
            };
            // CLIP's projection, P x D per image, on the host.
            let embedding = match &self.projection {
                Some(w) => w
                    .chunks(d)
                    .map(|row| row.iter().zip(&pooled).map(|(w, x)| w * x).sum())
                    .collect(),
                None => pooled,
            };
            images.push(ImageOutput {
                logits,
                kept,
                flops: r.flops[b],
                embedding,
            });
        }
        Ok(images)
    }
}
