//! Weights on the host, as every family reads them: the tensors of a safetensors file as f32
//! ([`Tensors`]), and the layers every transformer has, in one canonical form: linear weights
//! transposed to `[in, out]` so every GEMM reads `x . W`. Each layer loads its own tensors by the
//! names its family gives.

use std::collections::BTreeSet;

use safetensors::tensor::{Dtype, SafeTensors};

use super::names::{BlockNames, LayerNames, QkvNames};
use crate::error::{Error, Result};

/// The tensors of a safetensors file, read as f32; remembers which were read.
pub(crate) struct Tensors<'a> {
    pub(crate) st: SafeTensors<'a>,
    pub(crate) file: String,
    pub(crate) used: BTreeSet<String>,
}

impl<'a> Tensors<'a> {
    /// The tensors of safetensors `bytes`, their layout checked first; `file` names them in errors.
    pub(crate) fn open(file: &str, bytes: &'a [u8]) -> Result<Self> {
        super::safetensors_check::check(file, bytes)?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
            file: file.into(),
            reason: e.to_string(),
        })?;
        Ok(Tensors {
            st,
            file: file.into(),
            used: BTreeSet::new(),
        })
    }

    /// Names no loader has read, sorted.
    pub(crate) fn unused(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .st
            .names()
            .into_iter()
            .filter(|s| !self.used.contains(*s))
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.st.tensor(name).is_ok()
    }

    pub(crate) fn missing(&self, name: &str) -> Error {
        Error::MissingTensor {
            file: self.file.clone(),
            name: name.into(),
        }
    }

    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.st
            .tensor(name)
            .map(|t| t.shape().to_vec())
            .map_err(|_| self.missing(name))
    }

    /// The tensor `name` as f32, checked against `expected` (leading 1s of the stored shape are ignored).
    pub(crate) fn get(&mut self, name: &str, expected: &[usize]) -> Result<Vec<f32>> {
        let view = self.st.tensor(name).map_err(|_| self.missing(name))?;
        let got = view.shape().to_vec();
        let squeeze = |s: &[usize]| -> Vec<usize> {
            let first = s.iter().position(|&d| d != 1).unwrap_or(s.len());
            s[first..].to_vec()
        };
        if squeeze(&got) != squeeze(expected) {
            return Err(Error::TensorShape {
                file: self.file.clone(),
                name: name.into(),
                got,
                expected: expected.to_vec(),
            });
        }
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::TensorDtype {
                    file: self.file.clone(),
                    name: name.into(),
                    dtype: format!("{other:?}"),
                })
            }
        };
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::Safetensors {
                file: self.file.clone(),
                reason: format!(
                    "tensor `{name}` holds {v} at index {i}: weights must be finite numbers"
                ),
            });
        }
        self.used.insert(name.to_string());
        Ok(values)
    }
}

/// `[rows, cols]` -> `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

/// A linear layer `y = x . w + b`.
#[derive(Debug, Clone)]
pub struct LinearWeights {
    /// `[in, out]`: GEMM order, PyTorch's `[out, in]` transposed.
    pub w: Vec<f32>,
    /// `[out]`.
    pub b: Vec<f32>,
}

impl LinearWeights {
    /// Multiply output channel `o` by `scale[o]` (a layer scale folded into the layer before it).
    pub(crate) fn scale_outputs(&mut self, scale: &[f32]) {
        let out = self.b.len();
        debug_assert_eq!(scale.len(), out);
        for row in self.w.chunks_mut(out) {
            for (w, s) in row.iter_mut().zip(scale) {
                *w *= s;
            }
        }
        for (b, s) in self.b.iter_mut().zip(scale) {
            *b *= s;
        }
    }

    /// PyTorch's `[out, in]` weight and `[out]` bias.
    pub(crate) fn load(t: &mut Tensors, n: &LayerNames, out: usize, inp: usize) -> Result<Self> {
        let w = t.get(&n.weight, &[out, inp])?;
        Ok(LinearWeights {
            w: transpose(&w, out, inp),
            b: t.get(&n.bias, &[out])?,
        })
    }

    /// As [`load`](Self::load), with a zero bias where the checkpoint has none (`qkv_bias=False`).
    pub(crate) fn load_optional_bias(
        t: &mut Tensors,
        n: &LayerNames,
        out: usize,
        inp: usize,
    ) -> Result<Self> {
        if t.has(&n.bias) {
            return Self::load(t, n, out, inp);
        }
        let w = t.get(&n.weight, &[out, inp])?;
        Ok(LinearWeights {
            w: transpose(&w, out, inp),
            b: vec![0.0; out],
        })
    }

