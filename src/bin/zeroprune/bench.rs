//! `zeroprune bench`: forward latency per batch size, dense and pruned interleaved in one run, with
//! a per-kernel breakdown from GPU timestamps; or the GEMM and attention kernels alone.

use std::fmt;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use zeroprune::eval::driver::Setting;
use zeroprune::eval::report::{with_unit, Unit};
use zeroprune::eval::stats::{median_ratio, median_spread};
use zeroprune::eval::task::Answers;
use zeroprune::gpu::kernel::Elem;
use zeroprune::gpu::kernels::{AttentionBias, Gemm, GemmKernel, MatView};
use zeroprune::gpu::{
    gpu_time_blocking, time_program_blocking, GpuContext, GpuTensor, KernelChoice, Kernels, Phase,
    Program, StepShape,
};
use zeroprune::model::{Family, ItemOutput, Precision, TokenGeometry};
use zeroprune::prune::{Policy, PruneRequest, Pruner, Pruning};
use zeroprune::session::StepTime;
use zeroprune::{Error, Mode, Result, Session};

use crate::common::{emit, open_gpu, table};
use crate::data::{text_model, DataArgs, Source};
use crate::prune_args::PruneArgs;
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
    /// Timed runs per measurement (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Benchmark the kernels alone instead of the model: every GEMM variant (naive, tiled, register-blocked
    /// tiles) on DeiT-Tiny's layer shapes, fused vs unfused attention, and a CPU GEMM (matrixmultiply), in one run.
    /// Then a GPU-shape audit: the invocations each kernel family launches at batch 1 and 8 in the programs of
    /// --model (default random:deit-tiny), dense and every policy at 65% of the FLOPs, built with a GPU adapter's
    /// kernel choice (not run); families under 4096 invocations at batch 1 are flagged with the reason.
    #[arg(long, conflicts_with_all = ["images", "texts", "soak"])]
    kernels: bool,
    /// A soak test instead (an image model): N forward passes over changing batch sizes and
    /// policies, sampling GPU buffer memory and the process's resident memory; after the warm-up
    /// both must stop growing.
    #[arg(long, value_name = "N", conflicts_with = "texts")]
    soak: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// More policies to time in the same run, each with the schedule given (e.g. --flops 0.65),
    /// comma-separated: every row of one run shares the same adapter state.
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    /// Real images as the input (the first of the folder by name, repeated to fill a batch). Without
    /// it every image is a constant grey, which times fixed-count policies the same but leaves
    /// threshold pruning (which keeps what the attention says) nothing real to keep.
    #[arg(long, value_name = "DIR")]
    images: Option<std::path::PathBuf>,
    /// A text encoder instead (--model is then a BERT-family folder): batches of the first
    /// sentences of this file's --split (`split<TAB>label<TAB>sentence`), ragged as they come.
    #[arg(long, value_name = "FILE", conflicts_with = "images")]
    texts: Option<std::path::PathBuf>,
    /// With --texts: the split whose sentences are timed.
    #[arg(long, requires = "texts", default_value = "test")]
    split: String,
    /// Schedule files (from `zeroprune tune`) to time in the same run, comma-separated (image
    /// models: a schedule file holds one geometry's token counts).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "FILES",
        conflicts_with = "texts"
    )]
    schedules: Vec<std::path::PathBuf>,
    /// Time several storage precisions in the same run (e.g. f32,f16), one model copy each, every
    /// row interleaved; `vs_first_precision` is each row's speed against the first one's. Default:
    /// --precision alone.
    #[arg(long, value_enum, value_delimiter = ',')]
    precisions: Vec<Precision>,
    #[command(flatten)]
    prune: PruneArgs,
}

/// GPU milliseconds of a pruned pass's pruning steps, by phase.
#[derive(Serialize, Default)]
struct PruneTime {
    scoring: f64,
    selection: f64,
    compaction: f64,
    merging: f64,
}

/// GPU time of one kernel family (a step label without its block), summed over blocks.
#[derive(Serialize)]
struct KernelFamily {
    family: String,
    phase: Phase,
    gpu_ms: f64,
    share: f64,
    steps: usize,
    /// Whether the family is part of a pruning step.
    prune: bool,
}

#[derive(Serialize)]
struct BenchRow {
    batch: usize,
    /// What the weights were stored as (f32 or f16) and the --precision that chose it.
    storage: Elem,
    precision: Precision,
    policy: Policy,
    schedule: String,
    latency_ms: f64,
    min_ms: f64,
    max_ms: f64,
    spread_pct: f64,
    items_per_s: f64,
    gflops_per_item: f64,
    achieved_gflops_per_s: f64,
    flops_ratio: f64,
    /// Dense latency over this row's, same batch and precision: the median over rounds of the
    /// ratio within a round (each round plays every row once, back to back).
    speedup: f64,
    /// The same schedule's latency at the first precision over this row's (1 for the first),
    /// paired by round like `speedup`.
    vs_first_precision: f64,
    /// Share of the pass's GPU time in pruning steps (scoring, selection, compaction, merging).
    prune_overhead_share: f64,
    prune_overhead_source: &'static str,
    prune_gpu_ms: PruneTime,
    dispatches: usize,
    submits: usize,
    gemm_kernel: String,
    /// The GEMM of products below `SMALL_GEMM_OUTPUTS` outputs.
    gemm_kernel_small: String,
    fused_attention: bool,
    subgroup_reductions: bool,
    kernels: Vec<KernelFamily>,
    /// Texts: forward passes per run (pruned, one per text length), the longest and mean text,
    /// and the share of a dense batch's rows that are padding.
    #[serde(skip_serializing_if = "Option::is_none")]
    passes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_max: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    padding_share: Option<f64>,
}

#[derive(Serialize)]
struct BenchOutput {
    model: String,
    adapter: String,
    runs: usize,
    results: Vec<BenchRow>,
    #[serde(skip)]
    unit: Unit,
}

