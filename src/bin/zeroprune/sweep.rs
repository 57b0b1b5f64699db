//! `zeroprune sweep`: every policy at several FLOPs targets on labelled data (images or sentences),
//! against one dense pass on the same batches: one table (FLOPs, top-1 and its paired difference,
//! agreement, cosine, speedup), JSON, and a PNG plot of quality against GFLOPs.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use zeroprune::draw::{line_chart, Series};
use zeroprune::eval::driver::Setting;
use zeroprune::eval::report::{with_unit, Quality, Unit};
use zeroprune::eval::task::{Answers, Task};
use zeroprune::model::{Family, TokenGeometry};
use zeroprune::prune::{Policy, PruneRequest, Pruner};
use zeroprune::{Error, Result};

use crate::common::emit;
use crate::data::{prepare, text_model, DataArgs, Opening, Prepared, SettingsFor, Source};
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct SweepArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Policies to compare, comma-separated (default: every policy).
    #[arg(long, value_delimiter = ',')]
    policies: Option<Vec<String>>,
    /// FLOPs targets as fractions of dense, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0.8,0.65")]
    targets: Vec<f64>,
    /// Text encoders that mean-pool: what the mean does with dropped tokens, restate or omit.
    #[arg(long, value_name = "restate|omit")]
    dropped: Option<zeroprune::model::Dropped>,
    /// Where to write the quality-vs-GFLOPs plot (PNG).
    #[arg(long, default_value = "sweep.png")]
    plot: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct SweepRow {
    policy: Policy,
    target: f64,
    schedule: String,
    #[serde(flatten)]
    quality: Quality,
}

#[derive(Serialize)]
struct SweepReport {
    model: String,
    adapter: String,
    task: Task,
    batch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<String>,
    plot: PathBuf,
    /// The dense model first, then every policy at every target.
    rows: Vec<SweepRow>,
    #[serde(skip)]
    unit: Unit,
}

struct Report(SweepReport);

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        with_unit(&self.0, self.0.unit).serialize(s)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        let unit = r.unit.name();
        let n = r.rows.first().map_or(0, |row| row.quality.items);
        writeln!(f, "model {} on {n} {unit}s; adapter {}", r.model, r.adapter)?;
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.2}%", 100.0 * v));
        let delta = |q: &Quality| match (q.top1_delta, q.top1_delta_se) {
            (Some(d), Some(se)) => format!("{:+.2} ({:.2})", 100.0 * d, 100.0 * se),
            _ => "-".into(),
        };
        let rows: Vec<Vec<String>> = r
            .rows
            .iter()
            .map(|row| {
                let q = &row.quality;
                vec![
                    row.policy.name().to_string(),
                    row.schedule.clone(),
                    format!("{:.3}", q.gflops_per_item),
                    format!("{:.1}%", 100.0 * q.flops_ratio),
                    pct(q.top1),
                    delta(q),
                    pct(q.agreement),
                    q.mean_cosine.map_or("-".into(), |c| format!("{c:.4}")),
                    pct(q.nn_agreement),
                    format!("{:.2}x", q.speedup),
                ]
            })
            .collect();
        write!(
            f,
            "{}",
            crate::common::table(
                &[
                    "policy",
                    "schedule",
                    "GFLOPs",
                    "FLOPs",
                    "top-1",
                    "vs dense (se)",
                    "agreement",
                    "cosine",
                    "neighbours",
                    "speedup",
                ],
                &rows
            )
        )?;
        writeln!(f, "plot: {}", r.plot.display())
    }
}

pub fn run(args: &SweepArgs) -> Result<()> {
    args.data.check()?;
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
    let how = Opening {
        calibration_given: args.data.calibration.is_some(),
        precision: args.model.precision,
        reference: None,
        batch: args.data.batch,
    };
    let dropped = args.dropped;
    let targets = &args.targets;
    let policies_ = &policies;
    let make = || -> SettingsFor { Box::new(move |g, _| settings(policies_, targets, g, dropped)) };
    if args.data.is_text() {
        let dir = args.model.model.as_deref().ok_or_else(|| {
            Error::param("--model", "a text sweep needs a BERT-family model folder")
        })?;
        let (weights, tokenizer) = text_model(dir)?;
        let data = args.data.texts(&tokenizer, weights.config.max_tokens)?;
        let head = args.data.text_head(&weights, &data)?;
        let calibration = || args.data.text_calibration(&tokenizer);
        sweep(
            args,
            prepare(&weights, (data, head), &how, make(), calibration)?,
            &policies,
        )
    } else {
        if args.dropped.is_some() {
            return Err(Error::param(
                "--dropped",
                "an image model classifies from its class token and pools nothing: --dropped \
                 applies to text encoders that mean-pool",
            ));
        }
        let weights = model_source::load(&args.model)?;
        let c = weights.config.clone();
        let data = args.data.images(&c, args.data.task == Task::Embed)?;
        let head = args.data.image_head(&c, &data)?;
        let calibration = || args.data.image_calibration(&c);
        sweep(
            args,
            prepare(&weights, (data, head), &how, make(), calibration)?,
            &policies,
        )
    }
}

