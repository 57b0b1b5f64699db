//! The scheduler: owns the model on the GPU and one compiled program per (batch size, pruning
//! schedule, kernel choice), and plays a program: as one compute pass and one submit, reading back
//! only the logits and the kept-token indices; profiled (a timestamp pair around every step); or
//! step by step with every step's outputs read back (the debug twin).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::buffers::staging_buffer;
use crate::gpu::kernel::Elem;
use crate::gpu::{read_buffer, GpuContext, KernelChoice, Kernels, Phase, Program, StepOutput};
use crate::model::hook::Dense;
use crate::model::vit::{Activations, VisionTransformer};
use crate::model::{ModelWeights, Precision, ViTConfig};
use crate::prune::{PrunePlan, Pruning, TokenLayout};

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
    /// FLOPs of this image's forward pass, counted from the tokens each step kept.
    pub flops: f64,
}

/// How a run plays its program.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// One compute pass, one submit.
    #[default]
    Normal,
    /// Every step in its own pass with GPU timestamps around it (CPU-timed where the adapter has
    /// no timestamp queries): [`RunOutput::profile`].
    Profile,
    /// The debug twin: one submit per step, every step's outputs read back: [`RunOutput::trace`].
    Debug,
}

/// One run's settings: the pruning schedule (resolved for this model) and how to play it.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub pruning: &'a Pruning,
    pub mode: Mode,
}

impl<'a> Run<'a> {
    pub fn new(pruning: &'a Pruning) -> Self {
        Run {
            pruning,
            mode: Mode::Normal,
        }
    }

    pub fn mode(self, mode: Mode) -> Self {
        Run { mode, ..self }
    }
}

impl<'a> From<&'a Pruning> for Run<'a> {
    fn from(pruning: &'a Pruning) -> Self {
        Run::new(pruning)
    }
}

/// GPU time of one step of a profiled run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepTime {
    pub label: String,
    pub phase: Phase,
    pub seconds: f64,
}

/// What a run returns.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// One per image, in input order.
    pub images: Vec<ImageOutput>,
    /// Every step's GPU time ([`Mode::Profile`]).
    pub profile: Option<Vec<StepTime>>,
    /// Every step's outputs ([`Mode::Debug`]).
    pub trace: Option<Vec<StepOutput>>,
}

impl RunOutput {
    /// Every image's logits, one after the other.
    pub fn logits(&self) -> Vec<f32> {
        self.images.iter().flat_map(|o| o.logits.clone()).collect()
    }
}

/// What identifies a compiled program: the same key always plays the same steps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ProgramKey {
    batch: usize,
    pruning: Pruning,
    kernels: KernelChoice,
}

/// Compiled steps for one key; the activations are shared per batch size.
struct Compiled {
    program: Program,
    prune: Option<PrunePlan>,
    /// Logits, then every step's kept-token buffer, one after another.
    staging: wgpu::Buffer,
    staging_bytes: u64,
    /// When it last ran ([`Session::clock`]).
    last_used: u64,
}

/// Programs a session keeps compiled (with their pruning buffers), and batch sizes whose
/// activations it keeps: past these the least recently used go, so that a long-running process
/// that sees many batch sizes and schedules stays within bounded GPU memory.
pub const KEEP_PROGRAMS: usize = 16;
pub const KEEP_BATCH_SIZES: usize = 4;

/// A model ready to run on one device.
pub struct Session {
    gpu: GpuContext,
    kernels: Kernels,
    model: VisionTransformer,
    /// Activations per batch size, with when they were last used.
    acts: HashMap<usize, (Activations, u64)>,
    programs: HashMap<ProgramKey, Compiled>,
    /// Counts runs: the recency of programs and activations.
    clock: u64,
}

