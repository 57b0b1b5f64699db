//! `zeroprune eval --texts FILE`: accuracy of a text encoder on labelled sentences
//! (`split<TAB>label<TAB>sentence` lines), through the model's own classifier or a linear head
//! (`--head FILE`: a safetensors file with `weight [C, D]` and `bias [C]`, applied to the pooled
//! embedding; `bench/fit_text_head.py` fits one).

use std::fmt;
use std::path::{Path, PathBuf};

use std::time::Instant;
use zeroprune::eval::data::{encode_labelled, labelled_texts, read_labelled, Labelled};
use zeroprune::eval::head::{argmax, check_labels, Head};

use serde::Serialize;
use zeroprune::model::bert::BertWeights;
use zeroprune::model::Dropped;
use zeroprune::prune::Pruner;
use zeroprune::text::{Encoded, TextTokenizer};
use zeroprune::{Error, Result};
use zeroprune::{Run, TextOutput, TextSession};

use crate::common::{calibrate_text, cosine, emit, open_text_model, progress};
use crate::prune_args::TextPruneArgs;

#[derive(Serialize)]
struct TextPrediction {
    line: usize,
    label: usize,
    pred: usize,
    tokens: usize,
    /// With a policy: the dense prediction, the cosine of the pruned embedding to the dense one,
    /// and the tokens kept after each step.
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_pred: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cosine: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_kept: Option<Vec<usize>>,
}

/// Mean and standard error of the mean.
fn mean_se(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, (var / n).sqrt())
}

#[derive(Serialize)]
pub(crate) struct Versus {
    pub(crate) dense_accuracy: f64,
    /// Pruned minus dense accuracy, and its paired standard error (same texts).
    pub(crate) accuracy_delta: f64,
    pub(crate) accuracy_delta_se: f64,
    /// Share of texts whose prediction equals the dense one.
    pub(crate) agreement: f64,
    pub(crate) agreement_se: f64,
    /// Mean cosine of each pruned embedding to the dense one.
    pub(crate) mean_cosine: f64,
    pub(crate) mean_cosine_se: f64,
    pub(crate) dense_gflops_per_text: f64,
    /// Mean pruned FLOPs over mean dense FLOPs.
    pub(crate) flops_ratio: f64,
    pub(crate) dense_texts_per_s: f64,
}

#[derive(Serialize)]
struct TextEvalOutput {
    model: String,
    adapter: String,
    texts: usize,
    split: String,
    /// The head that classified: the model's own classifier or the --head file.
    head: String,
    policy: String,
    accuracy: f64,
    /// Standard error of the accuracy (binomial).
    accuracy_se: f64,
    gflops_per_text: f64,
    texts_per_s: f64,
    /// With a policy: against the dense model on the same texts.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    versus_dense: Option<Versus>,
    predictions: Vec<TextPrediction>,
}

impl fmt::Display for TextEvalOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model: {}  adapter: {}", self.model, self.adapter)?;
        writeln!(
            f,
            "{} texts of split {}, head {}, {}: accuracy {:.2}% (+-{:.2}), {:.3} GFLOPs per text, {:.1} texts/s",
            self.texts,
            self.split,
            self.head,
            self.policy,
            100.0 * self.accuracy,
            100.0 * self.accuracy_se,
            self.gflops_per_text,
            self.texts_per_s
        )?;
        if let Some(v) = &self.versus_dense {
            writeln!(
                f,
                "dense: {:.2}%; pruned - dense {:+.2} (se {:.2}); agreement {:.2}% (se {:.2}); \
                 mean cosine {:.4}; {:.1}% of the dense FLOPs ({:.3} GFLOPs); dense {:.1} texts/s",
                100.0 * v.dense_accuracy,
                100.0 * v.accuracy_delta,
                100.0 * v.accuracy_delta_se,
                100.0 * v.agreement,
                100.0 * v.agreement_se,
                v.mean_cosine,
                100.0 * v.flops_ratio,
                v.dense_gflops_per_text,
                v.dense_texts_per_s
            )?;
        }
        Ok(())
    }
}

