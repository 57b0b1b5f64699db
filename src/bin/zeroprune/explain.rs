//! `zeroprune explain IMAGE --policy ...`: a PNG of the image as the model sees it, then one panel
//! per pruning step with the dropped patches darkened.

use std::path::{Path, PathBuf};

use serde_json::json;
use zeroprune::draw::token_panels;
use zeroprune::prune::Keep;
use zeroprune::session::top_k;
use zeroprune::{preprocess, Error, Result, Session};

use crate::commands::{class_names, open_gpu};
use crate::prune_args::PruneArgs;
use crate::{model_source, ModelArgs};

pub fn run(
    model: &ModelArgs,
    prune: &PruneArgs,
    image: &Path,
    out: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    let weights = model_source::load(model)?;
    let c = &weights.config;
    let pruning = prune.resolve(c)?;
    if pruning.is_dense() {
        return Err(Error::param(
            "policy",
            "explain shows what a pruning policy keeps: give one, e.g. --policy zero-tprune",
        ));
    }
    let names = class_names(&weights, None)?;
    let input = preprocess::load_batch(&[image.to_path_buf()], &c.preprocess)?;
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    session.set_pruning(pruning.clone());
    let result = session
        .run_detailed(&input)?
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
    let out: PathBuf = match out {
        Some(p) => p.to_path_buf(),
        None => {
            let stem = image
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("image");
            PathBuf::from(format!("{stem}-{}.png", pruning.policy))
        }
    };
    picture
        .save(&out)
        .map_err(|e| Error::io(&out, std::io::Error::other(e.to_string())))?;
    let gflops = session.flops_for(&result) / 1e9;
    if as_json {
        let v = json!({
            "image": image.display().to_string(), "picture": out, "policy": pruning.policy,
            "schedule": pruning.describe(), "class": top.0, "name": names[top.0], "probability": top.1,
            "gflops": gflops, "kept": result.kept,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{}: {} ({:.1}%) with {} at {}, {gflops:.3} GFLOPs",
            image.display(),
            names[top.0],
            100.0 * top.1,
            pruning.policy,
            pruning.describe()
        );
        println!("wrote {}", out.display());
    }
    Ok(())
}
