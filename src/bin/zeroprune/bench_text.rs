//! `zeroprune bench --texts FILE --model DIR`: the speed of a text encoder on batches of real
//! sentences (the first of the file's test split, so lengths are ragged as users' are): per batch
//! size and configuration (dense, then each policy) the median latency, texts/s, GFLOPs per text
//! (real tokens only) and the share of rows that are padding; the configurations' runs interleave,
//! so every row of one run sees the same adapter state. A pruned batch runs as one forward pass
//! per distinct length (no padding), which the `passes` column counts.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use zeroprune::model::Dropped;
use zeroprune::prune::Pruner;
use zeroprune::text::Encoded;
use zeroprune::{Run, TextSession};

use crate::prune_args::describe_text;
use zeroprune::{Error, Result};

use crate::common::{calibrate_text, emit, open_text_model};
use crate::prune_args::TextPruneArgs;

#[derive(Serialize)]
struct TextBenchRow {
    batch: usize,
    /// `dense`, or the policy and its schedule.
    config: String,
    /// Forward passes per batch: 1 dense (padded), one per distinct length pruned.
    passes: usize,
    /// The longest text of the batch: every text is padded to it.
    tokens_max: usize,
    tokens_mean: f64,
    /// Rows of the padded batch that are padding.
    padding_share: f64,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    texts_per_s: f64,
    gflops_per_text: f64,
    /// Useful GFLOP/s: real tokens only.
    gflop_per_s: f64,
    /// Dense median over this row's median, same batch and run.
    speedup: f64,
}

#[derive(Serialize)]
struct TextBenchOutput {
    model: String,
    adapter: String,
    runs: usize,
    rows: Vec<TextBenchRow>,
}

impl fmt::Display for TextBenchOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model: {}  adapter: {}  ({} timed runs each)",
            self.model, self.adapter, self.runs
        )?;
        writeln!(
            f,
            "{:>6} {:<44} {:>6} {:>11} {:>9} {:>10} {:>11} {:>10} {:>13} {:>9} {:>8}",
            "batch",
            "config",
            "passes",
            "tokens max",
            "mean",
            "padding",
            "median ms",
            "texts/s",
            "GFLOPs/text",
            "GFLOP/s",
            "speedup"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:<44} {:>6} {:>11} {:>9.1} {:>9.0}% {:>11.1} {:>10.1} {:>13.3} {:>9.2} {:>7.2}x",
                r.batch,
                r.config,
                r.passes,
                r.tokens_max,
                r.tokens_mean,
                100.0 * r.padding_share,
                r.median_ms,
                r.texts_per_s,
                r.gflops_per_text,
                r.gflop_per_s,
                r.speedup
            )?;
        }
        Ok(())
    }
}

/// The sentences of the `test` split of a `split<TAB>label<TAB>sentence` file (any other lines
/// without tabs are taken whole), in file order.
fn sentences(path: &Path) -> Result<Vec<String>> {
    let text = zeroprune::limits::read_text(path, "a text file")?;
    let mut out = Vec::new();
    for line in text.lines().skip_while(|l| l.starts_with("split\t")) {
        let parts: Vec<&str> = line.splitn(3, '\t').collect();
        match parts.as_slice() {
            ["test", _, s] => out.push(s.to_string()),
            [s] if !s.trim().is_empty() => out.push(s.to_string()),
            _ => {}
        }
    }
    Ok(out)
}

/// The settings of a text benchmark.
pub struct TextBench<'a> {
    pub model: &'a Path,
    pub texts: &'a Path,
    pub batches: &'a [usize],
    pub runs: usize,
    pub json: bool,
    pub prune: TextPruneArgs,
    /// More policies, each with the schedule given.
    pub policies: &'a [String],
}

pub fn run(b: &TextBench) -> Result<()> {
    let all = sentences(b.texts)?;
    let largest = b.batches.iter().copied().max().unwrap_or(1);
    if all.len() < largest {
        return Err(Error::param(
            "--texts",
            format!(
                "{} has {} test sentences, fewer than --batch {largest}",
                b.texts.display(),
                all.len()
            ),
        ));
    }
    let (gpu, weights, tokenizer) = open_text_model(b.model)?;
    let c = weights.config.clone();
    let mut session = TextSession::new(&gpu, &weights)?;
    // Dense first, then the schedule given, then every --policies entry under it.
    let mut configs = vec![(Pruner::dense(), Dropped::default())];
    if b.prune.prune.policy.is_some() || b.policies.is_empty() {
        configs.push(b.prune.resolve(&c)?);
    }
    for name in b.policies {
        let mut args = b.prune.clone();
        args.prune.policy = Some(name.clone());
        configs.push(args.resolve(&c)?);
    }
    let mut seen = Vec::new();
    configs.retain(|(p, dropped)| {
        let d = describe_text(p, *dropped);
        let new = !seen.contains(&d) && (d == "dense" || !p.is_dense().unwrap_or(true));
        seen.push(d);
        new
    });
    // The threshold policy's FLOPs target: calibrated once, on the largest batch's texts.
    let refs: Vec<&str> = all[..largest].iter().map(String::as_str).collect();
    let calibration = tokenizer.encode(&refs)?;
    for (p, _) in configs.iter_mut() {
        calibrate_text(
            &mut session,
            &calibration,
            p,
            largest,
            "the benchmark's texts",
        )?;
    }
    let mut rows = Vec::new();
    for &batch in b.batches {
        let refs: Vec<&str> = all[..batch].iter().map(String::as_str).collect();
        let enc: Encoded = tokenizer.encode(&refs)?;
        let lengths = enc.lengths();
        let max = *lengths.iter().max().unwrap_or(&1);
        let real: usize = lengths.iter().sum();
        let mut distinct = lengths.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut flops = Vec::new();
        for (p, dropped) in configs.iter() {
            // Warm-up: buffers and programs for these shapes.
            let out = session.run(&enc, Run::new(p).dropped(*dropped))?;
            flops.push(out.items.iter().map(|o| o.flops).sum::<f64>());
        }
        let mut ms = vec![Vec::new(); configs.len()];
        for _ in 0..b.runs {
            for (i, (p, dropped)) in configs.iter().enumerate() {
                let t = Instant::now();
                session.run(&enc, Run::new(p).dropped(*dropped))?;
                ms[i].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mut dense_median = 0.0;
        for (i, (p, dropped)) in configs.iter().enumerate() {
            let ms = &mut ms[i];
            ms.sort_by(f64::total_cmp);
            let median = ms[ms.len() / 2];
            if i == 0 {
                dense_median = median;
            }
            let dense = p.is_dense()?;
            rows.push(TextBenchRow {
                batch,
                config: describe_text(p, *dropped),
                passes: if dense { 1 } else { distinct.len() },
                tokens_max: max,
                tokens_mean: real as f64 / batch as f64,
                padding_share: if dense {
                    1.0 - real as f64 / (batch * max) as f64
                } else {
                    0.0
                },
                median_ms: median,
                min_ms: ms[0],
                max_ms: ms[ms.len() - 1],
                texts_per_s: batch as f64 / (median / 1e3),
                gflops_per_text: flops[i] / batch as f64 / 1e9,
                gflop_per_s: flops[i] / 1e9 / (median / 1e3),
                speedup: dense_median / median,
            });
        }
    }
    emit(
        &TextBenchOutput {
            model: weights.source.clone(),
            adapter: gpu.describe(),
            runs: b.runs,
            rows,
        },
        b.json,
    )
}