/// The options `eval --texts` and `sweep --texts` share (each command declares `--texts` itself).
#[derive(clap::Args, Clone, Debug)]
pub struct TextEvalArgs {
    /// With --texts: the split to evaluate.
    #[arg(long, default_value = "test", requires = "texts")]
    pub split: String,
    /// With --texts: a linear head (safetensors, `weight [C, D]`, `bias [C]`) on the pooled
    /// embedding, instead of the model's own classifier (bench/fit_text_head.py fits one).
    #[arg(long, requires = "texts")]
    pub head: Option<PathBuf>,
    /// With --texts, the threshold policy with --flops: the split its thresholds are calibrated
    /// on (never the one evaluated).
    #[arg(long, default_value = "train", requires = "texts")]
    pub calibration_split: String,
    /// With --texts: how many texts of the calibration split the calibration runs on.
    #[arg(long, default_value_t = 200, requires = "texts")]
    pub calibration_limit: usize,
    /// With --texts: what mean pooling does with dropped tokens, restate or omit (as for `embed`).
    #[arg(long, requires = "texts", value_name = "restate|omit")]
    pub dropped: Option<Dropped>,
}

impl TextEvalArgs {
    /// Where the threshold policy calibrates: a split and how many of its texts.
    pub fn calibration(&self) -> (&str, usize) {
        (&self.calibration_split, self.calibration_limit)
    }
}

/// How a text evaluation runs.
pub struct TextEval<'a> {
    pub model: &'a Path,
    pub texts: &'a Path,
    pub split: &'a str,
    pub head: Option<&'a Path>,
    pub skip: usize,
    pub limit: Option<usize>,
    pub batch: usize,
    pub json: bool,
    pub prune: TextPruneArgs,
    /// Where the threshold policy's FLOPs target is calibrated: a split and how many of its texts.
    pub calibration: (&'a str, usize),
}

/// Run the text evaluation (`zeroprune eval --texts`).
pub fn run(e: &TextEval) -> Result<()> {
    let items = labelled_texts(e.texts, e.split, (e.skip, e.limit))?;
    let (gpu, weights, tokenizer) = open_text_model(e.model)?;
    let c = weights.config.clone();
    let (mut pruning, dropped) = e.prune.resolve(&c)?;
    let head_file = head_for(e.head, &weights, e.model)?;
    check_labels(head_file.as_ref(), &weights, &items, e.texts)?;
    let mut session = TextSession::new(&gpu, &weights)?;
    if pruning.needs_calibration()? {
        let enc = calibration_texts(e.texts, e.calibration, e.split, &tokenizer)?;
        let on = format!("split {}", e.calibration.0);
        calibrate_text(&mut session, &enc, &mut pruning, e.batch, &on)?;
    }
    let enc = encode_labelled(&tokenizer, &items, e.texts)?;
    let cut = enc.truncated.iter().filter(|&&t| t).count();
    if cut > 0 {
        eprintln!(
            "warning: {cut} texts were cut to the model's {} tokens",
            c.max_tokens
        );
    }
    let pruned = !pruning.is_dense()?;
    let mut timed = |p: &Pruner, what: &str| -> Result<(Vec<TextOutput>, f64)> {
        let bar = progress(items.len(), what);
        let t = Instant::now();
        let run = Run::new(p).dropped(dropped);
        let out = session.run_all(&enc, run, e.batch, |n| bar.inc(n as u64))?;
        let seconds = t.elapsed().as_secs_f64();
        bar.finish_and_clear();
        Ok((out, seconds))
    };
    let dense = if pruned {
        Some(timed(&Pruner::dense(), "texts (dense)")?)
    } else {
        None
    };
    let (outputs, seconds) = timed(&pruning, "texts")?;
    let predict = |o: &TextOutput| match &head_file {
        Some(h) => argmax(&h.logits(&o.embedding)),
        None => argmax(&o.logits),
    };
    let pred_list: Vec<usize> = outputs.iter().map(predict).collect();
    let predictions: Vec<TextPrediction> = items
        .iter()
        .zip(&outputs)
        .enumerate()
        .map(|(i, (item, o))| {
            let d = dense.as_ref().map(|(d, _)| &d[i]);
            TextPrediction {
                line: item.line,
                label: item.label,
                pred: predict(o),
                tokens: o.tokens,
                dense_pred: d.map(predict),
                cosine: d.map(|d| cosine(&o.embedding, &d.embedding)),
                tokens_kept: pruned.then(|| o.kept.iter().map(Vec::len).collect()),
            }
        })
        .collect();
    let n = predictions.len() as f64;
    let correct: Vec<f64> = predictions
        .iter()
        .map(|p| (p.pred == p.label) as u8 as f64)
        .collect();
    let accuracy = correct.iter().sum::<f64>() / n;
    let flops = outputs.iter().map(|o| o.flops).sum::<f64>() / n;
    let versus_dense = dense.as_ref().map(|(d, dense_seconds)| {
        let dense_preds: Vec<usize> = d.iter().map(predict).collect();
        versus(
            &items,
            (d, &dense_preds, *dense_seconds),
            (&outputs, &pred_list, seconds),
        )
    });
    emit(
        &TextEvalOutput {
            model: weights.source.clone(),
            adapter: gpu.describe(),
            texts: predictions.len(),
            split: e.split.to_string(),
            head: e.head.map_or("the model's classifier".to_string(), |p| {
                p.display().to_string()
            }),
            policy: crate::prune_args::describe_text(&pruning, dropped),
            accuracy,
            accuracy_se: (accuracy * (1.0 - accuracy) / n).sqrt(),
            gflops_per_text: flops / 1e9,
            texts_per_s: n / seconds,
            versus_dense,
            predictions,
        },
        e.json,
    )
}