/// The output with its keys named for its unit (`images_per_s`, `gflops_per_text`, ...).
struct Report(BenchOutput);

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        with_unit(&self.0, self.0.unit).serialize(s)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for BenchOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model: {}  adapter: {}", self.model, self.adapter)?;
        let unit = self.unit.name();
        let (per_s, per_item) = (format!("{unit}s_per_s"), format!("gflops_per_{unit}"));
        let header = [
            "batch",
            "storage",
            "policy",
            "schedule",
            "latency_ms",
            "spread_pct",
            &per_s,
            &per_item,
            "achieved_gflops_per_s",
            "flops_ratio",
            "speedup",
            "vs_first_precision",
            "prune_overhead_share",
            "dispatches",
        ];
        let rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                let mut schedule = r.schedule.clone();
                if schedule.len() > 28 {
                    schedule.truncate(26);
                    schedule += "..";
                }
                vec![
                    r.batch.to_string(),
                    r.storage.name().to_string(),
                    r.policy.to_string(),
                    schedule,
                    format!("{:.2}", r.latency_ms),
                    format!("{:.2}", r.spread_pct),
                    format!("{:.2}", r.items_per_s),
                    format!("{:.3}", r.gflops_per_item),
                    format!("{:.2}", r.achieved_gflops_per_s),
                    format!("{:.3}", r.flops_ratio),
                    format!("{:.2}", r.speedup),
                    format!("{:.2}", r.vs_first_precision),
                    format!("{:.3}", r.prune_overhead_share),
                    r.dispatches.to_string(),
                ]
            })
            .collect();
        write!(f, "{}", table(&header, &rows))?;
        for r in &self.results {
            writeln!(
                f,
                "\nbatch {} {} {} ({}): GEMM kernel {} ({} for small products), fused attention {}, subgroup reductions {}, times from {}",
                r.batch,
                r.storage.name(),
                r.policy,
                r.schedule,
                r.gemm_kernel,
                r.gemm_kernel_small,
                r.fused_attention,
                r.subgroup_reductions,
                r.prune_overhead_source
            )?;
            let rows: Vec<Vec<String>> = r
                .kernels
                .iter()
                .map(|k| {
                    vec![
                        k.family.clone(),
                        k.phase.name().to_string(),
                        format!("{:.2}", k.gpu_ms),
                        format!("{:.1}%", 100.0 * k.share),
                        k.steps.to_string(),
                    ]
                })
                .collect();
            write!(
                f,
                "{}",
                table(
                    &["kernel family", "phase", "GPU ms", "share", "steps"],
                    &rows
                )
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct KernelRow {
    kernel: String,
    shape: String,
    ms: f64,
    gflops_per_s: f64,
    vs_baseline: f64,
}

#[derive(Serialize)]
struct KernelsOutput {
    adapter: String,
    results: Vec<KernelRow>,
    gpu_shape: GpuShape,
}

impl fmt::Display for KernelsOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_timings(f)?;
        writeln!(f)?;
        self.gpu_shape.fmt(f)
    }
}

impl KernelsOutput {
    fn fmt_timings(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "adapter: {}", self.adapter)?;
        let rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                vec![
                    r.shape.clone(),
                    r.kernel.clone(),
                    format!("{:.2}", r.ms),
                    format!("{:.2}", r.gflops_per_s),
                    format!("{:.2}", r.vs_baseline),
                ]
            })
            .collect();
        write!(
            f,
            "{}",
            table(
                &["shape", "kernel", "ms", "gflops_per_s", "vs_baseline"],
                &rows
            )
        )
    }
}

/// Invocations one dispatch should launch at batch 1 to give a GPU enough work: a kernel family
/// below it at batch 1 is flagged in the GPU-shape audit.
const TARGET_INVOCATIONS: u64 = 4096;

/// The FLOPs target the audit builds every policy's program at.
const AUDIT_FLOPS: f64 = 0.65;

/// What launches fewer than [`TARGET_INVOCATIONS`] at batch 1 on DeiT-Tiny, and why, by kernel
/// family (a step label without its block). Read from the shaders and their launchers; a family
/// below the target that is not listed prints [`NO_REASON`].
const SHAPE_REASONS: &[(&str, &str)] = &[
    // GEMMs at batch 1 run the small-product kernel: tiled64, 64x64 tiles of 256 invocations.
    (
        "patch_embed.proj",
        "one image's 196 patches x 192 outputs in 64x64 tiles of 256 invocations (tiled64): 12 \
         tiles; 4096 needs 16, so smaller tiles or a split k (not built)",
    ),
    ("proj", GEMM_197X192),
    ("fc2", GEMM_197X192),
    (
        "qkv",
        "576 outputs a row in 64x64 tiles of 256 invocations (tiled64): 9 tiles per 64 rows, 36 \
         dense; below in blocks pruned to 64 rows or fewer",
    ),
    (
        "fc1",
        "768 outputs a row in 64x64 tiles of 256 invocations (tiled64): 12 tiles per 64 rows, 48 \
         dense; below in blocks pruned to 64 rows or fewer",
    ),
    (
        "scores",
        "Q.K^T per head, n x n in 64x64 tiles of 256 invocations (tiled64): 3 heads x ceil(n/64)^2 \
         tiles, 48 at 197 tokens; below in blocks of 128 tokens or fewer",
    ),
    (
        "context",
        "P.V per head, n x 64 (the head dim) in 64x64 tiles of 256 invocations (tiled64): 3 heads x \
         ceil(n/64) tiles, 12 at 197 tokens; more needs smaller tiles or the keys split (not built)",
    ),
    (
        "attention",
        "one invocation per query, the 32 of a workgroup share (image, head): 3 heads x 197 \
         queries (21 workgroups) at batch 1; more needs the keys split across invocations and a \
         pass combining the partial softmaxes (not built)",
    ),
    (
        "softmax",
        "one workgroup of 32 per probability row (image x head x query): 3 x n rows, below in \
         blocks of 42 tokens or fewer",
    ),
    ("norm1", LAYERNORM_ROWS),
    ("norm2", LAYERNORM_ROWS),
    (
        "norm",
        "the last LayerNorm runs on the class token alone, the only row the head reads: one \
         workgroup of 32 per image",
    ),
    // Pruning steps.
    (
        "prune.received_attention",
        "one invocation per (image, token), each summing its column over 3 heads x all queries: \
         197 at batch 1; spreading that sum needs a second reduction pass",
    ),
    (
        "prune.cls_attention",
        "one invocation per (image, token), 3 loads each: 197 at batch 1, the whole job",
    ),
    (
        "prune.random",
        "one invocation per (image, token), one hash each: 197 at batch 1, the whole job",
    ),
    ("prune.similarity", BEST_MATCH),
    ("prune.match", BEST_MATCH),
    (
        "prune.energy",
        "one invocation per (image, token), each summing its cosine to every patch token: 197 at \
         batch 1; spreading that sum needs a second reduction pass",
    ),
    (
        "prune.metric",
        "one invocation per (image, token, key column): tokens x 64, below in blocks of fewer \
         than 64 tokens",
    ),
    (
        "prune.pagerank",
        "one workgroup per (image, head): each iteration needs the whole score vector, so a \
         dispatch per iteration would be needed",
    ),
    (
        "prune.combine_heads",
        "one workgroup per image: the band rule needs every head's variance over all the image's \
         tokens before any token's score",
    ),
    ("prune.topk", SORT_PER_IMAGE),
    ("prune.important_half", SORT_PER_IMAGE),
    ("prune.drop_similar", SORT_PER_IMAGE),
    ("prune.merge_select", SORT_PER_IMAGE),
    ("prune.protect", SORT_PER_IMAGE),
    ("prune.energy_pairs", SORT_PER_IMAGE),
    (
        "prune.threshold",
        "one workgroup of 256 per image: how many rows pass, and the best row when none does, \
         are reductions over the whole image",
    ),
    (
        "prune.compact",
        "one workgroup of 256 per image: a prefix sum over the image's keep flags in workgroup \
         memory",
    ),
    (
        "prune.compact_gather",
        "workgroups of 256 over 8 kept rows each (every one redoes its image's prefix sum): below \
         under 128 kept rows at batch 1",
    ),
    ("prune.gather", VEC4_ROWS),
    ("prune.copy", VEC4_ROWS),
    (
        "prune.merge",
        "one workgroup of 64 per kept row, its invocations striding over the row's 192 columns: \
         below under 64 kept rows",
    ),
    (
        "prune.live_rows",
        "one invocation per row of the batch (197 at batch 1), a few loads each: the whole job",
    ),
];

