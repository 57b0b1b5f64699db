//! Adapter and device setup on wgpu, honouring `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Which adapter to open.
#[derive(Debug, Clone, Default)]
pub struct AdapterChoice {
    /// Backends to try (default: all, or `WGPU_BACKEND`, e.g. `vulkan`, `metal`, `dx12`).
    pub backends: Option<wgpu::Backends>,
    /// A case-insensitive part of the adapter's name (default: `WGPU_ADAPTER_NAME`); no match is an error.
    pub name: Option<String>,
}

impl AdapterChoice {
    /// Read `WGPU_BACKEND` and `WGPU_ADAPTER_NAME` from the environment (native only).
    pub fn from_env() -> Self {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        AdapterChoice {
            backends: env("WGPU_BACKEND").map(|v| wgpu::Backends::from_comma_list(&v)),
            name: env("WGPU_ADAPTER_NAME"),
        }
    }
}

/// An open device with the adapter it came from. Cheap to clone.
#[derive(Clone)]
pub struct GpuContext {
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// First uncaptured GPU error or device loss, reported by the next call that checks.
    failure: Arc<Mutex<Option<Error>>>,
}

impl GpuContext {
    /// Open the adapter chosen by `choice`, with WebGPU's default limits except for larger buffers where
    /// the adapter allows them (so big batches fit), and timestamp queries where present.
    pub async fn new(choice: &AdapterChoice) -> Result<Self> {
        Self::with_max_buffer(choice, None).await
    }

    /// [`GpuContext::new`] with the largest buffer (and storage binding) capped at `max_buffer`
    /// bytes: how a device smaller than this one behaves (tests use it), or a budget for this
    /// process's share of a GPU.
    pub async fn with_max_buffer(choice: &AdapterChoice, max_buffer: Option<u64>) -> Result<Self> {
        let backends = choice.backends.unwrap_or(wgpu::Backends::all());
        if backends.is_empty() {
            #[cfg(not(target_arch = "wasm32"))]
            let given = std::env::var("WGPU_BACKEND").unwrap_or_default();
            #[cfg(target_arch = "wasm32")]
            let given = String::new();
            return Err(Error::NoAdapter(format!(
                "WGPU_BACKEND={given:?} names no backend; use vulkan, metal, dx12, gl or webgpu \
                 (comma-separated), or leave it unset for any"
            )));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = pick_adapter(&instance, backends, choice.name.as_deref()).await?;

        let supported = adapter.limits();
        let cap = max_buffer.unwrap_or(u64::MAX);
        let required_limits = wgpu::Limits {
            max_storage_buffer_binding_size: supported.max_storage_buffer_binding_size.min(cap),
            max_buffer_size: supported.max_buffer_size.min(cap),
            ..wgpu::Limits::default()
        };
        let optional =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let required_features = adapter.features() & optional;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("zeroprune"),
                required_features,
                required_limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("could not open the device: {e}")))?;