    /// The patch embedding: a `[D, C, p, p]` convolution with stride `p` is a linear layer on
    /// flattened patches, rows in (channel, kernel row, kernel column) order.
    pub(crate) fn load_patch_embed(
        t: &mut Tensors,
        n: &LayerNames,
        d: usize,
        c: usize,
        p: usize,
    ) -> Result<Self> {
        let w = t.get(&n.weight, &[d, c, p, p])?;
        // CLIP's patch convolution has no bias.
        let b = if t.has(&n.bias) {
            t.get(&n.bias, &[d])?
        } else {
            vec![0.0; d]
        };
        Ok(LinearWeights {
            w: transpose(&w, d, c * p * p),
            b,
        })
    }

    /// Layers on the same input side by side, as one: outputs of `parts[0]`, then `parts[1]`, ...
    pub(crate) fn concat_outputs(parts: &[LinearWeights]) -> Self {
        let inp = parts.first().map_or(0, |p| p.inp());
        let mut w = Vec::with_capacity(parts.iter().map(|p| p.w.len()).sum());
        for r in 0..inp {
            for p in parts {
                w.extend_from_slice(&p.w[r * p.out()..(r + 1) * p.out()]);
            }
        }
        LinearWeights {
            w,
            b: parts.iter().flat_map(|p| p.b.iter().copied()).collect(),
        }
    }

    /// Distilled DeiT's two heads as one layer: the mean of `cls_head(CLS)` and `dist_head(DIST)` is
    /// `[W_cls; W_dist] / 2` applied to the concatenated `[CLS, DIST]` pair, plus the mean bias.
    pub(crate) fn mean_of_two(cls_head: LinearWeights, dist_head: LinearWeights) -> Self {
        let (a, b) = (cls_head, dist_head);
        LinearWeights {
            w: a.w.iter().chain(&b.w).map(|x| 0.5 * x).collect(),
            b: a.b.iter().zip(&b.b).map(|(x, y)| 0.5 * (x + y)).collect(),
        }
    }

    pub fn inp(&self) -> usize {
        self.w.len() / self.out().max(1)
    }

    pub fn out(&self) -> usize {
        self.b.len()
    }

    /// `x . W + b` on the host, summed in f64: a head on one pooled vector.
    pub(crate) fn apply(&self, x: &[f64]) -> Vec<f64> {
        let (inp, out) = (self.inp(), self.out());
        (0..out)
            .map(|o| {
                self.b[o] as f64
                    + (0..inp)
                        .map(|i| x[i] * self.w[i * out + o] as f64)
                        .sum::<f64>()
            })
            .collect()
    }
}

/// A LayerNorm's scale and shift, `[D]` each.
#[derive(Debug, Clone)]
pub struct NormWeights {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl NormWeights {
    pub(crate) fn load(t: &mut Tensors, n: &LayerNames, d: usize) -> Result<Self> {
        Ok(NormWeights {
            w: t.get(&n.weight, &[d])?,
            b: t.get(&n.bias, &[d])?,
        })
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct BlockWeights {
    pub norm1: NormWeights,
    /// `[D, 3D]`: columns are q (all heads), then k, then v.
    pub qkv: LinearWeights,
    pub proj: LinearWeights,
    pub norm2: NormWeights,
    pub fc1: LinearWeights,
    pub fc2: LinearWeights,
}

impl BlockWeights {
    /// Block weights of width `d` and MLP width `mlp`.
    pub(crate) fn load(t: &mut Tensors, n: &BlockNames, d: usize, mlp: usize) -> Result<Self> {
        let norm1 = NormWeights::load(t, &n.norm1, d)?;
        let qkv = match &n.qkv {
            QkvNames::Fused(qkv) => LinearWeights::load_optional_bias(t, qkv, 3 * d, d)?,
            QkvNames::Separate(parts) => {
                let parts = parts
                    .iter()
                    .map(|p| LinearWeights::load_optional_bias(t, p, d, d))
                    .collect::<Result<Vec<_>>>()?;
                LinearWeights::concat_outputs(&parts)
            }
        };
        Ok(BlockWeights {
            norm1,
            qkv,
            proj: LinearWeights::load(t, &n.proj, d, d)?,
            norm2: NormWeights::load(t, &n.norm2, d)?,
            fc1: LinearWeights::load(t, &n.fc1, mlp, d)?,
            fc2: LinearWeights::load(t, &n.fc2, d, mlp)?,
        })
    }
}
