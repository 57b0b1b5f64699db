//! The figures every evaluation reports, computed one way for every family and task: a setting's
//! [`Quality`] against the dense model on the same items (paired standard errors), and the report
//! types the commands and the page print.
//!
//! JSON names that count or rate items are named for the data's unit: `images`,
//! `gflops_per_image`, `images_per_s` for images, `texts`, `gflops_per_text`, ... for texts
//! ([`Unit`]).

use serde::Serialize;

use super::driver::Outcome;
use super::stats::{
    cosine, indicator, mean_se, median_ratio, nearest_neighbours, paired, Estimate,
};
use super::task::Task;

/// What the items of an evaluation are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Image,
    Text,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Image => "image",
            Unit::Text => "text",
        }
    }
}

/// `value` serialised with every key that says `item` saying the unit instead.
pub fn with_unit<T: Serialize>(value: &T, unit: Unit) -> serde_json::Value {
    fn rename(v: serde_json::Value, unit: &str) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k.replace("item", unit), rename(v, unit)))
                    .collect(),
            ),
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(|v| rename(v, unit)).collect())
            }
            other => other,
        }
    }
    rename(
        serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
        unit.name(),
    )
}

/// A setting's figures on the items evaluated; the paired ones against the dense model.
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[derive(Clone, Debug, Default, Serialize)]
pub struct Quality {
    pub items: usize,
    /// Top-1 and top-5 accuracy against the labels (classification, labels given), and the
    /// binomial standard error of top-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_se: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top5: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_top1: Option<f64>,
    /// Top-1 minus dense top-1, and its paired standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_delta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1_delta_se: Option<f64>,
    /// The share of items whose top-1 class is the dense model's (classification).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agreement_se: Option<f64>,
    /// The mean cosine of each item's embedding to its dense embedding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_cosine: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_cosine_se: Option<f64>,
    /// Embedding task: the share of items whose nearest other item (by cosine) is the one the
    /// dense embeddings give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nn_agreement: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nn_agreement_se: Option<f64>,
    /// Embedding task with labels: the share of items whose nearest other item has their label,
    /// dense and this setting, and the paired difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dense_recall_at_1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_1_delta_se: Option<f64>,
    pub gflops_per_item: f64,
    pub dense_gflops_per_item: f64,
    /// Mean FLOPs over mean dense FLOPs.
    pub flops_ratio: f64,
    /// The smallest and largest FLOPs ratio of one item (they differ where counts vary per item).
    pub flops_ratio_min: f64,
    pub flops_ratio_max: f64,
    /// Forward passes only (the input prepared), this setting and dense.
    pub forward_items_per_s: f64,
    pub dense_forward_items_per_s: f64,
    /// Dense forward time over this setting's: the median of the ratios paired by batch.
    pub speedup: f64,
}

