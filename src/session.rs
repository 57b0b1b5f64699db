//! The scheduler, one for every model family: owns the GPU, the kernels and their choice, the
//! model's weights on the GPU (f32 or f16), and one compiled program per (batch shape, pruning
//! schedule, kernel choice); plays a program as one compute pass and one submit, reading back only
//! the family's outputs and the kept-token indices; profiled (a timestamp pair around every step);
//! or step by step with every step's outputs read back (the debug twin). What differs between
//! families (input layout, protected rows, outputs) is theirs ([`Family`]).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::buffers::staging_buffer;
use crate::gpu::kernel::Elem;
use crate::gpu::{read_buffer, GpuContext, GpuTensor, KernelChoice, Kernels, Phase, Program};
use crate::gpu::{Step, StepOutput, StepShape};
use crate::model::family::{Readback, StepReadback, Weights};
use crate::model::hook::Dense;
use crate::model::{BatchShape, Dropped, Family, ItemOutput, Precision, VisionTransformer};
use crate::prune::{PrunePlan, Pruner, Pruning, TokenLayout};

pub use crate::model::bert::{TextEncoder, TextOutput};
pub use crate::model::vit::ImageOutput;

/// A session on a text encoder.
pub type TextSession = Session<TextEncoder>;

/// Top classes of one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// `(class index, probability)`, most likely first.
    pub top: Vec<(usize, f32)>,
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

/// Where a run's pruning schedule comes from.
#[derive(Clone, Copy, Debug)]
pub enum Schedule<'a> {
    /// One schedule, resolved for the model's geometry (an image model's only one).
    Fixed(&'a Pruning),
    /// A request resolved per geometry the input has (text: per length).
    Request(&'a Pruner),
}

impl Schedule<'_> {
    fn is_dense(&self) -> Result<bool> {
        match self {
            Schedule::Fixed(p) => Ok(p.is_dense()),
            Schedule::Request(p) => p.is_dense(),
        }
    }
}

/// One run's settings: the pruning schedule, how to play it, and what mean pooling does with
/// dropped tokens.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub schedule: Schedule<'a>,
    pub mode: Mode,
    pub dropped: Dropped,
}

impl<'a> Run<'a> {
    pub fn new(schedule: impl Into<Schedule<'a>>) -> Self {
        Run {
            schedule: schedule.into(),
            mode: Mode::Normal,
            dropped: Dropped::default(),
        }
    }

    pub fn mode(self, mode: Mode) -> Self {
        Run { mode, ..self }
    }

    pub fn dropped(self, dropped: Dropped) -> Self {
        Run { dropped, ..self }
    }
}

impl<'a> From<&'a Pruning> for Schedule<'a> {
    fn from(p: &'a Pruning) -> Self {
        Schedule::Fixed(p)
    }
}

impl<'a> From<&'a Pruner> for Schedule<'a> {
    fn from(p: &'a Pruner) -> Self {
        Schedule::Request(p)
    }
}

impl<'a> From<&'a Pruning> for Run<'a> {
    fn from(p: &'a Pruning) -> Self {
        Run::new(p)
    }
}

impl<'a> From<&'a Pruner> for Run<'a> {
    fn from(p: &'a Pruner) -> Self {
        Run::new(p)
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
pub struct RunOutput<O = ImageOutput> {
    /// One per item (image, text), in input order.
    pub items: Vec<O>,
    /// Every step's GPU time ([`Mode::Profile`]).
    pub profile: Option<Vec<StepTime>>,
    /// Every step's outputs ([`Mode::Debug`]).
    pub trace: Option<Vec<StepOutput>>,
}

impl RunOutput<ImageOutput> {
    /// Every image's logits, one after the other.
    pub fn logits(&self) -> Vec<f32> {
        self.items.iter().flat_map(|o| o.logits.clone()).collect()
    }
}

/// What identifies a compiled program: the same key always plays the same steps.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ProgramKey {
    shape: BatchShape,
    pruning: Pruning,
    kernels: KernelChoice,
}

