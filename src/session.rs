//! The scheduler: owns the model on the GPU and one compiled program per batch size, and plays a
//! program as one compute pass and one submit, reading back only the logits.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::buffers::staging_buffer;
use crate::gpu::{read_buffer, GpuContext, Kernels, Program};
use crate::model::flops;
use crate::model::vit::{Activations, VisionTransformer};
use crate::model::{ModelWeights, ViTConfig};

/// Top classes of one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// `(class index, probability)`, most likely first.
    pub top: Vec<(usize, f32)>,
}

/// Buffers and compiled steps for one batch size.
struct Plan {
    acts: Activations,
    program: Program,
    staging: wgpu::Buffer,
}

/// A model ready to run on one device.
pub struct Session {
    gpu: GpuContext,
    kernels: Kernels,
    model: VisionTransformer,
    plans: HashMap<usize, Plan>,
}

impl Session {
    /// Upload the weights and compile the kernels.
    pub fn new(gpu: &GpuContext, weights: &ModelWeights) -> Result<Self> {
        let model = VisionTransformer::upload(gpu, weights);
        gpu.check()?;
        Ok(Session {
            gpu: gpu.clone(),
            kernels: Kernels::new(gpu),
            model,
            plans: HashMap::new(),
        })
    }

    pub fn config(&self) -> &ViTConfig {
        &self.model.config
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// The largest batch this device holds for this model.
    pub fn max_batch(&self) -> usize {
        Activations::max_batch(&self.model.config, self.gpu.max_binding_bytes()).0
    }

    /// Values in one preprocessed image: `3 * H * W`.
    pub fn image_len(&self) -> usize {
        let c = &self.model.config;
        c.in_chans * c.image_size.0 * c.image_size.1
    }

    /// FLOPs per image of the program this session runs.
    pub fn flops_per_image(&self) -> f64 {
        flops::dense_flops(&self.model.config)
    }

    /// Kernel dispatches in one forward pass at this batch size.
    pub fn dispatches(&mut self, batch: usize) -> Result<usize> {
        Ok(self.plan(batch)?.program.dispatches())
    }

    fn plan(&mut self, batch: usize) -> Result<&Plan> {
        if !self.plans.contains_key(&batch) {
            let acts = Activations::new(&self.gpu, &self.model.config, batch)?;
            let program = self.model.forward(&self.kernels, &acts)?;
            let staging = staging_buffer(&self.gpu, acts.logits.bytes());
            self.gpu.check()?;
            self.plans.insert(
                batch,
                Plan {
                    acts,
                    program,
                    staging,
                },
            );
        }
        Ok(&self.plans[&batch])
    }

    /// Run a batch of preprocessed images (`[B, 3, H, W]` concatenated) and return `[B, classes]` logits.
    pub async fn run_async(&mut self, images: &[f32]) -> Result<Vec<Vec<f32>>> {
        let per = self.image_len();
        if images.is_empty() || !images.len().is_multiple_of(per) {
            return Err(Error::param(
                "images",
                format!(
                    "expected a multiple of {per} values ({} x {} x {}), got {}",
                    self.model.config.in_chans,
                    self.model.config.image_size.0,
                    self.model.config.image_size.1,
                    images.len()
                ),
            ));
        }
        let batch = images.len() / per;
        let classes = self.model.config.num_classes;
        let gpu = self.gpu.clone();
        let plan = self.plan(batch)?;
        gpu.queue
            .write_buffer(&plan.acts.image.buffer, 0, bytemuck::cast_slice(images));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        plan.program.encode(&mut encoder);
        encoder.copy_buffer_to_buffer(
            &plan.acts.logits.buffer,
            0,
            &plan.staging,
            0,
            plan.acts.logits.bytes(),
        );
        gpu.queue.submit([encoder.finish()]);
        let logits: Vec<f32> = read_buffer(&gpu, &plan.staging, plan.acts.logits.bytes()).await?;
        Ok(logits.chunks(classes).map(<[f32]>::to_vec).collect())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&mut self, images: &[f32]) -> Result<Vec<Vec<f32>>> {
        pollster::block_on(self.run_async(images))
    }

    /// Run and keep the `top` most likely classes of each image, with softmax probabilities.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn classify(&mut self, images: &[f32], top: usize) -> Result<Vec<Prediction>> {
        Ok(self.run(images)?.iter().map(|l| top_k(l, top)).collect())
    }
}

/// The `k` largest softmax probabilities of `logits`, most likely first.
pub fn top_k(logits: &[f32], k: usize) -> Prediction {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    Prediction {
        top: idx.into_iter().take(k).map(|i| (i, exp[i] / sum)).collect(),
    }
}