const GEMM_197X192: &str = "197 x 192 outputs an image in 64x64 tiles of 256 invocations \
     (tiled64): 12 tiles, fewer in pruned blocks; 4096 needs 16, so smaller tiles or a split k \
     (not built)";

const LAYERNORM_ROWS: &str = "one workgroup of 32 per row: 197 rows dense (6304), below in \
     blocks that keep fewer than 128 rows";

const BEST_MATCH: &str = "one invocation per (image, token), each scanning every destination \
     token for its best cosine: 197 at batch 1; spreading the scan needs a second reduction pass";

const SORT_PER_IMAGE: &str = "one workgroup of 256 per image: a bitonic sort of the image's \
     scores in workgroup memory, since every rank depends on the whole image";

const VEC4_ROWS: &str = "one invocation per 4 values of the rows moved (48 per row of 192): \
     below when 85 rows or fewer are kept";

/// What a kernel family below the target without an entry in [`SHAPE_REASONS`] says.
const NO_REASON: &str = "no reason recorded";

/// The GPU-shape audit: what every kernel family launches in the programs of the model, dense and
/// pruned by every policy, at batch 1 and 8, under the kernel choice of a GPU adapter.
#[derive(Serialize)]
struct GpuShape {
    model: String,
    /// The kernel choice the programs were built with (a GPU adapter's default, on any machine).
    gemm_kernel: String,
    gemm_kernel_small: String,
    fused_attention: bool,
    subgroup_reductions: bool,
    target_invocations: u64,
    /// One row per kernel family over every program: the dense program's figures and the
    /// program's where the family launches the fewest invocations at batch 1.
    kernels: Vec<FamilyShape>,
    /// Every program's kernel families.
    programs: Vec<ShapeProgram>,
}

/// One kernel family over every program of the audit.
#[derive(Serialize)]
struct FamilyShape {
    family: String,
    phase: Phase,
    /// In the dense program (none for a pruning step).
    dense: Option<ShapePair>,
    /// In the program where the family launches the fewest invocations at batch 1 (dense first
    /// among equals): that program at batch 1 and at batch 8.
    fewest: ShapePair,
    fewest_policy: Policy,
    /// Whether `fewest` launches fewer than `target_invocations` at batch 1.
    below_target: bool,
    /// Why, where it is below (null where it is not), as in [`ShapeRow`].
    reason: Option<&'static str>,
}

#[derive(Serialize, Clone, Copy)]
struct ShapePair {
    batch_1: ShapeAt,
    batch_8: ShapeAt,
}

/// One program's kernel families.
#[derive(Serialize)]
struct ShapeProgram {
    policy: Policy,
    /// How its schedule was asked for (`--flops 0.65`, or the policy's default and why).
    request: String,
    /// The tokens kept after each pruning block (`dense` without pruning).
    schedule: String,
    kernels: Vec<ShapeRow>,
}

/// One kernel family of a program: at each batch size the step of the family that launches the
/// fewest invocations.
#[derive(Serialize)]
struct ShapeRow {
    family: String,
    phase: Phase,
    /// Steps of the family in one forward pass (batch 1).
    steps: usize,
    batch_1: ShapeAt,
    batch_8: ShapeAt,
    /// Whether batch 1 launches fewer than `target_invocations`.
    below_target: bool,
    /// Why, where it is below: [`SHAPE_REASONS`], else "no reason recorded" (null where it is
    /// not below).
    reason: Option<&'static str>,
}

/// The fewest invocations one step of a family launches at one batch size, and that step's grid.
#[derive(Serialize, Clone, Copy)]
struct ShapeAt {
    /// Workgroups launched (the product of the grid).
    workgroups: u64,
    /// Invocations per workgroup along x, y and z, as the shader module declares them.
    workgroup_size: [u32; 3],
    /// `workgroups` times the invocations of one workgroup.
    invocations: u64,
}