/// Compiled steps for one key; the buffers are shared per batch shape.
struct Compiled {
    program: Program,
    plan: Option<PrunePlan>,
    /// Rows per item after the last step.
    rows_out: usize,
    /// The family's outputs, then every step's kept rows, the last step's sizes and the exit
    /// states, one after another.
    staging: wgpu::Buffer,
    staging_bytes: u64,
    /// When it last ran ([`Session::clock`]).
    last_used: u64,
}

impl Compiled {
    /// The plan's buffers read back after a run, in staging order after the family's.
    fn plan_readback(&self) -> Vec<&GpuTensor> {
        let Some(plan) = &self.plan else {
            return vec![];
        };
        let mut out: Vec<&GpuTensor> = plan.steps.iter().map(|s| &s.kept).collect();
        out.extend(plan.steps.last().and_then(|l| l.sizes.as_ref()));
        out.extend(plan.steps.iter().filter_map(|s| s.exits.as_ref()));
        out
    }
}

/// Programs a session keeps compiled (with their pruning buffers), and batch shapes whose
/// buffers it keeps: past these the least recently used go, so that a long-running process
/// that sees many batch shapes and schedules stays within bounded GPU memory.
pub const KEEP_PROGRAMS: usize = 16;
pub const KEEP_BATCH_SIZES: usize = 4;
/// Steps of the programs a session keeps compiled, all together: each step holds a bind group,
/// and drivers run out of those without an error (lavapipe dies by SIGSEGV past ~60000, one
/// memory mapping each). Past this the least recently used programs go, however few there are.
pub const KEEP_STEPS: usize = 16384;

/// A model of family `F` ready to run on one device.
pub struct Session<F: Family = VisionTransformer> {
    gpu: GpuContext,
    kernels: Kernels,
    model: F,
    /// Buffers per batch shape, with when they were last used.
    buffers: HashMap<BatchShape, (F::Buffers, u64)>,
    programs: HashMap<ProgramKey, Compiled>,
    /// Counts runs: the recency of programs and buffers.
    clock: u64,
}

