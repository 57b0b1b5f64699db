//! `zeroprune sweep`: every policy at several FLOPs targets on a labelled folder, against the dense
//! model on the same images: one table (policy, FLOPs, top-1, agreement), JSON, and a PNG plot.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use zeroprune::draw::{line_chart, Series};
use zeroprune::model::flops::dense_flops;
use zeroprune::prune::{Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::session::top_k;
use zeroprune::{preprocess, Error, Result, Session};

use crate::commands::{check_batch, labelled_images, open_gpu, progress};
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of images.
    #[arg(long)]
    images: PathBuf,
    /// `name<TAB>class-index` lines, one per image.
    #[arg(long)]
    labels: PathBuf,
    /// Policies to compare, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "zero-tprune,tome,evit,wpr,threshold,random"
    )]
    policies: Vec<String>,
    /// FLOPs targets as fractions of dense, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.65")]
    targets: Vec<f64>,
    /// Use only the first N images (in file-name order).
    #[arg(long)]
    limit: Option<usize>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Where to write the accuracy-vs-GFLOPs plot (PNG).
    #[arg(long, default_value = "sweep.png")]
    plot: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One row of the table: a policy at one schedule, and what it scored.
struct Entry {
    policy: Policy,
    target: Option<f64>,
    pruning: Pruning,
    flops: f64,
    top1: usize,
    agree: usize,
}

/// The threshold whose counted FLOPs on `input` come closest to `target` from below (bisection).
fn calibrate_threshold(
    session: &mut Session,
    input: &[f32],
    blocks: &[usize],
    target: f64,
) -> Result<Pruning> {
    let c = session.config().clone();
    let budget = target * dense_flops(&c);
    let at = |theta: f64, session: &mut Session| -> Result<(Pruning, f64)> {
        let spec = ScheduleSpec::Threshold(vec![(theta as f32, blocks.to_vec())]);
        let p = Pruning::resolve(Policy::Threshold, &spec, PruneOptions::default(), &c)?;
        session.set_pruning(p.clone());
        let outs = session.run_detailed(input)?;
        let f = outs.iter().map(|o| session.flops_for(o)).sum::<f64>() / outs.len() as f64;
        Ok((p, f))
    };
    let (mut lo, mut hi) = (0.0, 4.0);
    let (mut best, f_hi) = at(hi, session)?;
    if f_hi > budget {
        return Ok(best);
    }
    // 7 halvings of [0, 4]: the threshold to 0.03, plenty for a FLOPs target.
    for _ in 0..7 {
        let mid = 0.5 * (lo + hi);
        let (p, f) = at(mid, session)?;
        if f <= budget {
            hi = mid;
            best = p;
        } else {
            lo = mid;
        }
    }
    Ok(best)
}

