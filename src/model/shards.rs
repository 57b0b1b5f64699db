//! Sharded checkpoints as the hub ships large models: `model.safetensors.index.json` maps each
//! tensor to one of several `model-0000N-of-0000M.safetensors` files. The shards are read (within
//! the model size limit, all together) and joined into one safetensors buffer, which the loaders
//! then read like any single file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::limits::{read_file, read_text, MAX_MODEL_FILE_BYTES};

/// The index file's fields this reads.
#[derive(serde::Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The checkpoint of `index` (a `model.safetensors.index.json`) as one safetensors buffer.
pub fn join_shards(index: &Path) -> Result<Vec<u8>> {
    let text = read_text(index, "a safetensors index")?;
    let map: Index = serde_json::from_str(&text).map_err(|e| {
        Error::config(
            index.display().to_string(),
            format!("not a safetensors index: {e}"),
        )
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let files: BTreeSet<&str> = map.weight_map.values().map(String::as_str).collect();
    if files.is_empty() {
        return Err(Error::config(
            index.display().to_string(),
            "weight_map lists no tensors",
        ));
    }
    // Shards are files beside the index, by plain name: no path leaves the folder.
    let mut shards = Vec::with_capacity(files.len());
    let mut total = 0u64;
    for &file in &files {
        if file.is_empty() || file.contains('/') || file.contains('\\') || file == ".." {
            return Err(Error::config(
                index.display().to_string(),
                format!("shard {file:?} is not a file name beside the index"),
            ));
        }
        let path = dir.join(file);
        let bytes = read_file(&path, MAX_MODEL_FILE_BYTES - total, "a safetensors shard")?;
        total += bytes.len() as u64;
        shards.push((file, path, bytes));
    }
    let parsed = shards
        .iter()
        .map(|(file, path, bytes)| {
            SafeTensors::deserialize(bytes)
                .map(|st| (*file, st))
                .map_err(|e| Error::Safetensors {
                    file: path.display().to_string(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<BTreeMap<_, _>>>()?;
    let mut views: Vec<(String, TensorView)> = Vec::with_capacity(map.weight_map.len());
    for (name, file) in &map.weight_map {
        let view = parsed[file.as_str()]
            .tensor(name)
            .map_err(|_| Error::MissingTensor {
                file: dir.join(file).display().to_string(),
                name: name.clone(),
            })?;
        views.push((name.clone(), view));
    }
    safetensors::serialize(views, None).map_err(|e| Error::Safetensors {
        file: index.display().to_string(),
        reason: e.to_string(),
    })
}
