//! `info`, `classify` and `eval`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zeroprune::gpu::{AdapterChoice, GpuContext};
use zeroprune::session::top_k;
use zeroprune::{labels, preprocess, Error, ModelWeights, Result, Session};

use crate::{model_source, ModelArgs};

pub fn open_gpu() -> Result<GpuContext> {
    GpuContext::new_blocking(&AdapterChoice::from_env())
}

pub fn info(as_json: bool) -> Result<()> {
    let gpu = open_gpu()?;
    let i = gpu.info();
    let l = gpu.limits();
    let features: Vec<String> = gpu
        .adapter
        .features()
        .iter_names()
        .map(|(n, _)| n.to_string())
        .collect();
    if as_json {
        let v = json!({
            "adapter": i.name, "backend": format!("{:?}", i.backend),
            "device_type": format!("{:?}", i.device_type), "driver": i.driver, "driver_info": i.driver_info,
            "limits": {
                "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
                "max_buffer_size": l.max_buffer_size,
                "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
                "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
                "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
            },
            "timestamp_queries": gpu.has_timestamps(),
            "adapter_features": features,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("adapter      {}", i.name);
        println!("backend      {:?}", i.backend);
        println!("device type  {:?}", i.device_type);
        println!("driver       {} {}", i.driver, i.driver_info);
        println!(
            "max storage binding  {} MiB",
            l.max_storage_buffer_binding_size >> 20
        );
        println!("max buffer           {} MiB", l.max_buffer_size >> 20);
        println!(
            "workgroup storage    {} bytes",
            l.max_compute_workgroup_storage_size
        );
        println!("timestamp queries    {}", gpu.has_timestamps());
        println!("adapter features     {}", features.join(", "));
    }
    Ok(())
}

/// Class names: --labels, else the model's own, else ImageNet's for 1000-class models.
fn class_names(weights: &ModelWeights, file: Option<&Path>) -> Result<Vec<String>> {
    let c = &weights.config;
    let names = match file {
        Some(f) => labels::read_class_names(f)?,
        None => match &c.class_names {
            Some(n) => n.clone(),
            None if c.num_classes == 1000 => labels::imagenet_class_names(),
            None => (0..c.num_classes).map(|i| format!("class {i}")).collect(),
        },
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

pub fn classify(
    model: &ModelArgs,
    images: &[PathBuf],
    top: usize,
    labels_file: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    if top == 0 {
        return Err(Error::param("--top", "must be at least 1"));
    }
    let weights = model_source::load(model)?;
    let names = class_names(&weights, labels_file)?;
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    let batch = session.max_batch().clamp(1, 16);
    let mut results = Vec::new();
    for chunk in images.chunks(batch) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        for (path, logits) in chunk.iter().zip(session.run(&input)?) {
            results.push((path, top_k(&logits, top.min(logits.len()))));
        }
    }
    if as_json {
        let list: Vec<_> = results
            .iter()
            .map(|(path, p)| {
                json!({
                    "file": path.display().to_string(),
                    "top": p.top.iter().map(|&(i, prob)| json!({"class": i, "name": names[i], "probability": prob})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = json!({"model": weights.source, "adapter": gpu.describe(), "images": list});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        for (path, p) in results {
            println!("{}", path.display());
            for (i, prob) in &p.top {
                println!("  {:6.2}%  {:4}  {}", prob * 100.0, i, names[*i]);
            }
        }
    }
    Ok(())
}

pub fn eval(
    model: &ModelArgs,
    image_dir: &Path,
    labels_file: &Path,
    limit: Option<usize>,
    batch: usize,
    as_json: bool,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    let mut items = labels::read_labels(labels_file)?;
    items.sort();
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() {
        return Err(Error::param(
            "--labels",
            format!("{} lists no images", labels_file.display()),
        ));
    }
    let weights = model_source::load(model)?;
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
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    let max = session.max_batch();
    if batch > max {
        return Err(Error::BatchTooLarge {
            batch,
            max,
            reason: "the activations would exceed the device's storage binding limit".into(),
        });
    }
    let bar = ProgressBar::new(items.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut top1, mut top5) = (0usize, 0usize);
    let mut predictions = Vec::with_capacity(items.len());
    let mut gpu_seconds = 0.0;
    let start = Instant::now();
    for (chunk, labels_chunk) in paths.chunks(batch).zip(items.chunks(batch)) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        let t = Instant::now();
        let logits = session.run(&input)?;
        gpu_seconds += t.elapsed().as_secs_f64();
        for ((name, label), l) in labels_chunk.iter().zip(&logits) {
            let p = top_k(l, 5);
            let pred = p.top[0].0;
            top1 += usize::from(pred == *label);
            top5 += usize::from(p.top.iter().any(|(i, _)| i == label));
            predictions.push(json!({"file": name, "pred": pred, "label": label,
                "top5": p.top.iter().map(|t| t.0).collect::<Vec<_>>()}));
        }
        bar.inc(chunk.len() as u64);
        bar.set_message(format!(
            "top-1 {:.1}%",
            100.0 * top1 as f64 / predictions.len() as f64
        ));
    }
    bar.finish_and_clear();
    let wall = start.elapsed().as_secs_f64();
    let n = items.len() as f64;
    let gflops = session.flops_per_image() / 1e9;
    if as_json {
        let v = json!({
            "model": weights.source, "adapter": gpu.describe(), "images": items.len(), "batch": batch,
            "top1": top1 as f64 / n, "top5": top5 as f64 / n,
            "gflops_per_image": gflops, "images_per_s": n / wall, "forward_images_per_s": n / gpu_seconds,
            "predictions": predictions,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("model      {}", weights.source);
        println!("adapter    {}", gpu.describe());
        println!("images     {}", items.len());
        println!("top-1      {:.2}%", 100.0 * top1 as f64 / n);
        println!("top-5      {:.2}%", 100.0 * top5 as f64 / n);
        println!("GFLOPs     {gflops:.3} per image");
        println!(
            "speed      {:.2} images/s end to end, {:.2} images/s forward only (batch {batch})",
            n / wall,
            n / gpu_seconds
        );
    }
    Ok(())
}
