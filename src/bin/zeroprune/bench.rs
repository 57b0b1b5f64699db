//! `zeroprune bench`: forward latency per batch size, or the GEMM kernels alone.

use std::time::Instant;

use clap::Args;
use serde_json::json;
use zeroprune::gpu::kernels::{Gemm, MatView};
use zeroprune::gpu::{GpuContext, GpuTensor, Kernels, Program};
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
    /// Benchmark the GEMM kernels alone (tiled vs naive, on the model's layer shapes) instead of the model.
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
    let mut rows = Vec::new();
    for &b in &args.batch {
        // A real image's statistics matter for threshold pruning; a constant input is fine for the rest.
        let input = vec![0.1f32; b * session.image_len()];
        let mut dense_latency = None;
        for p in &schedules {
            session.set_pruning(p.clone());
            let (median, min, max) = time(args.runs, || session.run(&input).map(|_| ()))?;
            let gflops = session.flops_per_image() / 1e9;
            let dense = *dense_latency.get_or_insert(median);
            rows.push(json!({
                "batch": b, "policy": p.policy, "schedule": p.describe(),
                "latency_ms": median * 1e3, "min_ms": min * 1e3, "max_ms": max * 1e3,
                "images_per_s": b as f64 / median, "gflops_per_image": gflops,
                "achieved_gflops_per_s": gflops * b as f64 / median,
                "speedup": dense / median,
                "dispatches": session.dispatches(b)?, "submits": 1,
            }));
        }
    }
    print_rows(
        args.json,
        &gpu,
        &rows,
        &[
            "batch",
            "policy",
            "schedule",
            "latency_ms",
            "images_per_s",
            "gflops_per_image",
            "speedup",
            "dispatches",
        ],
    );
    Ok(())
}

/// The model's GEMM shapes at batch 8 (DeiT-Tiny: M = 8 x 197), tiled vs naive in the same run.
fn kernels(gpu: &GpuContext, args: &BenchArgs) -> Result<()> {
    let k = Kernels::new(gpu);
    let m = 8 * 197;
    let shapes = [
        ("qkv", m, 576, 192),
        ("fc1", m, 768, 192),
        ("fc2", m, 192, 768),
    ];
    let mut rows = Vec::new();
    for (name, m, n, kk) in shapes {
        let a = GpuTensor::from_slice(gpu, "a", &vec![0.01f32; m * kk]);
        let b = GpuTensor::from_slice(gpu, "b", &vec![0.01f32; kk * n]);
        let c = GpuTensor::zeros(gpu, "c", m * n);
        for naive in [false, true] {
            let g = Gemm {
                naive,
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
            let (median, _, _) = time(args.runs, || {
                let mut enc = gpu.device.create_command_encoder(&Default::default());
                p.encode(&mut enc);
                gpu.queue.submit([enc.finish()]);
                gpu.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| Error::Gpu(e.to_string()))?;
                gpu.check()
            })?;
            rows.push(json!({
                "kernel": if naive { "gemm_naive" } else { "gemm_tiled" }, "shape": format!("{name} {m}x{n}x{kk}"),
                "ms": median * 1e3 / reps as f64, "gflops_per_s": g.flops() * reps as f64 / median / 1e9,
            }));
        }
    }
    print_rows(
        args.json,
        gpu,
        &rows,
        &["shape", "kernel", "ms", "gflops_per_s"],
    );
    Ok(())
}

fn print_rows(as_json: bool, gpu: &GpuContext, rows: &[serde_json::Value], cols: &[&str]) {
    if as_json {
        let v = json!({"adapter": gpu.describe(), "results": rows});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!("adapter: {}", gpu.describe());
    println!(
        "{}",
        cols.iter().map(|c| format!("{c:>22}")).collect::<String>()
    );
    for r in rows {
        let line: String = cols
            .iter()
            .map(|c| match &r[*c] {
                serde_json::Value::Number(n) if n.is_f64() => {
                    format!("{:>22.2}", n.as_f64().unwrap_or(0.0))
                }
                serde_json::Value::String(s) => format!("{s:>22}"),
                v => format!("{:>22}", v.to_string()),
            })
            .collect();
        println!("{line}");
    }
}
