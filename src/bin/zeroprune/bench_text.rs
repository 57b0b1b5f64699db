//! `zeroprune bench --texts FILE --model DIR`: the speed of a text encoder on batches of real
//! sentences (the first of the file's test split, so lengths are ragged as users' are): per batch
//! size the median latency, texts/s, GFLOPs per text (real tokens only) and the share of rows that
//! are padding. Dense only for now; pruned rows join when pruning on text lands (issue 13).

use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use zeroprune::text::{Encoded, TextSession};
use zeroprune::{Error, Result};

use crate::common::{emit, open_text_model};

#[derive(Serialize)]
struct TextBenchRow {
    batch: usize,
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
            "{:>6} {:>11} {:>9} {:>10} {:>11} {:>10} {:>13} {:>9}",
            "batch",
            "tokens max",
            "mean",
            "padding",
            "median ms",
            "texts/s",
            "GFLOPs/text",
            "GFLOP/s"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:>6} {:>11} {:>9.1} {:>9.0}% {:>11.1} {:>10.1} {:>13.3} {:>9.2}",
                r.batch,
                r.tokens_max,
                r.tokens_mean,
                100.0 * r.padding_share,
                r.median_ms,
                r.texts_per_s,
                r.gflops_per_text,
                r.gflop_per_s
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

pub fn run(model: &Path, texts: &Path, batches: &[usize], runs: usize, json: bool) -> Result<()> {
    let all = sentences(texts)?;
    let largest = batches.iter().copied().max().unwrap_or(1);
    if all.len() < largest {
        return Err(Error::param(
            "--texts",
            format!(
                "{} has {} test sentences, fewer than --batch {largest}",
                texts.display(),
                all.len()
            ),
        ));
    }
    let (gpu, weights, tokenizer) = open_text_model(model)?;
    let c = weights.config.clone();
    let mut session = TextSession::new(&gpu, &weights)?;
    let mut rows = Vec::new();
    for &b in batches {
        let refs: Vec<&str> = all[..b].iter().map(String::as_str).collect();
        let enc: Encoded = tokenizer.encode(&refs)?;
        let lengths = enc.lengths();
        let max = *lengths.iter().max().unwrap_or(&1);
        let real: usize = lengths.iter().sum();
        session.run(&enc)?; // warm-up: buffers and program for this shape
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                session.run(&enc).map(|_| t.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        let median = ms[ms.len() / 2];
        let flops: f64 = lengths.iter().map(|&n| TextSession::flops(&c, n)).sum();
        rows.push(TextBenchRow {
            batch: b,
            tokens_max: max,
            tokens_mean: real as f64 / b as f64,
            padding_share: 1.0 - real as f64 / (b * max) as f64,
            median_ms: median,
            min_ms: ms[0],
            max_ms: ms[ms.len() - 1],
            texts_per_s: b as f64 / (median / 1e3),
            gflops_per_text: flops / b as f64 / 1e9,
            gflop_per_s: flops / 1e9 / (median / 1e3),
        });
    }
    emit(
        &TextBenchOutput {
            model: weights.source.clone(),
            adapter: gpu.describe(),
            runs,
            rows,
        },
        json,
    )
}
