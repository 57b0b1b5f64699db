//! `zeroprune sweep`: every policy at several FLOPs targets on a labelled folder, against the dense
//! model on the same images: one table (policy, FLOPs, top-1, agreement), JSON, and a PNG plot.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use zeroprune::draw::{line_chart, Series};

use zeroprune::prune::{KeepRule, Policy, PruneOptions, Pruning, ScheduleSpec};
use zeroprune::session::top_k;
use zeroprune::{preprocess, Error, Result, Session};

use crate::common::{check_batch, emit, open_gpu, progress};
use crate::{model_source, ModelArgs};
use zeroprune::eval::data::labelled_images;

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of images.
    #[arg(long, required_unless_present = "texts")]
    images: Option<PathBuf>,
    /// `name<TAB>class-index` lines, one per image.
    #[arg(long, required_unless_present = "texts")]
    labels: Option<PathBuf>,
    /// Text models instead: a `split<TAB>label<TAB>sentence` file; --model is a BERT-family
    /// folder (every policy at every target against one dense pass, on --split).
    #[arg(long, conflicts_with_all = ["images", "labels"])]
    texts: Option<PathBuf>,
    #[command(flatten)]
    text: crate::eval_text::TextEvalArgs,
    /// Policies to compare, comma-separated (default: every policy).
    #[arg(long, value_delimiter = ',')]
    policies: Option<Vec<String>>,
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

/// A policy at one schedule, and what it scored.
struct Entry {
    policy: Policy,
    target: f64,
    pruning: Pruning,
    flops: f64,
    top1: usize,
    agree: usize,
}

/// The threshold whose counted FLOPs on `input` come closest to `target` from below (bisection).
fn calibrate_threshold(
    session: &mut Session,
    policy: Policy,
    input: &[f32],
    blocks: &[usize],
    target: f64,
) -> Result<Pruning> {
    let c = session.config().clone();
    let budget = target * c.geometry().dense_flops();
    let at = |theta: f64, session: &mut Session| -> Result<(Pruning, f64)> {
        let spec = ScheduleSpec::Threshold(vec![(theta as f32, blocks.to_vec())]);
        let p = Pruning::resolve(policy, &spec, PruneOptions::default(), &c.geometry())?;
        let out = session.run(input, &p)?;
        let f = out.items.iter().map(|o| o.flops).sum::<f64>() / out.items.len() as f64;
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

#[derive(Serialize)]
struct SweepRow {
    policy: Policy,
    target: f64,
    schedule: String,
    gflops: f64,
    flops_ratio: f64,
    /// Percent.
    top1: f64,
    /// Percent of the images whose top-1 equals the dense model's.
    agreement: f64,
}

#[derive(Serialize)]
struct SweepOutput {
    model: String,
    adapter: String,
    images: usize,
    dense_top1: f64,
    dense_gflops: f64,
    plot: std::path::PathBuf,
    rows: Vec<SweepRow>,
}

impl fmt::Display for SweepOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model {} on {} images; adapter {}",
            self.model, self.images, self.adapter
        )?;
        writeln!(
            f,
            "{:<12} {:<26} {:>7} {:>7} {:>7} {:>7} {:>9}",
            "policy", "schedule", "GFLOPs", "FLOPs", "top-1", "delta", "agreement"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<12} {:<26} {:>7.3} {:>6.1}% {:>6.2}% {:>+7.2} {:>8.2}%",
                r.policy.name(),
                r.schedule,
                r.gflops,
                100.0 * r.flops_ratio,
                r.top1,
                r.top1 - self.dense_top1,
                r.agreement,
            )?;
        }
        writeln!(f, "plot: {}", self.plot.display())
    }
}

