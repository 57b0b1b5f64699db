//! Per-adapter kernel choice by measurement: the GEMM tile, fused against unfused attention, and
//! f16 against f32 storage (what `--precision auto` follows), and subgroup against workgroup
//! reductions in softmax and LayerNorm.
//! Measured once per adapter and process, on transformer-sized shapes.
//!
//! A choice that cannot go wrong (the rule, [`decide`]):
//! - every candidate's pipeline is created and run once before any is timed: drivers compile at
//!   pipeline creation or at the first dispatch (lavapipe compiles with LLVM at the first launch
//!   when Mesa's shader cache is empty), and a first run that includes compiling is not a timing;
//! - then [`ROUNDS`] interleaved rounds, each timing every candidate once in a rotating order, so
//!   that a change of load on the machine hits every candidate alike;
//! - the default ([`KernelChoice::guess`]) stays unless a candidate's median, over the rounds, of
//!   its time over the default's in the same round is at most `1 - MARGIN` and it beat the default
//!   in at least two rounds of three, and does so again in a second set of rounds that times the
//!   default and such candidates alone: noise, a busy machine or a slow candidate keep the
//!   default.
//!
//! Every candidate's timings are kept with the choice ([`TuneReport`], stored in the disk cache and
//! shown by `zeroprune info`); [`Kernels::note_forward`] compares later forward passes with what
//! they predict and marks the cached choice stale when forwards run far slower.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::kernel::Elem;
use super::kernels::{AttentionBias, Gemm, GemmKernel, MatView, RowView};
use super::program::gpu_time;
use super::{GpuContext, GpuTensor, KernelChoice, Kernels, Program, SMALL_GEMM_OUTPUTS};
use crate::error::{Error, Result};

/// Timed rounds per decision (after the untimed warm-up run of every candidate).
pub const ROUNDS: usize = 7;
/// A candidate replaces the default only when its median per-round time ratio to the default is
/// at most `1 - MARGIN`.
pub const MARGIN: f64 = 0.10;
/// ... and it was faster than the default in at least this share of the rounds both ran.
pub const CONSISTENCY: f64 = 2.0 / 3.0;
/// ... and both ran in at least this many rounds.
pub const MIN_ROUNDS: usize = 5;
/// After this many rounds, a candidate slower than [`DROP_RATIO`] times the default in every one
/// of them is not timed again (it cannot win; this saves time on CPU adapters).
const DROP_AFTER: usize = 2;
const DROP_RATIO: f64 = 2.0;

/// A forward pass counts as far slower than the stored timings predict when it takes more than
/// `SLOW_FACTOR` times the predicted GEMM seconds plus [`SLOW_SLACK_S`] (the prediction covers
/// only the GEMMs: the rest of a forward, submission and readback come on top). Five: two busy
/// cores ran lavapipe's forwards 4.4x the prediction with the right kernels, while a wrong GEMM
/// choice (naive instead of blocked) is 6-8x slower.
pub const SLOW_FACTOR: f64 = 5.0;
pub const SLOW_SLACK_S: f64 = 0.05;
/// Forwards in a row that must be far slower before the cached choice is marked stale.
pub const SLOW_RUNS: u32 = 3;
/// The largest buffer the timings allocate (the large GEMM's 788 x 576 output, in f32). A device
/// whose bindings are capped below it (a test's tiny device, a constrained browser) cannot time
/// and keeps [`KernelChoice::guess`].
pub const TIMING_BYTES: u64 = 788 * 576 * 4;

/// One candidate of one decision, as measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateTiming {
    pub name: String,
    /// The median of its timed rounds, in seconds.
    pub seconds: f64,
    /// Its rate at that median, for GEMM decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gflops: Option<f64>,
    /// The median over rounds of its time over the default's in the same round (1 for the default;
    /// none where it ran in no round with the default).
    pub ratio: Option<f64>,
    /// Rounds it was timed in (fewer than [`ROUNDS`]: dropped as clearly slower).
    pub rounds: usize,
    /// Rounds in which it was faster than the default.
    pub faster_rounds: usize,
}

/// One measured choice between candidates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// `gemm`, `gemm_small`, `attention`, `f16` or `subgroups`.
    pub what: String,
    /// What was timed, e.g. `788x576x192`.
    pub shape: String,
    pub default: String,
    pub chosen: String,
    pub candidates: Vec<CandidateTiming>,
}

