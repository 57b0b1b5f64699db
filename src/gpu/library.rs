//! The kernel library of one device: every pipeline compiled once (under a typed key), the kernel
//! choices measured for this adapter, and [`Kernels::launch`], which binds a step's buffers to the
//! slots its kernel declares. The launchers themselves live beside their WGSL, in `kernels/`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::kernel::{Access, Elem, Kernel, KernelInfo, Params};
use super::kernels::{attention, gemm};
use super::tune::TuneReport;
use super::{GpuContext, GpuTensor, Step};
use crate::error::{Error, Result};

pub use super::kernels::gemm::GemmKernel;

/// Which generated form of a family's WGSL a pipeline is compiled from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// The file as written.
    Plain,
    /// A register-blocked GEMM tile, with vec4 loads of A and/or B.
    /// `norm`: each GEMM variant may have a LayerNorm folded in (gemm_common.wgsl's NORM).
    GemmBlocked {
        tm: u32,
        tn4: u32,
        a_vec4: bool,
        b_vec4: bool,
        norm: bool,
    },
    /// The tiled GEMM with 128x128 tiles (`wide`) or 64x64.
    GemmTiled { wide: bool, norm: bool },
    /// The naive GEMM.
    GemmNaive { norm: bool },
    /// The fused attention for heads of `head_dim` values.
    Attention { head_dim: u32 },
    /// Row reductions on subgroup operations, one subgroup of `width` invocations per workgroup
    /// (softmax, LayerNorm: [`super::kernel::Family::wgsl_subgroup`]).
    Subgroup { width: u32 },
}

/// One compiled pipeline: a module and an entry point.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    family: &'static str,
    variant: Variant,
    entry: &'static str,
    /// The slots bound to f16 tensors: their `alias T_<slot> = f32;` becomes `f16`.
    halves: Vec<&'static str>,
}

/// One compiled module: a family's generated variant, with its f16 slots.
type ModuleKey = (&'static str, Variant, Vec<&'static str>);

/// A compiled module and the workgroup size of each of its entry points, as naga reflects them from
/// the module's own source ([`workgroup_sizes`]).
#[derive(Clone)]
struct Module {
    module: wgpu::ShaderModule,
    workgroup_sizes: Option<HashMap<String, [u32; 3]>>,
}

/// A compiled pipeline and its entry point's workgroup size (where reflected).
type Pipeline = (wgpu::ComputePipeline, Option<[u32; 3]>);

/// The workgroup size of every compute entry point of the WGSL `source`, from naga's reflection of
/// it (`EntryPoint::workgroup_size`, with `const` expressions such as `WG` evaluated): natively
/// through wgpu's own naga. `None` in the browser, where wgpu carries no WGSL parser (the browser
/// compiles the shader), and for a source that does not parse (creating its module then reports
/// why). An entry point whose size is a pipeline-overridable constant is left out: pipelines here
/// set no overrides.
pub fn workgroup_sizes(source: &str) -> Option<HashMap<String, [u32; 3]>> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let module = wgpu::naga::front::wgsl::parse_str(source).ok()?;
        Some(
            module
                .entry_points
                .iter()
                .filter(|ep| {
                    ep.stage == wgpu::naga::ShaderStage::Compute
                        && ep.workgroup_size_overrides.is_none()
                })
                .map(|ep| (ep.name.clone(), ep.workgroup_size))
                .collect(),
        )
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = source;
        None
    }
}

/// `source` with the element type of every slot in `halves` set to f16 (`enable f16;` first).
/// A slot whose shader does not declare `alias T_<slot> = f32;` cannot take f16: an error.
pub fn with_halves(source: String, entry: &str, halves: &[&str]) -> Result<String> {
    if halves.is_empty() {
        return Ok(source);
    }
    let mut s = format!("enable f16;\n{source}");
    for slot in halves {
        let alias = format!("alias T_{slot} = f32;");
        if !s.contains(&alias) {
            return Err(Error::Gpu(format!(
                "kernel `{entry}` cannot take an f16 buffer for `{slot}` (its shader has no `{alias}`)"
            )));
        }
        s = s.replace(&alias, &format!("alias T_{slot} = f16;"));
    }
    Ok(s)
}

