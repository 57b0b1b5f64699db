//! `zeroprune embed` and `zeroprune similarity` on an image model (a ViT family folder: no
//! `tokenizer.json`): each image's pooled embedding, the final-normed class token the head reads
//! (the mean of the class and distillation tokens for distilled DeiT), dense or pruned. With a
//! policy, each image also runs dense, and the output gives the cosine of its pruned embedding to
//! the dense one.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use zeroprune::eval::stats::cosine;
use zeroprune::model::Precision;
use zeroprune::prune::Pruning;
use zeroprune::{preprocess, Error, ImageOutput, ModelWeights, Result, Run, Session};

use crate::common::{calibrate_on_images, emit, open_gpu_while, progress};
use crate::prune_args::PruneArgs;

/// An image model: a folder or file without `tokenizer.json` whose config (if any) names no
/// vocabulary (every text encoder's `config.json` has `vocab_size`).
pub fn is_image_model(model: &Path) -> bool {
    if model.join("tokenizer.json").is_file() {
        return false;
    }
    let config = zeroprune::limits::read_text(&model.join("config.json"), "config.json").ok();
    !config.is_some_and(|c| c.contains("\"vocab_size\""))
}

/// The image model, the pruning asked for and a session on the GPU; a per-image policy's --flops
/// is calibrated on `images`.
fn open(
    model: &Path,
    precision: Precision,
    prune: &PruneArgs,
    images: &[PathBuf],
) -> Result<(ModelWeights, Pruning, Session, String)> {
    let (gpu, (weights, mut pruner)) = open_gpu_while(|| {
        let weights = ModelWeights::load(model)?;
        prune.dropped(false)?;
        let pruner = prune.pruner(&weights.config.geometry())?;
        Ok((weights, pruner))
    })?;
    let mut session = Session::with_precision(&gpu, &weights, precision)?;
    let batch = session.max_batch().clamp(1, 16);
    calibrate_on_images(&mut session, &weights, &mut pruner, images, batch)?;
    let pruning = pruner.schedule(&weights.config.geometry())?;
    Ok((weights, pruning, session, gpu.describe()))
}

/// Every image's output under `pruning`, in passes of `batch`.
fn run_images(
    session: &mut Session,
    weights: &ModelWeights,
    pruning: &Pruning,
    paths: &[PathBuf],
    batch: usize,
) -> Result<Vec<ImageOutput>> {
    let bar = progress(paths.len(), "images");
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(batch) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        out.extend(session.run(&input, Run::new(pruning))?.items);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

#[derive(Serialize)]
struct ImageEmbedding {
    file: String,
    gflops: f64,
    embedding: Vec<f32>,
    /// With a policy: the cosine of this embedding to the dense model's, and per step the patch
    /// indices kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    cosine_to_dense: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<Vec<Vec<u32>>>,
}

#[derive(Serialize)]
struct ImageEmbedOutput {
    model: String,
    adapter: String,
    dim: usize,
    /// What the embedding is: the final-normed class token (the head's input), projected where
    /// the model has a projection (CLIP).
    pooling: &'static str,
    dense_gflops_per_image: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    images: Vec<ImageEmbedding>,
}

impl fmt::Display for ImageEmbedOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "model: {} ({} dims, {} pooling)",
            self.model, self.dim, self.pooling
        )?;
        if let Some(p) = &self.policy {
            writeln!(f, "pruning: {p}")?;
        }
        for e in &self.images {
            let head: Vec<String> = e
                .embedding
                .iter()
                .take(6)
                .map(|v| format!("{v:+.4}"))
                .collect();
            let cos = e
                .cosine_to_dense
                .map(|c| format!("  cosine to dense {c:.4}"))
                .unwrap_or_default();
            writeln!(
                f,
                "{}: {:.3} GFLOPs{cos}  [{} ...]",
                e.file,
                e.gflops,
                head.join(", ")
            )?;
        }
        Ok(())
    }
}

