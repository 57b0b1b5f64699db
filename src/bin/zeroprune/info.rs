//! `zeroprune info`: the adapter in use.

use std::fmt;

use serde::Serialize;
use zeroprune::Result;

use crate::common::{emit, open_gpu};

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
    adapter_features: Vec<String>,
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
        writeln!(
            f,
            "adapter features     {}",
            self.adapter_features.join(", ")
        )
    }
}

pub fn run(json: bool) -> Result<()> {
    let gpu = open_gpu()?;
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
        adapter_features: gpu
            .adapter
            .features()
            .iter_names()
            .map(|(n, _)| n.to_string())
            .collect(),
    };
    emit(&out, json)
}
