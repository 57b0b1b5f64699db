//! `info`, `classify` and `eval`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use zeroprune::gpu::{AdapterChoice, GpuContext};
use zeroprune::session::top_k;
use zeroprune::{labels, preprocess, Error, ModelWeights, Result, Session};

use crate::prune_args::PruneArgs;
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

pub fn classify(
    model: &ModelArgs,
    prune: &PruneArgs,
    images: &[PathBuf],
    top: usize,
    labels_file: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    if top == 0 {
        return Err(Error::param("--top", "must be at least 1"));
    }
    let weights = model_source::load(model)?;
    let pruning = prune.resolve(&weights.config)?;
    let names = class_names(&weights, labels_file)?;
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    session.set_pruning(pruning.clone());
    let batch = session.max_batch().clamp(1, 16);
    let mut results = Vec::new();
    for chunk in images.chunks(batch) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        for (path, out) in chunk.iter().zip(session.run_detailed(&input)?) {
            let p = top_k(&out.logits, top.min(out.logits.len()));
            let gflops = session.flops_for(&out) / 1e9;
            results.push((path, p, out.kept, gflops));
        }
    }
    if as_json {
        let list: Vec<_> = results
            .iter()
            .map(|(path, p, kept, gflops)| {
                let mut v = json!({
                    "file": path.display().to_string(),
                    "top": p.top.iter().map(|&(i, prob)| json!({"class": i, "name": names[i], "probability": prob})).collect::<Vec<_>>(),
                    "gflops": gflops,
                });
                if !pruning.is_dense() {
                    v["kept"] = json!(kept);
                }
                v
            })
            .collect();
        let v = json!({
            "model": weights.source, "adapter": gpu.describe(),
            "policy": pruning.policy, "schedule": pruning.describe(), "steps": pruning.steps,
            "images": list,
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        if !pruning.is_dense() {
            println!(
                "policy {} at {} (patch tokens kept after each block)",
                pruning.policy,
                pruning.describe()
            );
        }
        for (path, p, kept, gflops) in results {
            print!("{}", path.display());
            if !pruning.is_dense() {
                let counts: Vec<String> = kept.iter().map(|k| k.len().to_string()).collect();
                print!(
                    "  ({gflops:.3} GFLOPs, tokens kept {})",
                    counts.join(" -> ")
                );
            }
            println!();
            for (i, prob) in &p.top {
                println!("  {:6.2}%  {:4}  {}", prob * 100.0, i, names[*i]);
            }
        }
    }
    Ok(())
}

/// `(file name, class index)` pairs.
pub type Labelled = Vec<(String, usize)>;

/// A labelled image list, checked against the model: (file name, class) and the paths.
pub fn labelled_images(
    weights: &ModelWeights,
    image_dir: &Path,
    labels_file: &Path,
    limit: Option<usize>,
) -> Result<(Labelled, Vec<PathBuf>)> {
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

pub fn check_batch(session: &Session, batch: usize) -> Result<()> {
    if batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
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

pub fn eval(
    model: &ModelArgs,
    prune: &PruneArgs,
    image_dir: &Path,
    labels_file: &Path,
    limit: Option<usize>,
    batch: usize,
    as_json: bool,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::param("--batch", "must be at least 1"));
    }
    let weights = model_source::load(model)?;
    let pruning = prune.resolve(&weights.config)?;
    let (items, paths) = labelled_images(&weights, image_dir, labels_file, limit)?;
    let gpu = open_gpu()?;
    let mut session = Session::new(&gpu, &weights)?;
    check_batch(&session, batch)?;
    let pruned = !pruning.is_dense();
    let bar = progress(items.len(), "images");
    let (mut top1, mut top5, mut agree, mut dense_top1) = (0usize, 0usize, 0usize, 0usize);
    let mut flops = 0.0;
    let mut predictions = Vec::with_capacity(items.len());
    let mut gpu_seconds = 0.0;
    let start = Instant::now();
    for (chunk, labels_chunk) in paths.chunks(batch).zip(items.chunks(batch)) {
        let input = preprocess::load_batch(chunk, &weights.config.preprocess)?;
        // With a policy, the dense model runs on the same batch for the agreement figure.
        let dense_pred: Vec<usize> = if pruned {
            session.set_pruning(zeroprune::prune::Pruning::dense());
            let d = session.run(&input)?;
            session.set_pruning(pruning.clone());
            d.iter().map(|l| top_k(l, 1).top[0].0).collect()
        } else {
            vec![]
        };
        let t = Instant::now();
        let outs = session.run_detailed(&input)?;
        gpu_seconds += t.elapsed().as_secs_f64();
        for (i, ((name, label), out)) in labels_chunk.iter().zip(&outs).enumerate() {
            let p = top_k(&out.logits, 5);
            let pred = p.top[0].0;
            top1 += usize::from(pred == *label);
            top5 += usize::from(p.top.iter().any(|(i, _)| i == label));
            flops += session.flops_for(out);
            let mut v = json!({"file": name, "pred": pred, "label": label,
                "top5": p.top.iter().map(|t| t.0).collect::<Vec<_>>()});
            if let Some(&d) = dense_pred.get(i) {
                agree += usize::from(d == pred);
                dense_top1 += usize::from(d == *label);
                v["dense_pred"] = json!(d);
                v["tokens_kept"] = json!(out.kept.iter().map(Vec::len).collect::<Vec<_>>());
            }
            predictions.push(v);
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
    let gflops = flops / n / 1e9;
    let dense_gflops = zeroprune::model::flops::dense_flops(&weights.config) / 1e9;
    if as_json {
        let mut v = json!({
            "model": weights.source, "adapter": gpu.describe(), "images": items.len(), "batch": batch,
            "policy": pruning.policy, "schedule": pruning.describe(),
            "top1": top1 as f64 / n, "top5": top5 as f64 / n,
            "gflops_per_image": gflops, "dense_gflops_per_image": dense_gflops,
            "images_per_s": n / wall, "forward_images_per_s": n / gpu_seconds,
            "predictions": predictions,
        });
        if pruned {
            v["agreement"] = json!(agree as f64 / n);
            v["dense_top1"] = json!(dense_top1 as f64 / n);
        }
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("model      {}", weights.source);
        println!("adapter    {}", gpu.describe());
        println!("images     {}", items.len());
        if pruned {
            println!(
                "policy     {} at {} (patch tokens kept after each block)",
                pruning.policy,
                pruning.describe()
            );
        }
        println!("top-1      {:.2}%", 100.0 * top1 as f64 / n);
        println!("top-5      {:.2}%", 100.0 * top5 as f64 / n);
        if pruned {
            println!(
                "dense      {:.2}% top-1; agreement with dense {:.2}%",
                100.0 * dense_top1 as f64 / n,
                100.0 * agree as f64 / n
            );
        }
        println!(
            "GFLOPs     {gflops:.3} per image ({:.1}% of dense {dense_gflops:.3})",
            100.0 * gflops / dense_gflops
        );
        println!(
            "speed      {:.2} images/s end to end, {:.2} images/s forward only (batch {batch})",
            n / wall,
            n / gpu_seconds
        );
    }
    Ok(())
}