impl Decision {
    /// Choosing `chosen` over `default` from `seconds[candidate][round]` (NaN: not timed that
    /// round), with every candidate's summary; `flops` per run gives GEMM rates.
    pub fn from_rounds(
        what: &str,
        shape: String,
        names: &[String],
        (default, chosen): (usize, usize),
        seconds: &[Vec<f64>],
        flops: Option<f64>,
    ) -> Self {
        let candidates = names
            .iter()
            .zip(seconds)
            .enumerate()
            .map(|(i, (name, t))| {
                let ran: Vec<f64> = t.iter().copied().filter(|v| valid(*v)).collect();
                let s = summary(default, i, seconds);
                let secs = median(ran.clone()).unwrap_or(f64::NAN);
                CandidateTiming {
                    name: name.clone(),
                    seconds: secs,
                    gflops: flops.filter(|_| secs > 0.0).map(|f| f / secs / 1e9),
                    ratio: s.ratio,
                    rounds: ran.len(),
                    faster_rounds: s.faster,
                }
            })
            .collect();
        Decision {
            what: what.into(),
            shape,
            default: names.get(default).cloned().unwrap_or_default(),
            chosen: names.get(chosen).cloned().unwrap_or_default(),
            candidates,
        }
    }

    /// A candidate's measured rate (GEMM decisions).
    pub fn gflops(&self, name: &str) -> Option<f64> {
        self.candidates
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.gflops)
            .filter(|g| g.is_finite() && *g > 0.0)
    }
}

/// Every decision of one measurement, as stored with the choice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneReport {
    /// The margin a candidate had to beat the default by.
    pub margin: f64,
    /// Timed rounds per decision.
    pub rounds: usize,
    pub decisions: Vec<Decision>,
}

impl TuneReport {
    pub fn decision(&self, what: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.what == what)
    }
}

