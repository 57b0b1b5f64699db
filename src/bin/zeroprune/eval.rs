//! `zeroprune eval`: accuracy on a labelled folder; with a policy, the dense model runs on the same
//! batches too, for `agreement`.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use zeroprune::gpu::kernel::Elem;

use zeroprune::model::Precision;
use zeroprune::prune::{Policy, Pruning};
use zeroprune::session::top_k;
use zeroprune::{preprocess, Error, Result, Session};

use crate::common::{check_batch, emit, open_gpu, progress};
use crate::prune_args::{PruneArgs, TextPruneArgs};
use crate::{model_source, ModelArgs};
use zeroprune::eval::data::labelled_images;

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Folder of images.
    #[arg(long, required_unless_present = "texts")]
    images: Option<PathBuf>,
    /// `name<TAB>class-index` lines, one per image.
    #[arg(long, required_unless_present = "texts")]
    labels: Option<PathBuf>,
    /// Text models instead: a `split<TAB>label<TAB>sentence` file (e.g.
    /// ../shared/data/sentence-polarity/sentences.tsv); --model is then a BERT-family folder.
    #[arg(long, conflicts_with_all = ["images", "labels"])]
    texts: Option<PathBuf>,
    /// With --texts, threshold policy: per-layer thresholds from a JSON file (as for `embed`).
    #[arg(long, requires = "texts", value_name = "FILE", conflicts_with_all = ["keep", "tokens", "threshold", "schedule"])]
    thresholds: Option<PathBuf>,
    #[command(flatten)]
    text: crate::eval_text::TextEvalArgs,
    /// Evaluate only the first N images (in file-name order, after --skip).
    #[arg(long)]
    limit: Option<usize>,
    /// Leave out the first N images (in file-name order), e.g. those a schedule was tuned on.
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Print one JSON object (with every prediction).
    #[arg(long)]
    json: bool,
    /// Precision of the dense reference that `agreement` and `speedup` compare against (default:
    /// --precision). `--precision f16 --reference-precision f32` measures f16 against f32 on the
    /// same batches, with or without a policy.
    #[arg(long, value_enum)]
    reference_precision: Option<Precision>,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Serialize)]
struct EvalPrediction {
    file: String,
    pred: usize,
    label: usize,
    top5: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_pred: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_kept: Option<Vec<usize>>,
}

#[derive(Serialize)]
struct EvalOutput {
    model: String,
    adapter: String,
    images: usize,
    batch: usize,
    /// What the weights were stored as, and what the dense reference's were.
    storage: Elem,
    reference_storage: Elem,
    policy: Policy,
    schedule: String,
    top1: f64,
    top5: f64,
    gflops_per_image: f64,
    dense_gflops_per_image: f64,
    images_per_s: f64,
    forward_images_per_s: f64,
    /// With a policy (or another reference precision): the share of images whose top-1 equals
    /// the dense reference's, and its standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agreement_se: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_top1: Option<f64>,
    /// With a policy: the dense model's forward images/s on the same batches, and the pruned
    /// forward's speedup over it.
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_forward_images_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    speedup: Option<f64>,
    predictions: Vec<EvalPrediction>,
}

impl fmt::Display for EvalOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model      {}", self.model)?;
        writeln!(f, "adapter    {}", self.adapter)?;
        writeln!(f, "images     {}", self.images)?;
        writeln!(f, "storage    {}", self.storage.name())?;
        if !self.policy.is_none() {
            writeln!(
                f,
                "policy     {} at {} (patch tokens kept after each block)",
                self.policy, self.schedule
            )?;
        }
        writeln!(f, "top-1      {:.2}%", 100.0 * self.top1)?;
        writeln!(f, "top-5      {:.2}%", 100.0 * self.top5)?;
        if let (Some(d), Some(a)) = (self.dense_top1, self.agreement) {
            writeln!(
                f,
                "dense {}  {:.2}% top-1; agreement with it {:.2}% (se {:.2})",
                self.reference_storage.name(),
                100.0 * d,
                100.0 * a,
                100.0 * self.agreement_se.unwrap_or(0.0)
            )?;
        }
        writeln!(
            f,
            "GFLOPs     {:.3} per image ({:.1}% of dense {:.3})",
            self.gflops_per_image,
            100.0 * self.gflops_per_image / self.dense_gflops_per_image,
            self.dense_gflops_per_image
        )?;
        writeln!(
            f,
            "speed      {:.2} images/s end to end, {:.2} images/s forward only (batch {})",
            self.images_per_s, self.forward_images_per_s, self.batch
        )?;
        if let (Some(d), Some(x)) = (self.dense_forward_images_per_s, self.speedup) {
            writeln!(
                f,
                "speedup    {x:.2}x over the dense {} forward ({d:.2} images/s) on the same batches",
                self.reference_storage.name()
            )?;
        }
        Ok(())
    }
}