/// The kernels a program runs where several compute the same thing: measured per adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KernelChoice {
    /// The GEMM of every linear layer and attention product with at least [`SMALL_GEMM_OUTPUTS`]
    /// outputs.
    pub gemm: GemmKernel,
    /// The GEMM of smaller products (one image's layers), where a GPU needs many small tiles to
    /// keep busy.
    pub gemm_small: GemmKernel,
    /// Whether blocks whose attention probabilities nobody reads run the fused attention kernel
    /// (else scores GEMM, softmax, context GEMM).
    pub fused_attention: bool,
    /// Whether f16 storage measured faster than f32 here (false where the adapter has no
    /// shader-f16): what `--precision auto` follows.
    #[serde(default)]
    pub f16: bool,
    /// Whether softmax and LayerNorm reduce with subgroup operations, one subgroup per row
    /// ([`GpuContext::reduce_subgroup_width`]), rather than through workgroup memory and barriers.
    #[serde(default)]
    pub subgroups: bool,
}

impl KernelChoice {
    /// Before any measurement, and what measuring keeps unless a candidate clearly wins (the safe
    /// default, [`super::tune::decide`]): on CPU adapters the register-blocked GEMM (workgroup
    /// memory is ordinary cache there and barriers are expensive), unfused attention and subgroup
    /// reductions where usable (on lavapipe each measured 25-60% faster than the alternative, and
    /// the whole block about 15%); on GPUs the tiled GEMM, fused attention and workgroup
    /// reductions. f32 everywhere.
    pub fn guess(gpu: &GpuContext) -> Self {
        if gpu.info().device_type != wgpu::DeviceType::Cpu {
            return Self::gpu_guess();
        }
        KernelChoice {
            gemm: GemmKernel::Blocked { tm: 4, tn4: 4 },
            gemm_small: GemmKernel::Blocked { tm: 4, tn4: 4 },
            fused_attention: false,
            f16: false,
            subgroups: gpu.reduce_subgroup_width().is_some(),
        }
    }

    /// What [`KernelChoice::guess`] gives on any adapter that is not a CPU: tiled128 for large
    /// products, tiled64 for small ones, fused attention, workgroup reductions, f32. (`bench
    /// --kernels` builds its GPU-shape audit with it on every machine.)
    pub fn gpu_guess() -> Self {
        KernelChoice {
            gemm: GemmKernel::Tiled { tm: 8 },
            gemm_small: GemmKernel::Tiled { tm: 4 },
            fused_attention: true,
            f16: false,
            subgroups: false,
        }
    }
}

/// Consecutive forwards far slower than predicted, and whether the cache was marked stale.
#[derive(Default, Debug)]
pub(crate) struct SlowWatch {
    pub in_a_row: u32,
    pub marked: bool,
}

/// Products with fewer outputs (`m * n * batch`) than this run [`KernelChoice::gemm_small`]: between
/// the two shapes the choice is measured on (one DeiT-Tiny image's fc2, 197 x 192, and eight
/// images' qkv, 1576 x 576), at their geometric mean.
pub const SMALL_GEMM_OUTPUTS: usize = 185_000;

/// Compiled pipelines, shared by every program of a device; cheap to clone.
#[derive(Clone)]
pub struct Kernels {
    gpu: GpuContext,
    modules: Arc<Mutex<HashMap<ModuleKey, Module>>>,
    pipelines: Arc<Mutex<HashMap<PipelineKey, Pipeline>>>,
    choice: Arc<Mutex<KernelChoice>>,
    /// The timings the choice was made from (none before [`Kernels::tune`]).
    report: Arc<Mutex<Option<TuneReport>>>,
    /// Forwards far slower than the timings predict ([`Kernels::note_forward`]).
    pub(crate) slow_watch: Arc<Mutex<SlowWatch>>,
    /// Bound where a kernel's optional input is absent.
    pub(crate) dummy: GpuTensor,
}

