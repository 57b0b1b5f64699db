//! What the commands share: the GPU, the model, labelled image lists, progress bars and output.

use std::path::Path;

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

/// The session of `weights` on `gpu`, stored as `--precision` says (kernels measured or cached).
pub fn session(
    gpu: &GpuContext,
    weights: &ModelWeights,
    model: &crate::ModelArgs,
) -> Result<Session> {
    tune_idle(gpu)?;
    Session::with_precision(gpu, weights, model.precision)
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

/// `settings`, the threshold policy's FLOPs target calibrated on `calibration()` where one needs
/// it (data that is not evaluated: the caller's rule), with a note of what it reached.
pub fn calibrated<F: zeroprune::model::Family>(
    sessions: &mut [zeroprune::Session<F>],
    mut settings: Vec<zeroprune::eval::driver::Setting>,
    batch: usize,
    calibration: impl FnOnce() -> Result<<F::Input as ToOwned>::Owned>,
) -> Result<Vec<zeroprune::eval::driver::Setting>> {
    use zeroprune::eval::driver::{calibrate, needs_calibration};
    if needs_calibration(&settings)? {
        let input = calibration()?;
        let probes = 4 + zeroprune::session::CALIBRATION_PROBES;
        let bar = progress(probes * settings.len(), "calibration runs");
        let done = pollster::block_on(calibrate(
            sessions,
            &mut settings,
            std::borrow::Borrow::borrow(&input),
            batch,
            |n| bar.inc(n as u64),
        ))?;
        bar.finish_and_clear();
        for (i, scale, reached) in done {
            eprintln!(
                "calibrated {}: thresholds x {scale:.4} give {reached:.3} of the dense FLOPs",
                settings[i].policy()
            );
        }
    }
    Ok(settings)
}

/// How a per-image policy's FLOPs target was met on the images given: its thresholds scaled so
/// that their mean FLOPs reaches it.
#[derive(serde::Serialize)]
pub struct Calibration {
    pub images: usize,
    pub scale: f32,
    /// The mean FLOPs reached, a fraction of dense.
    pub flops: f64,
}

/// A per-image policy's --flops on an image model is a mean: over the images given (the first
/// [`zeroprune::session::CALIBRATION_IMAGES`]), as `embed` means it over its texts. Calibrates `pruner` where it
/// needs it and notes what was reached.
pub fn calibrate_on_images(
    session: &mut zeroprune::Session,
    weights: &zeroprune::ModelWeights,
    pruner: &mut zeroprune::prune::Pruner,
    images: &[std::path::PathBuf],
    batch: usize,
) -> Result<Option<Calibration>> {
    if !pruner.needs_calibration()? {
        return Ok(None);
    }
    let n = images.len().min(zeroprune::session::CALIBRATION_IMAGES);
    let input = zeroprune::preprocess::load_batch(&images[..n], &weights.config.preprocess)?;
    let bar = progress(
        4 + zeroprune::session::CALIBRATION_PROBES,
        "calibration runs",
    );
    let (scale, flops) = session.calibrate(&input, pruner, batch, |k| bar.inc(k as u64))?;
    bar.finish_and_clear();
    eprintln!(
        "calibrated {} on the {n} images given: thresholds x {scale:.4} give {flops:.3} of the \
         dense FLOPs on average",
        pruner.policy()?
    );
    Ok(Some(Calibration {
        images: n,
        scale,
        flops,
    }))
}

/// Every step's outputs as a safetensors file: `NNN.LABEL.SLOT` (the step's index, label and
/// slot; later batches of images get later indices), F32 or U32 as the slot declares, F16 where
/// the model stores that buffer as halves (padded to whole 8-byte units).
pub fn write_trace(file: &Path, trace: &[zeroprune::gpu::StepOutput]) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let mut tensors = Vec::new();
    for (i, step) in trace.iter().enumerate() {
        for (slot, elem, words) in &step.outputs {
            let (dtype, len) = match elem {
                zeroprune::gpu::kernel::Elem::F32 => (Dtype::F32, words.len()),
                zeroprune::gpu::kernel::Elem::U32 => (Dtype::U32, words.len()),
                zeroprune::gpu::kernel::Elem::F16 => (Dtype::F16, 2 * words.len()),
            };
            tensors.push((
                format!("{i:03}.{}.{slot}", step.label),
                dtype,
                len,
                bytemuck::cast_slice::<u32, u8>(words),
            ));
        }
    }
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, dtype, len, bytes)| {
            TensorView::new(*dtype, vec![*len], bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::param("--trace", e.to_string()))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize_to_file(views, None, file)
        .map_err(|e| Error::io(file, std::io::Error::other(e.to_string())))
}