impl<F: Family> Session<F> {
    /// Measure which kernels are fastest on this adapter (read from the disk cache where an
    /// earlier process measured them), then upload the weights in f32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new<W: Weights<Family = F>>(gpu: &GpuContext, weights: &W) -> Result<Self> {
        Self::with_precision(gpu, weights, Precision::F32)
    }

    /// [`Session::new`] with the weights and activations stored as `precision` says.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_precision<W: Weights<Family = F>>(
        gpu: &GpuContext,
        weights: &W,
        precision: Precision,
    ) -> Result<Self> {
        pollster::block_on(Self::create(gpu, weights, precision))
    }

    /// Measure the kernels (GEMM tile, attention path, f16 against f32) on this adapter, once per
    /// adapter and process, then upload the weights as `precision` resolves on it. Native and web.
    pub async fn create<W: Weights<Family = F>>(
        gpu: &GpuContext,
        weights: &W,
        precision: Precision,
    ) -> Result<Self> {
        Self::create_with(&Kernels::new(gpu), weights, precision).await
    }

    /// [`Session::create`] on a kernel library another session shares (one device, one
    /// measurement, one pipeline cache for every model a page loads).
    pub async fn create_with<W: Weights<Family = F>>(
        kernels: &Kernels,
        weights: &W,
        precision: Precision,
    ) -> Result<Self> {
        let gpu = kernels.gpu().clone();
        kernels.tune().await?;
        let storage = precision.storage(&gpu, kernels.choice())?;
        let model = gpu
            .scoped("uploading the model", || weights.upload(&gpu, storage))
            .await?;
        Ok(Session {
            gpu,
            kernels: kernels.clone(),
            model,
            buffers: HashMap::new(),
            programs: HashMap::new(),
            clock: 0,
        })
    }

    /// The model: its config and what it does before and after the GPU.
    pub fn model(&self) -> &F {
        &self.model
    }

    pub fn config(&self) -> &F::Config {
        self.model.config()
    }

    /// What the weights and GEMM-only activations are stored as (f32 or f16).
    pub fn storage(&self) -> Elem {
        self.model.storage()
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// The kernel library (shared with other sessions on this device where created so).
    pub fn kernels(&self) -> &Kernels {
        &self.kernels
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

    /// `batch` items per pass: in range ([`check_batch`]) and within what this device holds for
    /// the model's longest input, else [`Error::BatchTooLarge`], before anything is allocated.
    pub fn check_batch_fits(&self, batch: usize) -> Result<()> {
        check_batch(batch)?;
        let max = self.max_batch_of(self.model.largest_geometry().rows());
        if batch > max {
            return Err(Error::BatchTooLarge {
                batch,
                max,
                reason: "the activations would exceed the device's storage binding limit".into(),
            });
        }
        Ok(())
    }

    /// The largest batch of `rows`-row items this device holds for this model.
    pub fn max_batch_of(&self, rows: usize) -> usize {
        self.model.max_batch(rows, self.gpu.max_binding_bytes())
    }

    /// The label and phase of every step of one forward pass of `shape`, in order.
    pub fn program_steps(
        &mut self,
        shape: BatchShape,
        pruning: &Pruning,
    ) -> Result<Vec<(String, Phase)>> {
        let compiled = self.compiled(shape, pruning)?;
        Ok(compiled
            .program
            .steps
            .iter()
            .map(|s| (s.label.clone(), s.phase))
            .collect())
    }

    /// What every step of one forward pass of `shape` launches (label, phase, grid, workgroup
    /// size), in order. The program is built (buffers, pipelines, bind groups), not run.
    pub fn program_shapes(
        &mut self,
        shape: BatchShape,
        pruning: &Pruning,
    ) -> Result<Vec<StepShape>> {
        let compiled = self.compiled(shape, pruning)?;
        Ok(compiled.program.steps.iter().map(Step::shape).collect())
    }

    /// The program for `(shape, pruning, current kernel choice)`, compiled on first use.
    fn compiled(&mut self, shape: BatchShape, pruning: &Pruning) -> Result<&Compiled> {
        let g = self.model.geometry(shape.rows);
        if !pruning.is_dense() {
            if pruning.steps.iter().any(|s| s.block >= g.depth) {
                return Err(Error::param(
                    "pruning",
                    "the schedule was resolved for a deeper model",
                ));
            }
            if pruning.steps[0].tokens_in != g.prunable {
                return Err(Error::param(
                    "pruning",
                    format!(
                        "the schedule was resolved for {} prunable tokens; this input has {}",
                        pruning.steps[0].tokens_in, g.prunable
                    ),
                ));
            }
        }
        self.clock += 1;
        let now = self.clock;
        if !self.buffers.contains_key(&shape) {
            let b = self.model.buffers(&self.gpu, shape)?;
            self.buffers.insert(shape, (b, now));
            self.evict_shapes(shape);
        }
        let key = ProgramKey {
            shape,
            pruning: pruning.clone(),
            kernels: self.kernels.choice(),
        };
        if !self.programs.contains_key(&key) {
            self.make_room();
            let buffers = &self.buffers[&shape].0;
            let (program, plan) = if pruning.is_dense() {
                (
                    self.model.forward(&self.kernels, buffers, &mut Dense)?,
                    None,
                )
            } else {
                let layout = TokenLayout::new(&g, shape.batch, shape.rows);
                let records = self.model.records_exits();
                let mut plan = PrunePlan::new(&self.gpu, layout, pruning, records);
                let program = self.model.forward(&self.kernels, buffers, &mut plan)?;
                (program, Some(plan))
            };
            let rows_out = plan
                .as_ref()
                .and_then(|p| p.steps.last())
                .map_or(shape.rows, |s| s.rows_out);
            let mut compiled = Compiled {
                program,
                plan,
                rows_out,
                staging: staging_buffer(&self.gpu, 4),
                staging_bytes: 0,
                last_used: now,
            };
            compiled.staging_bytes = self
                .model
                .readback(buffers)
                .into_iter()
                .chain(compiled.plan_readback())
                .map(GpuTensor::bytes)
                .sum();
            compiled.staging = staging_buffer(&self.gpu, compiled.staging_bytes);
            self.gpu.check()?;
            self.programs.insert(key.clone(), compiled);
            self.evict_programs(&key);
        }
        if let Some(p) = self.programs.get_mut(&key) {
            p.last_used = now;
        }
        if let Some(b) = self.buffers.get_mut(&shape) {
            b.1 = now;
        }
        Ok(&self.programs[&key])
    }

    /// Drop everything built for `shape` (after a failure while building it).
    fn forget(&mut self, shape: BatchShape) {
        self.buffers.remove(&shape);
        self.programs.retain(|k, _| k.shape != shape);
    }

    /// Before a new program is built: drop the least recently used programs until it fits within
    /// [`KEEP_STEPS`] beside them, taking it to be as long as the longest one kept (the same
    /// model). The old programs' objects are gone before the new one's are made, which bounds the
    /// driver's objects at their peak and keeps building fast (wgpu's allocators slow down with
    /// the objects alive).
    fn make_room(&mut self) {
        let longest = self
            .programs
            .values()
            .map(|p| p.program.steps.len())
            .max()
            .unwrap_or(0);
        while !self.programs.is_empty() && steps(&self.programs) + longest > KEEP_STEPS {
            let oldest = self
                .programs
                .iter()
                .min_by_key(|(_, p)| p.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.programs.remove(&k);
            }
        }
    }

    /// Drop the least recently used programs past [`KEEP_PROGRAMS`] or [`KEEP_STEPS`], never
    /// `keep`.
    fn evict_programs(&mut self, keep: &ProgramKey) {
        while self.programs.len() > KEEP_PROGRAMS || steps(&self.programs) > KEEP_STEPS {
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

    /// Drop the least recently used batch shapes' buffers (and their programs) past
    /// [`KEEP_BATCH_SIZES`], never `keep`'s.
    fn evict_shapes(&mut self, keep: BatchShape) {
        while self.buffers.len() > KEEP_BATCH_SIZES {
            let oldest = self
                .buffers
                .iter()
                .filter(|(&s, _)| s != keep)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(&s, _)| s);
            let Some(s) = oldest else { break };
            self.forget(s);
        }
    }

    /// Programs compiled and batch shapes with buffers right now (both bounded).
    pub fn cached(&self) -> (usize, usize) {
        (self.programs.len(), self.buffers.len())
    }

    /// Run a batch (preprocessed images `[B, 3, H, W]`, encoded texts) with a pruning schedule
    /// ([`Pruning::dense`] for none): per item the family's output, with the tokens each step
    /// kept and the FLOPs; with [`Mode::Profile`] or [`Mode::Debug`], per step the GPU time or the
    /// outputs. Items the family runs as separate passes ([`Family::groups`]) each get their own,
    /// one after the other (profiles and traces follow in that order).
    pub async fn run_async<'a>(
        &mut self,
        input: &F::Input,
        run: impl Into<Run<'a>>,
    ) -> Result<RunOutput<F::Output>> {
        let run = run.into();
        let shape = self.model.shape(input)?;
        // One forward pass: its items are one batch (run_all splits a long input). Past what the
        // device holds, the buffers' own error says how many fit.
        let items = self.model.len(input);
        if items > crate::limits::MAX_BATCH && items <= self.max_batch_of(shape.rows) {
            return Err(Error::param(
                "batch",
                format!(
                    "{items} items in one forward pass are over the limit of {}: run them in \
                     batches (run_all)",
                    crate::limits::MAX_BATCH
                ),
            ));
        }
        let pruned = !run.schedule.is_dense()?;
        let Some(groups) = self.model.groups(input, pruned) else {
            return self.run_pass(input, run).await;
        };
        let mut items: Vec<Option<F::Output>> = (0..self.model.len(input)).map(|_| None).collect();
        let (mut profile, mut trace) = (None::<Vec<StepTime>>, None::<Vec<StepOutput>>);
        for group in groups {
            let part = self.model.subset(input, &group);
            let out = self
                .run_pass(std::borrow::Borrow::borrow(&part), run)
                .await?;
            for (&i, o) in group.iter().zip(out.items) {
                items[i] = Some(o);
            }
            if let Some(p) = out.profile {
                profile.get_or_insert_with(Vec::new).extend(p);
            }
            if let Some(t) = out.trace {
                trace.get_or_insert_with(Vec::new).extend(t);
            }
        }
        Ok(RunOutput {
            items: items
                .into_iter()
                .map(|o| o.ok_or_else(|| Error::Gpu("an item of the batch did not run".into())))
                .collect::<Result<_>>()?,
            profile,
            trace,
        })
    }

    /// One forward pass over `input`.
    async fn run_pass(&mut self, input: &F::Input, run: Run<'_>) -> Result<RunOutput<F::Output>> {
        let shape = self.model.shape(input)?;
        let pruning: Cow<Pruning> = match run.schedule {
            Schedule::Fixed(p) => Cow::Borrowed(p),
            Schedule::Request(p) => Cow::Owned(p.schedule(&self.model.geometry(shape.rows))?),
        };
        let gpu = self.gpu.clone();
        // Buffers and programs for this shape: an allocation or validation failure is reported
        // and leaves nothing half-built behind, so the session stays usable.
        let prepared = gpu
            .scoped(
                &format!("preparing a batch of {} x {} rows", shape.batch, shape.rows),
                || self.compiled(shape, &pruning).map(|_| ()),
            )
            .await;
        if let Err(e) = prepared {
            self.forget(shape);
            return Err(e);
        }
        let key = ProgramKey {
            shape,
            pruning: pruning.clone().into_owned(),
            kernels: self.kernels.choice(),
        };
        let (compiled, buffers) = (&self.programs[&key], &self.buffers[&shape].0);
        self.model.write(&gpu, buffers, input)?;
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
        // Every output comes back in one copy per buffer and one map.
        let family_out = self.model.readback(buffers);
        let plan_out = compiled.plan_readback();
        let mut at = 0;
        for t in family_out.iter().chain(&plan_out) {
            encoder.copy_buffer_to_buffer(&t.buffer, 0, &compiled.staging, at, t.bytes());
            at += t.bytes();
        }
        let started = crate::gpu::program::now_s();
        gpu.scoped("running the forward pass", || {
            gpu.queue.submit([encoder.finish()]);
            Ok(())
        })
        .await?;
        let words: Vec<u32> = read_buffer(&gpu, &compiled.staging, compiled.staging_bytes).await?;
        if run.mode == Mode::Normal {
            // A forward far slower than the kernel choice's own timings predict: the choice was
            // measured under conditions that no longer hold; the next process measures again.
            let seconds = crate::gpu::program::now_s() - started;
            self.kernels.note_forward(program, seconds);
        }
        let mut rest = &words[..];
        let mut take = |len: usize| {
            let (head, tail) = rest.split_at(len);
            rest = tail;
            head
        };
        let buffers_words: Vec<&[u32]> = family_out
            .iter()
            .map(|t| take((t.bytes() / 4) as usize))
            .collect();
        let plan_steps = compiled.plan.as_ref().map_or(&[][..], |p| &p.steps[..]);
        let kept: Vec<&[u32]> = plan_steps.iter().map(|s| take(s.kept.len)).collect();
        let sizes = plan_steps
            .last()
            .and_then(|l| l.sizes.as_ref())
            .map(|t| take(t.len));
        let steps: Vec<StepReadback> = plan_steps
            .iter()
            .zip(kept)
            .map(|(s, kept)| StepReadback {
                block: s.step.block,
                rows_in: s.rows_in,
                rows_out: s.rows_out,
                masked: s.masked.is_some(),
                kept,
                exits: s.exits.as_ref().map(|t| take(t.len)),
            })
            .collect();
        let mut readback = Readback {
            shape,
            buffers: buffers_words,
            rows_out: compiled.rows_out,
            steps,
            sizes,
            flops: vec![],
        };
        // FLOPs per item, from the rows each step left it (its own geometry: a padded text
        // counts its own tokens).
        let protected = |rows: usize| self.model.geometry(rows).protected as u32;
        readback.flops = (0..shape.batch)
            .map(|b| {
                let rows = self.model.item_rows(input, b);
                let counts: Vec<usize> = (0..readback.steps.len())
                    .map(|s| {
                        let p = protected(rows);
                        readback.kept(s, b).iter().filter(|&&r| r >= p).count()
                    })
                    .collect();
                pruning.flops_with(&self.model.geometry(rows), &counts)
            })
            .collect();
        let items = self.model.decode(input, &readback, run.dropped)?;
        Ok(RunOutput {
            items,
            profile,
            trace,
        })
    }

    /// [`Session::run_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run<'a>(
        &mut self,
        input: &F::Input,
        run: impl Into<Run<'a>>,
    ) -> Result<RunOutput<F::Output>> {
        pollster::block_on(self.run_async(input, run))
    }

    /// Run a long input in batches of at most `batch` items ([`Family::batches`]: texts of similar
    /// length together); the outputs come back in input order, summarised
    /// ([`ItemOutput::summarise`]: a text keeps its embedding, logits, kept tokens and FLOPs, not
    /// its per-token states). `done` is called with the items finished after each batch.
    pub async fn run_all_async<'a>(
        &mut self,
        input: &F::Input,
        run: impl Into<Run<'a>>,
        batch: usize,
        mut done: impl FnMut(usize),
    ) -> Result<Vec<F::Output>> {
        let run = run.into();
        check_batch(batch)?;
        let pruned = !run.schedule.is_dense()?;
        let mut out: Vec<Option<F::Output>> = (0..self.model.len(input)).map(|_| None).collect();
        for chunk in self.model.batches(input, batch, pruned) {
            let part = self.model.subset(input, &chunk);
            let items = self
                .run_async(std::borrow::Borrow::borrow(&part), run)
                .await?
                .items;
            for (&i, mut o) in chunk.iter().zip(items) {
                // A long input's per-token states would grow with its tokens x width.
                o.summarise();
                out[i] = Some(o);
            }
            done(chunk.len());
        }
        out.into_iter()
            .map(|o| o.ok_or_else(|| Error::Gpu("an item did not run".into())))
            .collect()
    }

    /// [`Session::run_all_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_all<'a>(
        &mut self,
        input: &F::Input,
        run: impl Into<Run<'a>>,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<Vec<F::Output>> {
        pollster::block_on(self.run_all_async(input, run, batch, done))
    }

    /// The scale of the threshold policy's thresholds that brings the mean FLOPs of `input`'s
    /// items to the pruner's target (a fraction of their dense FLOPs), by bisection; sets it on
    /// `pruner` and returns it with the FLOPs fraction reached. `input` must be calibration data,
    /// never the data evaluated. `done` is called after each probe.
    pub async fn calibrate_async(
        &mut self,
        input: &F::Input,
        pruner: &mut Pruner,
        batch: usize,
        mut done: impl FnMut(usize),
    ) -> Result<(f32, f64)> {
        let target = pruner
            .flops_target()
            .ok_or_else(|| Error::param("flops", "calibration needs a FLOPs target"))?;
        // No item has no FLOPs: every scale would "reach" NaN of them.
        if self.model.len(input) == 0 {
            return Err(Error::param(
                "calibration",
                "there is nothing to calibrate on (no text or image given)",
            ));
        }
        let dense: f64 = (0..self.model.len(input))
            .map(|b| {
                let rows = self.model.item_rows(input, b);
                self.model.geometry(rows).dense_flops()
            })
            .sum();
        // Larger thresholds drop more: find a bracket, then halve it.
        let (mut lo, mut hi) = (0.0f32, 1.0f32);
        let mut best = loop {
            pruner.set_scale(hi);
            let out = self.run_all_async(input, &*pruner, batch, |_| {}).await?;
            done(1);
            let f = out.iter().map(ItemOutput::flops).sum::<f64>() / dense;
            if f <= target || hi >= MAX_THRESHOLD_SCALE {
                break (hi, f);
            }
            lo = hi;
            hi *= 2.0;
        };
        for _ in 0..CALIBRATION_PROBES {
            let mid = 0.5 * (lo + hi);
            pruner.set_scale(mid);
            let out = self.run_all_async(input, &*pruner, batch, |_| {}).await?;
            done(1);
            let f = out.iter().map(ItemOutput::flops).sum::<f64>() / dense;
            if f <= target {
                hi = mid;
                best = (mid, f);
            } else {
                lo = mid;
            }
        }
        pruner.set_scale(best.0);
        Ok(best)
    }

    /// [`Session::calibrate_async`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn calibrate(
        &mut self,
        input: &F::Input,
        pruner: &mut Pruner,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<(f32, f64)> {
        pollster::block_on(self.calibrate_async(input, pruner, batch, done))
    }
}