impl ShapeAt {
    fn size(&self) -> String {
        let [x, y, z] = self.workgroup_size;
        match (y, z) {
            (1, 1) => x.to_string(),
            (_, 1) => format!("{x}x{y}"),
            _ => format!("{x}x{y}x{z}"),
        }
    }
}

/// Why `family` launches fewer than the target at batch 1: [`SHAPE_REASONS`], else
/// [`NO_REASON`].
fn shape_reason(family: &str) -> &'static str {
    SHAPE_REASONS
        .iter()
        .find(|(f, _)| *f == family)
        .map_or(NO_REASON, |(_, why)| why)
}

/// One row per kernel family, in the order the families first appear in the programs.
fn family_shapes(programs: &[ShapeProgram]) -> Vec<FamilyShape> {
    let mut out: Vec<FamilyShape> = Vec::new();
    for p in programs {
        for k in &p.kernels {
            let pair = ShapePair {
                batch_1: k.batch_1,
                batch_8: k.batch_8,
            };
            match out.iter_mut().find(|f| f.family == k.family) {
                Some(f) => {
                    if k.batch_1.invocations < f.fewest.batch_1.invocations {
                        f.fewest = pair;
                        f.fewest_policy = p.policy;
                    }
                }
                None => out.push(FamilyShape {
                    family: k.family.clone(),
                    phase: k.phase,
                    dense: p.policy.is_none().then_some(pair),
                    fewest: pair,
                    fewest_policy: p.policy,
                    below_target: false,
                    reason: None,
                }),
            }
        }
    }
    for f in &mut out {
        f.below_target = f.fewest.batch_1.invocations < TARGET_INVOCATIONS;
        f.reason = f.below_target.then(|| shape_reason(&f.family));
    }
    out
}

impl fmt::Display for GpuShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "GPU shape of {}: the programs built (not run) with a GPU adapter's kernel choice \
             (GEMM {}, {} for small products; fused attention {}; subgroup reductions {}), \
             invocations launched per kernel family (its step that launches the fewest)",
            self.model,
            self.gemm_kernel,
            self.gemm_kernel_small,
            self.fused_attention,
            self.subgroup_reductions,
        )?;
        for p in &self.programs {
            if p.policy.is_none() {
                writeln!(f, "  {}: dense", p.policy)?;
            } else {
                writeln!(f, "  {}: {} ({})", p.policy, p.schedule, p.request)?;
            }
        }
        let none = || "-".to_string();
        let rows: Vec<Vec<String>> = self
            .kernels
            .iter()
            .map(|k| {
                let dense = |at: fn(&ShapePair) -> String| k.dense.as_ref().map_or_else(none, at);
                vec![
                    k.family.clone(),
                    k.phase.name().to_string(),
                    k.fewest.batch_1.size(),
                    dense(|d| d.batch_1.workgroups.to_string()),
                    dense(|d| d.batch_1.invocations.to_string()),
                    dense(|d| d.batch_8.invocations.to_string()),
                    k.fewest.batch_1.workgroups.to_string(),
                    k.fewest.batch_1.invocations.to_string(),
                    k.fewest.batch_8.invocations.to_string(),
                    k.fewest_policy.to_string(),
                    if k.below_target { "below" } else { "" }.to_string(),
                ]
            })
            .collect();
        let target = format!("< {}", self.target_invocations);
        write!(
            f,
            "{}",
            table(
                &[
                    "kernel family",
                    "phase",
                    "wg size",
                    "dense wg b1",
                    "dense inv b1",
                    "dense inv b8",
                    "fewest wg b1",
                    "fewest inv b1",
                    "fewest inv b8",
                    "fewest in",
                    &target,
                ],
                &rows
            )
        )?;
        let below: Vec<&FamilyShape> = self.kernels.iter().filter(|k| k.below_target).collect();
        if !below.is_empty() {
            writeln!(
                f,
                "\nbelow {} invocations at batch 1, and why (with DeiT-Tiny's figures):",
                self.target_invocations
            )?;
        }
        for k in below {
            writeln!(f, "  {}: {}", k.family, k.reason.unwrap_or(NO_REASON))?;
        }
        Ok(())
    }
}

/// The kernel family of a step label: the label without its `blockN.` prefix.
fn family_name(label: &str) -> &str {
    match label.split_once('.') {
        Some((head, rest)) if head.starts_with("block") => rest,
        _ => label,
    }
}

/// The GPU-shape audit of `--model` (else `random:deit-tiny`): the dense program and every
/// policy's at `--flops 0.65` (the threshold policy at its default thresholds: meeting a FLOPs
/// target needs calibration on data, and its grid does not depend on them), at batch 1 and 8,
/// built on `k` with [`KernelChoice::gpu_guess`] and not run. `k`'s own choice is restored after.
fn gpu_shape(k: &Kernels, args: &BenchArgs) -> Result<GpuShape> {
    let weights = match &args.model.model {
        Some(_) => model_source::load(&args.model)?,
        None => zeroprune::model::random::random_model("deit-tiny")?,
    };
    let c = weights.config.clone();
    let g = c.geometry();
    let mut session = pollster::block_on(Session::create_with(k, &weights, args.model.precision))?;
    let mut programs = vec![(Policy::none(), "dense".to_string(), Pruning::dense())];
    for &policy in &Policy::all()[1..] {
        let (request, pruning) = audit_schedule(policy, &g)?;
        programs.push((policy, request, pruning));
    }
    let own = k.choice();
    let choice = KernelChoice::gpu_guess();
    k.set_choice(choice);
    let built = programs
        .into_iter()
        .map(|(policy, request, pruning)| {
            let b1 = session.step_shapes(1, &pruning)?;
            let b8 = session.step_shapes(8, &pruning)?;
            Ok(ShapeProgram {
                policy,
                request,
                schedule: pruning.describe(),
                kernels: shape_rows(&b1, &b8)?,
            })
        })
        .collect::<Result<Vec<_>>>();
    k.set_choice(own);
    let programs = built?;
    Ok(GpuShape {
        model: weights.source.clone(),
        gemm_kernel: choice.gemm.name(),
        gemm_kernel_small: choice.gemm_small.name(),
        fused_attention: choice.fused_attention,
        subgroup_reductions: choice.subgroups,
        target_invocations: TARGET_INVOCATIONS,
        kernels: family_shapes(&programs),
        programs,
    })
}