pub fn run(args: &SweepArgs) -> Result<()> {
    if let Some(texts) = &args.texts {
        let model = args.model.model.as_deref().ok_or_else(|| {
            Error::param("--model", "a text sweep needs a BERT-family model folder")
        })?;
        return crate::sweep_text::run(&crate::sweep_text::TextSweep {
            model,
            texts,
            split: &args.text.split,
            head: args.text.head.as_deref(),
            policies: args.policies.as_deref(),
            targets: &args.targets,
            limit: args.limit,
            batch: args.batch,
            calibration: args.text.calibration(),
            dropped: args.text.dropped.unwrap_or_default(),
            json: args.json,
        });
    }
    let (Some(images), Some(labels)) = (&args.images, &args.labels) else {
        return Err(Error::param(
            "--images",
            "give --images and --labels, or --texts",
        ));
    };
    let weights = model_source::load(&args.model)?;
    let c = weights.config.clone();
    let policies: Vec<Policy> = match &args.policies {
        Some(names) => names
            .iter()
            .map(|p| p.parse::<Policy>())
            .collect::<Result<_>>()?,
        None => Policy::all().to_vec(),
    };
    let policies: Vec<Policy> = policies.into_iter().filter(|p| !p.is_none()).collect();
    for &t in &args.targets {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::param("--targets", format!("{t} is outside (0, 1]")));
        }
    }
    let (items, paths) =
        labelled_images(weights.config.num_classes, images, labels, (0, args.limit))?;
    let gpu = open_gpu()?;
    let mut session = crate::common::session(&gpu, &weights, &args.model)?;
    check_batch(&session, args.batch)?;

    // The schedules, all resolved before any long work so a bad target fails at once.
    let first = preprocess::load_batch(&paths[..args.batch.min(paths.len())], &c.preprocess)?;
    let mut entries = Vec::new();
    for &policy in &policies {
        for &target in &args.targets {
            let pruning = if policy.def().keep_rule() == KeepRule::Threshold {
                eprintln!(
                    "calibrating the threshold for {target} of dense FLOPs on the first batch"
                );
                calibrate_threshold(
                    &mut session,
                    policy,
                    &first,
                    &policy.def().default_blocks(c.depth),
                    target,
                )?
            } else {
                let spec = ScheduleSpec::flops(target, None)?;
                Pruning::resolve(policy, &spec, PruneOptions::default(), &c.geometry())?
            };
            entries.push(Entry {
                policy,
                target,
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
        let dense: Vec<usize> = session
            .run(&input, &Pruning::dense())?
            .items
            .iter()
            .map(|o| top_k(&o.logits, 1).top[0].0)
            .collect();
        dense_top1 += dense
            .iter()
            .zip(labels)
            .filter(|(p, (_, l))| *p == l)
            .count();
        bar.inc(chunk.len() as u64);
        for e in &mut entries {
            let out = session.run(&input, &e.pruning)?;
            for ((o, (_, label)), d) in out.items.iter().zip(labels).zip(&dense) {
                let pred = top_k(&o.logits, 1).top[0].0;
                e.top1 += usize::from(pred == *label);
                e.agree += usize::from(pred == *d);
                e.flops += o.flops;
            }
            bar.inc(chunk.len() as u64);
        }
    }
    bar.finish_and_clear();

    let dense_g = c.geometry().dense_flops() / 1e9;
    let pct = |k: usize| 100.0 * k as f64 / n as f64;
    let rows: Vec<SweepRow> = std::iter::once(SweepRow {
        policy: Policy::none(),
        target: 1.0,
        schedule: "dense".into(),
        gflops: dense_g,
        flops_ratio: 1.0,
        top1: pct(dense_top1),
        agreement: 100.0,
    })
    .chain(entries.iter().map(|e| {
        let g = e.flops / n as f64 / 1e9;
        SweepRow {
            policy: e.policy,
            target: e.target,
            schedule: e.pruning.describe(),
            gflops: g,
            flops_ratio: g / dense_g,
            top1: pct(e.top1),
            agreement: pct(e.agree),
        }
    }))
    .collect();

    // One line per policy, accuracy against GFLOPs, each ending at the dense point.
    let series: Vec<Series> = policies
        .iter()
        .map(|&p| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.policy == p)
                .map(|r| (r.gflops, r.top1))
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
    let out = SweepOutput {
        model: weights.source.clone(),
        adapter: gpu.describe(),
        images: n,
        dense_top1: pct(dense_top1),
        dense_gflops: dense_g,
        plot: args.plot.clone(),
        rows,
    };
    emit(&out, args.json)
}
