//! `zeroprune eval`: how well a model does on labelled data (images or sentences), dense or pruned;
//! with a policy the dense model runs on the same batches too, for the paired figures (top-1
//! difference, agreement, cosine, speedup). One driver (`zeroprune::eval`) for every family.

use std::fmt;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use zeroprune::eval::driver::Setting;
use zeroprune::eval::report::{with_unit, Quality, Unit};
use zeroprune::eval::stats::cosine;
use zeroprune::eval::task::{Answers, Task};
use zeroprune::gpu::kernel::Elem;
use zeroprune::model::{Family, Precision};
use zeroprune::prune::Policy;
use zeroprune::{Error, Result};

use crate::common::emit;
use crate::data::{prepare, text_model, DataArgs, ItemId, Opening, Prepared, SettingsFor, Source};
use crate::prune_args::PruneArgs;
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    data: DataArgs,
    /// Print one JSON object (with every prediction).
    #[arg(long)]
    json: bool,
    /// Precision of the dense reference that the paired figures compare against (default:
    /// --precision). `--precision f16 --reference-precision f32` measures f16 against f32 on the
    /// same batches, with or without a policy.
    #[arg(long, value_enum)]
    reference_precision: Option<Precision>,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Serialize)]
struct Prediction {
    #[serde(flatten)]
    id: ItemId,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pred: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    top5: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
    /// With a policy: the dense prediction, the cosine of the embedding to the dense one, and the
    /// tokens kept after each step.
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_pred: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosine: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_kept: Option<Vec<usize>>,
}

#[derive(Serialize)]
struct EvalReport {
    model: String,
    adapter: String,
    task: Task,
    batch: usize,
    /// What the weights were stored as, and what the dense reference's were.
    storage: Elem,
    reference_storage: Elem,
    /// Texts: the split evaluated, and the head that classified.
    #[serde(skip_serializing_if = "Option::is_none")]
    split: Option<String>,
    head: String,
    policy: Policy,
    schedule: String,
    #[serde(flatten)]
    quality: Quality,
    /// End to end: loading, preprocessing, every forward pass.
    items_per_s: f64,
    predictions: Vec<Prediction>,
    #[serde(skip)]
    unit: Unit,
}

impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        with_unit(&self.0, self.0.unit).serialize(s)
    }
}

/// The report with its keys named for its unit (`images`, `gflops_per_text`, ...).
struct Report(EvalReport);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.0;
        let unit = r.unit.name();
        writeln!(f, "model      {}", r.model)?;
        writeln!(f, "adapter    {}", r.adapter)?;
        let split = r
            .split
            .as_ref()
            .map_or(String::new(), |s| format!(" of split {s}"));
        writeln!(f, "{:<10} {}{split}", format!("{unit}s"), r.quality.items)?;
        writeln!(f, "storage    {}", r.storage.name())?;
        if r.task == Task::Classify {
            writeln!(f, "head       {}", r.head)?;
        }
        let dense = r.policy.is_none() && r.storage == r.reference_storage;
        if !r.policy.is_none() {
            let what = if r.unit == Unit::Image {
                " (patch tokens kept after each block)"
            } else {
                ""
            };
            writeln!(f, "policy     {} at {}{what}", r.policy, r.schedule)?;
        }
        for line in r.quality.lines(r.unit, dense) {
            writeln!(f, "{line}")?;
        }
        writeln!(
            f,
            "end to end {:.2} {unit}s/s (batch {})",
            r.items_per_s, r.batch
        )
    }
}

pub fn run(args: &EvalArgs) -> Result<()> {
    args.data.check()?;
    let how = Opening {
        calibration_given: args.data.calibration.is_some(),
        precision: args.model.precision,
        reference: args.reference_precision,
        batch: args.data.batch,
    };
    let pools = args.data.is_text();
    let make =
        || -> SettingsFor { Box::new(move |g, sessions| settings(args, g, pools, sessions)) };
    if args.data.is_text() {
        let dir = args.model.model.as_deref().ok_or_else(|| {
            Error::param(
                "--model",
                "a text evaluation needs a BERT-family model folder",
            )
        })?;
        let (weights, tokenizer) = text_model(dir)?;
        let data = args.data.texts(&tokenizer, weights.config.max_tokens)?;
        let head = args.data.text_head(&weights, &data)?;
        let calibration = || args.data.text_calibration(&tokenizer);
        evaluate(
            args,
            prepare(&weights, (data, head), &how, make(), calibration)?,
        )
    } else {
        let weights = model_source::load(&args.model)?;
        let c = weights.config.clone();
        let data = args.data.images(&c, args.data.task == Task::Embed)?;
        let head = args.data.image_head(&c, &data)?;
        let calibration = || args.data.image_calibration(&c);
        evaluate(
            args,
            prepare(&weights, (data, head), &how, make(), calibration)?,
        )
    }
}

/// Dense (on the reference session where there is one), then the pruned setting asked for.
fn settings(
    args: &EvalArgs,
    largest: &zeroprune::model::TokenGeometry,
    pools: bool,
    sessions: usize,
) -> Result<Vec<Setting>> {
    let pruner = args.prune.pruner(largest)?;
    let dropped = args.prune.dropped(pools)?;
    let dense = Setting::dense().on_session(sessions - 1);
    let pruned = Setting::request(pruner, dropped);
    if pruned.is_dense() && sessions == 1 {
        Ok(vec![dense])
    } else {
        Ok(vec![dense, pruned])
    }
}

/// Run the settings on the data and print the report.
fn evaluate<F: Family, S: Source<F>>(args: &EvalArgs, mut p: Prepared<F, S>) -> Result<()>
where
    F::Output: Answers,
{
    let n = p.data.len();
    let start = Instant::now();
    let what = format!("{}s", p.data.unit().name());
    let outcomes = p.run(args.data.batch, &what)?;
    let Prepared {
        model,
        data,
        sessions,
        settings,
        ..
    } = p;
    let wall = start.elapsed().as_secs_f64();
    let dense = &outcomes[0];
    let mine = outcomes.last().unwrap_or(dense);
    let compared = outcomes.len() > 1;
    let mut quality = Quality::of(mine, dense, data.labels(), args.data.task);
    if !compared {
        quality = quality.dense_only();
    }
    let setting = settings.last().unwrap_or(&settings[0]);
    let predictions = (0..n)
        .map(|i| {
            let a = &mine.answers[i];
            let d = &dense.answers[i];
            Prediction {
                id: data.id(i),
                label: data.labels().map(|l| l[i]),
                pred: a.pred(),
                top5: a.top.clone(),
                tokens: (a.tokens > 0).then_some(a.tokens),
                dense_pred: if compared { d.pred() } else { None },
                cosine: (compared && !a.embedding.is_empty())
                    .then(|| cosine(&a.embedding, &d.embedding)),
                tokens_kept: compared.then(|| a.kept.clone()),
            }
        })
        .collect();
    let report = EvalReport {
        adapter: sessions[0].gpu().describe(),
        model,
        task: args.data.task,
        batch: args.data.batch,
        storage: sessions[0].storage(),
        reference_storage: sessions[sessions.len() - 1].storage(),
        split: args.data.is_text().then(|| args.data.split().to_string()),
        head: args.data.head.as_ref().map_or_else(
            || "the model's classifier".to_string(),
            |p| p.display().to_string(),
        ),
        policy: setting.policy(),
        schedule: setting.describe_at(data.fixed_geometry(sessions[0].model()).as_ref()),
        quality,
        items_per_s: n as f64 / wall,
        predictions,
        unit: data.unit(),
    };
    emit(&Report(report), args.json)
}
