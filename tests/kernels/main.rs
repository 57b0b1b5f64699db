//! The GPU kernels against CPU references: every WGSL kernel (`kernels`), the pruning kernels
//! (`prune_kernels`), every GEMM variant (`gemm`), fused attention (`attention`), subgroup
//! reductions (`subgroups`) and f16 storage (`precision`). One test binary, one shared device.
//!
//! The first four also build for wasm32 and run in headless Chromium (scripts/test-web.sh): their
//! tests are `async fn`s declared for both by `gpu_tests!`. The other two are native only.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod attention;
mod gemm;
mod kernels;
#[cfg(not(target_arch = "wasm32"))]
mod precision;
mod prune_kernels;
#[cfg(not(target_arch = "wasm32"))]
mod subgroups;
