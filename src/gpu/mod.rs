//! The GPU layer: device setup, buffers, compiled kernels and the list of steps a forward pass plays.

pub mod buffers;
pub mod context;
pub mod kernels;
pub mod program;
pub mod prune_kernels;

pub use buffers::{read_buffer, GpuTensor};
pub use context::{AdapterChoice, GpuContext};
pub use kernels::Kernels;
#[cfg(not(target_arch = "wasm32"))]
pub use program::{profile_program_blocking, time_program_blocking};
pub use program::{Program, Step};
