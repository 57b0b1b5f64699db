//! Per-adapter kernel choice by measurement: the GEMM tile, fused against unfused attention, and
//! f16 against f32 storage (what `--precision auto` follows), and subgroup against workgroup
//! reductions in softmax and LayerNorm.
//! Measured once per adapter and process, on transformer-sized shapes.

use std::sync::Mutex;

use super::kernel::Elem;
use super::kernels::{AttentionBias, Gemm, GemmKernel, MatView, RowView};
use super::program::gpu_time;
use super::{GpuTensor, KernelChoice, Kernels, Program};
use crate::error::Result;

/// One measurement's result per adapter (keyed by [`super::GpuContext::describe`]), kept for the
/// rest of the process.
struct PerAdapter<T>(Mutex<Vec<(String, T)>>);

impl<T: Copy> PerAdapter<T> {
    const fn new() -> Self {
        PerAdapter(Mutex::new(Vec::new()))
    }

    fn get(&self, id: &str) -> Option<T> {
        let done = self.0.lock().unwrap();
        done.iter().find(|(a, _)| a == id).map(|&(_, v)| v)
    }

    fn put(&self, id: String, v: T) {
        self.0.lock().unwrap().push((id, v));
    }
}

/// The best of three timed runs of each of two programs after a warm-up of each, alternating the
/// two so that other load on the device hits both alike.
async fn best_of_two(gpu: &super::GpuContext, programs: [&Program; 2]) -> Result<[f64; 2]> {
    for p in programs {
        gpu_time(gpu, p).await?;
    }
    let mut best = [f64::INFINITY; 2];
    for _ in 0..3 {
        for (t, p) in best.iter_mut().zip(programs) {
            *t = t.min(gpu_time(gpu, p).await?);
        }
    }
    Ok(best)
}

impl Kernels {
    /// Measure the GEMM tile and the attention path on this adapter and keep the fastest (once
    /// per adapter and process): what every program built afterwards uses.
    /// Natively, a choice measured by an earlier process on this adapter and build is read from
    /// the disk cache instead ([`super::tune_cache`]).
    pub async fn tune(&self) -> Result<KernelChoice> {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(choice) = super::tune_cache::lookup(self.gpu()) {
            self.set_choice(choice);
            return Ok(choice);
        }
        self.tune_gemm().await?;
        self.tune_attention().await?;
        self.tune_f16().await?;
        self.tune_subgroups().await?;
        let choice = self.choice();
        #[cfg(not(target_arch = "wasm32"))]
        super::tune_cache::store(self.gpu(), choice);
        Ok(choice)
    }

