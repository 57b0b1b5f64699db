//! A compiled forward pass: one linear list of dispatches, played into one compute pass and one submit.

/// One dispatch: a compiled kernel, its bound buffers and its grid.
#[derive(Clone, Debug)]
pub struct Step {
    /// What the step computes, e.g. `block3.qkv`; shown in debug traces and profiles.
    pub label: String,
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

/// The ordered steps of a forward pass. Built once per (model, batch, schedule), replayed every run.
#[derive(Default, Debug)]
pub struct Program {
    pub steps: Vec<Step>,
}

impl Program {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    pub fn extend(&mut self, steps: impl IntoIterator<Item = Step>) {
        self.steps.extend(steps);
    }

    /// Record every step, in order, into one compute pass.
    pub fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("forward"),
            timestamp_writes: None,
        });
        for step in &self.steps {
            pass.set_pipeline(&step.pipeline);
            pass.set_bind_group(0, &step.bind_group, &[]);
            let [x, y, z] = step.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
    }

    pub fn dispatches(&self) -> usize {
        self.steps.len()
    }
}

impl Program {
    /// Record every step as its own compute pass with GPU timestamps at its start and end
    /// (`Features::TIMESTAMP_QUERY`); the profiling mode of `zeroprune bench`. Returns the query
    /// set and a buffer the timestamps are resolved into (`2 * steps` u64 ticks).
    pub fn encode_timed(
        &self,
        device: &wgpu::Device,
        encoder: &mut wgpu::CommandEncoder,
    ) -> (wgpu::QuerySet, wgpu::Buffer) {
        let count = (2 * self.steps.len()).max(2) as u32;
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("step timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        for (i, step) in self.steps.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(&step.label),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &queries,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            pass.set_pipeline(&step.pipeline);
            pass.set_bind_group(0, &step.bind_group, &[]);
            let [x, y, z] = step.workgroups;
            pass.dispatch_workgroups(x, y, z);
        }
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 8 * count as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
        (queries, resolve)
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
pub async fn time_program(gpu: &super::GpuContext, program: &Program) -> crate::error::Result<f64> {
    let marker = super::GpuTensor::zeros(gpu, "timing marker", 1);
    let staging = super::buffers::staging_buffer(gpu, 4);
    let start = now_s();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    program.encode(&mut encoder);
    encoder.copy_buffer_to_buffer(&marker.buffer, 0, &staging, 0, 4);
    gpu.queue.submit([encoder.finish()]);
    let _: Vec<u32> = super::read_buffer(gpu, &staging, 4).await?;
    Ok(now_s() - start)
}

/// Play `program` once (one pass, one submit) and wait for it: wall-clock seconds.
#[cfg(not(target_arch = "wasm32"))]
pub fn time_program_blocking(
    gpu: &super::GpuContext,
    program: &Program,
) -> crate::error::Result<f64> {
    let start = std::time::Instant::now();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    program.encode(&mut encoder);
    gpu.queue.submit([encoder.finish()]);
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| crate::error::Error::Gpu(format!("waiting for the GPU: {e}")))?;
    gpu.check()?;
    Ok(start.elapsed().as_secs_f64())
}

/// Play `program` with a timestamp pair around every step and return each step's GPU time in
/// seconds, in step order; `None` where the adapter has no timestamp queries.
#[cfg(not(target_arch = "wasm32"))]
pub fn profile_program_blocking(
    gpu: &super::GpuContext,
    program: &Program,
) -> crate::error::Result<Option<Vec<f64>>> {
    if !gpu.has_timestamps() || program.steps.is_empty() {
        return Ok(None);
    }
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let (_queries, resolve) = program.encode_timed(&gpu.device, &mut encoder);
    let staging = super::buffers::staging_buffer(gpu, resolve.size());
    encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, resolve.size());
    gpu.queue.submit([encoder.finish()]);
    let ticks: Vec<u64> = pollster::block_on(super::read_buffer(gpu, &staging, resolve.size()))?;
    let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
    Ok(Some(
        ticks
            .chunks_exact(2)
            .take(program.steps.len())
            .map(|t| t[1].saturating_sub(t[0]) as f64 * period)
            .collect(),
    ))
}