        let failure: Arc<Mutex<Option<Error>>> = Arc::default();
        let sink = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(Error::Gpu(e.to_string()));
        }));
        let sink = failure.clone();
        device.set_device_lost_callback(move |reason, msg| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            // Destroyed too: a device destroyed under a session (`device.destroy()`, or the
            // browser's `simulateDeviceLoss`) is as unusable as one the driver lost.
            let why = match reason {
                wgpu::DeviceLostReason::Destroyed => "the device was destroyed".to_string(),
                _ => format!("{reason:?}"),
            };
            *slot = Some(Error::DeviceLost(if msg.is_empty() {
                why
            } else {
                format!("{why}: {msg}")
            }));
        });
        Ok(GpuContext {
            adapter,
            device,
            queue,
            failure,
        })
    }

    /// Run `work` (which creates buffers, pipelines or bind groups, or submits) inside wgpu's
    /// out-of-memory and validation error scopes: what it caused comes back as an error naming
    /// `what`, instead of surfacing later or as an uncaptured error.
    pub async fn scoped<T>(&self, what: &str, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let invalid = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = work();
        let invalid = invalid.pop().await;
        let oom = oom.pop().await;
        // On a lost device everything fails validation: say what happened, not what it broke.
        if let Some(lost) = self.lost() {
            return Err(lost);
        }
        if let Some(e) = oom {
            return Err(Error::OutOfMemory(format!("{what}: {e}")));
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(format!("{what}: {e}")));
        }
        let out = out?;
        self.check()?;
        Ok(out)
    }

    /// `new` for native callers: blocks on the future.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(choice: &AdapterChoice) -> Result<Self> {
        pollster::block_on(Self::new(choice))
    }

    /// The device's loss, if it is lost.
    pub fn lost(&self) -> Option<Error> {
        let slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(Error::DeviceLost(msg)) => Some(Error::DeviceLost(msg.clone())),
            _ => None,
        }
    }

    /// Return (and clear) the first GPU error seen since the last check.
    pub fn check(&self) -> Result<()> {
        let mut slot = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(e @ Error::DeviceLost(_)) => {
                // A lost device stays lost: keep reporting it.
                let msg = e.to_string();
                *slot = Some(Error::DeviceLost(msg));
                Err(e)
            }
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn info(&self) -> wgpu::AdapterInfo {
        self.adapter.get_info()
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Whether shaders may use f16 (`enable f16;`): the device has `SHADER_F16`.
    pub fn has_f16(&self) -> bool {
        self.device.features().contains(wgpu::Features::SHADER_F16)
    }

    /// Whether shaders may use subgroup operations (`enable subgroups;`).
    pub fn has_subgroups(&self) -> bool {
        self.device.features().contains(wgpu::Features::SUBGROUP)
    }

    /// The workgroup width of a subgroup row reduction: the adapter's smallest subgroup size, so
    /// that a workgroup is always one whole subgroup; `None` without subgroups or for sizes the
    /// kernels do not take (4 to 64, a power of two).
    pub fn reduce_subgroup_width(&self) -> Option<u32> {
        let w = self.info().subgroup_min_size;
        (self.has_subgroups() && w.is_power_of_two() && (4..=64).contains(&w)).then_some(w)
    }

    /// GPU buffers alive on this device and their bytes, from wgpu's counters (zero where the
    /// backend keeps none, as in the browser).
    pub fn buffer_memory(&self) -> (usize, u64) {
        let hal = self.device.get_internal_counters().hal;
        (
            hal.buffers.read().max(0) as usize,
            hal.buffer_memory.read().max(0) as u64,
        )
    }

    /// The largest single storage binding the device accepts, in bytes.
    pub fn max_binding_bytes(&self) -> u64 {
        let l = self.device.limits();
        l.max_storage_buffer_binding_size.min(l.max_buffer_size)
    }

    /// A one-line description: name, backend, device type, driver.
    pub fn describe(&self) -> String {
        let i = self.info();
        // Browsers hide the adapter's name unless asked for it.
        let name = if i.name.is_empty() {
            "WebGPU adapter"
        } else {
            &i.name
        };
        format!(
            "{} ({:?}, {:?}{}{})",
            name,
            i.backend,
            i.device_type,
            if i.driver.is_empty() { "" } else { ", " },
            i.driver
        )
    }
}

async fn pick_adapter(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
    name: Option<&str>,
) -> Result<wgpu::Adapter> {
    if let Some(wanted) = name {
        let adapters = instance.enumerate_adapters(backends).await;
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let lower = wanted.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&lower))
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "no adapter name contains {wanted:?} (WGPU_ADAPTER_NAME); available: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            apply_limit_buckets: false,
        })
        .await
        .map_err(|e| {
            Error::NoAdapter(format!(
                "{e} (backends {backends:?}); on Linux without a GPU install Mesa's lavapipe \
                 (apt-get install mesa-vulkan-drivers) and set WGPU_BACKEND=vulkan"
            ))
        })
}
