//! The library in a dozen lines: load a model, classify images, dense and pruned.
//!
//! `WGPU_BACKEND=vulkan cargo run --release --example classify -- ../shared/models/deit-tiny-patch16-224 IMAGE...`

use std::path::PathBuf;

use zeroprune::gpu::{AdapterChoice, GpuContext};
use zeroprune::prune::{PruneRequest, Pruning};
use zeroprune::{labels, preprocess, session::top_k, ModelWeights, Session};

fn main() -> zeroprune::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let model = args.next().expect("usage: classify MODEL_DIR IMAGE...");
    let images: Vec<PathBuf> = args.collect();

    let gpu = GpuContext::new_blocking(&AdapterChoice::from_env())?;
    let weights = ModelWeights::load(&model)?;
    let names = labels::model_class_names(&weights.config);
    let mut session = Session::new(&gpu, &weights)?;
    // Zero-TPrune at 65% of the dense FLOPs, as `--policy zero-tprune --flops 0.65` would say.
    let pruned = PruneRequest {
        policy: Some("zero-tprune".into()),
        flops: Some(0.65),
        ..Default::default()
    }
    .resolve(&weights.config.geometry())?;

    let input = preprocess::load_batch(&images, &weights.config.preprocess)?;
    for pruning in [Pruning::dense(), pruned] {
        let out = session.run(&input, &pruning)?;
        for (path, image) in images.iter().zip(&out.items) {
            let (class, p) = top_k(&image.logits, 1).top[0];
            println!(
                "{} [{}, {:.2} GFLOPs]: {} ({:.1}%)",
                path.display(),
                pruning.policy,
                image.flops / 1e9,
                names[class],
                p * 100.0
            );
        }
    }
    Ok(())
}
