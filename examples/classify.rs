//! The library in a dozen lines: load a model, classify images.
//!
//! `WGPU_BACKEND=vulkan cargo run --release --example classify -- ../shared/models/deit-tiny-patch16-224 IMAGE...`

use std::path::PathBuf;

use zeroprune::gpu::{AdapterChoice, GpuContext};
use zeroprune::{labels, preprocess, session::top_k, ModelWeights, Session};

fn main() -> zeroprune::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let model = args.next().expect("usage: classify MODEL_DIR IMAGE...");
    let images: Vec<PathBuf> = args.collect();

    let gpu = GpuContext::new_blocking(&AdapterChoice::from_env())?;
    let weights = ModelWeights::load(&model)?;
    let names = weights
        .config
        .class_names
        .clone()
        .unwrap_or_else(labels::imagenet_class_names);
    let mut session = Session::new(&gpu, &weights)?;

    let input = preprocess::load_batch(&images, &weights.config.preprocess)?;
    for (path, logits) in images.iter().zip(session.run(&input)?) {
        let (class, p) = top_k(&logits, 1).top[0];
        println!("{}: {} ({:.1}%)", path.display(), names[class], p * 100.0);
    }
    Ok(())
}