pub fn run(args: &SweepArgs) -> Result<()> {
    let weights = model_source::load(&args.model)?;
    let c = weights.config.clone();
    let policies = args
        .policies
        .iter()
        .map(|p| p.parse::<Policy>())
        .collect::<Result<Vec<_>>>()?;
    for &t in &args.targets {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::param("--targets", format!("{t} is outside (0, 1]")));
        }
    }
    let (items, paths) = labelled_images(&weights, &args.images, &args.labels, args.limit)?;
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    check_batch(&session, args.batch)?;

    // The schedules, all resolved before any long work so a bad target fails at once.
    let first = preprocess::load_batch(&paths[..args.batch.min(paths.len())], &c.preprocess)?;
    let mut entries = Vec::new();
    for &policy in &policies {
        if policy == Policy::None {
            continue;
        }
        for &target in &args.targets {
            let pruning = if policy == Policy::Threshold {
                eprintln!(
                    "calibrating the threshold for {target} of dense FLOPs on the first batch"
                );
                calibrate_threshold(
                    &mut session,
                    &first,
                    &policy.default_blocks(c.depth),
                    target,
                )?
            } else {
                let spec = ScheduleSpec::flops(target, None)?;
                Pruning::resolve(policy, &spec, PruneOptions::default(), &c)?
            };
            entries.push(Entry {
                policy,
                target: Some(target),
                pruning,
                flops: 0.0,
                top1: 0,
                agree: 0,
            });
        }
    }

    let bar = progress(items.len() * (entries.len() + 1), "forward passes");
    let (mut dense_top1, n) = (0usize, items.len());
    for (chunk, labels) in paths.chunks(args.batch).zip(items.chunks(args.batch)) {
        let input = preprocess::load_batch(chunk, &c.preprocess)?;
        session.set_pruning(Pruning::dense());
        let dense: Vec<usize> = session
            .run(&input)?
            .iter()
            .map(|l| top_k(l, 1).top[0].0)
            .collect();
        dense_top1 += dense
            .iter()
            .zip(labels)
            .filter(|(p, (_, l))| *p == l)
            .count();
        bar.inc(chunk.len() as u64);
        for e in &mut entries {
            session.set_pruning(e.pruning.clone());
            for ((out, (_, label)), d) in
                session.run_detailed(&input)?.iter().zip(labels).zip(&dense)
            {
                let pred = top_k(&out.logits, 1).top[0].0;
                e.top1 += usize::from(pred == *label);
                e.agree += usize::from(pred == *d);
                e.flops += session.flops_for(out);
            }
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();

    let dense_g = dense_flops(&c) / 1e9;
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    let rows: Vec<serde_json::Value> = std::iter::once(json!({
        "policy": "none", "target": 1.0, "schedule": "dense", "gflops": dense_g, "flops_ratio": 1.0,
        "top1": pct(dense_top1), "agreement": 100.0,
    }))
    .chain(entries.iter().map(|e| {
        let g = e.flops / n as f64 / 1e9;
        json!({
            "policy": e.policy, "target": e.target, "schedule": e.pruning.describe(),
            "gflops": g, "flops_ratio": g / dense_g, "top1": pct(e.top1), "agreement": pct(e.agree),
        })
    }))
    .collect();

    // One line per policy, accuracy against GFLOPs, each ending at the dense point.
    let series: Vec<Series> = policies
        .iter()
        .filter(|p| **p != Policy::None)
        .map(|&p| {
            let mut points: Vec<(f64, f64)> = entries
                .iter()
                .filter(|e| e.policy == p)
                .map(|e| (e.flops / n as f64 / 1e9, pct(e.top1)))
                .collect();
            points.push((dense_g, pct(dense_top1)));
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: p.name().to_string(),
                points,
            }
        })
        .collect();
    // The model's folder name reads better than the weights file's full path.
    let source = std::path::Path::new(&weights.source);
    let name = match source.file_name().and_then(|f| f.to_str()) {
        Some("model.safetensors") => source.parent().and_then(|p| p.file_name()),
        _ => source.file_name(),
    };
    let title = format!(
        "{} on {n} images",
        name.and_then(|n| n.to_str()).unwrap_or(&weights.source)
    );
    let png = line_chart(
        &title,
        "GFLOPs per image",
        "top-1 accuracy (%)",
        &series,
        900,
        560,
    );
    png.save(&args.plot)
        .map_err(|e| Error::io(&args.plot, std::io::Error::other(e.to_string())))?;

    if args.json {
        let v = json!({
            "model": weights.source, "adapter": gpu.describe(), "images": n,
            "dense_top1": pct(dense_top1), "dense_gflops": dense_g, "plot": args.plot, "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    println!(
        "model {} on {n} images; adapter {}",
        weights.source,
        gpu.describe()
    );
    println!(
        "{:<12} {:<26} {:>7} {:>7} {:>7} {:>7} {:>9}",
        "policy", "schedule", "GFLOPs", "FLOPs", "top-1", "delta", "agreement"
    );
    for r in &rows {
        let top1 = r["top1"].as_f64().unwrap_or(0.0);
        println!(
            "{:<12} {:<26} {:>7.3} {:>6.1}% {:>6.2}% {:>+7.2} {:>8.2}%",
            r["policy"].as_str().unwrap_or(""),
            r["schedule"].as_str().unwrap_or(""),
            r["gflops"].as_f64().unwrap_or(0.0),
            100.0 * r["flops_ratio"].as_f64().unwrap_or(0.0),
            top1,
            top1 - pct(dense_top1),
            r["agreement"].as_f64().unwrap_or(0.0),
        );
    }
    println!("plot: {}", args.plot.display());
    Ok(())
}
