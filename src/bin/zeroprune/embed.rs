//! `zeroprune embed` and `zeroprune similarity`: text encoders (BERT family) from a model folder
//! with its `tokenizer.json`, dense or with a pruning policy (then `similarity` shows both). An
//! image model's folder goes to `embed_image.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use zeroprune::eval::driver::Setting;
use zeroprune::eval::stats::cosine;
use zeroprune::model::bert::{BertWeights, Pooling};
use zeroprune::model::Precision;
use zeroprune::prune::Pruner;
use zeroprune::session::TextEncoder;
use zeroprune::text::{Encoded, TextTokenizer};
use zeroprune::{Error, Mode, Result, TextOutput, TextSession};

use crate::common::{calibrated, emit, open_text_model, progress};
use crate::embed_image;
use crate::prune_args::PruneArgs;

#[derive(Args)]
pub struct EmbedArgs {
    /// A text encoder's folder: model.safetensors, config.json and tokenizer.json (a Hugging Face
    /// or sentence-transformers folder, e.g. all-MiniLM-L6-v2); or an image model's (ViT family,
    /// no tokenizer.json), whose embedding is the final-normed class token.
    #[arg(long)]
    model: PathBuf,
    /// Texts to embed; image files for an image model.
    #[arg(value_name = "TEXT|IMAGE")]
    texts: Vec<String>,
    /// A UTF-8 file with one text per line (blank lines are skipped), after the TEXT arguments.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Texts per forward pass (texts of similar length run together; a batch pads to its longest).
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Print one JSON object: model, embeddings (one array per text, in input order), tokens per
    /// text (after the cut), truncated, gflops_per_text; with a policy also policy, pieces (the
    /// tokens of each text) and kept (per text and step, the positions of the tokens kept).
    #[arg(long)]
    json: bool,
    /// How weights and activations are stored on the GPU: f32, f16 or auto (as for images).
    #[arg(long, value_enum, default_value_t = Precision::F32, env = "ZEROPRUNE_PRECISION")]
    precision: Precision,
    /// Run step by step and write every step's outputs to this safetensors file (`NNN.LABEL.SLOT`),
    /// to compare any intermediate tensor with a reference; the texts run as one batch.
    #[arg(long, value_name = "FILE.safetensors")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Args)]
pub struct SimilarityArgs {
    /// A text encoder's or an image model's folder (as for `embed`).
    #[arg(long)]
    model: PathBuf,
    /// The first text (an image file for an image model).
    #[arg(value_name = "A")]
    text_a: String,
    /// The second.
    #[arg(value_name = "B")]
    text_b: String,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// How weights and activations are stored on the GPU: f32, f16 or auto (as for images).
    #[arg(long, value_enum, default_value_t = Precision::F32, env = "ZEROPRUNE_PRECISION")]
    precision: Precision,
    /// With a policy, the similarity is computed dense and pruned, side by side.
    #[command(flatten)]
    prune: PruneArgs,
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
    /// With a policy: the request, each text's tokens, and per text and step the positions kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dense_gflops_per_text: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pieces: Option<Vec<Vec<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<Vec<Vec<Vec<u32>>>>,
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
        if let Some(p) = &self.policy {
            writeln!(f, "pruning: {p}")?;
        }
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
            if let (Some(pieces), Some(kept)) = (&self.pieces, &self.kept) {
                for (s, k) in kept[i].iter().enumerate() {
                    writeln!(f, "    step {s}: {}", shade(&pieces[i], k))?;
                }
            }
        }
        Ok(())
    }
}

/// A text's tokens with the pruned ones in brackets: `[CLS] a (very) good film [SEP]`.
fn shade(pieces: &[String], kept: &[u32]) -> String {
    let n = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            if i == 0 || i + 1 == n || kept.contains(&(i as u32)) {
                p.clone()
            } else {
                format!("({p})")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct Side {
    cosine: f64,
    gflops: [f64; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<[Vec<Vec<u32>>; 2]>,
}

#[derive(Serialize)]
struct SimilarityOutput {
    model: String,
    cosine: f64,
    tokens: [usize; 2],
    pieces: [Vec<String>; 2],
    dense: Side,
    /// With a policy: the request and the pruned side.
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pruned: Option<Side>,
}

impl fmt::Display for SimilarityOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cosine similarity {:.4} ({} and {} tokens; {})",
            self.dense.cosine, self.tokens[0], self.tokens[1], self.model
        )?;
        if let (Some(p), Some(side)) = (&self.policy, &self.pruned) {
            let dense: f64 = self.dense.gflops.iter().sum();
            let pruned: f64 = side.gflops.iter().sum();
            writeln!(
                f,
                "pruned ({p}): {:.4} at {:.0}% of the dense FLOPs",
                side.cosine,
                100.0 * pruned / dense
            )?;
            if let Some(kept) = &side.kept {
                for (t, k) in kept.iter().enumerate() {
                    for (s, k) in k.iter().enumerate() {
                        writeln!(
                            f,
                            "  text {} step {s}: {}",
                            t + 1,
                            shade(&self.pieces[t], k)
                        )?;
                    }
                }
            }
        }
        Ok(())
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
            // Stop reading here rather than hold millions of lines first.
            if texts.len() == zeroprune::limits::MAX_TEXTS {
                return Err(Error::param(
                    "--file",
                    format!(
                        "{} has more than {} texts, the limit in one run: embed it in parts",
                        path.display(),
                        zeroprune::limits::MAX_TEXTS
                    ),
                ));
            }
            texts.push(line.to_string());
        }
    }
    Ok(texts)
}