pub fn run(args: &EvalArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    if let Some(texts) = &args.texts {
        let model = args.model.model.as_deref().ok_or_else(|| {
            Error::param(
                "--model",
                "a text evaluation needs a BERT-family model folder",
            )
        })?;
        return crate::eval_text::run(&crate::eval_text::TextEval {
            model,
            texts,
            split: &args.text.split,
            head: args.text.head.as_deref(),
            skip: args.skip,
            limit: args.limit,
            batch: args.batch,
            json: args.json,
            prune: TextPruneArgs {
                prune: args.prune.clone(),
                thresholds: args.thresholds.clone(),
                dropped: args.text.dropped,
            },
            calibration: args.text.calibration(),
        });
    }
    let (Some(images), Some(labels)) = (&args.images, &args.labels) else {
        return Err(Error::param(
            "--images",
            "give --images and --labels, or --texts",
        ));
    };
    let weights = model_source::load(&args.model)?;
    let c = &weights.config;
    let pruning = args.prune.resolve(c)?;
    let (items, paths) = labelled_images(
        weights.config.num_classes,
        images,
        labels,
        (args.skip, args.limit),
    )?;
    let gpu = open_gpu()?;
    let mut session = crate::common::session(&gpu, &weights, &args.model)?;
    check_batch(&session, args.batch)?;
    // The dense reference: this session, or a second copy of the model at another precision.
    let mut reference = match args.reference_precision {
        Some(p) if p.storage(&gpu, session.kernel_choice())? != session.storage() => {
            Some(Session::with_precision(&gpu, &weights, p)?)
        }
        _ => None,
    };
    let pruned = !pruning.is_dense() || reference.is_some();
    let dense = Pruning::dense();
    let bar = progress(items.len(), "images");
    let (mut top1, mut top5, mut agree, mut dense_top1) = (0usize, 0usize, 0usize, 0usize);
    let mut flops = 0.0;
    let mut predictions = Vec::with_capacity(items.len());
    let (mut forward_seconds, mut dense_seconds) = (0.0, 0.0);
    let start = Instant::now();
    if pruned {
        // Compile both programs on the first batch, so the forward timings compare like with like.
        let first = preprocess::load_batch(&paths[..args.batch.min(paths.len())], &c.preprocess)?;
        reference
            .as_mut()
            .unwrap_or(&mut session)
            .run(&first, &dense)?;
        session.run(&first, &pruning)?;
    }
    for (chunk, labels) in paths.chunks(args.batch).zip(items.chunks(args.batch)) {
        let input = preprocess::load_batch(chunk, &c.preprocess)?;
        // With a policy, the dense model runs on the same batch for the agreement figure.
        let dense_pred: Vec<usize> = if pruned {
            let t = Instant::now();
            let d = reference
                .as_mut()
                .unwrap_or(&mut session)
                .run(&input, &dense)?;
            dense_seconds += t.elapsed().as_secs_f64();
            d.items
                .iter()
                .map(|o| top_k(&o.logits, 1).top[0].0)
                .collect()
        } else {
            vec![]
        };
        let t = Instant::now();
        let out = session.run(&input, &pruning)?;
        forward_seconds += t.elapsed().as_secs_f64();
        for (i, ((name, label), o)) in labels.iter().zip(&out.items).enumerate() {
            let p = top_k(&o.logits, 5);
            let pred = p.top[0].0;
            top1 += usize::from(pred == *label);
            top5 += usize::from(p.top.iter().any(|(i, _)| i == label));
            flops += o.flops;
            let d = dense_pred.get(i).copied();
            if let Some(d) = d {
                agree += usize::from(d == pred);
                dense_top1 += usize::from(d == *label);
            }
            predictions.push(EvalPrediction {
                file: name.clone(),
                pred,
                label: *label,
                top5: p.top.iter().map(|t| t.0).collect(),
                dense_pred: d,
                tokens_kept: d.map(|_| o.kept.iter().map(Vec::len).collect()),
            });
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "top-1 {:.1}%",
            100.0 * top1 as f64 / predictions.len() as f64
        ));
    }
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let n = items.len() as f64;
    let out = EvalOutput {
        model: weights.source.clone(),
        adapter: gpu.describe(),
        images: items.len(),
        batch: args.batch,
        storage: session.storage(),
        reference_storage: reference.as_ref().unwrap_or(&session).storage(),
        policy: pruning.policy,
        schedule: pruning.describe(),
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        gflops_per_image: flops / n / 1e9,
        dense_gflops_per_image: c.geometry().dense_flops() / 1e9,
        images_per_s: n / wall,
        forward_images_per_s: n / forward_seconds,
        agreement: pruned.then_some(agree as f64 / n),
        agreement_se: pruned.then(|| {
            let a = agree as f64 / n;
            (a * (1.0 - a) / n).sqrt()
        }),
        dense_top1: pruned.then_some(dense_top1 as f64 / n),
        dense_forward_images_per_s: pruned.then_some(n / dense_seconds),
        speedup: pruned.then_some(dense_seconds / forward_seconds),
        predictions,
    };
    emit(&out, args.json)
}