/// `zeroprune embed --model IMAGE_MODEL IMAGE...`.
pub fn run_embed(
    model: &Path,
    precision: Precision,
    prune: &PruneArgs,
    images: &[String],
    json: bool,
) -> Result<()> {
    if images.is_empty() {
        return Err(Error::param("images", "give the image files to embed"));
    }
    let paths: Vec<PathBuf> = images.iter().map(PathBuf::from).collect();
    let (weights, pruning, mut session, adapter) = open(model, precision, prune, &paths)?;
    let batch = session.max_batch().clamp(1, 16);
    let out = run_images(&mut session, &weights, &pruning, &paths, batch)?;
    let dense = if pruning.is_dense() {
        None
    } else {
        Some(run_images(
            &mut session,
            &weights,
            &Pruning::dense(),
            &paths,
            batch,
        )?)
    };
    let c = &weights.config;
    let images = out
        .into_iter()
        .enumerate()
        .map(|(i, o)| ImageEmbedding {
            file: images[i].clone(),
            gflops: o.flops / 1e9,
            cosine_to_dense: dense
                .as_ref()
                .map(|d| cosine(&o.embedding, &d[i].embedding)),
            kept: dense.as_ref().map(|_| o.kept.clone()),
            embedding: o.embedding,
        })
        .collect();
    emit(
        &ImageEmbedOutput {
            model: weights.source.clone(),
            adapter,
            dim: c.embedding_dim(),
            pooling: if c.projection_dim.is_some() {
                "cls, projected"
            } else {
                "cls"
            },
            dense_gflops_per_image: c.geometry().dense_flops() / 1e9,
            policy: (!pruning.is_dense())
                .then(|| format!("{} {}", pruning.policy, pruning.describe())),
            images,
        },
        json,
    )
}

#[derive(Serialize)]
struct ImageSide {
    cosine: f64,
    gflops: [f64; 2],
}

#[derive(Serialize)]
struct ImageSimilarityOutput {
    model: String,
    images: [String; 2],
    /// The dense model's cosine of the two embeddings.
    cosine: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pruned: Option<ImageSide>,
}

impl fmt::Display for ImageSimilarityOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model: {}", self.model)?;
        writeln!(
            f,
            "cosine similarity of {} and {}: {:.4} (dense)",
            self.images[0], self.images[1], self.cosine
        )?;
        if let (Some(p), Some(s)) = (&self.policy, &self.pruned) {
            writeln!(
                f,
                "pruned ({p}): {:.4} at {:.3} + {:.3} GFLOPs",
                s.cosine, s.gflops[0], s.gflops[1]
            )?;
        }
        Ok(())
    }
}

/// `zeroprune similarity --model IMAGE_MODEL A B`.
pub fn run_similarity(
    model: &Path,
    precision: Precision,
    prune: &PruneArgs,
    a: &str,
    b: &str,
    json: bool,
) -> Result<()> {
    let paths = [PathBuf::from(a), PathBuf::from(b)];
    let (weights, pruning, mut session, _) = open(model, precision, prune, &paths)?;
    let dense = run_images(&mut session, &weights, &Pruning::dense(), &paths, 2)?;
    let pruned = if pruning.is_dense() {
        None
    } else {
        let p = run_images(&mut session, &weights, &pruning, &paths, 2)?;
        Some(ImageSide {
            cosine: cosine(&p[0].embedding, &p[1].embedding),
            gflops: [p[0].flops / 1e9, p[1].flops / 1e9],
        })
    };
    emit(
        &ImageSimilarityOutput {
            model: weights.source.clone(),
            images: [a.to_string(), b.to_string()],
            cosine: cosine(&dense[0].embedding, &dense[1].embedding),
            policy: pruned
                .as_ref()
                .map(|_| format!("{} {}", pruning.policy, pruning.describe())),
            pruned,
        },
        json,
    )
}
