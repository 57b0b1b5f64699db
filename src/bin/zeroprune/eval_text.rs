//! `zeroprune eval --texts FILE`: accuracy of a text encoder on labelled sentences
//! (`split<TAB>label<TAB>sentence` lines), through the model's own classifier or a linear head
//! (`--head FILE`: a safetensors file with `weight [C, D]` and `bias [C]`, applied to the pooled
//! embedding; `bench/fit_text_head.py` fits one).

use std::fmt;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use zeroprune::text::TextSession;
use zeroprune::{Error, Result};

use crate::common::{emit, open_text_model, progress};

/// One labelled text of the file.
struct Labelled {
    line: usize,
    label: usize,
    text: String,
}

/// The lines of `split` in a `split<TAB>label<TAB>sentence` file (a header line is skipped).
fn read_labelled(path: &Path, split: &str) -> Result<Vec<Labelled>> {
    let text = zeroprune::limits::read_text(path, "a labelled text file")?;
    let file = path.display().to_string();
    let bad = |line: usize, reason: String| {
        Error::param("--texts", format!("{file} line {line}: {reason}"))
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (i == 0 && line.starts_with("split\t")) {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (Some(s), Some(label), Some(sentence)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(i + 1, "expected split<TAB>label<TAB>sentence".into()));
        };
        let label: usize = label
            .trim()
            .parse()
            .map_err(|_| bad(i + 1, format!("label `{label}` is not a class index")))?;
        if s == split {
            out.push(Labelled {
                line: i + 1,
                label,
                text: sentence.to_string(),
            });
        }
    }
    if out.is_empty() {
        return Err(Error::param(
            "--split",
            format!("{file} has no line of split `{split}`"),
        ));
    }
    Ok(out)
}

/// A linear head `[C, D]` + `[C]` from a safetensors file, checked against the model's width.
struct Head {
    weight: Vec<f32>,
    bias: Vec<f32>,
    classes: usize,
}

impl Head {
    fn load(path: &Path, d: usize) -> Result<Self> {
        let bytes = zeroprune::limits::read_file(
            path,
            zeroprune::limits::MAX_MODEL_FILE_BYTES,
            "a head (safetensors)",
        )?;
        let file = path.display().to_string();
        zeroprune::model::safetensors_check::check(&file, &bytes)?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| Error::Safetensors {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let tensor = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            let t = st.tensor(name).map_err(|_| Error::MissingTensor {
                file: file.clone(),
                name: name.into(),
            })?;
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(Error::TensorDtype {
                    file: file.clone(),
                    name: name.into(),
                    dtype: format!("{:?}", t.dtype()),
                });
            }
            let v = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            Ok((t.shape().to_vec(), v))
        };
        let (ws, weight) = tensor("weight")?;
        let (bs, bias) = tensor("bias")?;
        let classes = ws.first().copied().unwrap_or(0);
        if ws.len() != 2 || ws[1] != d || classes == 0 || bs != [classes] {
            return Err(Error::TensorShape {
                file,
                name: "weight".into(),
                got: ws,
                expected: vec![bs.first().copied().unwrap_or(2), d],
            });
        }
        Ok(Head {
            weight,
            bias,
            classes,
        })
    }

    fn logits(&self, e: &[f32]) -> Vec<f32> {
        let d = e.len();
        (0..self.classes)
            .map(|c| {
                self.bias[c]
                    + self.weight[c * d..][..d]
                        .iter()
                        .zip(e)
                        .map(|(w, x)| w * x)
                        .sum::<f32>()
            })
            .collect()
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

#[derive(Serialize)]
struct TextPrediction {
    line: usize,
    label: usize,
    pred: usize,
}

#[derive(Serialize)]
struct TextEvalOutput {
    model: String,
    adapter: String,
    texts: usize,
    split: String,
    /// The head that classified: the model's own classifier or the --head file.
    head: String,
    accuracy: f64,
    /// Standard error of the accuracy (binomial).
    accuracy_se: f64,
    gflops_per_text: f64,
    texts_per_s: f64,
    predictions: Vec<TextPrediction>,
}

impl fmt::Display for TextEvalOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model: {}  adapter: {}", self.model, self.adapter)?;
        writeln!(
            f,
            "{} texts of split {}, head {}: accuracy {:.2}% (+-{:.2}), {:.3} GFLOPs per text, {:.1} texts/s",
            self.texts,
            self.split,
            self.head,
            100.0 * self.accuracy,
            100.0 * self.accuracy_se,
            self.gflops_per_text,
            self.texts_per_s
        )
    }
}

/// Run the text evaluation (`zeroprune eval --texts`).
pub fn run(
    model: &Path,
    texts: &Path,
    split: &str,
    head: Option<&Path>,
    (skip, limit): (usize, Option<usize>),
    batch: usize,
    json: bool,
) -> Result<()> {
    if limit == Some(0) {
        return Err(Error::param("--limit", "must be at least 1"));
    }
    let mut items = read_labelled(texts, split)?;
    items.drain(..skip.min(items.len()));
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() {
        return Err(Error::param("--skip", "leaves no text"));
    }
    let (gpu, weights, tokenizer) = open_text_model(model)?;
    let c = weights.config.clone();
    let head_file = match head {
        Some(p) => Some(Head::load(p, c.hidden_size)?),
        None if weights.classifier.is_some() => None,
        None => {
            return Err(Error::param(
                "--head",
                format!(
                    "{} has no classifier: give a linear head (bench/fit_text_head.py fits one)",
                    model.display()
                ),
            ))
        }
    };
    let mut session = TextSession::new(&gpu, &weights)?;
    let refs: Vec<&str> = items.iter().map(|t| t.text.as_str()).collect();
    let enc = tokenizer.encode(&refs)?;
    let cut = enc.truncated.iter().filter(|&&t| t).count();
    if cut > 0 {
        eprintln!(
            "warning: {cut} texts were cut to the model's {} tokens",
            c.max_tokens
        );
    }
    let bar = progress(items.len(), "texts");
    let t = Instant::now();
    let outputs = session.run_all(&enc, batch, |n| bar.inc(n as u64))?;
    let seconds = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let predictions: Vec<TextPrediction> = items
        .iter()
        .zip(&outputs)
        .map(|(item, o)| {
            let logits = match &head_file {
                Some(h) => h.logits(&o.embedding),
                None => o.logits.clone(),
            };
            TextPrediction {
                line: item.line,
                label: item.label,
                pred: argmax(&logits),
            }
        })
        .collect();
    let n = predictions.len() as f64;
    let accuracy = predictions.iter().filter(|p| p.pred == p.label).count() as f64 / n;
    let flops: f64 = enc
        .lengths()
        .iter()
        .map(|&l| TextSession::flops(&c, l))
        .sum::<f64>()
        / n;
    emit(
        &TextEvalOutput {
            model: weights.source.clone(),
            adapter: gpu.describe(),
            texts: predictions.len(),
            split: split.to_string(),
            head: head.map_or("the model's classifier".to_string(), |p| {
                p.display().to_string()
            }),
            accuracy,
            accuracy_se: (accuracy * (1.0 - accuracy) / n).sqrt(),
            gflops_per_text: flops / 1e9,
            texts_per_s: n / seconds,
            predictions,
        },
        json,
    )
}