/// Dense, then every policy at every target: all resolved before any long work, so a bad target
/// fails at once.
fn settings(
    policies: &[Policy],
    targets: &[f64],
    largest: &TokenGeometry,
    dropped: Option<zeroprune::model::Dropped>,
) -> Result<Vec<Setting>> {
    let mut settings = vec![Setting::dense()];
    for &policy in policies {
        for &target in targets {
            let request = PruneRequest {
                policy: Some(policy.name().into()),
                flops: Some(target),
                ..Default::default()
            };
            let pruner = Pruner::new(request, None, largest)?;
            settings.push(Setting::request(pruner, dropped.unwrap_or_default()));
        }
    }
    Ok(settings)
}

fn sweep<F: Family, S: Source<F>>(
    args: &SweepArgs,
    mut p: Prepared<F, S>,
    policies: &[Policy],
) -> Result<()>
where
    F::Output: Answers,
{
    let outcomes = p.run(args.data.batch, "forward passes")?;
    let Prepared {
        model,
        data,
        sessions,
        settings,
        ..
    } = p;
    let task = args.data.task;
    let geometry = data.fixed_geometry(sessions[0].model());
    let targets =
        std::iter::once(1.0).chain(policies.iter().flat_map(|_| args.targets.iter().copied()));
    let rows: Vec<SweepRow> = settings
        .iter()
        .zip(&outcomes)
        .zip(targets)
        .map(|((s, o), target)| SweepRow {
            policy: s.policy(),
            target,
            schedule: if s.is_dense() {
                "dense".into()
            } else {
                s.describe_at(geometry.as_ref())
            },
            quality: Quality::of(o, &outcomes[0], data.labels(), task),
        })
        .collect();
    plot(args, &model, data.unit(), &rows, policies)?;
    emit(
        &Report(SweepReport {
            model,
            adapter: sessions[0].gpu().describe(),
            task,
            batch: args.data.batch,
            split: args.data.is_text().then(|| args.data.split().to_string()),
            plot: args.plot.clone(),
            rows,
            unit: data.unit(),
        }),
        args.json,
    )
}

/// One line per policy, quality against GFLOPs, each ending at the dense point: top-1 where the
/// task classifies with labels, else agreement, else the cosine to dense.
fn plot(
    args: &SweepArgs,
    model: &str,
    unit: Unit,
    rows: &[SweepRow],
    policies: &[Policy],
) -> Result<()> {
    let (label, value): (&str, fn(&Quality) -> Option<f64>) = match args.data.task {
        Task::Classify if rows[0].quality.top1.is_some() => ("top-1 accuracy (%)", |q| q.top1),
        Task::Classify => ("agreement with dense (%)", |q| q.agreement),
        Task::Embed => ("nearest-neighbour agreement (%)", |q| q.nn_agreement),
    };
    let dense = &rows[0].quality;
    let series: Vec<Series> = policies
        .iter()
        .map(|&p| {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.policy == p)
                .chain(std::iter::once(&rows[0]))
                .map(|r| {
                    (
                        r.quality.gflops_per_item,
                        100.0 * value(&r.quality).unwrap_or(1.0),
                    )
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: p.name().to_string(),
                points,
            }
        })
        .collect();
    // The model's folder name reads better than the weights file's full path.
    let source = std::path::Path::new(model);
    let name = match source.file_name().and_then(|f| f.to_str()) {
        Some("model.safetensors") => source.parent().and_then(|p| p.file_name()),
        _ => source.file_name(),
    };
    let title = format!(
        "{} on {} {}s",
        name.and_then(|n| n.to_str()).unwrap_or(model),
        dense.items,
        unit.name()
    );
    let png = line_chart(
        &title,
        &format!("GFLOPs per {}", unit.name()),
        label,
        &series,
        900,
        560,
    );
    png.save(&args.plot)
        .map_err(|e| Error::io(&args.plot, std::io::Error::other(e.to_string())))
}