/// The schedule `policy` runs in the audit, and how it was asked for: `--flops 0.65`; where that
/// needs calibration on data (the threshold policy) or the model cannot reach it (a shallow test
/// model), the policy's default schedule.
fn audit_schedule(policy: Policy, g: &TokenGeometry) -> Result<(String, Pruning)> {
    let request = PruneRequest {
        policy: Some(policy.name().to_string()),
        flops: Some(AUDIT_FLOPS),
        ..Default::default()
    };
    let why = match Pruner::from_request(request.clone(), g) {
        Ok(p) if !p.needs_calibration()? => return Ok((p.describe(), p.schedule(g)?)),
        Ok(_) => "needs calibration on data (the grid does not depend on the thresholds)".into(),
        Err(e) => format!("is out of reach ({e})"),
    };
    let p = Pruner::from_request(
        PruneRequest {
            flops: None,
            ..request
        },
        g,
    )?;
    Ok((
        format!(
            "{}, its default schedule: flops {AUDIT_FLOPS} {why}",
            p.describe()
        ),
        p.schedule(g)?,
    ))
}

/// One row per kernel family of a program, in the order the families first run.
fn shape_rows(b1: &[StepShape], b8: &[StepShape]) -> Result<Vec<ShapeRow>> {
    // The step of `family` with the fewest invocations at one batch size, and the family's steps.
    let fewest = |steps: &[StepShape], family: &str| -> Result<(ShapeAt, usize)> {
        let mut best: Option<ShapeAt> = None;
        let mut count = 0;
        for s in steps.iter().filter(|s| family_name(&s.label) == family) {
            count += 1;
            let (Some(size), Some(invocations)) = (s.workgroup_size, s.invocations()) else {
                return Err(Error::Gpu(format!(
                    "{}: the workgroup size of its kernel is not known",
                    s.label
                )));
            };
            if best.is_none_or(|b| invocations < b.invocations) {
                best = Some(ShapeAt {
                    workgroups: s.workgroup_count(),
                    workgroup_size: size,
                    invocations,
                });
            }
        }
        best.map(|b| (b, count)).ok_or_else(|| {
            Error::Gpu(format!(
                "kernel family {family} is missing at one of the batch sizes"
            ))
        })
    };
    let mut rows: Vec<ShapeRow> = Vec::new();
    for s in b1 {
        let family = family_name(&s.label);
        if rows.iter().any(|r| r.family == family) {
            continue;
        }
        let (batch_1, steps) = fewest(b1, family)?;
        let (batch_8, _) = fewest(b8, family)?;
        let below_target = batch_1.invocations < TARGET_INVOCATIONS;
        rows.push(ShapeRow {
            family: family.to_string(),
            phase: s.phase,
            steps,
            batch_1,
            batch_8,
            below_target,
            reason: below_target.then(|| shape_reason(family)),
        });
    }
    Ok(rows)
}

/// Median and (min, max) of `runs` timings of `f`, in seconds, after one warm-up call.
fn time(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, f64)> {
    f()?;
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    Ok(median_spread(&t))
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.batch.contains(&0) {
        return Err(Error::param("--batch", "batch sizes must be at least 1"));
    }
    if args.runs == 0 {
        return Err(Error::param("--runs", "must be at least 1"));
    }
    if args.kernels {
        // The kernels run on DeiT-Tiny's shapes and the audit builds every policy at its own
        // schedule: a model run's options would be silently ignored.
        let p = &args.prune;
        let ignored = [
            ("--policy", p.policy.is_some()),
            ("--keep", p.keep.is_some()),
            ("--tokens", p.tokens.is_some()),
            ("--flops", p.flops.is_some()),
            ("--threshold", p.threshold.is_some()),
            ("--schedule", p.schedule.is_some()),
            ("--policies", !args.policies.is_empty()),
            ("--schedules", !args.schedules.is_empty()),
            ("--images", args.images.is_some()),
            ("--texts", args.texts.is_some()),
            ("--soak", args.soak.is_some()),
        ];
        if let Some((flag, _)) = ignored.iter().find(|(_, set)| *set) {
            return Err(Error::param(
                *flag,
                "does not apply to --kernels, which times the kernels on DeiT-Tiny's shapes and \
                 audits every policy at 65% of the FLOPs",
            ));
        }
        let gpu = open_gpu()?;
        return kernels(&gpu, args);
    }
    let precisions = precisions(args);
    let most = *args.batch.iter().max().unwrap_or(&1);
    if let Some(texts) = &args.texts {
        let dir = args.model.model.as_deref().ok_or_else(|| {
            Error::param(
                "--model",
                "a text benchmark needs a BERT-family model folder",
            )
        })?;
        let (weights, tokenizer) = text_model(dir)?;
        let c = weights.config.clone();
        let data = DataArgs {
            texts: Some(texts.clone()),
            split: Some(args.split.clone()),
            limit: Some(most),
            ..Default::default()
        };
        let all = data.texts(&tokenizer, c.max_tokens)?;
        if all.enc.ids.len() < most {
            return Err(Error::param(
                "--texts",
                format!(
                    "{} has {} sentences of split {}, fewer than --batch {most}",
                    texts.display(),
                    all.enc.ids.len(),
                    args.split
                ),
            ));
        }
        let settings = settings(args, &c.largest_geometry(), true)?;
        let gpu = open_gpu()?;
        let mut sessions = precisions
            .iter()
            .map(|&p| Session::with_precision(&gpu, &weights, p))
            .collect::<Result<Vec<_>>>()?;
        // The threshold policy's FLOPs target: calibrated once, on the largest batch's texts
        // (a benchmark scores speed, not quality).
        let settings =
            crate::common::calibrated(&mut sessions, settings, most, || Ok(all.enc.clone()))?;
        let inputs = args
            .batch
            .iter()
            .map(|&b| all.load(&(0..b).collect::<Vec<_>>()))
            .collect::<Result<Vec<_>>>()?;
        bench(
            args,
            &weights.source,
            &mut sessions,
            &settings,
            &inputs,
            Unit::Text,
        )
    } else {
        let weights = model_source::load(&args.model)?;
        let c = weights.config.clone();
        let gpu = open_gpu()?;
        if let Some(n) = args.soak {
            if n == 0 {
                return Err(Error::param("--soak", "must be at least 1 forward pass"));
            }
            let mut session = Session::with_precision(&gpu, &weights, args.model.precision)?;
            return crate::soak::run(&gpu, &weights, &mut session, n, args.json);
        }
        args.prune.dropped(false)?;
        let mut settings = settings(args, &c.geometry(), false)?;
        // Every --schedules file, under the rest.
        for file in &args.schedules {
            let request = zeroprune::prune::PruneRequest {
                schedule: Some(zeroprune::prune::ScheduleFile::read(file)?),
                ..Default::default()
            };
            let p = request.resolve(&c.geometry())?;
            if !settings
                .iter()
                .any(|s| s.describe() == p.describe() && s.policy() == p.policy)
            {
                settings.push(Setting::fixed(p));
            }
        }
        let mut sessions = precisions
            .iter()
            .map(|&p| Session::with_precision(&gpu, &weights, p))
            .collect::<Result<Vec<_>>>()?;
        // Every batch must fit before any input is allocated for it.
        for &b in &args.batch {
            sessions[0].check_batch_fits(b)?;
        }
        let images = match &args.images {
            Some(dir) => {
                let data = DataArgs {
                    images: Some(dir.clone()),
                    limit: Some(most),
                    ..Default::default()
                };
                let found = data.images(&c, true)?;
                Some(found.load(&(0..found.len()).collect::<Vec<_>>())?)
            }
            None => None,
        };
        let settings = crate::common::calibrated(&mut sessions, settings, most, || {
            Ok(match &images {
                Some(all) => all.clone(),
                None => vec![0.1f32; most * c.image_len()],
            })
        })?;
        let inputs: Vec<Vec<f32>> = args
            .batch
            .iter()
            .map(|&b| match &images {
                // The first b images, repeated when the folder has fewer.
                Some(all) => all
                    .iter()
                    .copied()
                    .cycle()
                    .take(b * c.image_len())
                    .collect(),
                None => vec![0.1f32; b * c.image_len()],
            })
            .collect();
        bench(
            args,
            &weights.source,
            &mut sessions,
            &settings,
            &inputs,
            Unit::Image,
        )
    }
}