fn valid(t: f64) -> bool {
    t.is_finite() && t > 0.0
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

struct Summary {
    ratio: Option<f64>,
    rounds: usize,
    faster: usize,
}

/// Candidate `i` against the default, over the rounds both were timed in.
fn summary(default: usize, i: usize, seconds: &[Vec<f64>]) -> Summary {
    let (Some(d), Some(c)) = (seconds.get(default), seconds.get(i)) else {
        return Summary {
            ratio: None,
            rounds: 0,
            faster: 0,
        };
    };
    let ratios: Vec<f64> = c
        .iter()
        .zip(d)
        .filter(|(c, d)| valid(**c) && valid(**d))
        .map(|(c, d)| c / d)
        .collect();
    Summary {
        rounds: ratios.len(),
        faster: ratios.iter().filter(|r| **r < 1.0).count(),
        ratio: median(ratios),
    }
}

/// The rule: the candidates that may replace `default`, best first, given
/// `seconds[candidate][round]` (NaN or infinite: not timed that round). A candidate qualifies when
/// it ran in at least [`MIN_ROUNDS`] rounds with the default, its median time ratio to the
/// default over those rounds is at most `1 - MARGIN`, and it was faster in at least
/// [`CONSISTENCY`] of them; lower median ratios come first. Ratios within a round, not times
/// across rounds: load that comes and goes scales a whole round; medians, not minima: a round
/// spoiled (a compile, a busy moment) by one candidate does not decide.
pub fn qualifying(default: usize, seconds: &[Vec<f64>]) -> Vec<usize> {
    if default >= seconds.len() {
        return Vec::new();
    }
    let mut q: Vec<(usize, f64)> = (0..seconds.len())
        .filter(|&i| i != default)
        .filter_map(|i| {
            let s = summary(default, i, seconds);
            let ratio = s.ratio?;
            let consistent =
                s.rounds >= MIN_ROUNDS && s.faster as f64 >= CONSISTENCY * s.rounds as f64;
            (consistent && ratio <= 1.0 - MARGIN).then_some((i, ratio))
        })
        .collect();
    q.sort_by(|a, b| a.1.total_cmp(&b.1));
    q.into_iter().map(|(i, _)| i).collect()
}

/// One set of rounds' choice: the best of [`qualifying`], else `default`.
pub fn decide(default: usize, seconds: &[Vec<f64>]) -> usize {
    qualifying(default, seconds)
        .first()
        .copied()
        .unwrap_or(default)
}

/// The choice after confirming rounds. `first` timed every candidate; `again` timed
/// `contenders` alone (indices into `first`, the default first, then the candidates that
/// qualified there). The default stays unless a contender qualifies again in `again` alone (a win
/// that noise made seldom repeats); of several that do, the one with the lowest median ratio over
/// both sets of rounds. Returns the choice and every round, `again`'s after `first`'s (NaN for
/// the candidates it did not time).
pub fn decide_confirmed(
    first: &[Vec<f64>],
    contenders: &[usize],
    again: &[Vec<f64>],
) -> (usize, Vec<Vec<f64>>) {
    let Some(&default) = contenders.first() else {
        return (0, first.to_vec());
    };
    let extra = again.iter().map(Vec::len).max().unwrap_or(0);
    let mut all = first.to_vec();
    for (i, t) in all.iter_mut().enumerate() {
        match contenders.iter().position(|&c| c == i) {
            Some(j) if j < again.len() => {
                t.extend(&again[j]);
                t.resize(t.len() + extra - again[j].len(), f64::NAN);
            }
            _ => t.extend(std::iter::repeat_n(f64::NAN, extra)),
        }
    }
    let confirmed: Vec<usize> = qualifying(0, again)
        .into_iter()
        .filter_map(|j| contenders.get(j).copied())
        .collect();
    let chosen = confirmed
        .into_iter()
        .filter_map(|i| Some((i, summary(default, i, &all).ratio?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(default, |(i, _)| i);
    (chosen, all)
}

/// Test hooks, read from the environment natively: `ZEROPRUNE_TUNE_SLOW=<gemm kernel>[:<factor>]`
/// makes that GEMM kernel a deliberately slow candidate (each of its steps runs `factor` times,
/// 3 by default) in tuning and in [`Kernels::time_choices`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TuneHooks {
    pub slow: Option<(String, u32)>,
}

impl TuneHooks {
    pub fn from_env() -> Self {
        let slow = std::env::var("ZEROPRUNE_TUNE_SLOW")
            .ok()
            .filter(|v| !v.is_empty())
            .map(|v| match v.split_once(':') {
                Some((name, f)) => (name.to_string(), f.parse().unwrap_or(3).clamp(1, 100)),
                None => (v, 3),
            });
        TuneHooks { slow }
    }

    /// `program` with every step of the slowed GEMM kernel repeated.
    fn apply(&self, program: Program) -> Program {
        let Some((name, factor)) = &self.slow else {
            return program;
        };
        let mut steps = Vec::with_capacity(program.steps.len());
        for s in program.steps {
            let n = match s.gemm {
                Some(g) if g.kernel.name() == *name => *factor,
                _ => 1,
            };
            steps.extend(std::iter::repeat_n(s, n as usize));
        }
        Program { steps }
    }
}

/// One measurement's result per adapter (keyed by [`super::GpuContext::describe`]), kept for the
/// rest of the process.
struct PerAdapter<T>(Mutex<Vec<(String, T)>>);

/// The kernel choice of each adapter this process measured (or adopted: [`Kernels::adopt`]).
static TUNED: PerAdapter<(KernelChoice, TuneReport)> = PerAdapter::new();

impl<T: Clone> PerAdapter<T> {
    const fn new() -> Self {
        PerAdapter(Mutex::new(Vec::new()))
    }

    fn get(&self, id: &str) -> Option<T> {
        let done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        done.iter().find(|(a, _)| a == id).map(|(_, v)| v.clone())
    }

    fn put(&self, id: String, v: T) {
        let mut done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        done.retain(|(a, _)| *a != id);
        done.push((id, v));
    }
}

/// Warm up every program (its first run, where a driver may compile, is not timed), then
/// [`ROUNDS`] rounds that time every program once in an order that rotates from round to round:
/// `seconds[program][round]`, NaN where a program was dropped as clearly slower than `default`
/// (none: nothing is dropped).
async fn rounds(
    gpu: &GpuContext,
    programs: &[&Program],
    default: Option<usize>,
    count: usize,
) -> Result<Vec<Vec<f64>>> {
    for p in programs {
        gpu_time(gpu, p).await?;
    }
    let n = programs.len();
    let mut t = vec![Vec::with_capacity(count); n];
    let mut alive = vec![true; n];
    for r in 0..count {
        for j in 0..n {
            let i = (r + j) % n;
            let s = if alive[i] {
                gpu_time(gpu, programs[i]).await?
            } else {
                f64::NAN
            };
            t[i].push(s);
        }
        let Some(default) = default else { continue };
        if r + 1 == DROP_AFTER {
            for i in (0..n).filter(|&i| i != default) {
                if (0..=r).all(|q| t[i][q] > DROP_RATIO * t[default][q]) {
                    alive[i] = false;
                }
            }
        }
    }
    Ok(t)
}

/// Time `programs` ([`rounds`]) and choose by [`decide`]; a candidate that would replace the
/// default must qualify again in a second set of rounds that times the default and the first
/// set's qualifiers alone ([`decide_confirmed`]). The chosen index and every timed round.
async fn measure_and_decide(
    gpu: &GpuContext,
    programs: &[Program],
    default: usize,
) -> Result<(usize, Vec<Vec<f64>>)> {
    let all: Vec<&Program> = programs.iter().collect();
    let first = rounds(gpu, &all, Some(default), ROUNDS).await?;
    let mut contenders = vec![default];
    contenders.extend(qualifying(default, &first));
    if contenders.len() == 1 {
        return Ok((default, first));
    }
    let some: Vec<&Program> = contenders.iter().map(|&i| &programs[i]).collect();
    let again = rounds(gpu, &some, Some(0), ROUNDS).await?;
    Ok(decide_confirmed(&first, &contenders, &again))
}

/// Whether this device's bindings can hold the timings' buffers ([`TIMING_BYTES`]); an error
/// naming the limit where not, rather than an invalid buffer.
fn timing_fits(gpu: &GpuContext) -> Result<()> {
    let max = gpu.max_binding_bytes();
    if max < TIMING_BYTES {
        return Err(Error::AdapterLimit {
            what: "kernel timing".into(),
            reason: format!(
                "this device binds at most {max} bytes, the timings need {TIMING_BYTES}"
            ),
        });
    }
    Ok(())
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl Kernels {
    /// Measure the GEMM tile, the attention path, f16 and subgroup reductions on this adapter (once
    /// per adapter and process) and keep the choice: what every program built afterwards uses.
    /// Natively, a choice measured by an earlier process on this adapter and build is read from
    /// the disk cache instead ([`super::tune_cache`]).
    ///
    /// Call it when the process is otherwise idle (not while a model loads or images decode):
    /// what else runs on the machine lands in the timings.
    pub async fn tune(&self) -> Result<KernelChoice> {
        let id = self.gpu().describe();
        if let Some((choice, report)) = TUNED.get(&id) {
            self.set_choice(choice);
            self.set_tune_report(Some(report));
            return Ok(choice);
        }
        #[cfg(not(target_arch = "wasm32"))]
        if let Some((choice, report)) = super::tune_cache::lookup_report(self.gpu()) {
            self.set_choice(choice);
            self.set_tune_report(Some(report.clone()));
            TUNED.put(id, (choice, report));
            return Ok(choice);
        }
        if timing_fits(self.gpu()).is_err() {
            let choice = KernelChoice::guess(self.gpu());
            self.set_choice(choice);
            self.set_tune_report(None);
            return Ok(choice);
        }
        let mut decisions = self.gemm_decisions().await?.to_vec();
        decisions.push(self.attention_decision().await?);
        decisions.extend(self.f16_decision().await?);
        decisions.extend(self.subgroups_decision().await?);
        let report = TuneReport {
            margin: MARGIN,
            rounds: ROUNDS,
            decisions,
        };
        let choice = self.choice();
        self.set_tune_report(Some(report.clone()));
        #[cfg(not(target_arch = "wasm32"))]
        super::tune_cache::store(self.gpu(), choice, &report);
        TUNED.put(id, (choice, report));
        Ok(choice)
    }

    /// Take a choice an earlier process measured on this adapter (the browser keeps it in the
    /// page's storage, as the native binary keeps it on disk): [`Kernels::tune`] then returns it
    /// without measuring. The caller checks that it was measured on this adapter by this build.
    pub fn adopt(&self, choice: KernelChoice, report: TuneReport) {
        self.set_choice(choice);
        self.set_tune_report(Some(report.clone()));
        TUNED.put(self.gpu().describe(), (choice, report));
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

    /// Measure the GEMM kernels (see [`Kernels::gemm_decisions`]) and use the chosen ones.
    /// Returns the large products' kernel.
    pub async fn tune_gemm(&self) -> Result<GemmKernel> {
        self.gemm_decisions().await?;
        Ok(self.choice().gemm)
    }

    /// Time every [`GemmKernel::CANDIDATES`] on two products and choose for each by [`decide`]
    /// against [`KernelChoice::guess`]: four DeiT-Tiny images' QKV (788 x 576 x 192) for large
    /// products and one image's fc2 (197 x 192 x 768) for small ones ([`SMALL_GEMM_OUTPUTS`]),
    /// among the kernels whose tiles have at most 64 rows ([`GemmKernel::fits_small_products`]).
    /// A few seconds on a CPU adapter, milliseconds on a GPU. Sets the choice's GEMM kernels.
    pub async fn gemm_decisions(&self) -> Result<[Decision; 2]> {
        static TUNED: PerAdapter<[Decision; 2]> = PerAdapter::new();
        let id = self.gpu().describe();
        let decisions = match TUNED.get(&id) {
            Some(d) => d,
            None => {
                let guess = KernelChoice::guess(self.gpu());
                let d = [
                    self.gemm_decision("gemm", (788, 576, 192), guess.gemm, |_| true)
                        .await?,
                    self.gemm_decision(
                        "gemm_small",
                        (197, 192, 768),
                        guess.gemm_small,
                        GemmKernel::fits_small_products,
                    )
                    .await?,
                ];
                TUNED.put(id, d.clone());
                d
            }
        };
        let kernel = |d: &Decision, fallback: GemmKernel| {
            GemmKernel::CANDIDATES
                .iter()
                .copied()
                .find(|k| k.name() == d.chosen)
                .unwrap_or(fallback)
        };
        let guess = KernelChoice::guess(self.gpu());
        self.set_gemm_kernels(
            kernel(&decisions[0], guess.gemm),
            kernel(&decisions[1], guess.gemm_small),
        );
        Ok(decisions)
    }

    /// One GEMM decision on an `m x n x k` product among the eligible candidates.
    async fn gemm_decision(
        &self,
        what: &str,
        (m, n, kk): (usize, usize, usize),
        default: GemmKernel,
        eligible: impl Fn(&GemmKernel) -> bool,
    ) -> Result<Decision> {
        let gpu = self.gpu();
        timing_fits(gpu)?;
        let hooks = TuneHooks::from_env();
        let a = GpuTensor::from_slice(gpu, "tune a", &vec![0.01f32; m * kk]);
        let b = GpuTensor::from_slice(gpu, "tune b", &vec![0.01f32; kk * n]);
        let c = GpuTensor::zeros(gpu, "tune c", m * n);
        let mut kernels: Vec<GemmKernel> = GemmKernel::CANDIDATES
            .iter()
            .copied()
            .filter(|k| eligible(k))
            .collect();
        if !kernels.contains(&default) {
            kernels.insert(0, default);
        }
        // Every pipeline is created here, before anything is timed.
        let programs = kernels
            .iter()
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
                Ok(hooks.apply(Program { steps: vec![step] }))
            })
            .collect::<Result<Vec<_>>>()?;
        let d = kernels.iter().position(|k| *k == default).unwrap_or(0);
        let (chosen, seconds) = measure_and_decide(gpu, &programs, d).await?;
        let names: Vec<String> = kernels.iter().map(|k| k.name()).collect();
        Ok(Decision::from_rounds(
            what,
            format!("{m}x{n}x{kk}"),
            &names,
            (d, chosen),
            &seconds,
            Some(Gemm::new(m, n, kk).flops()),
        ))
    }

    /// Measure fused against unfused attention (see [`Kernels::attention_decision`]) and use the
    /// chosen one.
    pub async fn tune_attention(&self) -> Result<bool> {
        self.attention_decision().await?;
        Ok(self.fused_attention())
    }

    /// Time the fused attention against the unfused steps (with the current GEMM kernel) on two
    /// DeiT-Tiny images (197 tokens, 3 heads of 64) and choose by [`decide`], the guess's
    /// ([`KernelChoice::guess`]) by default.
    pub async fn attention_decision(&self) -> Result<Decision> {
        static TUNED: PerAdapter<Decision> = PerAdapter::new();
        let id = self.gpu().describe();
        let decision = match TUNED.get(&id) {
            Some(d) => d,
            None => {
                let programs = [
                    self.attention_program(false, 2)?,
                    self.attention_program(true, 2)?,
                ];
                let default = usize::from(KernelChoice::guess(self.gpu()).fused_attention);
                let (chosen, seconds) = measure_and_decide(self.gpu(), &programs, default).await?;
                let d = Decision::from_rounds(
                    "attention",
                    "2x197 tokens, 3 heads of 64".into(),
                    &names(&["unfused", "fused"]),
                    (default, chosen),
                    &seconds,
                    None,
                );
                TUNED.put(id, d.clone());
                d
            }
        };
        self.set_fused_attention(decision.chosen == "fused");
        Ok(decision)
    }

    /// One attention layer of `b` DeiT-Tiny images: fused, or scores GEMM, softmax, context GEMM.
    fn attention_program(&self, fused: bool, b: usize) -> Result<Program> {
        let gpu = self.gpu();
        timing_fits(gpu)?;
        let (n, h, dh) = (197, 3, 64);
        let d = h * dh;
        let qkv = GpuTensor::from_slice(gpu, "tune qkv", &vec![0.01f32; b * n * 3 * d]);
        let out = GpuTensor::zeros(gpu, "tune out", b * n * d);
        let mut p = Program::default();
        if fused {
            p.push(self.attention(
                "tune",
                &qkv,
                &out,
                (b, n, d, h),
                0.125,
                AttentionBias::default(),
            )?);
            return Ok(p);
        }
        let probs = GpuTensor::zeros(gpu, "tune probs", b * h * n * n);
        let q = MatView::rows(&qkv, 3 * d).batched(n * 3 * d, dh);
        let pm = MatView::rows(&probs, n).batched(h * n * n, n * n);
        let heads = |g: Gemm<'static>| Gemm {
            outer: b,
            heads: h,
            ..g
        };
        p.push(self.gemm(
            "tune",
            q,
            q.at(d).strides(1, 3 * d),
            pm,
            heads(Gemm::new(n, n, dh)),
        )?);
        p.push(self.softmax_rows("tune", &probs, b * h * n, n, n)?);
        let o = MatView::rows(&out, d).batched(n * d, dh);
        p.push(self.gemm("tune", pm, q.at(2 * d), o, heads(Gemm::new(n, dh, n)))?);
        Ok(p)
    }

    /// Measure f16 against f32 storage (see [`Kernels::f16_decision`]) and record the choice.
    pub async fn tune_f16(&self) -> Result<bool> {
        self.f16_decision().await?;
        Ok(self.f16())
    }

    /// Time an MLP's two GEMMs (fc1 with GELU into the hidden layer, fc2 accumulating into the
    /// residual; two DeiT-Tiny images) with f16 storage against f32, with the current GEMM kernel,
    /// and choose by [`decide`], f32 by default. None (and f32) without shader-f16.
    pub async fn f16_decision(&self) -> Result<Option<Decision>> {
        static TUNED: PerAdapter<Option<Decision>> = PerAdapter::new();
        let id = self.gpu().describe();
        let decision = match TUNED.get(&id) {
            Some(d) => d,
            None => {
                let d = if self.gpu().has_f16() {
                    let programs = [
                        self.mlp_program(Elem::F32, 394)?,
                        self.mlp_program(Elem::F16, 394)?,
                    ];
                    let (chosen, seconds) = measure_and_decide(self.gpu(), &programs, 0).await?;
                    Some(Decision::from_rounds(
                        "f16",
                        "MLP 394x192x768".into(),
                        &names(&["f32", "f16"]),
                        (0, chosen),
                        &seconds,
                        None,
                    ))
                } else {
                    None
                };
                TUNED.put(id, d.clone());
                d
            }
        };
        self.set_f16(decision.as_ref().is_some_and(|d| d.chosen == "f16"));
        Ok(decision)
    }

    /// An MLP's fc1 (GELU) and fc2 (accumulating) on `m` rows, operands stored as `elem`.
    fn mlp_program(&self, elem: Elem, m: usize) -> Result<Program> {
        let gpu = self.gpu();
        timing_fits(gpu)?;
        let (d, mlp) = (192, 768);
        let bias = GpuTensor::from_slice(gpu, "tune bias", &vec![0.0f32; mlp]);
        let x = GpuTensor::zeros(gpu, "tune x", m * d);
        let t = |len: usize| GpuTensor::from_f32(gpu, "tune", &vec![0.01f32; len], elem);
        let (xn, w1, w2, hidden) = (t(m * d), t(d * mlp), t(mlp * d), t(m * mlp));
        let fc1 = Gemm {
            bias: Some(&bias),
            activation: crate::gpu::kernels::Activation::Gelu,
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
    }

    /// Measure subgroup against workgroup reductions (see [`Kernels::subgroups_decision`]) and use
    /// the chosen ones.
    pub async fn tune_subgroups(&self) -> Result<bool> {
        self.subgroups_decision().await?;
        Ok(self.choice().subgroups)
    }

    /// Time softmax and LayerNorm (the rows of two DeiT-Tiny images' attention and tokens) with
    /// subgroup reductions against workgroup ones, and choose by [`decide`], the guess's by default.
    /// None (and workgroup) where the adapter has no usable subgroups
    /// ([`GpuContext::reduce_subgroup_width`]).
    pub async fn subgroups_decision(&self) -> Result<Option<Decision>> {
        static TUNED: PerAdapter<Option<Decision>> = PerAdapter::new();
        let id = self.gpu().describe();
        let decision = match TUNED.get(&id) {
            Some(d) => d,
            None => {
                let d = if self.gpu().reduce_subgroup_width().is_some() {
                    let mut programs = Vec::new();
                    for on in [false, true] {
                        self.set_subgroups(on);
                        programs.push(self.reductions_program(2)?);
                    }
                    let default = usize::from(KernelChoice::guess(self.gpu()).subgroups);
                    let (chosen, seconds) =
                        measure_and_decide(self.gpu(), &programs, default).await?;
                    Some(Decision::from_rounds(
                        "subgroups",
                        "softmax + LayerNorm, 2 images".into(),
                        &names(&["workgroup", "subgroup"]),
                        (default, chosen),
                        &seconds,
                        None,
                    ))
                } else {
                    None
                };
                TUNED.put(id, d.clone());
                d
            }
        };
        self.set_subgroups(decision.as_ref().is_some_and(|d| d.chosen == "subgroup"));
        Ok(decision)
    }

    /// Softmax over `b` DeiT-Tiny images' attention rows and a LayerNorm over their tokens, with
    /// the current reductions.
    fn reductions_program(&self, b: usize) -> Result<Program> {
        let gpu = self.gpu();
        timing_fits(gpu)?;
        let (n, h, d) = (197, 3, 192);
        let probs = GpuTensor::from_slice(gpu, "tune probs", &vec![0.01f32; b * h * n * n]);
        let x = GpuTensor::from_slice(gpu, "tune x", &vec![0.01f32; b * n * d]);
        let y = GpuTensor::zeros(gpu, "tune y", b * n * d);
        let gamma = GpuTensor::from_slice(gpu, "tune gamma", &vec![1.0f32; d]);
        let beta = GpuTensor::zeros(gpu, "tune beta", d);
        let rows = |t| RowView::dense(t, d);
        Ok(Program {
            steps: vec![
                self.softmax_rows("tune", &probs, b * h * n, n, n)?,
                self.layernorm("tune", rows(&x), rows(&y), b * n, d, &gamma, &beta, 1e-6)?,
            ],
        })
    }

    /// The work of one DeiT-Tiny block as `choice` runs it, at batch 8 (large products) and batch
    /// 1 (small ones): QKV, attention (fused or not), the MLP (f16 where chosen and available),
    /// softmax and LayerNorm rows.
    fn choice_program(&self, choice: KernelChoice, hooks: &TuneHooks) -> Result<Program> {
        let before = self.choice();
        self.set_choice(choice);
        let built = (|| {
            let gpu = self.gpu();
            let mut p = Program::default();
            for b in [8, 1] {
                let (m, d) = (197 * b, 192);
                let x = GpuTensor::from_slice(gpu, "time x", &vec![0.01f32; m * d]);
                let w = GpuTensor::from_slice(gpu, "time w", &vec![0.01f32; d * 3 * d]);
                let qkv = GpuTensor::zeros(gpu, "time qkv", m * 3 * d);
                p.push(self.gemm(
                    "time",
                    MatView::rows(&x, d),
                    MatView::rows(&w, 3 * d),
                    MatView::rows(&qkv, 3 * d),
                    Gemm::new(m, 3 * d, d),
                )?);
                p.extend(self.attention_program(choice.fused_attention, b)?.steps);
                let elem = if choice.f16 && gpu.has_f16() {
                    Elem::F16
                } else {
                    Elem::F32
                };
                p.extend(self.mlp_program(elem, m)?.steps);
                p.extend(self.reductions_program(b)?.steps);
            }
            Ok(hooks.apply(p))
        })();
        self.set_choice(before);
        built
    }

    /// Seconds per choice: one DeiT-Tiny block's work at batches 8 and 1 as each choice runs it,
    /// each step's time the fastest it ran in `runs` interleaved rounds (every choice once per
    /// round, in an order that rotates) after an untimed warm-up. Per step, because on a busy
    /// machine a whole forward seldom runs undisturbed but each short step does in some round:
    /// for comparing kernel choices (tests, benchmarks). `hooks` slow a candidate as in tuning.
    /// This library's choice is left as it was.
    pub async fn time_choices(
        &self,
        choices: &[KernelChoice],
        runs: usize,
        hooks: &TuneHooks,
    ) -> Result<Vec<f64>> {
        let gpu = self.gpu();
        let programs = choices
            .iter()
            .map(|&c| self.choice_program(c, hooks))
            .collect::<Result<Vec<_>>>()?;
        for p in &programs {
            p.profile(gpu).await?;
        }
        let mut best: Vec<Vec<f64>> = programs
            .iter()
            .map(|p| vec![f64::INFINITY; p.steps.len()])
            .collect();
        let n = programs.len();
        for r in 0..runs.max(1) {
            for j in 0..n {
                let i = (r + j) % n;
                let t = programs[i].profile(gpu).await?;
                for (b, s) in best[i].iter_mut().zip(t) {
                    *b = b.min(s);
                }
            }
        }
        Ok(best.iter().map(|b| b.iter().sum()).collect())
    }

    /// [`Kernels::time_choices`] for native callers.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_choices_blocking(
        &self,
        choices: &[KernelChoice],
        runs: usize,
        hooks: &TuneHooks,
    ) -> Result<Vec<f64>> {
        pollster::block_on(self.time_choices(choices, runs, hooks))
    }

    /// Seconds the GEMMs of `program` should take by the stored timings (each GEMM step's FLOPs
    /// over its kernel's measured rate for its size class); none without timings, without GEMMs,
    /// or where a step's kernel was not measured.
    pub fn predicted_gemm_seconds(&self, program: &Program) -> Option<f64> {
        let report = self.tune_report()?;
        let (large, small) = (report.decision("gemm")?, report.decision("gemm_small")?);
        let mut total = 0.0;
        for g in program.steps.iter().filter_map(|s| s.gemm) {
            let d = if g.outputs < SMALL_GEMM_OUTPUTS {
                small
            } else {
                large
            };
            let rate = d
                .gflops(&g.kernel.name())
                .or_else(|| large.gflops(&g.kernel.name()))?;
            total += g.flops / (rate * 1e9);
        }
        (total > 0.0).then_some(total)
    }

    /// Report one forward pass: `program` took `seconds` (wall clock, from its submission to its
    /// readback). When [`SLOW_RUNS`] forwards in a row take more than [`SLOW_FACTOR`] times what
    /// the stored GEMM timings predict (plus [`SLOW_SLACK_S`]), the choice was measured under
    /// conditions that no longer hold, or wrongly: the cached entry is marked stale, so that the
    /// next process measures again. Returns whether it marked it now (at most once per
    /// [`Kernels`]). Cheap: a sum over the program's steps.
    pub fn note_forward(&self, program: &Program, seconds: f64) -> bool {
        let Some(predicted) = self.slow_forward_streak(program, seconds) else {
            return false;
        };
        // The browser has no cache to mark: it measures on every page load.
        #[cfg(target_arch = "wasm32")]
        let _ = predicted;
        #[cfg(not(target_arch = "wasm32"))]
        super::tune_cache::mark_stale(
            self.gpu(),
            &format!(
                "{SLOW_RUNS} forwards in a row ran far slower than the stored GEMM timings predict \
                 (last: {:.0} ms, its GEMMs predicted {:.0} ms)",
                seconds * 1e3,
                predicted * 1e3
            ),
        );
        true
    }

    /// The counting half of [`Kernels::note_forward`], which touches no cache: the predicted GEMM
    /// seconds when this forward completes the first streak of [`SLOW_RUNS`] far slower ones.
    pub fn slow_forward_streak(&self, program: &Program, seconds: f64) -> Option<f64> {
        let predicted = self.predicted_gemm_seconds(program)?;
        if !seconds.is_finite() {
            return None;
        }
        let slow = seconds > SLOW_FACTOR * predicted + SLOW_SLACK_S;
        let mut w = self.slow_watch.lock().unwrap_or_else(|e| e.into_inner());
        if w.marked {
            return None;
        }
        if !slow {
            w.in_a_row = 0;
            return None;
        }
        w.in_a_row += 1;
        if w.in_a_row < SLOW_RUNS {
            return None;
        }
        w.marked = true;
        Some(predicted)
    }
}
