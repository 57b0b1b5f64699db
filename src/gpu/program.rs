//! A compiled forward pass: one linear list of steps, played three ways. Normally into one compute
//! pass and one submit (ratchet's `Executable::dispatch`); with a timestamp pair around every step
//! (`bench`); or step by step with every step's outputs read back (the debug twin).

use super::buffers::{read_buffer, staging_buffer};
use super::kernel::{Elem, Slot};
use super::{GpuContext, GpuTensor};
use crate::error::Result;

/// What a step's GPU time counts toward: the model itself, or one part of a pruning step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The transformer: embedding, LayerNorms, GEMMs, attention, head.
    Model,
    /// Token scores: received or CLS attention, PageRank, similarity, energies.
    Score,
    /// Which tokens survive: top-k, thresholds.
    Select,
    /// Moving the survivors: compaction, gathers, copies.
    Compact,
    /// Merging removed tokens into kept ones.
    Merge,
}

impl Phase {
    pub const PRUNING: [Phase; 4] = [Phase::Score, Phase::Select, Phase::Compact, Phase::Merge];

    pub fn is_pruning(self) -> bool {
        self != Phase::Model
    }

    pub fn name(self) -> &'static str {
        match self {
            Phase::Model => "model",
            Phase::Score => "score",
            Phase::Select => "select",
            Phase::Compact => "compact",
            Phase::Merge => "merge",
        }
    }
}

/// One dispatch: a compiled kernel, its bound buffers and its grid.
#[derive(Clone, Debug)]
pub struct Step {
    /// What the step computes, e.g. `block3.qkv` or `block2.prune.pagerank`.
    pub label: String,
    pub phase: Phase,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Invocations per workgroup along x, y and z, as the compiled module declares them for the
    /// step's entry point (naga's reflection when the pipeline is created: `@workgroup_size`,
    /// `const WG` and the host's rewrites of a template all resolved). `None` in the browser,
    /// which has no WGSL reflection here.
    pub workgroup_size: Option<[u32; 3]>,
    /// The buffers the step writes, with their slots: what the debug run reads back after it.
    pub outputs: Vec<(Slot, GpuTensor)>,
    /// A GEMM step's work: what [`super::Kernels::note_forward`] predicts a forward's time from.
    pub gemm: Option<GemmWork>,
}

impl Step {
    /// What the step launches, without its GPU objects.
    pub fn shape(&self) -> StepShape {
        StepShape {
            label: self.label.clone(),
            phase: self.phase,
            workgroups: self.workgroups,
            workgroup_size: self.workgroup_size,
        }
    }

    /// Invocations the step launches: its workgroups times the invocations of one workgroup
    /// (`None` where the workgroup size is not known, see [`Step::workgroup_size`]).
    pub fn invocations(&self) -> Option<u64> {
        invocations(self.workgroups, self.workgroup_size)
    }
}

/// What one step launches: its label and phase, its grid and the size of one workgroup
/// ([`Step::workgroup_size`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StepShape {
    pub label: String,
    pub phase: Phase,
    pub workgroups: [u32; 3],
    pub workgroup_size: Option<[u32; 3]>,
}

impl StepShape {
    /// Workgroups launched: the product of the grid.
    pub fn workgroup_count(&self) -> u64 {
        product(self.workgroups)
    }

    /// Invocations launched: workgroups times invocations per workgroup (`None` where the
    /// workgroup size is not known).
    pub fn invocations(&self) -> Option<u64> {
        invocations(self.workgroups, self.workgroup_size)
    }
}

fn product(v: [u32; 3]) -> u64 {
    v.iter().map(|&x| u64::from(x)).product()
}

fn invocations(workgroups: [u32; 3], size: Option<[u32; 3]>) -> Option<u64> {
    Some(product(workgroups) * product(size?))
}

/// What one GEMM step computes, for predicting its time from the tuning's measured rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmWork {
    pub flops: f64,
    pub kernel: super::GemmKernel,
    /// Values of C over all matrices (the size class: [`super::SMALL_GEMM_OUTPUTS`]).
    pub outputs: usize,
}

/// The ordered steps of a forward pass. Built once per (model, batch, schedule), replayed every run.
#[derive(Default, Debug)]
pub struct Program {
    pub steps: Vec<Step>,
}

/// One step's outputs after it ran, in the debug twin.
#[derive(Clone, Debug)]
pub struct StepOutput {
    pub label: String,
    pub phase: Phase,
    /// `(slot name, element type, the whole buffer as 4-byte words)` for every buffer the step
    /// writes; an f16 buffer holds two values per word (and up to three padding values at its end).
    pub outputs: Vec<(&'static str, Elem, Vec<u32>)>,
}

impl StepOutput {
    /// Output `slot` as f32 values (f16 widened, padding included).
    pub fn f32(&self, slot: &str) -> Option<Vec<f32>> {
        self.outputs
            .iter()
            .find(|(n, _, _)| *n == slot)
            .map(|(_, e, w)| super::buffers::words_to_f32(w, *e, usize::MAX))
    }

