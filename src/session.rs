//! The scheduler: owns the model on the GPU and one compiled program per (batch size, pruning
//! schedule), and plays a program as one compute pass and one submit, reading back only the logits
//! (and, on request, the original indices of the tokens each pruning step kept).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::buffers::staging_buffer;
use crate::gpu::{read_buffer, GpuContext, Kernels, Program};
use crate::model::vit::{Activations, Dense, VisionTransformer};
use crate::model::{ModelWeights, ViTConfig};
use crate::prune::{PrunePlan, Pruning};

/// Top classes of one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// `(class index, probability)`, most likely first.
    pub top: Vec<(usize, f32)>,
}

/// What one image's forward pass produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImageOutput {
    pub logits: Vec<f32>,
    /// For each pruning step, the patch indices (0-based, row-major over the grid, prefix tokens
    /// excluded) that survive it, in their original order.
    pub kept: Vec<Vec<u32>>,
}

/// Compiled steps for one (batch size, schedule); the activations are shared per batch size.
struct Plan {
    program: Program,
    prune: Option<PrunePlan>,
    staging: wgpu::Buffer,
    /// Sized for every step's kept-token buffer, one after another.
    kept_staging: Option<wgpu::Buffer>,
}

/// A model ready to run on one device.
pub struct Session {
    gpu: GpuContext,
    kernels: Kernels,
    model: VisionTransformer,
    pruning: Pruning,
    acts: HashMap<usize, Activations>,
    plans: HashMap<(usize, String), Plan>,
}

impl Session {
    /// Upload the weights and compile the kernels.
    pub fn new(gpu: &GpuContext, weights: &ModelWeights) -> Result<Self> {
        let model = VisionTransformer::upload(gpu, weights);
        gpu.check()?;
        let kernels = Kernels::new(gpu);
        // Pick the fastest GEMM kernel for this adapter (measured once per process and adapter).
        #[cfg(not(target_arch = "wasm32"))]
        {
            kernels.tune_gemm_blocking()?;
            kernels.tune_attention_blocking()?;
        }
        Ok(Session {
            gpu: gpu.clone(),
            kernels,
            model,
            pruning: Pruning::dense(),
            acts: HashMap::new(),
            plans: HashMap::new(),
        })
    }

    /// Measure which GEMM tile and which attention path are fastest on this adapter (once per
    /// adapter and process). `new` does this itself natively; the browser awaits it after `new`.
    pub async fn tune(&self) -> Result<()> {
        self.kernels.tune_gemm().await?;
        self.kernels.tune_attention().await?;
        Ok(())
    }

    /// Run every later forward pass with this pruning schedule (resolved for this model with
    /// [`Pruning::resolve`]). Programs stay compiled per schedule, so switching back is free.
    pub fn set_pruning(&mut self, pruning: Pruning) {
        self.pruning = pruning;
    }

    pub fn pruning(&self) -> &Pruning {
        &self.pruning
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

    /// FLOPs per image of the program this session runs (threshold pruning: the dense bound; use
    /// [`Pruning::flops_with`] with the kept counts of a run).
    pub fn flops_per_image(&self) -> f64 {
        self.pruning.flops(&self.model.config)
    }

    /// Kernel dispatches in one forward pass at this batch size.
    pub fn dispatches(&mut self, batch: usize) -> Result<usize> {
        Ok(self.plan(batch)?.0.program.dispatches())
    }

    /// The GEMM kernel this session's programs use (tuned per adapter on native targets).
    pub fn gemm_kernel(&self) -> crate::gpu::kernels::GemmKernel {
        self.kernels.gemm_kernel()
    }

    /// Whether blocks that need no attention probabilities run the fused attention kernel.
    pub fn fused_attention(&self) -> bool {
        self.kernels.fused_attention()
    }

    /// Force the fused attention on or off (benchmarks and tests; `Session::new` measures which
    /// is faster on this adapter). Compiled programs are dropped.
    pub fn set_fused_attention(&mut self, on: bool) {
        if on != self.kernels.fused_attention() {
            self.kernels.set_fused_attention(on);
            self.plans.clear();
        }
    }

    /// The label of every step of one forward pass at this batch size, in order.
    pub fn step_labels(&mut self, batch: usize) -> Result<Vec<String>> {
        Ok(self
            .plan(batch)?
            .0
            .program
            .steps
            .iter()
            .map(|s| s.label.clone())
            .collect())
    }

    /// Play one forward pass of `images` with a GPU timestamp pair around every step (each its own
    /// compute pass): `(label, seconds)` per step, or `None` where the adapter has no timestamp
    /// queries. The profiling mode of `zeroprune bench`; a normal run stays one pass.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_steps(&mut self, images: &[f32]) -> Result<Option<Vec<(String, f64)>>> {
        let batch = self.check_images(images)?;
        let gpu = self.gpu.clone();
        let (plan, acts) = self.plan(batch)?;
        gpu.queue
            .write_buffer(&acts.image.buffer, 0, bytemuck::cast_slice(images));
        let times = crate::gpu::profile_program_blocking(&gpu, &plan.program)?;
        Ok(times.map(|t| {
            plan.program
                .steps
                .iter()
                .zip(t)
                .map(|(s, t)| (s.label.clone(), t))
                .collect()
        }))
    }