/// Steps of `programs` all together.
fn steps(programs: &HashMap<ProgramKey, Compiled>) -> usize {
    programs.values().map(|p| p.program.steps.len()).sum()
}

/// `batch` items per forward pass (`--batch`): at least 1 and at most [`crate::limits::MAX_BATCH`]
/// (the device's binding limit is checked when the batch's buffers are made).
pub fn check_batch(batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    if batch > crate::limits::MAX_BATCH {
        return Err(Error::param(
            "--batch",
            format!("{batch} is over the limit of {}", crate::limits::MAX_BATCH),
        ));
    }
    Ok(())
}

/// The largest scale [`Session::calibrate`] tries: thresholds 64x uniform drop nearly all.
pub const MAX_THRESHOLD_SCALE: f32 = 64.0;

/// Bisection steps of [`Session::calibrate`] after the bracket: the scale to 1/256 of it.
pub const CALIBRATION_PROBES: usize = 8;

/// The most images a per-image policy's FLOPs target calibrates on where it is the mean over the
/// images given (`zeroprune classify`, `embed`, `explain`; the browser's `classify`,
/// `classifyBatch` and `embed`): the first ones.
pub const CALIBRATION_IMAGES: usize = 256;

impl Session<VisionTransformer> {
    /// The largest batch this device holds for this model.
    pub fn max_batch(&self) -> usize {
        self.max_batch_of(self.model.config.num_tokens())
    }

