//! `zeroprune sweep --texts FILE`: every policy at several FLOPs targets on labelled sentences,
//! against the dense model on the same texts (one dense pass for all): accuracy, its paired
//! difference to dense, agreement and mean cosine to the dense embeddings, each with a standard
//! error. The threshold policy's targets are calibrated on another split first.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use zeroprune::model::Dropped;
use zeroprune::prune::Pruner;
use zeroprune::prune::{KeepRule, Policy, PruneRequest};
use zeroprune::{Error, Result};
use zeroprune::{Run, TextOutput, TextSession};

use crate::common::{calibrate_text, emit, open_text_model, progress};
use crate::eval_text::{accuracy, calibration_texts, head_for, versus, Versus};
use zeroprune::eval::data::{encode_labelled, labelled_texts};
use zeroprune::eval::head::{argmax, check_labels};

/// The settings of a text sweep.
pub struct TextSweep<'a> {
    pub model: &'a Path,
    pub texts: &'a Path,
    pub split: &'a str,
    pub head: Option<&'a Path>,
    pub policies: Option<&'a [String]>,
    pub targets: &'a [f64],
    pub limit: Option<usize>,
    pub batch: usize,
    pub calibration: (&'a str, usize),
    pub dropped: Dropped,
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    policy: String,
    target: f64,
    accuracy: f64,
    #[serde(flatten)]
    versus: Versus,
    texts_per_s: f64,
}

#[derive(Serialize)]
struct SweepOutput {
    model: String,
    adapter: String,
    split: String,
    texts: usize,
    dense_accuracy: f64,
    dense_accuracy_se: f64,
    dense_gflops_per_text: f64,
    rows: Vec<Row>,
}

impl fmt::Display for SweepOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model: {}  adapter: {}", self.model, self.adapter)?;
        writeln!(
            f,
            "{} texts of split {}: dense accuracy {:.2}% (+-{:.2}), {:.3} GFLOPs per text",
            self.texts,
            self.split,
            100.0 * self.dense_accuracy,
            100.0 * self.dense_accuracy_se,
            self.dense_gflops_per_text
        )?;
        writeln!(
            f,
            "{:<13} {:>6} {:>7} {:>9} {:>16} {:>16} {:>8} {:>8}",
            "policy",
            "target",
            "FLOPs",
            "accuracy",
            "vs dense (se)",
            "agreement (se)",
            "cosine",
            "texts/s"
        )?;
        for r in &self.rows {
            let v = &r.versus;
            writeln!(
                f,
                "{:<13} {:>6.2} {:>6.1}% {:>8.2}% {:>+9.2} ({:.2}) {:>9.2}% ({:.2}) {:>8.4} {:>8.1}",
                r.policy,
                r.target,
                100.0 * v.flops_ratio,
                100.0 * r.accuracy,
                100.0 * v.accuracy_delta,
                100.0 * v.accuracy_delta_se,
                100.0 * v.agreement,
                100.0 * v.agreement_se,
                v.mean_cosine,
                r.texts_per_s
            )?;
        }
        Ok(())
    }
}

pub fn run(s: &TextSweep) -> Result<()> {
    for &t in s.targets {
        if !(t > 0.0 && t <= 1.0) {
            return Err(Error::param("--targets", format!("{t} is outside (0, 1]")));
        }
    }
    let policies: Vec<Policy> = match s.policies {
        Some(names) => names.iter().map(|p| p.parse()).collect::<Result<_>>()?,
        None => Policy::all().to_vec(),
    };
    let policies: Vec<Policy> = policies.into_iter().filter(|p| !p.is_none()).collect();
    let items = labelled_texts(s.texts, s.split, (0, s.limit))?;
    let (gpu, weights, tokenizer) = open_text_model(s.model)?;
    let c = weights.config.clone();
    let head = head_for(s.head, &weights, s.model)?;
    check_labels(head.as_ref(), &weights, &items, s.texts)?;
    // Every schedule resolved before any long work, so a bad one fails at once.
    let mut configs = Vec::new();
    for &policy in &policies {
        for &target in s.targets {
            let request = PruneRequest {
                policy: Some(policy.name().into()),
                flops: Some(target),
                ..Default::default()
            };
            let largest = c.largest_geometry();
            configs.push((policy, target, Pruner::new(request, None, &largest)?));
        }
    }
    let mut session = TextSession::new(&gpu, &weights)?;
    let enc = encode_labelled(&tokenizer, &items, s.texts)?;
    let predict = |o: &TextOutput| match &head {
        Some(h) => argmax(&h.logits(&o.embedding)),
        None => argmax(&o.logits),
    };
    let timed = |session: &mut TextSession, p: &Pruner, what: &str| {
        let bar = progress(items.len(), what);
        let t = Instant::now();
        let run = Run::new(p).dropped(s.dropped);
        let out = session.run_all(&enc, run, s.batch, |n| bar.inc(n as u64));
        bar.finish_and_clear();
        out.map(|o| (o, t.elapsed().as_secs_f64()))
    };
    let (dense, dense_seconds) = timed(&mut session, &Pruner::dense(), "texts (dense)")?;
    let dense_pred: Vec<usize> = dense.iter().map(predict).collect();
    let n = items.len() as f64;
    let dense_accuracy = accuracy(&dense_pred, &items);
    let calibration_enc = if configs
        .iter()
        .any(|(p, _, _)| p.def().keep_rule() == KeepRule::Threshold)
    {
        Some(calibration_texts(
            s.texts,
            s.calibration,
            s.split,
            &tokenizer,
        )?)
    } else {
        None
    };
    let mut rows = Vec::new();
    for (policy, target, mut pruning) in configs {
        if let Some(cal) = &calibration_enc {
            calibrate_text(&mut session, cal, &mut pruning, s.batch, s.calibration.0)?;
        }
        let label = format!("texts ({policy} {target})");
        let (out, seconds) = timed(&mut session, &pruning, &label)?;
        let pred: Vec<usize> = out.iter().map(predict).collect();
        let accuracy = accuracy(&pred, &items);
        rows.push(Row {
            policy: policy.name().into(),
            target,
            accuracy,
            versus: versus(
                &items,
                (&dense, &dense_pred, dense_seconds),
                (&out, &pred, seconds),
            ),
            texts_per_s: n / seconds,
        });
        eprintln!("{policy} at {target}: accuracy {:.2}%", 100.0 * accuracy);
    }
    emit(
        &SweepOutput {
            model: weights.source.clone(),
            adapter: gpu.describe(),
            split: s.split.into(),
            texts: items.len(),
            dense_accuracy,
            dense_accuracy_se: (dense_accuracy * (1.0 - dense_accuracy) / n).sqrt(),
            dense_gflops_per_text: dense.iter().map(|o| o.flops).sum::<f64>() / n / 1e9,
            rows,
        },
        s.json,
    )
}