    /// Wall time of one forward pass of `images` that plays only the steps whose label `keep`
    /// accepts (nothing read back): the CPU-timed fallback of the per-step breakdown, e.g. a pruned
    /// pass without its pruning steps.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_steps(&mut self, images: &[f32], keep: impl Fn(&str) -> bool) -> Result<f64> {
        let batch = self.check_images(images)?;
        let gpu = self.gpu.clone();
        let (plan, acts) = self.plan(batch)?;
        gpu.queue
            .write_buffer(&acts.image.buffer, 0, bytemuck::cast_slice(images));
        let mut program = Program::default();
        program.extend(
            plan.program
                .steps
                .iter()
                .filter(|s| keep(&s.label))
                .cloned(),
        );
        crate::gpu::time_program_blocking(&gpu, &program)
    }

    fn check_images(&self, images: &[f32]) -> Result<usize> {
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
        Ok(images.len() / per)
    }

    fn plan(&mut self, batch: usize) -> Result<(&Plan, &Activations)> {
        if !self.acts.contains_key(&batch) {
            let acts = Activations::new(&self.gpu, &self.model.config, batch)?;
            self.acts.insert(batch, acts);
        }
        let key = (batch, format!("{:?}", self.pruning));
        if !self.plans.contains_key(&key) {
            let acts = &self.acts[&batch];
            let c = &self.model.config;
            let (program, prune) = if self.pruning.is_dense() {
                (self.model.forward(&self.kernels, acts, &mut Dense)?, None)
            } else {
                let mut prune = PrunePlan::new(&self.gpu, c, &self.pruning, batch);
                (
                    self.model.forward(&self.kernels, acts, &mut prune)?,
                    Some(prune),
                )
            };
            let staging = staging_buffer(&self.gpu, acts.logits.bytes());
            let kept_staging = prune.as_ref().map(|p| {
                let bytes = p.steps.iter().map(|s| s.kept.bytes()).sum();
                staging_buffer(&self.gpu, bytes)
            });
            self.gpu.check()?;
            self.plans.insert(
                key.clone(),
                Plan {
                    program,
                    prune,
                    staging,
                    kept_staging,
                },
            );
        }
        Ok((&self.plans[&key], &self.acts[&batch]))
    }

    /// Run a batch of preprocessed images (`[B, 3, H, W]` concatenated) and return `[B, classes]` logits.
    pub async fn run_async(&mut self, images: &[f32]) -> Result<Vec<Vec<f32>>> {
        let out = self.run_images_async(images, false).await?;
        Ok(out.into_iter().map(|o| o.logits).collect())
    }

    /// Run a batch and return, per image, the logits and the patch tokens each pruning step kept.
    pub async fn run_detailed_async(&mut self, images: &[f32]) -> Result<Vec<ImageOutput>> {
        self.run_images_async(images, true).await
    }

    async fn run_images_async(&mut self, images: &[f32], kept: bool) -> Result<Vec<ImageOutput>> {
        let batch = self.check_images(images)?;
        let classes = self.model.config.num_classes;
        let prefix = self.model.config.num_prefix_tokens() as u32;
        let gpu = self.gpu.clone();
        let (plan, acts) = self.plan(batch)?;
        gpu.queue
            .write_buffer(&acts.image.buffer, 0, bytemuck::cast_slice(images));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        plan.program.encode(&mut encoder);
        encoder.copy_buffer_to_buffer(
            &acts.logits.buffer,
            0,
            &plan.staging,
            0,
            acts.logits.bytes(),
        );
        let steps = plan.prune.as_ref().map_or(&[][..], |p| &p.steps[..]);
        if kept {
            if let Some(staging) = &plan.kept_staging {
                let mut at = 0;
                for s in steps {
                    encoder.copy_buffer_to_buffer(&s.kept.buffer, 0, staging, at, s.kept.bytes());
                    at += s.kept.bytes();
                }
            }
        }
        gpu.queue.submit([encoder.finish()]);
        let logits: Vec<f32> = read_buffer(&gpu, &plan.staging, acts.logits.bytes()).await?;
        let mut out: Vec<ImageOutput> = logits
            .chunks(classes)
            .map(|l| ImageOutput {
                logits: l.to_vec(),
                kept: vec![],
            })
            .collect();
        if let (true, Some(staging)) = (kept, &plan.kept_staging) {
            let total = steps.iter().map(|s| s.kept.bytes()).sum();
            let all: Vec<u32> = read_buffer(&gpu, staging, total).await?;
            let mut at = 0;
            for s in steps {
                let rows = s.rows_out;
                for (b, image) in out.iter_mut().enumerate() {
                    let slice = &all[at + b * rows..at + (b + 1) * rows];
                    // Original token index -> patch index; prefix rows and empty slots dropped.
                    image.kept.push(
                        slice
                            .iter()
                            .filter(|&&t| t != u32::MAX && t >= prefix)
                            .map(|&t| t - prefix)
                            .collect(),
                    );
                }
                at += batch * rows;
            }
        }
        Ok(out)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_detailed(&mut self, images: &[f32]) -> Result<Vec<ImageOutput>> {
        pollster::block_on(self.run_detailed_async(images))
    }

    /// FLOPs per image of a run whose pruning steps kept these patch tokens.
    pub fn flops_for(&self, out: &ImageOutput) -> f64 {
        let kept: Vec<usize> = out.kept.iter().map(Vec::len).collect();
        if kept.len() == self.pruning.steps.len() {
            self.pruning.flops_with(&self.model.config, &kept)
        } else {
            self.flops_per_image()
        }
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
