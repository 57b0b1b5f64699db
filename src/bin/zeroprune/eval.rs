//! `zeroprune eval`: how well a model does on labelled data (images or sentences), dense or pruned;
//! with a policy the dense model runs on the same batches too, for the paired figures (top-1
//! difference, agreement, cosine, speedup). One driver (`zeroprune::eval`) for every family.

use std::fmt;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use zeroprune::eval::driver::{run_settings_blocking, Setting};
use zeroprune::eval::head::Head;
use zeroprune::eval::report::{with_unit, Quality, Unit};
use zeroprune::eval::stats::cosine;
use zeroprune::eval::task::{Answers, Task};
use zeroprune::gpu::kernel::Elem;
use zeroprune::model::{Family, Precision};
use zeroprune::prune::Policy;
use zeroprune::{Error, Result, Session};

use crate::common::{check_batch, emit, open_gpu, progress};
use crate::data::{text_model, DataArgs, ItemId, Source};
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
    if args.data.is_text() {
        let dir = args.model.model.as_deref().ok_or_else(|| {
            Error::param(
                "--model",
                "a text evaluation needs a BERT-family model folder",
            )
        })?;
        let (weights, tokenizer) = text_model(dir)?;
        let c = weights.config.clone();
        let data = args.data.texts(&tokenizer, c.max_tokens)?;
        let head = args.data.text_head(&weights, &data)?;
        let gpu = open_gpu()?;
        let mut sessions = sessions(&gpu, &weights, &args.model, args.reference_precision)?;
        let settings = settings(args, &c.largest_geometry(), true, sessions.len())?;
        let settings = crate::common::calibrated(&mut sessions, settings, args.data.batch, || {
            args.data.text_calibration(&tokenizer)
        })?;
        let head_name = head_name(args, "the model's classifier");
        evaluate(
            args,
            &weights.source,
            &mut sessions,
            &data,
            &settings,
            head.as_ref(),
            head_name,
        )
    } else {
        let weights = model_source::load(&args.model)?;
        let c = weights.config.clone();
        let data = args.data.images(&c, args.data.task == Task::Embed)?;
        let head = args.data.image_head(&c, &data)?;
        let gpu = open_gpu()?;
        let mut sessions = sessions(&gpu, &weights, &args.model, args.reference_precision)?;
        check_batch(&sessions[0], args.data.batch)?;
        let settings = settings(args, &c.geometry(), false, sessions.len())?;
        let settings = crate::common::calibrated(&mut sessions, settings, args.data.batch, || {
            args.data.image_calibration(&c)
        })?;
        let head_name = head_name(args, "the model's classifier");
        evaluate(
            args,
            &weights.source,
            &mut sessions,
            &data,
            &settings,
            head.as_ref(),
            head_name,
        )
    }
}

fn head_name(args: &EvalArgs, own: &str) -> String {
    args.data
        .head
        .as_ref()
        .map_or(own.to_string(), |p| p.display().to_string())
}

/// The session evaluated, and a second copy of the model at the reference precision where it
/// stores differently.
fn sessions<W: zeroprune::model::family::Weights>(
    gpu: &zeroprune::gpu::GpuContext,
    weights: &W,
    model: &ModelArgs,
    reference: Option<Precision>,
) -> Result<Vec<Session<W::Family>>> {
    let mut sessions = vec![Session::with_precision(gpu, weights, model.precision)?];
    if let Some(p) = reference {
        if p.storage(gpu, sessions[0].kernel_choice())? != sessions[0].storage() {
            sessions.push(Session::with_precision(gpu, weights, p)?);
        }
    }
    Ok(sessions)
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

/// Run the settings on `data` and print the report.
#[allow(clippy::too_many_arguments)]
fn evaluate<F: Family, S: Source<F>>(
    args: &EvalArgs,
    model: &str,
    sessions: &mut [Session<F>],
    data: &S,
    settings: &[Setting],
    head: Option<&Head>,
    head_name: String,
) -> Result<()>
where
    F::Output: Answers,
{
    let n = data.len();
    let batches = data.batches(sessions[0].model(), args.data.batch);
    let bar = progress(n * settings.len(), &format!("{}s", data.unit().name()));
    let start = Instant::now();
    let outcomes = run_settings_blocking(
        sessions,
        settings,
        n,
        &batches,
        |items| data.load(items),
        head,
        |k| bar.inc(k as u64),
    )?;
    bar.finish_and_clear();
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
        model: model.to_string(),
        adapter: sessions[0].gpu().describe(),
        task: args.data.task,
        batch: args.data.batch,
        storage: sessions[0].storage(),
        reference_storage: sessions[sessions.len() - 1].storage(),
        split: args.data.is_text().then(|| args.data.split().to_string()),
        head: head_name,
        policy: setting.policy(),
        schedule: setting.describe_at(data.fixed_geometry(sessions[0].model()).as_ref()),
        quality,
        items_per_s: n as f64 / wall,
        predictions,
        unit: data.unit(),
    };
    emit(&Report(report), args.json)
}