    /// Values in one preprocessed image: `3 * H * W`.
    pub fn image_len(&self) -> usize {
        self.model.config.image_len()
    }

    /// The label and phase of every step of one forward pass at this batch size, in order.
    pub fn steps(&mut self, batch: usize, pruning: &Pruning) -> Result<Vec<(String, Phase)>> {
        let rows = self.model.config.num_tokens();
        self.program_steps(BatchShape { batch, rows }, pruning)
    }

    /// What every step of one forward pass at this batch size launches, in order
    /// ([`Session::program_shapes`]).
    pub fn step_shapes(&mut self, batch: usize, pruning: &Pruning) -> Result<Vec<StepShape>> {
        let rows = self.model.config.num_tokens();
        self.program_shapes(BatchShape { batch, rows }, pruning)
    }

    /// The label of every step of one forward pass at this batch size, in order.
    pub fn step_labels(&mut self, batch: usize, pruning: &Pruning) -> Result<Vec<String>> {
        Ok(self
            .steps(batch, pruning)?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }
}

/// One class of a prediction, as the command line and the browser report it.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub class: usize,
    pub name: String,
    pub probability: f32,
}

/// The `k` most likely classes of `logits`, named from `names` (empty where there is none).
pub fn top_classes(logits: &[f32], k: usize, names: &[String]) -> Vec<ClassScore> {
    top_k(logits, k)
        .top
        .into_iter()
        .map(|(class, probability)| ClassScore {
            class,
            name: names.get(class).cloned().unwrap_or_default(),
            probability,
        })
        .collect()
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