impl Session {
    /// Measure which kernels are fastest on this adapter (read from the disk cache where an
    /// earlier process measured them), then upload the weights in f32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(gpu: &GpuContext, weights: &ModelWeights) -> Result<Self> {
        Self::with_precision(gpu, weights, Precision::F32)
    }

    /// [`Session::new`] with the weights and activations stored as `precision` says.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_precision(
        gpu: &GpuContext,
        weights: &ModelWeights,
        precision: Precision,
    ) -> Result<Self> {
        pollster::block_on(Self::create(gpu, weights, precision))
    }

    /// Measure the kernels (GEMM tile, attention path, f16 against f32) on this adapter, once per
    /// adapter and process, then upload the weights as `precision` resolves on it. Native and web.
    pub async fn create(
        gpu: &GpuContext,
        weights: &ModelWeights,
        precision: Precision,
    ) -> Result<Self> {
        let kernels = Kernels::new(gpu);
        kernels.tune().await?;
        let storage = precision.storage(gpu, kernels.choice())?;
        let model = gpu
            .scoped("uploading the model", || {
                VisionTransformer::upload(gpu, weights, storage)
            })
            .await?;
        Ok(Session {
            gpu: gpu.clone(),
            kernels,
            model,
            acts: HashMap::new(),
            programs: HashMap::new(),
            clock: 0,
        })
    }

    /// What the weights and GEMM-only activations are stored as (f32 or f16).
    pub fn storage(&self) -> Elem {
        self.model.storage
    }

    pub fn config(&self) -> &ViTConfig {
        &self.model.config
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// The kernels programs built from now on use.
    pub fn kernel_choice(&self) -> KernelChoice {
        self.kernels.choice()
    }

    /// Whether softmax and LayerNorm reduce on subgroups here (the choice, where the adapter allows).
    pub fn subgroup_reductions(&self) -> bool {
        self.kernels.subgroup_reductions()
    }

    /// Force a kernel choice (benchmarks and tests; [`Session::new`] measures the best).
    pub fn set_kernel_choice(&mut self, choice: KernelChoice) {
        self.kernels.set_choice(choice);
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

    /// The label and phase of every step of one forward pass at this batch size, in order.
    pub fn steps(&mut self, batch: usize, pruning: &Pruning) -> Result<Vec<(String, Phase)>> {
        let (compiled, _) = self.compiled(batch, pruning)?;
        Ok(compiled
            .program
            .steps
            .iter()
            .map(|s| (s.label.clone(), s.phase))
            .collect())
    }

    /// The label of every step of one forward pass at this batch size, in order.
    pub fn step_labels(&mut self, batch: usize, pruning: &Pruning) -> Result<Vec<String>> {
        Ok(self
            .steps(batch, pruning)?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    fn check_images(&self, images: &[f32]) -> Result<usize> {
        let per = self.image_len();
        if images.is_empty() || !images.len().is_multiple_of(per) {
            let c = &self.model.config;
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
        Ok(images.len() / per)
    }

    /// The program for `(batch, pruning, current kernel choice)`, compiled on first use.
    fn compiled(&mut self, batch: usize, pruning: &Pruning) -> Result<(&Compiled, &Activations)> {
        let depth = self.model.config.depth;
        if !pruning.is_dense() && pruning.steps.iter().any(|s| s.block >= depth) {
            return Err(Error::param(
                "pruning",
                "the schedule was resolved for a deeper model",
            ));
        }
        self.clock += 1;
        let now = self.clock;
        if !self.acts.contains_key(&batch) {
            let acts = Activations::new(&self.gpu, &self.model.config, batch, self.model.storage)?;
            self.acts.insert(batch, (acts, now));
            self.evict_batches(batch);
        }
        let key = self.key(batch, pruning);
        if !self.programs.contains_key(&key) {
            let acts = &self.acts[&batch].0;
            let (program, prune) = if pruning.is_dense() {
                (self.model.forward(&self.kernels, acts, &mut Dense)?, None)
            } else {
                let c = &self.model.config;
                let layout = TokenLayout {
                    batch,
                    rows: c.num_tokens(),
                    protected: c.num_prefix_tokens(),
                    heads: c.num_heads,
                    depth: c.depth,
                };
                let mut plan = PrunePlan::new(&self.gpu, layout, pruning);
                let program = self.model.forward(&self.kernels, acts, &mut plan)?;
                (program, Some(plan))
            };
            let kept_bytes: u64 = prune
                .iter()
                .flat_map(|p| &p.steps)
                .map(|s| s.kept.bytes())
                .sum();
            let staging_bytes = acts.logits.bytes() + kept_bytes;
            let staging = staging_buffer(&self.gpu, staging_bytes);
            self.gpu.check()?;
            self.programs.insert(
                key.clone(),
                Compiled {
                    program,
                    prune,
                    staging,
                    staging_bytes,
                    last_used: now,
                },
            );
            self.evict_programs(&key);
        }
        if let Some(p) = self.programs.get_mut(&key) {
            p.last_used = now;
        }
        if let Some(a) = self.acts.get_mut(&batch) {
            a.1 = now;
        }
        Ok((&self.programs[&key], &self.acts[&batch].0))
    }

    fn key(&self, batch: usize, pruning: &Pruning) -> ProgramKey {
        ProgramKey {
            batch,
            pruning: pruning.clone(),
            kernels: self.kernels.choice(),
        }
    }

    /// Drop everything built for `batch` (after a failure while building it).
    fn forget(&mut self, batch: usize) {
        self.acts.remove(&batch);
        self.programs.retain(|k, _| k.batch != batch);
    }

    /// Drop the least recently used programs past [`KEEP_PROGRAMS`], never `keep`.
    fn evict_programs(&mut self, keep: &ProgramKey) {
        while self.programs.len() > KEEP_PROGRAMS {
            let oldest = self
                .programs
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.programs.remove(&k),
                None => break,
            };
        }
    }

    /// Drop the least recently used batch sizes' activations (and their programs) past
    /// [`KEEP_BATCH_SIZES`], never `keep`'s.
    fn evict_batches(&mut self, keep: usize) {
        while self.acts.len() > KEEP_BATCH_SIZES {
            let oldest = self
                .acts
                .iter()
                .filter(|(&b, _)| b != keep)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(&b, _)| b);
            let Some(b) = oldest else { break };
            self.acts.remove(&b);
            self.programs.retain(|k, _| k.batch != b);
        }
    }

    /// Programs compiled and batch sizes with activations right now (both bounded).
    pub fn cached(&self) -> (usize, usize) {
        (self.programs.len(), self.acts.len())
    }

    /// Run a batch of preprocessed images (`[B, 3, H, W]` concatenated) with a pruning schedule
    /// (resolved for this model; [`Pruning::dense`] for none): per image the logits, the patch
    /// tokens each step kept and the FLOPs; with [`Mode::Profile`] or [`Mode::Debug`], per step
    /// the GPU time or the outputs.
    pub async fn run_async<'a>(
        &mut self,
        images: &[f32],
        run: impl Into<Run<'a>>,
    ) -> Result<RunOutput> {
        let run = run.into();
        let batch = self.check_images(images)?;
        let gpu = self.gpu.clone();
        // Buffers and programs for this batch: an allocation or validation failure is reported
        // and leaves nothing half-built behind, so the session stays usable.
        let prepared = gpu
            .scoped(&format!("preparing a batch of {batch}"), || {
                self.compiled(batch, run.pruning).map(|_| ())
            })
            .await;
        if let Err(e) = prepared {
            self.forget(batch);
            return Err(e);
        }
        let c = &self.model.config;
        let (compiled, acts) = (
            &self.programs[&self.key(batch, run.pruning)],
            &self.acts[&batch].0,
        );
        gpu.queue
            .write_buffer(&acts.image.buffer, 0, bytemuck::cast_slice(images));
        let program = &compiled.program;
        let (mut profile, mut trace) = (None, None);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        match run.mode {
            Mode::Normal => program.encode(&mut encoder),
            Mode::Profile => {
                let seconds = program.profile(&gpu).await?;
                profile = Some(
                    program
                        .steps
                        .iter()
                        .zip(seconds)
                        .map(|(s, seconds)| StepTime {
                            label: s.label.clone(),
                            phase: s.phase,
                            seconds,
                        })
                        .collect(),
                );
            }
            Mode::Debug => trace = Some(program.play_step_by_step(&gpu).await?),
        }
        // Logits and kept indices come back in one copy and one map.
        let steps = compiled.prune.as_ref().map_or(&[][..], |p| &p.steps[..]);
        encoder.copy_buffer_to_buffer(
            &acts.logits.buffer,
            0,
            &compiled.staging,
            0,
            acts.logits.bytes(),
        );
        let mut at = acts.logits.bytes();
        for s in steps {
            encoder.copy_buffer_to_buffer(&s.kept.buffer, 0, &compiled.staging, at, s.kept.bytes());
            at += s.kept.bytes();
        }
        gpu.scoped("running the forward pass", || {
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })
        .await?;
        let words: Vec<u32> = read_buffer(&gpu, &compiled.staging, compiled.staging_bytes).await?;
        let (logits, kept) = words.split_at(acts.logits.len);
        let prefix = c.num_prefix_tokens() as u32;
        let mut images: Vec<ImageOutput> = logits
            .chunks(c.num_classes)
            .map(|l| ImageOutput {
                logits: l.iter().map(|&w| f32::from_bits(w)).collect(),
                kept: vec![],
                flops: 0.0,
            })
            .collect();
        // A NaN or an infinity is no answer: say so rather than print "NaN%".
        for (i, image) in images.iter().enumerate() {
            if let Some(v) = image.logits.iter().find(|v| !v.is_finite()) {
                let hint = if self.model.storage == Elem::F16 {
                    "; f16 storage overflows past 65504: try --precision f32"
                } else {
                    ""
                };
                return Err(Error::NonFinite(format!(
                    "the model's output for image {i} of the batch is not finite ({v}): an activation \
                     overflowed{hint}"
                )));
            }
        }
        let mut at = 0;
        for s in steps {
            for (b, image) in images.iter_mut().enumerate() {
                let slice = &kept[at + b * s.rows_out..at + (b + 1) * s.rows_out];
                // Original token index -> patch index; prefix rows and empty slots dropped.
                image.kept.push(
                    slice
                        .iter()
                        .filter(|&&t| t != u32::MAX && t >= prefix)
                        .map(|&t| t - prefix)
                        .collect(),
                );
            }
            at += batch * s.rows_out;
        }
        for image in &mut images {
            let counts: Vec<usize> = image.kept.iter().map(Vec::len).collect();
            image.flops = run.pruning.flops_with(c, &counts);
        }
        Ok(RunOutput {
            images,
            profile,
            trace,
        })
    }

    /// [`Session::run_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run<'a>(&mut self, images: &[f32], run: impl Into<Run<'a>>) -> Result<RunOutput> {
        pollster::block_on(self.run_async(images, run))
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