/// `--precisions`, else `--precision` alone.
fn precisions(args: &BenchArgs) -> Vec<Precision> {
    if args.precisions.is_empty() {
        vec![args.model.precision]
    } else {
        args.precisions.clone()
    }
}

/// Dense first, then the schedule given, and every --policies entry under the same schedule; the
/// same request twice runs once.
fn settings(args: &BenchArgs, largest: &TokenGeometry, pools: bool) -> Result<Vec<Setting>> {
    let dropped = args.prune.dropped(pools)?;
    let mut settings = vec![Setting::dense()];
    let mut add = |s: Setting| {
        let seen = settings
            .iter()
            .any(|t| t.describe() == s.describe() && t.policy() == s.policy());
        if !s.is_dense() && !seen {
            settings.push(s);
        }
    };
    // A schedule given for --policies alone (no --policy) belongs to them.
    if args.prune.policy.is_some() || args.policies.is_empty() {
        add(Setting::request(args.prune.pruner(largest)?, dropped));
    }
    for name in &args.policies {
        let mut prune = args.prune.clone();
        prune.policy = Some(name.clone());
        add(Setting::request(prune.pruner(largest)?, dropped));
    }
    Ok(settings)
}

/// Every (precision, setting) on every batch size: a warm-up run each, then `--runs` rounds that
/// play every row once, back to back; ratios pair the runs of one round (the same load on the
/// machine hits both): the median of the per-round ratios.
#[allow(clippy::too_many_arguments)]
fn bench<F: Family>(
    args: &BenchArgs,
    model: &str,
    sessions: &mut [Session<F>],
    settings: &[Setting],
    inputs: &[<F::Input as ToOwned>::Owned],
    unit: Unit,
) -> Result<()>
where
    F::Output: Answers,
{
    let precisions = precisions(args);
    let mut results = Vec::new();
    let geometry = (unit == Unit::Image).then(|| sessions[0].model().largest_geometry());
    for (&b, input) in args.batch.iter().zip(inputs) {
        let input: &F::Input = std::borrow::Borrow::borrow(input);
        let mut times = vec![vec![Vec::new(); settings.len()]; sessions.len()];
        for session in sessions.iter_mut() {
            for s in settings {
                session.run(input, s.run())?;
            }
        }
        for _ in 0..args.runs {
            for (session, times) in sessions.iter_mut().zip(&mut times) {
                for (s, t) in settings.iter().zip(times.iter_mut()) {
                    let start = Instant::now();
                    session.run(input, s.run())?;
                    t.push(start.elapsed().as_secs_f64());
                }
            }
        }
        for (si, (session, &precision)) in sessions.iter_mut().zip(&precisions).enumerate() {
            let dense_flops = item_flops(session, input, &settings[0])?;
            for (i, s) in settings.iter().enumerate() {
                let (own, dense, first) = (&times[si][i], &times[si][0], &times[0][i]);
                results.push(BenchRow {
                    speedup: median_ratio(dense, own),
                    vs_first_precision: median_ratio(first, own),
                    schedule: s.describe_at(geometry.as_ref()),
                    ..bench_row(
                        session,
                        precision,
                        input,
                        s,
                        b,
                        median_spread(own),
                        dense_flops,
                    )?
                });
            }
        }
    }
    emit(
        &Report(BenchOutput {
            model: model.to_string(),
            adapter: sessions[0].gpu().describe(),
            runs: args.runs,
            results,
            unit,
        }),
        args.json,
    )
}

