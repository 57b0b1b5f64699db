//! How a model stores its numbers on the GPU: all f32, or f16 storage (weights of every linear
//! layer and the activations that only feed a GEMM) with f32 arithmetic, or whichever measured
//! faster on this adapter.
//!
//! f16 covers the linear weights, the LayerNorm outputs, the attention context, the MLP hidden
//! layer and the head input. The residual stream, qkv (read by attention and by token pruning's
//! key similarity), the attention probabilities and every pruning buffer stay f32: they carry the
//! token scores, where rounding would change which tokens are kept.

use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::{GpuContext, KernelChoice};

/// `--precision`: what the weights and activations are stored as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
pub enum Precision {
    /// Everything f32 (the reference).
    #[default]
    F32,
    /// f16 storage, f32 accumulation; needs the adapter's shader-f16 feature.
    F16,
    /// f16 where the adapter has shader-f16 and f16 measured faster there, else f32.
    Auto,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Auto];

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Auto => "auto",
        }
    }

    /// The storage this precision means on `gpu`, given the measured kernel choice.
    pub fn storage(self, gpu: &GpuContext, choice: KernelChoice) -> Result<Elem> {
        match self {
            Precision::F32 => Ok(Elem::F32),
            Precision::F16 if gpu.has_f16() => Ok(Elem::F16),
            Precision::F16 => Err(Error::AdapterLimit {
                what: "precision f16".into(),
                reason: format!(
                    "f16 needs the adapter's shader-f16 feature, which {} lacks (use f32 or auto)",
                    gpu.describe()
                ),
            }),
            Precision::Auto => Ok(if gpu.has_f16() && choice.f16 {
                Elem::F16
            } else {
                Elem::F32
            }),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let names = Precision::ALL.map(Precision::name);
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                Error::param(
                    "precision",
                    format!("`{s}` is not one of {}", names.join(", ")),
                )
            })
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
