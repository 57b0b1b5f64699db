//! `zeroprune bench`: forward latency per batch size, or the GEMM kernels alone.

use std::time::Instant;

use clap::Args;
use serde_json::json;
use zeroprune::gpu::kernels::{Gemm, GemmKernel, MatView};
use zeroprune::gpu::{time_program_blocking, GpuContext, GpuTensor, Kernels, Program};
use zeroprune::{Error, Result, Session};

use crate::commands::open_gpu;
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
    /// tiles) on the model's layer shapes, fused vs unfused attention, and a CPU GEMM (matrixmultiply), in one run.
    #[arg(long)]
    kernels: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    prune: PruneArgs,
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
    t.sort_by(f64::total_cmp);
    Ok((t[t.len() / 2], t[0], t[t.len() - 1]))
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if args.batch.contains(&0) {
        return Err(Error::param("--batch", "batch sizes must be at least 1"));
    }
    let gpu = open_gpu()?;
    if args.kernels {
        return kernels(&gpu, args);
    }
    let weights = model_source::load(&args.model)?;
    let pruning = args.prune.resolve(&weights.config)?;
    let mut session = Session::new(&gpu, &weights)?;
    let mut schedules = vec![zeroprune::prune::Pruning::dense()];
    if !pruning.is_dense() {
        schedules.push(pruning);
    }
    let dense_flops = schedules[0].flops(&weights.config);
    let mut rows = Vec::new();
    for &b in &args.batch {
        // A real image's statistics matter for threshold pruning; a constant input is fine for the rest.
        let input = vec![0.1f32; b * session.image_len()];
        // Warm-up (compiles the programs), then dense and pruned runs interleaved.
        let mut times = vec![Vec::new(); schedules.len()];
        for p in &schedules {
            session.set_pruning(p.clone());
            session.run(&input)?;
        }
        for _ in 0..args.runs.max(1) {
            for (p, t) in schedules.iter().zip(&mut times) {
                session.set_pruning(p.clone());
                let s = Instant::now();
                session.run(&input)?;
                t.push(s.elapsed().as_secs_f64());
            }
        }
        let stats: Vec<(f64, f64, f64)> = times.iter_mut().map(|t| median_spread(t)).collect();
        let dense_latency = stats[0].0;
        for (i, p) in schedules.iter().enumerate() {
            session.set_pruning(p.clone());
            let (median, min, max) = stats[i];
            let flops = session.flops_per_image();
            let gflops = flops / 1e9;
            let profile = session.profile_steps(&input)?;
            let (overhead, source, parts) = match &profile {
                Some(steps) => {
                    let total: f64 = steps.iter().map(|(_, t)| t).sum();
                    let mut parts = [0.0f64; 3];
                    for (label, t) in steps {
                        if let Some(part) = prune_part(label) {
                            parts[part] += t;
                        }
                    }
                    let share = parts.iter().sum::<f64>() / total.max(1e-12);
                    (share, "gpu timestamps", Some(parts))
                }
                None if p.is_dense() => (0.0, "none", None),
                None => {
                    // No timestamps: the same pass without its pruning steps, CPU-timed.
                    let with = session.time_steps(&input, |_| true)?;
                    let without = session.time_steps(&input, |l| prune_part(l).is_none())?;
                    (
                        (with - without).max(0.0) / with,
                        "cpu: pruned pass without its pruning steps",
                        None,
                    )
                }
            };
            let breakdown = profile.as_ref().map(|steps| families(steps));
            rows.push(json!({
                "batch": b, "policy": p.policy, "schedule": p.describe(),
                "latency_ms": median * 1e3, "min_ms": min * 1e3, "max_ms": max * 1e3,
                "spread_pct": 100.0 * (max - min) / median,
                "images_per_s": b as f64 / median, "gflops_per_image": gflops,
                "achieved_gflops_per_s": gflops * b as f64 / median,
                "flops_ratio": flops / dense_flops,
                "speedup": dense_latency / median,
                "prune_overhead_share": overhead,
                "prune_overhead_source": source,
                "prune_gpu_ms": parts.map(|p| json!({
                    "scoring": p[0] * 1e3, "selection": p[1] * 1e3, "compaction": p[2] * 1e3,
                })),
                "dispatches": session.dispatches(b)?, "submits": 1,
                "gemm_kernel": session.gemm_kernel().name(),
                "fused_attention": session.fused_attention(),
                "kernels": breakdown,
            }));
        }
    }
    if args.json {
        print_rows(true, &gpu, &rows, &[]);
        return Ok(());
    }
    print_rows(
        false,
        &gpu,
        &rows,
        &[
            "batch",
            "policy",
            "latency_ms",
            "spread_pct",
            "images_per_s",
            "gflops_per_image",
            "achieved_gflops_per_s",
            "flops_ratio",
            "speedup",
            "prune_overhead_share",
            "dispatches",
        ],
    );
    for r in &rows {
        println!(
            "\nbatch {} {} ({}): GEMM kernel {}, fused attention {}, prune overhead from {}",
            r["batch"],
            r["policy"],
            r["schedule"].as_str().unwrap_or(""),
            r["gemm_kernel"].as_str().unwrap_or(""),
            r["fused_attention"],
            r["prune_overhead_source"].as_str().unwrap_or("")
        );
        if let Some(list) = r["kernels"].as_array() {
            println!(
                "{:>28} {:>10} {:>8} {:>6}",
                "kernel family", "GPU ms", "share", "steps"
            );
            for k in list {
                println!(
                    "{:>28} {:>10.2} {:>7.1}% {:>6}",
                    k["family"].as_str().unwrap_or(""),
                    k["gpu_ms"].as_f64().unwrap_or(0.0),
                    100.0 * k["share"].as_f64().unwrap_or(0.0),
                    k["steps"]
                );
            }
        }
    }
    Ok(())
}