/// Summed FLOPs of the items of one run of `s` on `input`.
fn item_flops<F: Family>(session: &mut Session<F>, input: &F::Input, s: &Setting) -> Result<f64> {
    let out = session.run(input, s.run())?;
    Ok(out.items.iter().map(|o| o.flops()).sum())
}

/// One row of `bench` for setting `s` at batch `b` on the session `precision` chose, timed as
/// `(median, min, max)` seconds: the throughput figures, and a profiled run for the pruning share
/// and the per-kernel breakdown. The ratios between rows (set to 1 here) are the caller's.
fn bench_row<F: Family>(
    session: &mut Session<F>,
    precision: Precision,
    input: &F::Input,
    s: &Setting,
    b: usize,
    (median, min, max): (f64, f64, f64),
    dense_flops: f64,
) -> Result<BenchRow>
where
    F::Output: Answers,
{
    let profiled = session.run(input, s.run().mode(Mode::Profile))?;
    // Counted from the tokens each item kept (threshold pruning's counts differ per item).
    let answers: Vec<_> = profiled.items.iter().map(|o| o.answer(None)).collect();
    let flops: f64 = answers.iter().map(|a| a.flops).sum();
    let gflops = flops / b as f64 / 1e9;
    let profile = profiled.profile.unwrap_or_default();
    let total: f64 = profile.iter().map(|s| s.seconds).sum();
    let in_phase = |phase: Phase| -> f64 {
        profile
            .iter()
            .filter(|s| s.phase == phase)
            .map(|s| s.seconds)
            .sum()
    };
    let prune_seconds: f64 = Phase::PRUNING.iter().map(|&ph| in_phase(ph)).sum();
    let choice = session.kernel_choice();
    // Texts: the tokens of the batch, and how many passes a run makes (pruned: one per length).
    let tokens: Vec<usize> = answers.iter().map(|a| a.tokens).collect();
    let text = tokens.iter().all(|&t| t > 0);
    let longest = tokens.iter().copied().max().unwrap_or(0);
    let real: usize = tokens.iter().sum();
    let mut lengths = tokens.clone();
    lengths.sort_unstable();
    lengths.dedup();
    Ok(BenchRow {
        batch: b,
        storage: session.storage(),
        precision,
        policy: s.policy(),
        schedule: if s.is_dense() {
            "dense".into()
        } else {
            s.describe()
        },
        latency_ms: median * 1e3,
        min_ms: min * 1e3,
        max_ms: max * 1e3,
        spread_pct: 100.0 * (max - min) / median,
        items_per_s: b as f64 / median,
        gflops_per_item: gflops,
        achieved_gflops_per_s: gflops * b as f64 / median,
        flops_ratio: flops / dense_flops.max(1e-30),
        speedup: 1.0,
        vs_first_precision: 1.0,
        prune_overhead_share: prune_seconds / total.max(1e-12),
        prune_overhead_source: if session.gpu().has_timestamps() {
            "gpu timestamps"
        } else {
            "cpu: each step submitted alone"
        },
        prune_gpu_ms: PruneTime {
            scoring: in_phase(Phase::Score) * 1e3,
            selection: in_phase(Phase::Select) * 1e3,
            compaction: in_phase(Phase::Compact) * 1e3,
            merging: in_phase(Phase::Merge) * 1e3,
        },
        dispatches: profile.len(),
        submits: if s.is_dense() || !text {
            1
        } else {
            lengths.len()
        },
        gemm_kernel: choice.gemm.name(),
        gemm_kernel_small: choice.gemm_small.name(),
        fused_attention: choice.fused_attention,
        subgroup_reductions: session.subgroup_reductions(),
        kernels: families(&profile),
        passes: text.then(|| if s.is_dense() { 1 } else { lengths.len() }),
        tokens_max: text.then_some(longest),
        tokens_mean: text.then(|| real as f64 / b as f64),
        padding_share: text.then(|| {
            if s.is_dense() {
                1.0 - real as f64 / (b * longest).max(1) as f64
            } else {
                0.0
            }
        }),
    })
}

/// GPU time per kernel family (`qkv`, `fc1`, `attention`, `prune.pagerank`, ...): the step label
/// without its block, summed over blocks; most expensive first.
fn families(steps: &[StepTime]) -> Vec<KernelFamily> {
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    let mut fam: Vec<KernelFamily> = Vec::new();
    for s in steps {
        let name = family_name(&s.label).to_string();
        match fam.iter_mut().find(|f| f.family == name) {
            Some(f) => {
                f.gpu_ms += s.seconds * 1e3;
                f.steps += 1;
            }
            None => fam.push(KernelFamily {
                family: name,
                phase: s.phase,
                gpu_ms: s.seconds * 1e3,
                share: 0.0,
                steps: 1,
                prune: s.phase.is_pruning(),
            }),
        }
    }
    for f in &mut fam {
        f.share = f.gpu_ms / (total * 1e3).max(1e-12);
    }
    fam.sort_by(|a, b| b.gpu_ms.total_cmp(&a.gpu_ms));
    fam
}