/// `x` as a u32 kernel parameter; `what` names it in the error.
pub(crate) fn u(x: usize, what: &str) -> Result<u32> {
    u32::try_from(x).map_err(|_| Error::param(what, format!("{x} does not fit in 32 bits")))
}

impl Kernels {
    pub fn new(gpu: &GpuContext) -> Self {
        Kernels {
            gpu: gpu.clone(),
            modules: Arc::default(),
            pipelines: Arc::default(),
            choice: Arc::new(Mutex::new(KernelChoice::guess(gpu))),
            report: Arc::default(),
            slow_watch: Arc::default(),
            dummy: GpuTensor::zeros(gpu, "dummy", 4),
        }
    }

    pub fn gpu(&self) -> &GpuContext {
        &self.gpu
    }

    /// The kernels programs built from now on use.
    pub fn choice(&self) -> KernelChoice {
        *self.choice.lock().unwrap()
    }

    pub fn set_choice(&self, choice: KernelChoice) {
        *self.choice.lock().unwrap() = choice;
    }

    /// The timings the choice was made from: measured in this process or read with it from the
    /// disk cache (none before [`Kernels::tune`]).
    pub fn tune_report(&self) -> Option<TuneReport> {
        self.report.lock().unwrap().clone()
    }

    /// Replace the timings (tests; [`Kernels::tune`] sets them).
    pub fn set_tune_report(&self, report: Option<TuneReport>) {
        *self.report.lock().unwrap() = report;
    }

    /// The GEMM kernel that runs a large [`gemm::Gemm`] without `kernel` or `naive`.
    pub fn gemm_kernel(&self) -> GemmKernel {
        self.choice().gemm
    }

    /// The GEMM kernel for a product with `outputs` values of C (all matrices of a batch).
    pub fn gemm_kernel_for(&self, outputs: usize) -> GemmKernel {
        let choice = self.choice();
        if outputs < SMALL_GEMM_OUTPUTS {
            choice.gemm_small
        } else {
            choice.gemm
        }
    }

    /// Use `large` for products with at least [`SMALL_GEMM_OUTPUTS`] outputs, `small` below.
    pub fn set_gemm_kernels(&self, large: GemmKernel, small: GemmKernel) {
        self.set_choice(KernelChoice {
            gemm: large,
            gemm_small: small,
            ..self.choice()
        });
    }

    /// Use `gemm` for products of every size.
    pub fn set_gemm_kernel(&self, gemm: GemmKernel) {
        self.set_choice(KernelChoice {
            gemm,
            gemm_small: gemm,
            ..self.choice()
        });
    }

    /// Whether the model runs the fused attention where nothing reads the probabilities.
    pub fn fused_attention(&self) -> bool {
        self.choice().fused_attention
    }

    pub fn set_fused_attention(&self, on: bool) {
        self.set_choice(KernelChoice {
            fused_attention: on,
            ..self.choice()
        });
    }

    /// The variant a row-reduction kernel (softmax, LayerNorm) runs as: subgroup reductions where
    /// the choice says so and the adapter allows them, else the file as written.
    pub(crate) fn row_reduce_variant(&self) -> Variant {
        match self.gpu.reduce_subgroup_width() {
            Some(width) if self.choice().subgroups => Variant::Subgroup { width },
            _ => Variant::Plain,
        }
    }

    /// Whether softmax and LayerNorm run their subgroup form in programs built from now on.
    pub fn subgroup_reductions(&self) -> bool {
        matches!(self.row_reduce_variant(), Variant::Subgroup { .. })
    }