    pub fn u32(&self, slot: &str) -> Option<&[u32]> {
        self.outputs
            .iter()
            .find(|(n, _, _)| *n == slot)
            .map(|(_, _, v)| &v[..])
    }
}

fn dispatch(pass: &mut wgpu::ComputePass, step: &Step) {
    pass.set_pipeline(&step.pipeline);
    pass.set_bind_group(0, &step.bind_group, &[]);
    let [x, y, z] = step.workgroups;
    pass.dispatch_workgroups(x, y, z);
}

impl Program {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    pub fn extend(&mut self, steps: impl IntoIterator<Item = Step>) {
        self.steps.extend(steps);
    }

    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }

    /// Record every step, in order, into one compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("forward"),
            timestamp_writes: None,
        });
        for step in &self.steps {
            dispatch(&mut pass, step);
        }
    }

    /// Play every step as its own compute pass with GPU timestamps at its start and end, and return
    /// each step's GPU seconds in order (`Features::TIMESTAMP_QUERY`). Without timestamp queries,
    /// each step is submitted alone and timed on the CPU (an upper bound that includes submission).
    pub async fn profile(&self, gpu: &GpuContext) -> Result<Vec<f64>> {
        if !gpu.has_timestamps() {
            let mut times = Vec::with_capacity(self.steps.len());
            for step in &self.steps {
                let one = Program {
                    steps: vec![step.clone()],
                };
                times.push(time_program(gpu, &one).await?);
            }
            return Ok(times);
        }
        let count = (2 * self.steps.len()).max(2) as u32;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("step timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        for (i, step) in self.steps.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&step.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            dispatch(&mut pass, step);
        }
        let bytes = 8 * count as u64;
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
        let staging = staging_buffer(gpu, bytes);
        encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        let ticks: Vec<u64> = read_buffer(gpu, &staging, bytes).await?;
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        Ok(ticks
            .chunks_exact(2)
            .take(self.steps.len())
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .collect())
    }

    /// The debug twin: submit the steps one at a time and read back every step's outputs right
    /// after it, so any intermediate tensor can be compared with a reference.
    pub async fn play_step_by_step(&self, gpu: &GpuContext) -> Result<Vec<StepOutput>> {
        let mut out = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                dispatch(&mut pass, step);
            }
            let total: u64 = step.outputs.iter().map(|(_, t)| t.bytes()).sum();
            let staging = staging_buffer(gpu, total);
            let mut at = 0;
            for (_, t) in &step.outputs {
                encoder.copy_buffer_to_buffer(&t.buffer, 0, &staging, at, t.bytes());
                at += t.bytes();
            }
            gpu.queue.submit([encoder.finish()]);
            let words: Vec<u32> = read_buffer(gpu, &staging, total).await?;
            let mut at = 0;
            let mut outputs = Vec::with_capacity(step.outputs.len());
            for (slot, t) in &step.outputs {
                // The tensor's own storage (an f32 slot may hold an f16 tensor).
                let elem = if t.elem == Elem::F16 {
                    t.elem
                } else {
                    slot.elem
                };
                let n = (t.bytes() / 4) as usize;
                outputs.push((slot.name, elem, words[at..at + n].to_vec()));
                at += n;
            }
            out.push(StepOutput {
                label: step.label.clone(),
                phase: step.phase,
                outputs,
            });
        }
        Ok(out)
    }
}

/// Seconds on a monotonic clock: `Instant` natively, the page's `performance.now()` in the browser.
pub fn now_s() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        use wasm_bindgen::JsCast;
        js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
            .map_or_else(js_sys::Date::now, |p| p.now())
            / 1e3
    }
}

/// Play `program` once (one pass, one submit) and await its completion (a 4-byte readback after
/// it, which works the same natively and in the browser): wall-clock seconds.
pub async fn time_program(gpu: &GpuContext, program: &Program) -> Result<f64> {
    let marker = GpuTensor::zeros(gpu, "timing marker", 1);
    let staging = staging_buffer(gpu, 4);
    let start = now_s();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    program.encode(&mut encoder);
    encoder.copy_buffer_to_buffer(&marker.buffer, 0, &staging, 0, 4);
    gpu.queue.submit([encoder.finish()]);
    let _: Vec<u32> = read_buffer(gpu, &staging, 4).await?;
    Ok(now_s() - start)
}

/// Seconds `program` takes on the GPU: the sum of its steps' timestamps where the adapter has
/// timestamp queries (a fast GPU runs a small product in microseconds, less than a submission
/// costs), else wall-clock seconds around one submit ([`time_program`]).
pub async fn gpu_time(gpu: &GpuContext, program: &Program) -> Result<f64> {
    if gpu.has_timestamps() {
        Ok(program.profile(gpu).await?.iter().sum())
    } else {
        time_program(gpu, program).await
    }
}

/// [`gpu_time`] for native callers.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_time_blocking(gpu: &GpuContext, program: &Program) -> Result<f64> {
    pollster::block_on(gpu_time(gpu, program))
}

/// [`time_program`] for native callers.
#[cfg(not(target_arch = "wasm32"))]
pub fn time_program_blocking(gpu: &GpuContext, program: &Program) -> Result<f64> {
    pollster::block_on(time_program(gpu, program))
}
