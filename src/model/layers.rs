//! The GPU layers every family is built from: a linear layer, a LayerNorm and the attention, each
//! appending its steps to a program. A family's graph (`vit/graph.rs`, `bert/graph.rs`) reads as a
//! list of these.

use super::tensors::{LinearWeights, NormWeights};
use crate::error::{Error, Result};
use crate::gpu::kernel::Elem;
use crate::gpu::kernels::{Activation, AttentionBias, Gemm, LiveRows, MatView, RowView};
use crate::gpu::{GpuContext, GpuTensor, Kernels, Program};

/// The largest finite f16.
const F16_MAX: f32 = 65504.0;

/// A weight must fit one storage binding of the device; say which does not, before allocating it.
pub(crate) fn fits(gpu: &GpuContext, name: &str, bytes: usize) -> Result<()> {
    let max = gpu.max_binding_bytes();
    if bytes as u64 > max {
        return Err(Error::AdapterLimit {
            what: name.to_string(),
            reason: format!(
                "{bytes} bytes do not fit the device's largest storage binding of {max} bytes"
            ),
        });
    }
    Ok(())
}

/// `y = x . W + b` with `W` stored `[in, out]`.
pub struct Linear {
    pub w: GpuTensor,
    pub b: GpuTensor,
    pub inp: usize,
    pub out: usize,
}

impl Linear {
    /// The weight matrix stored as `storage` (f32 or f16); the bias always f32. A weight beyond
    /// f16's range would turn into infinity, so f16 refuses it, naming the layer.
    pub(crate) fn upload(
        gpu: &GpuContext,
        name: &str,
        l: &LinearWeights,
        storage: Elem,
    ) -> Result<Self> {
        fits(gpu, &format!("{name} weight"), l.w.len() * storage.size())?;
        if storage == Elem::F16 {
            if let Some((i, v)) = l.w.iter().enumerate().find(|(_, v)| v.abs() > F16_MAX) {
                return Err(Error::param(
                    format!("{name} weight"),
                    format!(
                        "value {v} at index {i} is outside f16's range (+-{F16_MAX}); use --precision f32"
                    ),
                ));
            }
        }
        Ok(Linear {
            w: GpuTensor::from_f32(gpu, name, &l.w, storage),
            b: GpuTensor::from_slice(gpu, name, &l.b),
            inp: l.inp(),
            out: l.out(),
        })
    }

    /// `out[rows, self.out] (+)= act(x[rows, self.inp] . W + b)`, on the live rows only where
    /// `live` says which.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        k: &Kernels,
        p: &mut Program,
        label: &str,
        x: &GpuTensor,
        out: &GpuTensor,
        rows: usize,
        (activation, accumulate): (Activation, bool),
        live: Option<LiveRows>,
    ) -> Result<()> {
        let g = Gemm {
            activation,
            accumulate,
            live,
            ..Gemm::new(rows, self.out, self.inp)
        };
        self.push(k, p, label, (x, out), g)
    }

    /// The layer's GEMM step with the epilogue of `g` (its bias added): `out = x . W + b ...`.
    fn push(
        &self,
        k: &Kernels,
        p: &mut Program,
        label: &str,
        (x, out): (&GpuTensor, &GpuTensor),
        g: Gemm,
    ) -> Result<()> {
        let g = Gemm {
            bias: Some(&self.b),
            ..g
        };
        p.push(k.gemm(
            label,
            MatView::rows(x, self.inp),
            MatView::rows(&self.w, self.out),
            MatView::rows(out, self.out),
            g,
        )?);
        Ok(())
    }
}

/// A pre-norm linear layer, `LN(x) . W + b`, as one GEMM (gemm_common.wgsl's NORM): the
/// LayerNorm's gamma folded into the weights, its beta into the bias, and the column sums the GEMM
/// needs for the row's mean stored after the bias. The GEMM reads the raw rows and gathers their
/// mean and variance in its own k loop, so the LayerNorm costs no dispatch and no buffer.
pub struct NormLinear {
    /// `diag(gamma) W`, and `[b + beta.W, column sums of diag(gamma) W]` as its bias.
    pub linear: Linear,
    pub eps: f32,
}

impl NormLinear {
    /// Fold `norm` into `l` (in f64), the weights stored as `storage`; the column sums are taken
    /// of the weights as stored (f16-rounded where they are), so that they cancel the mean exactly.
    pub(crate) fn upload(
        gpu: &GpuContext,
        name: &str,
        norm: &NormWeights,
        l: &LinearWeights,
        eps: f32,
        storage: Elem,
    ) -> Result<Self> {
        let (inp, out) = (l.inp(), l.out());
        if norm.w.len() != inp || norm.b.len() != inp {
            return Err(Error::param(
                name,
                format!(
                    "a LayerNorm of {} values cannot feed a linear layer of {inp} inputs",
                    norm.w.len()
                ),
            ));
        }
        let w: Vec<f32> = (0..inp * out)
            .map(|i| (norm.w[i / out] as f64 * l.w[i] as f64) as f32)
            .collect();
        let stored = |v: f32| match storage {
            Elem::F16 => half::f16::from_f32(v).to_f32() as f64,
            _ => v as f64,
        };
        let mut bias: Vec<f64> = l.b.iter().map(|&v| v as f64).collect();
        let mut colsum = vec![0f64; out];
        for k in 0..inp {
            for j in 0..out {
                bias[j] += norm.b[k] as f64 * l.w[k * out + j] as f64;
                colsum[j] += stored(w[k * out + j]);
            }
        }
        let folded = LinearWeights {
            w,
            b: bias.iter().map(|&v| v as f32).collect(),
        };
        let mut linear = Linear::upload(gpu, name, &folded, storage)?;
        let b_and_sums: Vec<f32> = folded
            .b
            .iter()
            .copied()
            .chain(colsum.iter().map(|&v| v as f32))
            .collect();
        linear.b = GpuTensor::from_slice(gpu, name, &b_and_sums);
        Ok(NormLinear { linear, eps })
    }