    pub fn set_subgroups(&self, on: bool) {
        self.set_choice(KernelChoice {
            subgroups: on,
            ..self.choice()
        });
    }

    /// Whether f16 storage measured faster than f32 on this adapter.
    pub fn f16(&self) -> bool {
        self.choice().f16
    }

    pub fn set_f16(&self, on: bool) {
        self.set_choice(KernelChoice {
            f16: on,
            ..self.choice()
        });
    }

    /// The pipeline of `key`, compiled on first use, with its entry point's workgroup size.
    fn pipeline(
        &self,
        key: PipelineKey,
        family: &'static super::kernel::Family,
    ) -> Result<Pipeline> {
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let device = &self.gpu.device;
        let module_key = (key.family, key.variant, key.halves.clone());
        let cached = self.modules.lock().unwrap().get(&module_key).cloned();
        let module = match cached {
            Some(m) => m,
            None => {
                let source = match key.variant {
                    Variant::Plain => family.wgsl(),
                    Variant::GemmBlocked {
                        tm,
                        tn4,
                        a_vec4,
                        b_vec4,
                        norm,
                    } => gemm::with_norm(gemm::gemm_rb_source(tm, tn4, a_vec4, b_vec4), norm),
                    Variant::GemmTiled { wide, norm } => {
                        gemm::with_norm(gemm::gemm_tiled_source(wide), norm)
                    }
                    Variant::GemmNaive { norm } => gemm::with_norm(family.wgsl(), norm),
                    Variant::Attention { head_dim } => {
                        attention::attention_source(head_dim as usize)
                    }
                    Variant::Subgroup { width } => {
                        if !self.gpu.has_subgroups() {
                            return Err(Error::AdapterLimit {
                                what: format!("kernel `{}`", key.entry),
                                reason: "subgroup reductions need the adapter's subgroup feature"
                                    .into(),
                            });
                        }
                        family.wgsl_subgroup(width).ok_or_else(|| {
                            Error::Gpu(format!("kernel `{}` has no subgroup form", key.entry))
                        })?
                    }
                };
                if !key.halves.is_empty() && !self.gpu.has_f16() {
                    return Err(Error::AdapterLimit {
                        what: format!("kernel `{}`", key.entry),
                        reason: format!(
                            "f16 buffers need the adapter's shader-f16 feature, which {} lacks",
                            self.gpu.describe()
                        ),
                    });
                }
                let source = with_halves(source, key.entry, &key.halves)?;
                let workgroup_sizes = workgroup_sizes(&source);
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(key.family),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
                let m = Module {
                    module,
                    workgroup_sizes,
                };
                self.modules.lock().unwrap().insert(module_key, m.clone());
                m
            }
        };
        let workgroup_size = module
            .workgroup_sizes
            .as_ref()
            .and_then(|sizes| sizes.get(key.entry).copied());
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry),
            layout: None,
            module: &module.module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[],
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        self.gpu.check()?;
        self.pipelines
            .lock()
            .unwrap()
            .insert(key, (pipeline.clone(), workgroup_size));
        Ok((pipeline, workgroup_size))
    }

    /// A step of `kernel` over `buffers` (one per declared slot, in slot order) with `params`.
    pub fn launch<P: Params>(
        &self,
        kernel: &'static Kernel<P>,
        label: &str,
        buffers: &[&GpuTensor],
        params: &P,
        workgroups: [u32; 3],
    ) -> Result<Step> {
        self.launch_variant(kernel, Variant::Plain, label, buffers, params, workgroups)
    }

    /// [`Kernels::launch`] of a generated variant.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch_variant<P: Params>(
        &self,
        kernel: &'static Kernel<P>,
        variant: Variant,
        label: &str,
        buffers: &[&GpuTensor],
        params: &P,
        workgroups: [u32; 3],
    ) -> Result<Step> {
        let bytes = bytemuck::bytes_of(params);
        self.bind(&kernel.info, variant, label, buffers, bytes, workgroups)
    }

    /// The one (non-generic) body of every launch: pipeline, parameter block, bind group, step.
    #[allow(clippy::too_many_arguments)]
    fn bind(
        &self,
        info: &'static KernelInfo,
        variant: Variant,
        label: &str,
        buffers: &[&GpuTensor],
        params: &[u8],
        workgroups: [u32; 3],
    ) -> Result<Step> {
        if buffers.len() != info.slots.len() {
            return Err(Error::Gpu(format!(
                "{label}: kernel `{}` takes {} buffers ({}), got {}",
                info.entry,
                info.slots.len(),
                info.slots
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", "),
                buffers.len()
            )));
        }
        let mut halves = Vec::new();
        for (slot, t) in info.slots.iter().zip(buffers) {
            if t.elem == Elem::F16 {
                if slot.elem != Elem::F32 {
                    return Err(Error::Gpu(format!(
                        "{label}: kernel `{}` slot `{}` holds u32 values, got an f16 buffer",
                        info.entry, slot.name
                    )));
                }
                halves.push(slot.name);
            }
        }
        let key = PipelineKey {
            family: info.family.name,
            variant,
            entry: info.entry,
            halves,
        };
        let (pipeline, workgroup_size) = self.pipeline(key, info.family)?;
        // The parameter block, padded like its generated WGSL struct.
        let mut bytes = params.to_vec();
        bytes.resize(info.params_bytes, 0);
        let device = &self.gpu.device;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &bytes,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, t)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: t.buffer.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: buffers.len() as u32,
            resource: uniform.as_entire_binding(),
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let outputs = info
            .slots
            .iter()
            .zip(buffers)
            .filter(|(s, _)| s.access == Access::ReadWrite)
            .map(|(s, t)| (*s, (*t).clone()))
            .collect();
        Ok(Step {
            label: label.to_string(),
            phase: info.phase,
            pipeline,
            bind_group,
            workgroups,
            workgroup_size,
            outputs,
            gemm: None,
        })
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::workgroup_sizes;
    use crate::gpu::kernels::{gemm, pagerank::PAGERANK, softmax::SOFTMAX};

    /// What naga reflects is what the WGSL declares: a literal size, a size through `const WG`,
    /// and a `WG` the host rewrote.
    #[test]
    fn workgroup_sizes_are_what_the_wgsl_declares() {
        let pagerank = include_str!("../../shaders/pagerank.wgsl");
        assert!(pagerank.contains("@compute @workgroup_size(64, 1, 1)\nfn wpr("));
        let sizes = workgroup_sizes(&PAGERANK.wgsl()).unwrap();
        assert_eq!(sizes["wpr"], [64, 1, 1]);
        assert_eq!(sizes["combine_heads"], [64, 1, 1]);

        let softmax = include_str!("../../shaders/softmax.wgsl");
        assert!(
            softmax.contains("const WG: u32 = 32u;")
                && softmax.contains("@workgroup_size(WG, 1, 1)")
        );
        assert_eq!(
            workgroup_sizes(&SOFTMAX.wgsl()).unwrap()["softmax_rows"],
            [32, 1, 1]
        );
        let subgroup = SOFTMAX.wgsl_subgroup(8).unwrap();
        assert_eq!(
            workgroup_sizes(&subgroup).unwrap()["softmax_rows"],
            [8, 1, 1]
        );

        let tiled = workgroup_sizes(&gemm::gemm_tiled_source(true)).unwrap();
        assert_eq!(tiled.values().copied().collect::<Vec<_>>(), [[16, 16, 1]]);
        let blocked = workgroup_sizes(&gemm::gemm_rb_source(4, 4, true, true)).unwrap();
        assert_eq!(blocked["gemm_rb"], [16, 1, 1]);

        assert!(workgroup_sizes("fn broken(").is_none());
    }
}