impl Quality {
    /// `o` against `dense` on the same items; `labels` where the data has them.
    pub fn of(o: &Outcome, dense: &Outcome, labels: Option<&[usize]>, task: Task) -> Quality {
        let n = o.answers.len();
        let nf = n.max(1) as f64;
        let mut q = Quality {
            items: n,
            ..Default::default()
        };
        let classify = task == Task::Classify && o.answers.iter().all(|a| !a.top.is_empty());
        if classify {
            let same: Vec<f64> = o
                .answers
                .iter()
                .zip(&dense.answers)
                .map(|(a, d)| indicator(a.pred() == d.pred()))
                .collect();
            let e = mean_se(&same);
            (q.agreement, q.agreement_se) = (Some(e.mean), Some(e.se));
            if let Some(labels) = labels {
                let right = |a: &super::task::Answer, l: usize| indicator(a.pred() == Some(l));
                let r: Vec<f64> = o
                    .answers
                    .iter()
                    .zip(labels)
                    .map(|(a, &l)| right(a, l))
                    .collect();
                let rd: Vec<f64> = dense
                    .answers
                    .iter()
                    .zip(labels)
                    .map(|(a, &l)| right(a, l))
                    .collect();
                let top1 = r.iter().sum::<f64>() / nf;
                q.top1 = Some(top1);
                q.top1_se = Some((top1 * (1.0 - top1) / nf).sqrt());
                q.top5 = Some(
                    o.answers
                        .iter()
                        .zip(labels)
                        .filter(|(a, l)| a.top.contains(l))
                        .count() as f64
                        / nf,
                );
                q.dense_top1 = Some(rd.iter().sum::<f64>() / nf);
                let Estimate { mean, se } = paired(&r, &rd);
                (q.top1_delta, q.top1_delta_se) = (Some(mean), Some(se));
            }
        }
        let embeddings = o.answers.iter().all(|a| !a.embedding.is_empty());
        if embeddings {
            let cos: Vec<f64> = o
                .answers
                .iter()
                .zip(&dense.answers)
                .map(|(a, d)| cosine(&a.embedding, &d.embedding))
                .collect();
            let e = mean_se(&cos);
            (q.mean_cosine, q.mean_cosine_se) = (Some(e.mean), Some(e.se));
        }
        if task == Task::Embed && embeddings && n >= 2 {
            let emb = |out: &Outcome| -> Vec<Vec<f32>> {
                out.answers.iter().map(|a| a.embedding.clone()).collect()
            };
            let (nn, dnn) = (nearest_neighbours(&emb(o)), nearest_neighbours(&emb(dense)));
            let same: Vec<f64> = nn
                .iter()
                .zip(&dnn)
                .map(|(a, b)| indicator(a == b))
                .collect();
            let e = mean_se(&same);
            (q.nn_agreement, q.nn_agreement_se) = (Some(e.mean), Some(e.se));
            if let Some(labels) = labels {
                let hit = |nn: &[Option<usize>]| -> Vec<f64> {
                    nn.iter()
                        .enumerate()
                        .map(|(i, j)| indicator(j.is_some_and(|j| labels[j] == labels[i])))
                        .collect()
                };
                let (r, rd) = (hit(&nn), hit(&dnn));
                q.recall_at_1 = Some(r.iter().sum::<f64>() / nf);
                q.dense_recall_at_1 = Some(rd.iter().sum::<f64>() / nf);
                q.recall_at_1_delta_se = Some(paired(&r, &rd).se);
            }
        }
        let flops: f64 = o.answers.iter().map(|a| a.flops).sum();
        let dense_flops: f64 = dense.answers.iter().map(|a| a.flops).sum();
        q.gflops_per_item = flops / nf / 1e9;
        q.dense_gflops_per_item = dense_flops / nf / 1e9;
        q.flops_ratio = flops / dense_flops.max(1e-30);
        let ratios = o
            .answers
            .iter()
            .zip(&dense.answers)
            .map(|(a, d)| a.flops / d.flops.max(1e-30));
        (q.flops_ratio_min, q.flops_ratio_max) = ratios
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), r| {
                (lo.min(r), hi.max(r))
            });
        if n == 0 {
            (q.flops_ratio_min, q.flops_ratio_max) = (1.0, 1.0);
        }
        let total = |s: &[f64]| s.iter().sum::<f64>().max(1e-12);
        q.forward_items_per_s = nf / total(&o.seconds);
        q.dense_forward_items_per_s = nf / total(&dense.seconds);
        q.speedup = median_ratio(&dense.seconds, &o.seconds);
        q
    }

    /// The figures of a setting with nothing to compare against (the dense model alone): its
    /// own top-1, FLOPs and speed.
    pub fn dense_only(self) -> Quality {
        Quality {
            dense_top1: None,
            top1_delta: None,
            top1_delta_se: None,
            agreement: None,
            agreement_se: None,
            mean_cosine: None,
            mean_cosine_se: None,
            nn_agreement: None,
            nn_agreement_se: None,
            dense_recall_at_1: None,
            recall_at_1_delta_se: None,
            ..self
        }
    }

    /// Text lines of the figures, `unit` naming the items.
    pub fn lines(&self, unit: Unit, dense: bool) -> Vec<String> {
        let pct = |v: f64| format!("{:.2}%", 100.0 * v);
        let mut out = Vec::new();
        if let (Some(t1), Some(se)) = (self.top1, self.top1_se) {
            let mut line = format!("top-1      {} (se {:.2})", pct(t1), 100.0 * se);
            if let Some(t5) = self.top5 {
                line += &format!(", top-5 {}", pct(t5));
            }
            out.push(line);
        }
        if !dense {
            if let (Some(d), Some(delta), Some(se)) =
                (self.dense_top1, self.top1_delta, self.top1_delta_se)
            {
                out.push(format!(
                    "dense      {} top-1; pruned - dense {:+.2} points (paired se {:.2})",
                    pct(d),
                    100.0 * delta,
                    100.0 * se
                ));
            }
            if let (Some(a), Some(se)) = (self.agreement, self.agreement_se) {
                out.push(format!(
                    "agreement  {} of the {}s keep the dense top-1 (se {:.2})",
                    pct(a),
                    unit.name(),
                    100.0 * se
                ));
            }
            if let (Some(c), Some(se)) = (self.mean_cosine, self.mean_cosine_se) {
                out.push(format!(
                    "cosine     {c:.4} to the dense embedding (se {se:.4})"
                ));
            }
            if let (Some(a), Some(se)) = (self.nn_agreement, self.nn_agreement_se) {
                out.push(format!(
                    "neighbours {} keep the dense nearest neighbour (se {:.2})",
                    pct(a),
                    100.0 * se
                ));
            }
        }
        if let (Some(r), Some(d)) = (self.recall_at_1, self.dense_recall_at_1) {
            out.push(format!(
                "recall@1   {} (dense {}, paired se {:.2})",
                pct(r),
                pct(d),
                100.0 * self.recall_at_1_delta_se.unwrap_or(0.0)
            ));
        }
        out.push(format!(
            "GFLOPs     {:.3} per {} ({:.1}% of dense {:.3}; per {}: {:.1}% to {:.1}%)",
            self.gflops_per_item,
            unit.name(),
            100.0 * self.flops_ratio,
            self.dense_gflops_per_item,
            unit.name(),
            100.0 * self.flops_ratio_min,
            100.0 * self.flops_ratio_max
        ));
        let mut speed = format!(
            "speed      {:.2} {}s/s forward",
            self.forward_items_per_s,
            unit.name()
        );
        if !dense {
            speed += &format!(
                "; {:.2}x over dense ({:.2} {}s/s), median of per-batch ratios",
                self.speedup,
                self.dense_forward_items_per_s,
                unit.name()
            );
        }
        out.push(speed);
        out
    }
}
