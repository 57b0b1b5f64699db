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
