//! What the commands share: the GPU, the model, labelled image lists, progress bars and output.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use zeroprune::gpu::{AdapterChoice, GpuContext, Kernels};
use zeroprune::{labels, Error, ModelWeights, Result, Session};

pub fn open_gpu() -> Result<GpuContext> {
    GpuContext::new_blocking(&AdapterChoice::from_env())
}

/// A BERT-family folder's weights and its `tokenizer.json`, loaded while the GPU opens.
pub fn open_text_model(
    model: &std::path::Path,
) -> Result<(
    GpuContext,
    zeroprune::model::bert::BertWeights,
    zeroprune::text::TextTokenizer,
)> {
    let (gpu, (weights, tokenizer)) = open_gpu_while(|| {
        let w = zeroprune::model::bert::BertWeights::load(model)?;
        let t = zeroprune::text::TextTokenizer::load(
            &model.join("tokenizer.json"),
            w.config.max_tokens,
            w.config.vocab_size,
        )?;
        Ok((w, t))
    })?;
    tune_idle(&gpu)?;
    Ok((gpu, weights, tokenizer))
}

/// Measure the kernel choice (or read it from the cache) now, with the loading thread joined and
/// no image decoding: what else runs in the process would land in the timings. Sessions created
/// afterwards reuse it (measured once per adapter and process).
pub fn tune_idle(gpu: &GpuContext) -> Result<()> {
    Kernels::new(gpu).tune_blocking().map(|_| ())
}

/// Open the GPU on a second thread while `work` (loading the model, say) runs on this one: the two
/// take about as long as each other on a one-image command. Only opening: the kernel choice is
/// measured afterwards, when nothing else runs ([`tune_idle`]).
pub fn open_gpu_while<T: Send>(work: impl FnOnce() -> Result<T>) -> Result<(GpuContext, T)> {
    std::thread::scope(|s| {
        let gpu = s.spawn(open_gpu);
        let out = work();
        let gpu = gpu
            .join()
            .map_err(|_| Error::Gpu("opening the GPU failed on its thread".into()))?;
        Ok((gpu?, out?))
    })
}

/// Print `out` as pretty JSON, or as its text form. A closed pipe (`zeroprune ... | head`) ends
/// the output quietly.
pub fn emit<T: Serialize + std::fmt::Display>(out: &T, json: bool) -> Result<()> {
    use std::io::Write;
    let text = if json {
        serde_json::to_string_pretty(out)
            .map_err(|e| Error::param("--json", format!("could not write the output: {e}")))?
            + "\n"
    } else {
        out.to_string()
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(()),
    }
}

/// Class names: --labels, else the model's own, else ImageNet's for 1000-class models.
pub fn class_names(weights: &ModelWeights, file: Option<&Path>) -> Result<Vec<String>> {
    let c = &weights.config;
    let names = match file {
        Some(f) => labels::read_class_names(f)?,
        None => labels::model_class_names(c),
    };
    if names.len() != c.num_classes {
        return Err(Error::param(
            "--labels",
            format!(
                "{} class names for a model with {} classes",
                names.len(),
                c.num_classes
            ),
        ));
    }
    Ok(names)
}

/// `(file name, class index)` pairs.
pub type Labelled = Vec<(String, usize)>;

/// A labelled image list in file-name order, checked against the model: (file name, class) and
/// the paths; the first `skip` images are left out, then all but the first `limit`.
pub fn labelled_images(
    weights: &ModelWeights,
    image_dir: &Path,
    labels_file: &Path,
    (skip, limit): (usize, Option<usize>),
) -> Result<(Labelled, Vec<PathBuf>)> {
    if limit == Some(0) {
        return Err(Error::param(
            "--limit",
            "must be at least 1 (leave it out for every image)",
        ));
    }
    let mut items = labels::read_labels(labels_file)?;
    items.sort();
    let listed = items.len();
    items.drain(..skip.min(listed));
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() && listed > 0 {
        return Err(Error::param(
            "--skip",
            format!(
                "{} lists {listed} images; skipping {skip} leaves none",
                labels_file.display()
            ),
        ));
    }
    if items.is_empty() {
        return Err(Error::param(
            "--labels",
            format!("{} lists no images", labels_file.display()),
        ));
    }
    let classes = weights.config.num_classes;
    if let Some((name, label)) = items.iter().find(|(_, l)| *l >= classes) {
        return Err(Error::param(
            "--labels",
            format!("{name} has class {label}, but the model has {classes} classes"),
        ));
    }
    let paths: Vec<PathBuf> = items.iter().map(|(n, _)| image_dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(Error::param(
            "--images",
            format!(
                "{} (listed in {}) does not exist",
                missing.display(),
                labels_file.display()
            ),
        ));
    }
    Ok((items, paths))
}

/// The session of `weights` on `gpu`, stored as `--precision` says (kernels measured or cached).
pub fn session(
    gpu: &GpuContext,
    weights: &ModelWeights,
    model: &crate::ModelArgs,
) -> Result<Session> {
    tune_idle(gpu)?;
    Session::with_precision(gpu, weights, model.precision)
}

pub fn check_batch(session: &Session, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    if batch > zeroprune::limits::MAX_BATCH {
        return Err(Error::param(
            "--batch",
            format!(
                "{batch} is over the limit of {}",
                zeroprune::limits::MAX_BATCH
            ),
        ));
    }
    let max = session.max_batch();
    if batch > max {
        return Err(Error::BatchTooLarge {
            batch,
            max,
            reason: "the activations would exceed the device's storage binding limit".into(),
        });
    }
    Ok(())
}

pub fn progress(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what}  {{per_sec}}  eta {{eta}}  {{msg}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The text columns of a table: each as wide as its widest cell, right-aligned.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .fold(h.len(), usize::max)
                + 2
        })
        .collect();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<String>()
            + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for r in rows {
        out += &line(&mut r.iter().map(String::as_str));
    }
    out
}

/// Image files of a folder, by name.
pub fn folder_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png", "webp", "bmp", "gif"]
                        .contains(&e.to_lowercase().as_str())
                })
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// The threshold policy with a FLOPs target: calibrate its thresholds' scale on `enc`'s texts
/// (named by `on` in the message) before anything runs. Nothing to do otherwise.
pub fn calibrate_text(
    session: &mut zeroprune::text::TextSession,
    enc: &zeroprune::text::Encoded,
    pruning: &mut zeroprune::text::TextPruning,
    batch: usize,
    on: &str,
) -> Result<()> {
    if !pruning.needs_calibration()? {
        return Ok(());
    }
    let probes = 4 + zeroprune::text::session::CALIBRATION_PROBES;
    let bar = progress(probes, "calibration runs");
    let (scale, reached) = session.calibrate(enc, pruning, batch, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    eprintln!(
        "calibrated on {on} ({} texts): thresholds x {scale:.4} give {:.3} of the dense FLOPs",
        enc.ids.len(),
        reached
    );
    Ok(())
}

/// The cosine of two embeddings, summed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b)).max(1e-30)
}
