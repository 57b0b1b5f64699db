//! `zeroprune info`: the adapter in use.

use std::fmt;

use serde::Serialize;
use zeroprune::gpu::{tune_cache, KernelChoice, TuneReport};
use zeroprune::Result;

use crate::common::{emit, open_gpu, table};

#[derive(Serialize)]
struct Limits {
    max_storage_buffer_binding_size: u64,
    max_buffer_size: u64,
    max_compute_workgroup_storage_size: u32,
    max_compute_invocations_per_workgroup: u32,
    max_compute_workgroups_per_dimension: u32,
}

#[derive(Serialize)]
struct InfoOutput {
    adapter: String,
    backend: String,
    device_type: String,
    driver: String,
    driver_info: String,
    limits: Limits,
    timestamp_queries: bool,
    shader_f16: bool,
    /// The adapter's smallest and largest subgroup sizes, and the width subgroup reductions use
    /// (none where they cannot be used).
    subgroup_sizes: [u32; 2],
    subgroup_reduce_width: Option<u32>,
    adapter_features: Vec<String>,
    /// The kernel-choice cache file (none where the machine has no cache folder).
    kernel_cache: Option<String>,
    /// What the cache holds for this adapter and build (none: the next session measures).
    cached_choice: Option<KernelChoice>,
    /// Every candidate's timings the cached choice was made from.
    cached_timings: Option<TuneReport>,
    /// Why the cached entry will be measured again, where it is stale.
    cached_stale: Option<String>,
}

impl fmt::Display for InfoOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.limits;
        writeln!(f, "adapter      {}", self.adapter)?;
        writeln!(f, "backend      {}", self.backend)?;
        writeln!(f, "device type  {}", self.device_type)?;
        writeln!(f, "driver       {} {}", self.driver, self.driver_info)?;
        writeln!(
            f,
            "max storage binding  {} MiB",
            l.max_storage_buffer_binding_size >> 20
        )?;
        writeln!(f, "max buffer           {} MiB", l.max_buffer_size >> 20)?;
        writeln!(
            f,
            "workgroup storage    {} bytes",
            l.max_compute_workgroup_storage_size
        )?;
        writeln!(f, "timestamp queries    {}", self.timestamp_queries)?;
        writeln!(f, "shader-f16           {}", self.shader_f16)?;
        writeln!(
            f,
            "subgroups            sizes {}-{}, reductions {}",
            self.subgroup_sizes[0],
            self.subgroup_sizes[1],
            self.subgroup_reduce_width
                .map_or("not usable".into(), |w| format!("{w} wide"))
        )?;
        writeln!(
            f,
            "adapter features     {}",
            self.adapter_features.join(", ")
        )?;
        let cache = self.kernel_cache.as_deref().unwrap_or("none");
        match &self.cached_choice {
            Some(c) => writeln!(
                f,
                "kernel choice        {} GEMM ({} for small products), fused attention {}, f16 faster {}, subgroup reductions {} (cached in {cache})",
                c.gemm.name(),
                c.gemm_small.name(),
                c.fused_attention,
                c.f16,
                c.subgroups
            )?,
            None => writeln!(
                f,
                "kernel choice        not measured yet (the next session measures; cache {cache})"
            )?,
        }
        if let Some(why) = &self.cached_stale {
            writeln!(f, "                     stale: {why}")?;
        }
        if let Some(t) = &self.cached_timings {
            write!(f, "{}", timings_table(t))?;
        }
        Ok(())
    }
}

/// Every measured candidate: median time, rate, ratio to the default and the rounds it won.
fn timings_table(t: &TuneReport) -> String {
    let mut rows = Vec::new();
    for d in &t.decisions {
        for c in &d.candidates {
            let mark = match (c.name == d.chosen, c.name == d.default) {
                (true, true) => " (chosen, default)",
                (true, false) => " (chosen)",
                (false, true) => " (default)",
                _ => "",
            };
            rows.push(vec![
                format!("{} {}", d.what, d.shape),
                format!("{}{mark}", c.name),
                format!("{:.2}", c.seconds * 1e3),
                c.gflops.map_or("-".into(), |g| format!("{g:.1}")),
                c.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                format!("{}/{}", c.faster_rounds, c.rounds),
            ]);
        }
    }
    format!(
        "kernel timings (median of {} interleaved rounds after a warm-up; a candidate replaces the default at {:.0}% faster, confirmed in {} more rounds):\n{}",
        t.rounds,
        100.0 * t.margin,
        t.rounds,
        table(
            &["measured", "candidate", "ms", "GFLOP/s", "vs default", "faster/rounds"],
            &rows
        )
    )
}

pub fn run(json: bool) -> Result<()> {
    let gpu = open_gpu()?;
    let cached = tune_cache::entry(&gpu);
    let i = gpu.info();
    let l = gpu.limits();
    let out = InfoOutput {
        adapter: i.name.clone(),
        backend: format!("{:?}", i.backend),
        device_type: format!("{:?}", i.device_type),
        driver: i.driver.clone(),
        driver_info: i.driver_info.clone(),
        limits: Limits {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        },
        timestamp_queries: gpu.has_timestamps(),
        shader_f16: gpu.has_f16(),
        subgroup_sizes: [i.subgroup_min_size, i.subgroup_max_size],
        subgroup_reduce_width: gpu.reduce_subgroup_width(),
        adapter_features: gpu
            .adapter
            .features()
            .iter_names()
            .map(|(n, _)| n.to_string())
            .collect(),
        kernel_cache: tune_cache::file().map(|p| p.display().to_string()),
        cached_choice: tune_cache::lookup(&gpu),
        cached_timings: cached.as_ref().and_then(|c| c.timings.clone()),
        cached_stale: cached.and_then(|c| c.stale),
    };
    emit(&out, json)
}