/// The head that classifies: the `--head` file, or the model's own classifier (`None`).
pub(crate) fn head_for(path: Option<&Path>, w: &BertWeights, model: &Path) -> Result<Option<Head>> {
    match path {
        Some(p) => Ok(Some(Head::load(p, w.config.hidden_size)?)),
        None if w.classifier.is_some() => Ok(None),
        None => Err(Error::param(
            "--head",
            format!(
                "{} has no classifier: give a linear head (bench/fit_text_head.py fits one)",
                model.display()
            ),
        )),
    }
}

/// The first `limit` texts of split `split`, where the threshold policy calibrates: never the
/// split evaluated.
pub(crate) fn calibration_texts(
    file: &Path,
    (split, limit): (&str, usize),
    evaluated: &str,
    tokenizer: &TextTokenizer,
) -> Result<Encoded> {
    if limit == 0 {
        return Err(Error::param("--calibration-limit", "must be at least 1"));
    }
    if split == evaluated {
        return Err(Error::param(
            "--calibration-split",
            "calibrating on the split evaluated would tune on the test data; name another",
        ));
    }
    let mut cal = read_labelled(file, split)?;
    cal.truncate(limit.min(zeroprune::limits::MAX_TEXTS));
    encode_labelled(tokenizer, &cal, file)
}

/// The share of predictions equal to their text's label.
pub(crate) fn accuracy(pred: &[usize], items: &[Labelled]) -> f64 {
    let right = pred
        .iter()
        .zip(items)
        .filter(|(p, it)| **p == it.label)
        .count();
    right as f64 / items.len().max(1) as f64
}

/// A pruned run against the dense one on the same texts: `(outputs, predictions, seconds)` each.
pub(crate) fn versus(
    items: &[Labelled],
    (d, dense_pred, dense_seconds): (&[TextOutput], &[usize], f64),
    (o, pred, _): (&[TextOutput], &[usize], f64),
) -> Versus {
    let n = items.len() as f64;
    let dense_flops = d.iter().map(|o| o.flops).sum::<f64>() / n;
    let flops = o.iter().map(|o| o.flops).sum::<f64>() / n;
    let (mut delta, mut agree, mut cos) = (vec![], vec![], vec![]);
    for (i, item) in items.iter().enumerate() {
        delta.push(
            (pred[i] == item.label) as u8 as f64 - (dense_pred[i] == item.label) as u8 as f64,
        );
        agree.push((pred[i] == dense_pred[i]) as u8 as f64);
        cos.push(cosine(&o[i].embedding, &d[i].embedding));
    }

    let (accuracy_delta, accuracy_delta_se) = mean_se(&delta);
    let (agreement, agreement_se) = mean_se(&agree);
    let (mean_cosine, mean_cosine_se) = mean_se(&cos);
    Versus {
        dense_accuracy: accuracy(dense_pred, items),
        accuracy_delta,
        accuracy_delta_se,
        agreement,
        agreement_se,
        mean_cosine,
        mean_cosine_se,
        dense_gflops_per_text: dense_flops / 1e9,
        flops_ratio: flops / dense_flops,
        dense_texts_per_s: n / dense_seconds,
    }
}