/// DeiT-Tiny's GEMM shapes at batch 8 (M = 8 x 197) and batch 1 (one size class each, see
/// `SMALL_GEMM_OUTPUTS`): every GPU GEMM kernel, the fused attention against the unfused one, and
/// a CPU GEMM (`matrixmultiply`), all in the same run. GPU times from timestamps where the adapter
/// has them.
fn kernels(gpu: &GpuContext, args: &BenchArgs) -> Result<()> {
    let k = Kernels::new(gpu);
    // The choice sessions use (cached, or measured now): what "(chosen)" marks.
    k.tune_blocking()?;
    let shapes = [8 * 197, 197].into_iter().flat_map(|m| {
        [
            ("qkv", m, 576, 192),
            ("fc1", m, 768, 192),
            ("fc2", m, 192, 768),
        ]
    });
    let mut rows = Vec::new();
    for (name, m, n, kk) in shapes {
        // Every kernel with f32 storage, then the chosen one with f16 A and B where the adapter has it.
        let chosen = k.gemm_kernel_for(m * n);
        let mut candidates: Vec<_> = GemmKernel::CANDIDATES
            .iter()
            .map(|&g| (g, Elem::F32))
            .collect();
        if gpu.has_f16() {
            candidates.push((chosen, Elem::F16));
        }
        let a_host: Vec<f32> = (0..m * kk).map(|i| (i % 7) as f32 * 0.01).collect();
        let b_host: Vec<f32> = (0..kk * n).map(|i| (i % 5) as f32 * 0.01).collect();
        let c = GpuTensor::zeros(gpu, "c", m * n);
        // A and B as each storage the candidates take, uploaded once per shape.
        let operands = |elem| {
            (
                GpuTensor::from_f32(gpu, "a", &a_host, elem),
                GpuTensor::from_f32(gpu, "b", &b_host, elem),
            )
        };
        let (f32_ops, f16_ops) = (
            operands(Elem::F32),
            gpu.has_f16().then(|| operands(Elem::F16)),
        );
        let mut naive_rate = None;
        for &(kernel, elem) in &candidates {
            let (a, b) = match (elem, &f16_ops) {
                (Elem::F16, Some(ops)) => ops,
                _ => &f32_ops,
            };
            let g = Gemm {
                kernel: Some(kernel),
                ..Gemm::new(m, n, kk)
            };
            let p = Program {
                steps: vec![k.gemm(
                    name,
                    MatView::rows(a, kk),
                    MatView::rows(b, n),
                    MatView::rows(&c, n),
                    g,
                )?],
            };
            gpu_time_blocking(gpu, &p)?;
            let t = (0..args.runs.max(1))
                .map(|_| gpu_time_blocking(gpu, &p))
                .collect::<Result<Vec<_>>>()?;
            let (seconds, _, _) = median_spread(&t);
            let rate = g.flops() / seconds / 1e9;
            let naive = *naive_rate.get_or_insert(rate);
            rows.push(KernelRow {
                kernel: format!(
                    "gpu {kernel}{}{}",
                    if elem == Elem::F16 { " f16" } else { "" },
                    if kernel == chosen && elem == Elem::F32 {
                        " (chosen)"
                    } else {
                        ""
                    }
                ),
                shape: format!("{name} {m}x{n}x{kk}"),
                ms: seconds * 1e3,
                gflops_per_s: rate,
                vs_baseline: rate / naive,
            });
        }
        let mut c_host = vec![0f32; m * n];
        let (median, _, _) = time(args.runs, || {
            cpu_gemm(&a_host, &b_host, &mut c_host, (m, n, kk));
            Ok(())
        })?;
        let rate = Gemm::new(m, n, kk).flops() / median / 1e9;
        rows.push(KernelRow {
            kernel: "cpu matrixmultiply".into(),
            shape: format!("{name} {m}x{n}x{kk}"),
            ms: median * 1e3,
            gflops_per_s: rate,
            vs_baseline: rate / naive_rate.unwrap_or(rate),
        });
    }
    rows.extend(attention_kernels(gpu, &k, args)?);
    let gpu_shape = gpu_shape(&k, args)?;
    emit(
        &KernelsOutput {
            adapter: gpu.describe(),
            results: rows,
            gpu_shape,
        },
        args.json,
    )
}

/// `c = a . b` on the CPU with `matrixmultiply`'s sgemm (one thread: the crate's default build).
fn cpu_gemm(a: &[f32], b: &[f32], c: &mut [f32], (m, n, k): (usize, usize, usize)) {
    // SAFETY: the slices hold m x k, k x n and m x n row-major values, as the strides say.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Attention of DeiT-Tiny at batch 8 (197 tokens, 3 heads of 64): unfused (scores GEMM, softmax,
/// context GEMM, with the tuned GEMM kernel) against the fused kernel. FLOPs: the two products.
fn attention_kernels(gpu: &GpuContext, k: &Kernels, args: &BenchArgs) -> Result<Vec<KernelRow>> {
    let (b, n, h, dh) = (8, 197, 3, 64);
    let d = h * dh;
    let host: Vec<f32> = (0..b * n * 3 * d)
        .map(|i| ((i % 13) as f32 - 6.0) * 0.05)
        .collect();
    let qkv = GpuTensor::from_slice(gpu, "qkv", &host);
    let probs = GpuTensor::zeros(gpu, "probs", b * h * n * n);
    let out = GpuTensor::zeros(gpu, "out", b * n * d);
    let scale = 1.0 / (dh as f32).sqrt();
    let flops = 2.0 * 2.0 * (b * h * n * n * dh) as f64;
    let mut unfused = Program::default();
    let q = MatView::rows(&qkv, 3 * d).batched(n * 3 * d, dh);
    let pm = MatView::rows(&probs, n).batched(h * n * n, n * n);
    unfused.push(k.gemm(
        "scores",
        q,
        q.at(d).strides(1, 3 * d),
        pm,
        Gemm {
            outer: b,
            heads: h,
            alpha: scale,
            ..Gemm::new(n, n, dh)
        },
    )?);
    unfused.push(k.softmax_rows("softmax", &probs, b * h * n, n, n)?);
    unfused.push(k.gemm(
        "context",
        pm,
        q.at(2 * d),
        MatView::rows(&out, d).batched(n * d, dh),
        Gemm {
            outer: b,
            heads: h,
            ..Gemm::new(n, dh, n)
        },
    )?);
    let mut fused = Program::default();
    fused.push(k.attention(
        "attention",
        &qkv,
        &out,
        (b, n, d, h),
        scale,
        AttentionBias::default(),
    )?);
    let mut rows = Vec::new();
    let mut base = None;
    for (name, p) in [
        ("gpu unfused (scores, softmax, context)", &unfused),
        ("gpu fused attention", &fused),
    ] {
        let (median, _, _) = time(args.runs, || time_program_blocking(gpu, p).map(|_| ()))?;
        let rate = flops / median / 1e9;
        let first = *base.get_or_insert(rate);
        rows.push(KernelRow {
            kernel: name.into(),
            shape: format!("attention {b}x{h}x{n}x{dh}"),
            ms: median * 1e3,
            gflops_per_s: rate,
            vs_baseline: rate / first,
        });
    }
    Ok(rows)
}