    /// `out[rows, out] (+)= act(LN(x[rows, in]) . W + b)` with `x` the raw rows (f32), on the live
    /// rows only where `live` says which.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        k: &Kernels,
        p: &mut Program,
        label: &str,
        x: &GpuTensor,
        out: &GpuTensor,
        rows: usize,
        (activation, accumulate): (Activation, bool),
        live: Option<LiveRows>,
    ) -> Result<()> {
        let l = &self.linear;
        let g = Gemm {
            activation,
            accumulate,
            live,
            norm: Some(self.eps),
            ..Gemm::new(rows, l.out, l.inp)
        };
        l.push(k, p, label, (x, out), g)
    }
}

impl Linear {
    /// A residual add: `out[rows, self.out] += x[rows, self.inp] . W + b`, or, where a pruning step
    /// left its survivors in `moved` (compacted rows laid out like `out`),
    /// `out = moved + x . W + b`: the residual stream rebuilt from them. On the live rows only
    /// where `live` says which.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward_residual(
        &self,
        k: &Kernels,
        p: &mut Program,
        label: &str,
        x: &GpuTensor,
        (out, moved): (&GpuTensor, Option<&GpuTensor>),
        rows: usize,
        live: Option<LiveRows>,
    ) -> Result<()> {
        let g = Gemm {
            accumulate: moved.is_none(),
            residual: moved,
            live,
            ..Gemm::new(rows, self.out, self.inp)
        };
        self.push(k, p, label, (x, out), g)
    }
}

pub struct LayerNorm {
    pub w: GpuTensor,
    pub b: GpuTensor,
    pub eps: f32,
}

impl LayerNorm {
    pub(crate) fn upload(gpu: &GpuContext, name: &str, n: &NormWeights, eps: f32) -> Self {
        LayerNorm {
            w: GpuTensor::from_slice(gpu, name, &n.w),
            b: GpuTensor::from_slice(gpu, name, &n.b),
            eps,
        }
    }

    pub(crate) fn forward(
        &self,
        k: &Kernels,
        p: &mut Program,
        label: &str,
        x: RowView,
        y: RowView,
        rows: usize,
    ) -> Result<()> {
        let d = self.w.len;
        p.push(k.layernorm(label, x, y, rows, d, &self.w, &self.b, self.eps)?);
        Ok(())
    }
}

/// Attention over the `[B, N, 3D]` qkv rows into `attn` `[B, N, D]`, with `label` before each step's
/// name: the fused kernel where the kernel choice takes it, nobody reads the probabilities
/// (`keep_probs`: the pruning point reads them) and the heads fit it; else scores, softmax (the
/// probabilities kept in `probs`) and context. `bias` holds the key-side terms of the softmax;
/// `counts`, each item's valid rows, stops the unfused GEMMs at its live queries and keys.
/// Returns whether the probabilities were written.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_steps(
    k: &Kernels,
    p: &mut Program,
    label: &str,
    (qkv, probs_t, attn): (&GpuTensor, &GpuTensor, &GpuTensor),
    (b, n, d, h): (usize, usize, usize, usize),
    keep_probs: bool,
    bias: AttentionBias,
    counts: Option<&GpuTensor>,
) -> Result<bool> {
    let dh = d / h;
    let scale = 1.0 / (dh as f32).sqrt();
    let name = |s: &str| format!("{label}{s}");
    if k.fused_attention() && !keep_probs && Kernels::attention_fits(d, h) {
        p.push(k.attention(&name("attention"), qkv, attn, (b, n, d, h), scale, bias)?);
        return Ok(false);
    }
    // Scores: P[b, h] = Q[b, :, h] . K[b, :, h]^T / sqrt(dh), read in place from the qkv rows.
    let q = MatView::rows(qkv, 3 * d).batched(n * 3 * d, dh);
    let kt = q.at(d).strides(1, 3 * d);
    let probs = MatView::rows(probs_t, n).batched(h * n * n, n * n);
    // Per (image, head): the image's live rows are its live queries and keys.
    let live_keys = |key_cols, key_sum| {
        counts.map(|counts| LiveRows::PerImage {
            counts,
            key_cols,
            key_sum,
        })
    };
    let scores = Gemm {
        outer: b,
        heads: h,
        alpha: scale,
        live: live_keys(true, false),
        ..Gemm::new(n, n, dh)
    };
    p.push(k.gemm(&name("scores"), q, kt, probs, scores)?);
    p.push(k.softmax_biased(&name("softmax"), probs_t, b * h * n, n, n, h * n, bias)?);

    // Context: O[b, :, h] = P[b, h] . V[b, :, h], written head by head into [B, N, D].
    let v = q.at(2 * d);
    let out = MatView::rows(attn, d).batched(n * d, dh);
    let pv = Gemm {
        outer: b,
        heads: h,
        live: live_keys(false, true),
        ..Gemm::new(n, dh, n)
    };
    p.push(k.gemm(&name("context"), probs, v, out, pv)?);
    Ok(true)
}
