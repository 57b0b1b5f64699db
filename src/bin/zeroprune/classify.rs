//! `zeroprune classify`: the top classes of each image; `--trace` writes every step's outputs.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use zeroprune::prune::{Policy, PruneStep};
use zeroprune::session::{top_classes, ClassScore};
use zeroprune::{preprocess, Error, Mode, Result, Run};

use crate::common::{calibrate_on_images, class_names, emit, open_gpu_while, Calibration};
use crate::prune_args::PruneArgs;
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Images (JPEG, PNG, WebP, BMP, GIF).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Class names: JSON list, JSON {"0": name} map or one name per line.
    /// Default: the model's config, else the ImageNet-1k names for 1000-class models.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Debug: play the forward pass one step at a time and write every step's outputs to this
    /// safetensors file (tensor `NNN.LABEL.SLOT`, in step order), to compare with a reference.
    #[arg(long, value_name = "FILE.safetensors")]
    trace: Option<PathBuf>,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Serialize)]
struct ClassifiedImage {
    file: String,
    top: Vec<ClassScore>,
    gflops: f64,
    /// Per pruning step, the patch indices that survive it.
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<Vec<Vec<u32>>>,
}

#[derive(Serialize)]
struct ClassifyOutput {
    model: String,
    adapter: String,
    policy: Policy,
    schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    calibration: Option<Calibration>,
    steps: Vec<PruneStep>,
    images: Vec<ClassifiedImage>,
}

impl fmt::Display for ClassifyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.policy.is_none() {
            writeln!(
                f,
                "policy {} at {} (patch tokens kept after each block)",
                self.policy, self.schedule
            )?;
        }
        for image in &self.images {
            write!(f, "{}", image.file)?;
            if let Some(kept) = &image.kept {
                let counts: Vec<String> = kept.iter().map(|k| k.len().to_string()).collect();
                write!(
                    f,
                    "  ({:.3} GFLOPs, tokens kept {})",
                    image.gflops,
                    counts.join(" -> ")
                )?;
            }
            writeln!(f)?;
            for c in &image.top {
                writeln!(
                    f,
                    "  {:6.2}%  {:4}  {}",
                    c.probability * 100.0,
                    c.class,
                    c.name
                )?;
            }
        }
        Ok(())
    }
}

pub fn run(args: &ClassifyArgs) -> Result<()> {
    if args.top == 0 {
        return Err(Error::param("--top", "must be at least 1"));
    }
    let (gpu, (weights, mut pruner, names)) = open_gpu_while(|| {
        let weights = model_source::load(&args.model)?;
        weights.config.check_classifies("--model")?;
        args.prune.dropped(false)?;
        let pruner = args.prune.pruner(&weights.config.geometry())?;
        let names = class_names(&weights, args.labels.as_deref())?;
        Ok((weights, pruner, names))
    })?;
    let mut session = crate::common::session(&gpu, &weights, &args.model)?;
    let batch = session.max_batch().clamp(1, 16);
    let calibration =
        calibrate_on_images(&mut session, &weights, &mut pruner, &args.images, batch)?;
    let pruning = pruner.schedule(&weights.config.geometry())?;
    let mode = if args.trace.is_some() {
        Mode::Debug
    } else {
        Mode::Normal
    };
    let mut images = Vec::new();
    let mut trace = Vec::new();
    for chunk in args.images.chunks(batch) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        let out = session.run(&input, Run::new(&pruning).mode(mode))?;
        trace.extend(out.trace.unwrap_or_default());
        for (path, o) in chunk.iter().zip(out.items) {
            images.push(ClassifiedImage {
                file: path.display().to_string(),
                top: top_classes(&o.logits, args.top.min(o.logits.len()), &names),
                gflops: o.flops / 1e9,
                kept: (!pruning.is_dense()).then_some(o.kept),
            });
        }
    }
    if let Some(file) = &args.trace {
        crate::common::write_trace(file, &trace)?;
        eprintln!("wrote {} step outputs to {}", trace.len(), file.display());
    }
    let out = ClassifyOutput {
        model: weights.source.clone(),
        adapter: gpu.describe(),
        policy: pruning.policy,
        schedule: pruning.describe(),
        calibration,
        steps: pruning.steps.clone(),
        images,
    };
    emit(&out, args.json)
}
