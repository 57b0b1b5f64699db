//! Where the model comes from: --model, $ZEROPRUNE_MODEL, or the Hugging Face hub's DeiT-Tiny.

use std::path::PathBuf;

use zeroprune::{Error, ModelWeights, Result};

use crate::ModelArgs;

/// timm's DeiT-Tiny (ImageNet-1k): model.safetensors + config.json in timm's layout.
#[cfg(feature = "hub")]
const DEFAULT_REPO: &str = "timm/deit_tiny_patch16_224.fb_in1k";

pub fn load(args: &ModelArgs) -> Result<ModelWeights> {
    // `random:deit-small`: seeded random weights of a published shape (speed needs no training).
    if let Some(shape) = args
        .model
        .as_ref()
        .and_then(|p| p.to_str())
        .and_then(|s| s.strip_prefix("random:"))
    {
        return zeroprune::model::random::random_model(shape);
    }
    let dir = match &args.model {
        Some(p) => p.clone(),
        None => default_model()?,
    };
    ModelWeights::load(&dir)
}

#[cfg(feature = "hub")]
fn default_model() -> Result<PathBuf> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::Download(format!(
            "no --model given and DeiT-Tiny could not be fetched from the Hugging Face hub ({DEFAULT_REPO}): {e}. \
             Offline? Pass --model DIR or set ZEROPRUNE_MODEL to a folder with model.safetensors and config.json"
        ))
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(|e| fail(&e))?;
    let repo = api.model(DEFAULT_REPO.to_string());
    let weights = repo.get("model.safetensors").map_err(|e| fail(&e))?;
    repo.get("config.json").map_err(|e| fail(&e))?;
    Ok(weights.parent().map(PathBuf::from).unwrap_or_default())
}

#[cfg(not(feature = "hub"))]
fn default_model() -> Result<PathBuf> {
    Err(Error::param(
        "--model",
        "no model given: pass --model DIR or set ZEROPRUNE_MODEL (built without the `hub` feature)",
    ))
}
