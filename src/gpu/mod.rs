//! The GPU layer: device setup, buffers, the kernel library and the step list a forward pass plays.
//!
//! - [`context`]: the adapter and device;
//! - [`buffers`]: storage buffers and the one readback path;
//! - [`kernel`]: how a kernel is declared (parameter block, buffer slots, phase, WGSL family);
//! - [`kernels`]: one module per WGSL family with its launchers;
//! - [`library`]: compiled pipelines and the kernel choices of this adapter; [`tune`] measures them;
//! - [`program`]: the step list and the three ways to play it (one pass, profiled, step by step).

pub mod buffers;
pub mod context;
pub mod kernel;
pub mod kernels;
pub mod library;
pub mod program;
pub mod tune;
#[cfg(not(target_arch = "wasm32"))]
pub mod tune_cache;

pub use buffers::{read_buffer, GpuTensor};
pub use context::{AdapterChoice, GpuContext};
pub use library::{GemmKernel, KernelChoice, Kernels, SMALL_GEMM_OUTPUTS};
#[cfg(not(target_arch = "wasm32"))]
pub use program::{gpu_time_blocking, time_program_blocking};
pub use program::{GemmWork, Phase, Program, Step, StepOutput, StepShape};
pub use tune::{Decision, TuneHooks, TuneReport};