/// Median, min and max of `t`.
fn median_spread(t: &mut [f64]) -> (f64, f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[0], t[t.len() - 1])
}

/// Which part of a pruning step a step label is: 0 scoring (attention scores, PageRank,
/// similarity), 1 selection (top-k, threshold), 2 compaction (compaction, gathers, merges);
/// `None` for the model's own steps.
fn prune_part(label: &str) -> Option<usize> {
    let what = label.split(".prune.").nth(1)?;
    Some(match what {
        "topk" | "important_half" | "drop_similar" | "merge_select" | "threshold" => 1,
        "compact" | "gather" | "copy" | "merge" => 2,
        _ => 0,
    })
}

/// GPU time per kernel family (`qkv`, `fc1`, `attention`, `prune.pagerank`, ...): the step label
/// without its block, summed over blocks; most expensive first.
fn families(steps: &[(String, f64)]) -> Vec<serde_json::Value> {
    let total: f64 = steps.iter().map(|(_, t)| t).sum();
    let mut fam: Vec<(String, f64, usize)> = Vec::new();
    for (label, t) in steps {
        let name = match label.split_once('.') {
            Some((head, rest)) if head.starts_with("block") => rest.to_string(),
            _ => label.clone(),
        };
        match fam.iter_mut().find(|f| f.0 == name) {
            Some(f) => {
                f.1 += t;
                f.2 += 1;
            }
            None => fam.push((name, *t, 1)),
        }
    }
    fam.sort_by(|a, b| b.1.total_cmp(&a.1));
    fam.into_iter()
        .map(|(name, t, n)| {
            json!({
                "family": name, "gpu_ms": t * 1e3, "share": t / total.max(1e-12), "steps": n,
                "prune": name.starts_with("prune."),
            })
        })
        .collect()
}

