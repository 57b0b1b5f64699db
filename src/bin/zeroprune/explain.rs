//! `zeroprune explain IMAGE --policy ...`: a PNG of the image as the model sees it, then one panel
//! per pruning step with the dropped patches darkened.

use std::fmt;
use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use zeroprune::draw::token_panels;
use zeroprune::prune::{Keep, Policy};
use zeroprune::session::top_k;
use zeroprune::{preprocess, Error, Result};

use crate::common::{class_names, emit, open_gpu_while};
use crate::prune_args::PruneArgs;
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The image.
    image: PathBuf,
    /// Output PNG (default: IMAGE-POLICY.png in the current folder).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print one JSON object (with the kept patch indices).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    prune: PruneArgs,
}

#[derive(Serialize)]
struct ExplainOutput {
    image: String,
    picture: PathBuf,
    policy: Policy,
    schedule: String,
    class: usize,
    name: String,
    probability: f32,
    gflops: f64,
    kept: Vec<Vec<u32>>,
}

impl fmt::Display for ExplainOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} ({:.1}%) with {} at {}, {:.3} GFLOPs",
            self.image,
            self.name,
            100.0 * self.probability,
            self.policy,
            self.schedule,
            self.gflops
        )?;
        writeln!(f, "wrote {}", self.picture.display())
    }
}

pub fn run(args: &ExplainArgs) -> Result<()> {
    let (gpu, (weights, mut pruner, names, input)) = open_gpu_while(|| {
        let weights = model_source::load(&args.model)?;
        let c = &weights.config;
        c.check_classifies("--model")?;
        args.prune.dropped(false)?;
        let pruner = args.prune.pruner(&c.geometry())?;
        if pruner.is_dense()? {
            return Err(Error::param(
                "policy",
                "explain shows what a pruning policy keeps: give one, e.g. --policy zero-tprune",
            ));
        }
        let names = class_names(&weights, None)?;
        let input = preprocess::load_batch(std::slice::from_ref(&args.image), &c.preprocess)?;
        Ok((weights, pruner, names, input))
    })?;
    let c = &weights.config;
    let mut session = crate::common::session(&gpu, &weights, &args.model)?;
    // A per-image policy's --flops: this image's own budget.
    crate::common::calibrate_on_images(
        &mut session,
        &weights,
        &mut pruner,
        std::slice::from_ref(&args.image),
        1,
    )?;
    let pruning = pruner.schedule(&c.geometry())?;
    let result = session
        .run(&input, &pruning)?
        .items
        .pop()
        .ok_or_else(|| Error::Gpu("no output".into()))?;
    let top = top_k(&result.logits, 1).top[0];

    let steps: Vec<(String, Vec<u32>)> = pruning
        .steps
        .iter()
        .zip(&result.kept)
        .map(|(s, kept)| {
            let how = match s.keep {
                Keep::Tokens(_) => String::new(),
                Keep::Threshold(t) => format!(" (<{t})"),
            };
            (
                format!("block {}: {} kept{how}", s.block, kept.len()),
                kept.clone(),
            )
        })
        .collect();
    let picture = token_panels(&preprocess::to_rgb(&input, &c.preprocess), c.grid(), &steps);
    let out = match &args.out {
        Some(p) => p.clone(),
        None => {
            let stem = args
                .image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("image");
            PathBuf::from(format!("{stem}-{}.png", pruning.policy))
        }
    };
    picture
        .save(&out)
        .map_err(|e| Error::io(&out, std::io::Error::other(e.to_string())))?;
    let out = ExplainOutput {
        image: args.image.display().to_string(),
        picture: out,
        policy: pruning.policy,
        schedule: pruning.describe(),
        class: top.0,
        name: names[top.0].clone(),
        probability: top.1,
        gflops: result.flops / 1e9,
        kept: result.kept,
    };
    emit(&out, args.json)
}
