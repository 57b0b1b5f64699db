//! `zeroprune embed` and `zeroprune similarity`: text encoders (BERT family) from a model folder
//! with its `tokenizer.json`, dense for now (pruning on text is the next part of issue 13).

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use zeroprune::model::bert::{BertWeights, Pooling};
use zeroprune::text::{TextSession, TextTokenizer};
use zeroprune::{Error, Result};

use crate::common::{emit, open_text_model, progress};

#[derive(Args)]
pub struct EmbedArgs {
    /// A BERT-family model folder: model.safetensors, config.json and tokenizer.json (a Hugging
    /// Face or sentence-transformers folder, e.g. all-MiniLM-L6-v2).
    #[arg(long)]
    model: PathBuf,
    /// Texts to embed.
    texts: Vec<String>,
    /// A UTF-8 file with one text per line (blank lines are skipped), after the TEXT arguments.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Texts per forward pass (texts of similar length run together; a batch pads to its longest).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Print one JSON object: model, embeddings (one array per text, in input order), tokens per
    /// text (after the cut), truncated, gflops_per_text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SimilarityArgs {
    /// A BERT-family model folder (as for `embed`).
    #[arg(long)]
    model: PathBuf,
    text_a: String,
    text_b: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct EmbedOutput {
    model: String,
    adapter: String,
    dim: usize,
    pooling: Pooling,
    normalized: bool,
    /// Texts are cut to this many tokens ([CLS] and [SEP] included).
    max_tokens: usize,
    tokens: Vec<usize>,
    truncated: Vec<bool>,
    gflops_per_text: Vec<f64>,
    embeddings: Vec<Vec<f32>>,
}

impl fmt::Display for EmbedOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model: {} ({} dims, {:?} pooling{})",
            self.model,
            self.dim,
            self.pooling,
            if self.normalized { ", normalised" } else { "" }
        )?;
        for (i, e) in self.embeddings.iter().enumerate() {
            let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            writeln!(
                f,
                "text {:>3}: {:>3} tokens{}  {:.3} GFLOPs  [{} ...]",
                i + 1,
                self.tokens[i],
                if self.truncated[i] { " (cut)" } else { "" },
                self.gflops_per_text[i],
                head.join(", ")
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct SimilarityOutput {
    model: String,
    cosine: f64,
    tokens: [usize; 2],
}

impl fmt::Display for SimilarityOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cosine similarity {:.4} ({} and {} tokens; {})",
            self.cosine, self.tokens[0], self.tokens[1], self.model
        )
    }
}

/// The texts of a `--file`: one per line, blank lines skipped; bytes that are not UTF-8 are an
/// error naming the file and the line.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let bytes =
        zeroprune::limits::read_file(path, zeroprune::limits::MAX_TEXT_FILE_BYTES, "a text file")?;
    let mut texts = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line).map_err(|e| {
            Error::param(
                "--file",
                format!(
                    "{} line {}: not UTF-8 (invalid byte at column {})",
                    path.display(),
                    i + 1,
                    e.valid_up_to() + 1
                ),
            )
        })?;
        let line = line.trim_end_matches('\r');
        if !line.trim().is_empty() {
            texts.push(line.to_string());
        }
    }
    Ok(texts)
}

/// The model, its tokenizer and a session on the GPU.
fn open(model: &Path) -> Result<(BertWeights, TextTokenizer, TextSession, String)> {
    let (gpu, weights, tokenizer) = open_text_model(model)?;
    let session = TextSession::new(&gpu, &weights)?;
    Ok((weights, tokenizer, session, gpu.describe()))
}

pub fn run_embed(args: &EmbedArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    let mut texts = args.texts.clone();
    if let Some(file) = &args.file {
        texts.extend(read_texts(file)?);
    }
    if texts.is_empty() {
        return Err(Error::param(
            "texts",
            "give texts as arguments or with --file FILE",
        ));
    }
    let (weights, tokenizer, mut session, adapter) = open(&args.model)?;
    let c = weights.config.clone();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer.encode(&refs)?;
    for (i, cut) in enc.truncated.iter().enumerate() {
        if *cut {
            eprintln!(
                "warning: text {} was cut to the model's {} tokens",
                i + 1,
                c.max_tokens
            );
        }
    }
    let bar = progress(texts.len(), "texts");
    let embeddings: Vec<Vec<f32>> = session
        .run_all(&enc, args.batch, |n| bar.inc(n as u64))?
        .into_iter()
        .map(|o| o.embedding)
        .collect();
    bar.finish_and_clear();
    let tokens = enc.lengths();
    emit(
        &EmbedOutput {
            model: weights.source.clone(),
            adapter,
            dim: c.hidden_size,
            pooling: c.pooling,
            normalized: c.normalize,
            max_tokens: c.max_tokens,
            gflops_per_text: tokens
                .iter()
                .map(|&n| TextSession::flops(&c, n) / 1e9)
                .collect(),
            tokens,
            truncated: enc.truncated.clone(),
            embeddings,
        },
        args.json,
    )
}

pub fn run_similarity(args: &SimilarityArgs) -> Result<()> {
    let (weights, tokenizer, mut session, _) = open(&args.model)?;
    let enc = tokenizer.encode(&[&args.text_a, &args.text_b])?;
    let out = session.run(&enc)?;
    let (a, b) = (&out[0].embedding, &out[1].embedding);
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let lengths = enc.lengths();
    emit(
        &SimilarityOutput {
            model: weights.source.clone(),
            cosine: dot / (norm(a) * norm(b)).max(1e-30),
            tokens: [lengths[0], lengths[1]],
        },
        args.json,
    )
}