/// The model's GEMM shapes at batch 8 (DeiT-Tiny: M = 8 x 197): every GPU GEMM kernel, the fused
/// attention against the unfused one, and a CPU GEMM (`matrixmultiply`), all in the same run.
fn kernels(gpu: &GpuContext, args: &BenchArgs) -> Result<()> {
    let k = Kernels::new(gpu);
    let chosen = k.tune_gemm_blocking()?;
    let m = 8 * 197;
    let shapes = [
        ("qkv", m, 576, 192),
        ("fc1", m, 768, 192),
        ("fc2", m, 192, 768),
    ];
    let mut rows = Vec::new();
    let mut candidates = vec![GemmKernel::Naive];
    candidates.extend_from_slice(GemmKernel::CANDIDATES);
    for (name, m, n, kk) in shapes {
        let a_host: Vec<f32> = (0..m * kk).map(|i| (i % 7) as f32 * 0.01).collect();
        let b_host: Vec<f32> = (0..kk * n).map(|i| (i % 5) as f32 * 0.01).collect();
        let a = GpuTensor::from_slice(gpu, "a", &a_host);
        let b = GpuTensor::from_slice(gpu, "b", &b_host);
        let c = GpuTensor::zeros(gpu, "c", m * n);
        let mut naive_rate = None;
        for &kernel in &candidates {
            let g = Gemm {
                kernel: Some(kernel),
                ..Gemm::new(m, n, kk)
            };
            // Several dispatches per submit so submission overhead does not dominate.
            let mut p = Program::default();
            let reps = 4;
            for _ in 0..reps {
                p.push(k.gemm(
                    name,
                    MatView::rows(&a, kk),
                    MatView::rows(&b, n),
                    MatView::rows(&c, n),
                    g,
                )?);
            }
            let (median, _, _) = time(args.runs, || time_program_blocking(gpu, &p).map(|_| ()))?;
            let rate = g.flops() * reps as f64 / median / 1e9;
            let naive = *naive_rate.get_or_insert(rate);
            rows.push(json!({
                "kernel": format!("gpu {kernel}{}", if kernel == chosen { " (chosen)" } else { "" }),
                "shape": format!("{name} {m}x{n}x{kk}"),
                "ms": median * 1e3 / reps as f64, "gflops_per_s": rate, "vs_baseline": rate / naive,
            }));
        }
        let mut c_host = vec![0f32; m * n];
        let (median, _, _) = time(args.runs, || {
            cpu_gemm(&a_host, &b_host, &mut c_host, (m, n, kk));
            Ok(())
        })?;
        let rate = Gemm::new(m, n, kk).flops() / median / 1e9;
        rows.push(json!({
            "kernel": "cpu matrixmultiply", "shape": format!("{name} {m}x{n}x{kk}"),
            "ms": median * 1e3, "gflops_per_s": rate, "vs_baseline": rate / naive_rate.unwrap_or(rate),
        }));
    }
    rows.extend(attention_kernels(gpu, &k, args)?);
    print_rows(
        args.json,
        gpu,
        &rows,
        &["shape", "kernel", "ms", "gflops_per_s", "vs_baseline"],
    );
    Ok(())
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
fn attention_kernels(
    gpu: &GpuContext,
    k: &Kernels,
    args: &BenchArgs,
) -> Result<Vec<serde_json::Value>> {
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
        zeroprune::gpu::kernels::AttentionBias::default(),
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
        rows.push(json!({
            "kernel": name, "shape": format!("attention {b}x{h}x{n}x{dh}"),
            "ms": median * 1e3, "gflops_per_s": rate, "vs_baseline": rate / first,
        }));
    }
    Ok(rows)
}

fn print_rows(as_json: bool, gpu: &GpuContext, rows: &[serde_json::Value], cols: &[&str]) {
    if as_json {
        let v = json!({"adapter": gpu.describe(), "results": rows});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!("adapter: {}", gpu.describe());
    let cell = |r: &serde_json::Value, c: &str| match &r[c] {
        serde_json::Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => s.clone(),
        v => v.to_string(),
    };
    // Each column as wide as its widest cell, plus two spaces.
    let widths: Vec<usize> = cols
        .iter()
        .map(|c| {
            rows.iter()
                .map(|r| cell(r, c).len())
                .fold(c.len(), usize::max)
                + 2
        })
        .collect();
    let header: String = cols
        .iter()
        .zip(&widths)
        .map(|(c, w)| format!("{c:>w$}"))
        .collect();
    println!("{header}");
    for r in rows {
        let line: String = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{:>w$}", cell(r, c)))
            .collect();
        println!("{line}");
    }
}