/// The pruning asked for, its FLOPs target calibrated on `enc` where the threshold policy needs it.
fn pruned_setting(
    prune: &PruneArgs,
    c: &zeroprune::model::bert::BertConfig,
    session: &mut TextSession,
    enc: &Encoded,
    batch: usize,
) -> Result<Setting> {
    let setting = Setting::request(prune.pruner(&c.largest_geometry())?, prune.dropped(true)?);
    let mut settings = calibrated(std::slice::from_mut(session), vec![setting], batch, || {
        Ok(enc.clone())
    })?;
    Ok(settings.remove(0))
}

/// The model, its tokenizer and a session on the GPU.
fn open(
    model: &Path,
    precision: Precision,
) -> Result<(BertWeights, TextTokenizer, TextSession, String)> {
    let (gpu, weights, tokenizer) = open_text_model(model)?;
    let session = TextSession::with_precision(&gpu, &weights, precision)?;
    Ok((weights, tokenizer, session, gpu.describe()))
}

/// Warn about every text the tokenizer cut.
fn warn_cut(enc: &Encoded, max_tokens: usize) {
    for (i, cut) in enc.truncated.iter().enumerate() {
        if *cut {
            eprintln!(
                "warning: text {} was cut to the model's {max_tokens} tokens",
                i + 1
            );
        }
    }
}

pub fn run_embed(args: &EmbedArgs) -> Result<()> {
    if args.batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    if embed_image::is_image_model(&args.model) {
        for (given, flag) in [
            (args.file.is_some(), "--file"),
            (args.trace.is_some(), "--trace"),
        ] {
            if given {
                return Err(Error::param(
                    flag,
                    "applies to text models; an image model embeds the image files given",
                ));
            }
        }
        return embed_image::run_embed(
            &args.model,
            args.precision,
            &args.prune,
            &args.texts,
            args.json,
        );
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
    let (weights, tokenizer, mut session, adapter) = open(&args.model, args.precision)?;
    let c = weights.config.clone();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = tokenizer.encode(&refs)?;
    warn_cut(&enc, c.max_tokens);
    // The threshold policy's FLOPs target calibrates on the texts given (nothing is scored).
    let setting = pruned_setting(&args.prune, &c, &mut session, &enc, args.batch)?;
    let out = match &args.trace {
        Some(file) => {
            let out = session.run(&enc, setting.run().mode(Mode::Debug))?;
            let trace = out.trace.unwrap_or_default();
            crate::common::write_trace(file, &trace)?;
            eprintln!("wrote {} step outputs to {}", trace.len(), file.display());
            out.items
        }
        None => {
            let bar = progress(texts.len(), "texts");
            let out = session.run_all(&enc, setting.run(), args.batch, |n| bar.inc(n as u64))?;
            bar.finish_and_clear();
            out
        }
    };
    let tokens = enc.lengths();
    let pruned = !setting.is_dense();
    emit(
        &EmbedOutput {
            model: weights.source.clone(),
            adapter,
            dim: c.hidden_size,
            pooling: c.pooling,
            normalized: c.normalize,
            max_tokens: c.max_tokens,
            gflops_per_text: out.iter().map(|o| o.flops / 1e9).collect(),
            truncated: enc.truncated.clone(),
            policy: pruned.then(|| setting.describe()),
            dense_gflops_per_text: pruned.then(|| {
                tokens
                    .iter()
                    .map(|&n| TextEncoder::flops(&c, n) / 1e9)
                    .collect()
            }),
            pieces: pruned.then(|| enc.ids.iter().map(|ids| tokenizer.pieces(ids)).collect()),
            kept: pruned.then(|| out.iter().map(|o| o.kept.clone()).collect()),
            embeddings: out.into_iter().map(|o| o.embedding).collect(),
            tokens,
        },
        args.json,
    )
}

fn side(out: &[TextOutput], pruned: bool) -> Side {
    Side {
        cosine: cosine(&out[0].embedding, &out[1].embedding),
        gflops: [out[0].flops / 1e9, out[1].flops / 1e9],
        kept: pruned.then(|| [out[0].kept.clone(), out[1].kept.clone()]),
    }
}

pub fn run_similarity(args: &SimilarityArgs) -> Result<()> {
    if embed_image::is_image_model(&args.model) {
        return embed_image::run_similarity(
            &args.model,
            args.precision,
            &args.prune,
            &args.text_a,
            &args.text_b,
            args.json,
        );
    }
    let (weights, tokenizer, mut session, _) = open(&args.model, args.precision)?;
    let enc = tokenizer.encode(&[&args.text_a, &args.text_b])?;
    warn_cut(&enc, weights.config.max_tokens);
    let dense = session.run(&enc, &Pruner::dense())?.items;
    let setting = pruned_setting(&args.prune, &weights.config, &mut session, &enc, 2)?;
    let pruned = if setting.is_dense() {
        None
    } else {
        Some(side(&session.run(&enc, setting.run())?.items, true))
    };
    let lengths = enc.lengths();
    emit(
        &SimilarityOutput {
            model: weights.source.clone(),
            cosine: cosine(&dense[0].embedding, &dense[1].embedding),
            tokens: [lengths[0], lengths[1]],
            pieces: [tokenizer.pieces(&enc.ids[0]), tokenizer.pieces(&enc.ids[1])],
            dense: side(&dense, false),
            policy: pruned.as_ref().map(|_| setting.describe()),
            pruned,
        },
        args.json,
    )
}