    /// [`Kernels::tune`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tune_blocking(&self) -> Result<KernelChoice> {
        pollster::block_on(self.tune())
    }

    /// [`Kernels::tune_gemm`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tune_gemm_blocking(&self) -> Result<GemmKernel> {
        pollster::block_on(self.tune_gemm())
    }

    /// Time every [`GemmKernel::CANDIDATES`] on two products and keep the fastest of each for
    /// this adapter: four DeiT-Tiny images' QKV (788 x 576 x 192) for large products and one
    /// image's fc2 (197 x 192 x 768) for small ones ([`super::SMALL_GEMM_OUTPUTS`]), among the
    /// kernels whose tiles have at most 64 rows ([`GemmKernel::fits_small_products`]). About two seconds on a CPU adapter, milliseconds
    /// on a GPU. Returns the large products' kernel.
    pub async fn tune_gemm(&self) -> Result<GemmKernel> {
        static TUNED: PerAdapter<(GemmKernel, GemmKernel)> = PerAdapter::new();
        let id = self.gpu().describe();
        if let Some((large, small)) = TUNED.get(&id) {
            self.set_gemm_kernels(large, small);
            return Ok(large);
        }
        let large = self.fastest_gemm(788, 576, 192, |_| true).await?;
        let small = self
            .fastest_gemm(197, 192, 768, GemmKernel::fits_small_products)
            .await?;
        TUNED.put(id, (large, small));
        self.set_gemm_kernels(large, small);
        Ok(large)
    }

    /// The fastest of [`GemmKernel::CANDIDATES`] on an `m x n x k` product: three rounds that
    /// time every candidate in turn (so that a change of load on the device hits them alike),
    /// keeping each one's best; after the first, candidates over twice the best are dropped.
    async fn fastest_gemm(
        &self,
        m: usize,
        n: usize,
        kk: usize,
        eligible: impl Fn(&GemmKernel) -> bool,
    ) -> Result<GemmKernel> {
        let gpu = self.gpu();
        let a = GpuTensor::from_slice(gpu, "tune a", &vec![0.01f32; m * kk]);
        let b = GpuTensor::from_slice(gpu, "tune b", &vec![0.01f32; kk * n]);
        let c = GpuTensor::zeros(gpu, "tune c", m * n);
        let mut candidates = GemmKernel::CANDIDATES
            .iter()
            .filter(|k| eligible(k))
            .map(|&kernel| {
                let g = Gemm {
                    kernel: Some(kernel),
                    ..Gemm::new(m, n, kk)
                };
                let step = self.gemm(
                    "tune",
                    MatView::rows(&a, kk),
                    MatView::rows(&b, n),
                    MatView::rows(&c, n),
                    g,
                )?;
                Ok((kernel, Program { steps: vec![step] }, f64::INFINITY))
            })
            .collect::<Result<Vec<_>>>()?;
        for round in 0..3 {
            for (_, program, best) in candidates.iter_mut() {
                *best = best.min(gpu_time(gpu, program).await?);
            }
            if round == 0 {
                let fastest = candidates.iter().map(|c| c.2).fold(f64::INFINITY, f64::min);
                candidates.retain(|c| c.2 <= 2.0 * fastest);
            }
        }
        let best = candidates
            .iter()
            .min_by(|x, y| x.2.total_cmp(&y.2))
            .map(|c| c.0);
        Ok(best.unwrap_or_else(|| self.gemm_kernel_for(m * n)))
    }

    /// Time the fused attention against the unfused steps (with the current GEMM kernel) on two
    /// DeiT-Tiny images (197 tokens, 3 heads of 64) and keep the faster for this adapter.
    pub async fn tune_attention(&self) -> Result<bool> {
        static TUNED: PerAdapter<bool> = PerAdapter::new();
        let id = self.gpu().describe();
        if let Some(f) = TUNED.get(&id) {
            self.set_fused_attention(f);
            return Ok(f);
        }
        let gpu = self.gpu();
        let (b, n, h, dh) = (2, 197, 3, 64);
        let d = h * dh;
        let qkv = GpuTensor::from_slice(gpu, "tune qkv", &vec![0.01f32; b * n * 3 * d]);
        let probs = GpuTensor::zeros(gpu, "tune probs", b * h * n * n);
        let out = GpuTensor::zeros(gpu, "tune out", b * n * d);
        let mut unfused = Program::default();
        let q = MatView::rows(&qkv, 3 * d).batched(n * 3 * d, dh);
        let pm = MatView::rows(&probs, n).batched(h * n * n, n * n);
        let heads = |g: Gemm<'static>| Gemm {
            outer: b,
            heads: h,
            ..g
        };
        unfused.push(self.gemm(
            "tune",
            q,
            q.at(d).strides(1, 3 * d),
            pm,
            heads(Gemm::new(n, n, dh)),
        )?);
        unfused.push(self.softmax_rows("tune", &probs, b * h * n, n, n)?);
        let o = MatView::rows(&out, d).batched(n * d, dh);
        unfused.push(self.gemm("tune", pm, q.at(2 * d), o, heads(Gemm::new(n, dh, n)))?);
        let mut fused = Program::default();
        fused.push(self.attention(
            "tune",
            &qkv,
            &out,
            (b, n, d, h),
            0.125,
            AttentionBias::default(),
        )?);
        let best = best_of_two(gpu, [&unfused, &fused]).await?;
        let on = best[1] <= best[0];
        TUNED.put(id, on);
        self.set_fused_attention(on);
        Ok(on)
    }

    /// Time an MLP's two GEMMs (fc1 with GELU into the hidden layer, fc2 accumulating into the
    /// residual; two DeiT-Tiny images) with f16 storage against f32, with the current GEMM kernel,
    /// and record whether f16 is faster. False without shader-f16.
    pub async fn tune_f16(&self) -> Result<bool> {
        static TUNED: PerAdapter<bool> = PerAdapter::new();
        let id = self.gpu().describe();
        if let Some(f) = TUNED.get(&id) {
            self.set_f16(f);
            return Ok(f);
        }
        let gpu = self.gpu();
        let on = if gpu.has_f16() {
            let (m, d, mlp) = (394, 192, 768);
            let bias = GpuTensor::from_slice(gpu, "tune bias", &vec![0.0f32; mlp]);
            let x = GpuTensor::zeros(gpu, "tune x", m * d);
            let mlp_program = |elem: Elem| -> Result<Program> {
                let t = |len: usize| GpuTensor::from_f32(gpu, "tune", &vec![0.01f32; len], elem);
                let (xn, w1, w2, hidden) = (t(m * d), t(d * mlp), t(mlp * d), t(m * mlp));
                let fc1 = Gemm {
                    bias: Some(&bias),
                    gelu: true,
                    ..Gemm::new(m, mlp, d)
                };
                let fc2 = Gemm {
                    accumulate: true,
                    ..Gemm::new(m, d, mlp)
                };
                let rows = MatView::rows;
                Ok(Program {
                    steps: vec![
                        self.gemm(
                            "tune",
                            rows(&xn, d),
                            rows(&w1, mlp),
                            rows(&hidden, mlp),
                            fc1,
                        )?,
                        self.gemm("tune", rows(&hidden, mlp), rows(&w2, d), rows(&x, d), fc2)?,
                    ],
                })
            };
            let programs = [mlp_program(Elem::F32)?, mlp_program(Elem::F16)?];
            let best = best_of_two(gpu, [&programs[0], &programs[1]]).await?;
            best[1] < best[0]
        } else {
            false
        };
        TUNED.put(id, on);
        self.set_f16(on);
        Ok(on)
    }

    /// Time softmax and LayerNorm (the rows of two DeiT-Tiny images' attention and tokens) with
    /// subgroup reductions against workgroup ones, and keep the faster. False where the adapter
    /// has no usable subgroups ([`GpuContext::reduce_subgroup_width`]).
    pub async fn tune_subgroups(&self) -> Result<bool> {
        static TUNED: PerAdapter<bool> = PerAdapter::new();
        let id = self.gpu().describe();
        if let Some(f) = TUNED.get(&id) {
            self.set_subgroups(f);
            return Ok(f);
        }
        let gpu = self.gpu();
        let on = if gpu.reduce_subgroup_width().is_some() {
            let (b, n, h, d) = (2, 197, 3, 192);
            let probs = GpuTensor::from_slice(gpu, "tune probs", &vec![0.01f32; b * h * n * n]);
            let x = GpuTensor::from_slice(gpu, "tune x", &vec![0.01f32; b * n * d]);
            let y = GpuTensor::zeros(gpu, "tune y", b * n * d);
            let gamma = GpuTensor::from_slice(gpu, "tune gamma", &vec![1.0f32; d]);
            let beta = GpuTensor::zeros(gpu, "tune beta", d);
            let mut programs = Vec::new();
            for on in [false, true] {
                self.set_subgroups(on);
                let rows = |t| RowView::dense(t, d);
                programs.push(Program {
                    steps: vec![
                        self.softmax_rows("tune", &probs, b * h * n, n, n)?,
                        self.layernorm("tune", rows(&x), rows(&y), b * n, d, &gamma, &beta, 1e-6)?,
                    ],
                });
            }
            let best = best_of_two(gpu, [&programs[0], &programs[1]]).await?;
            best[1] < best[0]
        } else {
            false
        };
        TUNED.put(id, on);
        self.set_subgroups(on);
        Ok(on)
    }
}
