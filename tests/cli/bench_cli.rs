//! `zeroprune bench` end to end on a tiny fixture model: dense and pruned in one run, the JSON
//! fields the issue names, the per-kernel breakdown, and `--kernels` with its GPU-shape audit.

use crate::common::cli::{json, zeroprune};
use crate::common::{fixture, gpu};
use zeroprune::gpu::KernelChoice;
use zeroprune::prune::{Policy, Pruning};
use zeroprune::{ModelWeights, Session};

#[test]
fn bench_reports_dense_and_pruned_per_batch() {
    let v = json(
        zeroprune()
            .args([
                "bench", "--json", "--runs", "2", "--batch", "1,2", "--model",
            ])
            .arg(fixture("tiny-timm"))
            .args(["--policy", "zero-tprune", "--keep", "0.5@0"]),
    );
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "dense and pruned at two batch sizes");
    for r in rows {
        for key in [
            "batch",
            "policy",
            "latency_ms",
            "images_per_s",
            "flops_ratio",
            "speedup",
            "prune_overhead_share",
            "dispatches",
            "submits",
            "gflops_per_image",
            "achieved_gflops_per_s",
        ] {
            assert!(!r[key].is_null(), "{key} missing in {r}");
        }
        assert!(r["latency_ms"].as_f64().unwrap() > 0.0);
        assert_eq!(r["submits"], 1);
        let share = r["prune_overhead_share"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
    }
    let dense = &rows[0];
    let pruned = &rows[1];
    assert_eq!(dense["policy"], "none");
    assert_eq!(pruned["policy"], "zero-tprune");
    assert_eq!(dense["flops_ratio"].as_f64().unwrap(), 1.0);
    assert_eq!(dense["speedup"].as_f64().unwrap(), 1.0);
    assert_eq!(dense["prune_overhead_share"].as_f64().unwrap(), 0.0);
    assert!(pruned["flops_ratio"].as_f64().unwrap() < 1.0);
    if pruned["prune_overhead_source"] == "gpu timestamps" {
        assert!(pruned["prune_overhead_share"].as_f64().unwrap() > 0.0);
    }
    assert!(pruned["dispatches"].as_u64().unwrap() > dense["dispatches"].as_u64().unwrap());
    // Where the adapter has timestamps, the breakdown lists kernel families and marks pruning steps.
    if let Some(kernels) = pruned["kernels"].as_array() {
        assert!(kernels.iter().any(|k| k["family"] == "fc1"));
        assert!(kernels
            .iter()
            .any(|k| k["prune"] == true && k["family"] == "prune.pagerank"));
        let share: f64 = kernels.iter().map(|k| k["share"].as_f64().unwrap()).sum();
        assert!((share - 1.0).abs() < 1e-6);
    }
}

#[test]
fn bench_kernels_refuses_the_options_of_a_model_run() {
    for flags in [
        &["--policy", "tome"][..],
        &["--flops", "0.5"],
        &["--policies", "wpr"],
        &["--keep", "0.7@2"],
    ] {
        let mut args = vec!["bench", "--kernels", "--runs", "1"];
        args.extend_from_slice(flags);
        let err = crate::common::cli::run_err(&args);
        assert!(
            err.contains(flags[0]) && err.contains("does not apply to --kernels"),
            "{flags:?}: {err}"
        );
    }
}

#[test]
fn bench_kernels_compares_gemm_variants_with_the_cpu() {
    let v = json(zeroprune().args(["bench", "--kernels", "--json", "--runs", "1"]));
    let rows = v["results"].as_array().unwrap();
    let kernel = |r: &serde_json::Value| r["kernel"].as_str().unwrap().to_string();
    assert!(rows.iter().any(|r| kernel(r) == "gpu naive"));
    assert!(rows.iter().any(|r| kernel(r).contains("(chosen)")));
    assert!(rows.iter().any(|r| kernel(r) == "cpu matrixmultiply"));
    assert!(rows.iter().any(|r| kernel(r) == "gpu fused attention"));
    for r in rows {
        assert!(r["gflops_per_s"].as_f64().unwrap() > 0.0, "{r}");
    }
}

/// One row of the GPU-shape audit adds up: at each batch size its invocations are its workgroups
/// times the invocations of one workgroup, batch 8 launches at least what batch 1 does, and it is
/// flagged (with a reason) exactly when batch 1 is under the target.
fn check_shape(row: &serde_json::Value) {
    for batch in ["batch_1", "batch_8"] {
        let at = &row[batch];
        let size: u64 = at["workgroup_size"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap())
            .product();
        let invocations = at["invocations"].as_u64().unwrap();
        assert!(invocations > 0, "{row}");
        assert_eq!(
            invocations,
            at["workgroups"].as_u64().unwrap() * size,
            "{batch}: {row}"
        );
    }
    let b1 = row["batch_1"]["invocations"].as_u64().unwrap();
    let b8 = row["batch_8"]["invocations"].as_u64().unwrap();
    assert!(b8 >= b1, "{row}");
}

fn check_flag(row: &serde_json::Value, b1: u64, target: u64) {
    let below = b1 < target;
    assert_eq!(row["below_target"], below, "{row}");
    assert_eq!(row["reason"].is_string(), below, "{row}");
}

#[test]
fn bench_kernels_audits_the_gpu_shape_of_every_kernel_family() {
    let model = fixture("tiny-timm");
    let v = json(
        zeroprune()
            .args(["bench", "--kernels", "--json", "--runs", "1", "--model"])
            .arg(&model),
    );
    let shape = &v["gpu_shape"];
    let target = shape["target_invocations"].as_u64().unwrap();
    assert_eq!(target, 4096);
    // Built with a GPU adapter's choice on every machine.
    assert_eq!(shape["gemm_kernel"], "tiled128", "{shape}");
    assert_eq!(shape["fused_attention"], true);
    let programs = shape["programs"].as_array().unwrap();
    let policies: Vec<&str> = programs
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    let registry: Vec<&str> = Policy::all().iter().map(|p| p.name()).collect();
    assert_eq!(policies, registry, "dense, then every policy");
    assert_eq!(programs[0]["schedule"], "dense");

    // Every kernel family of the dense program, as the library builds it for the same model and
    // choice, in the order they run.
    let weights = ModelWeights::load(&model).unwrap();
    let mut session = Session::new(gpu(), &weights).unwrap();
    session.set_kernel_choice(KernelChoice::gpu_guess());
    let mut families: Vec<String> = Vec::new();
    for label in session.step_labels(1, &Pruning::dense()).unwrap() {
        let family = match label.split_once('.') {
            Some((head, rest)) if head.starts_with("block") => rest.to_string(),
            _ => label,
        };
        if !families.contains(&family) {
            families.push(family);
        }
    }
    let dense: Vec<&str> = programs[0]["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["family"].as_str().unwrap())
        .collect();
    assert_eq!(dense, families);
    assert!(dense.contains(&"qkv") && dense.contains(&"attention"));

    for p in programs {
        let kernels = p["kernels"].as_array().unwrap();
        assert!(!kernels.is_empty(), "{p}");
        for row in kernels {
            check_shape(row);
            check_flag(row, row["batch_1"]["invocations"].as_u64().unwrap(), target);
        }
    }
    // The summary: every family of every program once, the fewest at batch 1 over the programs.
    let summary = shape["kernels"].as_array().unwrap();
    for p in programs {
        for row in p["kernels"].as_array().unwrap() {
            let family = &row["family"];
            let found: Vec<_> = summary.iter().filter(|s| s["family"] == *family).collect();
            assert_eq!(found.len(), 1, "{family}");
            let fewest = found[0]["fewest"]["batch_1"]["invocations"]
                .as_u64()
                .unwrap();
            assert!(fewest <= row["batch_1"]["invocations"].as_u64().unwrap());
        }
    }
    for s in summary {
        check_shape(&s["fewest"]);
        check_flag(
            s,
            s["fewest"]["batch_1"]["invocations"].as_u64().unwrap(),
            target,
        );
        assert_eq!(
            s["dense"].is_null(),
            !dense.contains(&s["family"].as_str().unwrap())
        );
        if !s["dense"].is_null() {
            check_shape(&s["dense"]);
        }
    }
    assert!(summary
        .iter()
        .any(|s| s["family"] == "prune.pagerank" && s["below_target"] == true));
}

#[test]
fn bench_times_two_precisions_in_one_run() {
    let out = zeroprune()
        .args([
            "bench",
            "--json",
            "--runs",
            "1",
            "--batch",
            "1",
            "--precisions",
            "f32,f16",
            "--policy",
            "zero-tprune",
            "--keep",
            "0.5@0",
            "--model",
        ])
        .arg(fixture("tiny-timm"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("shader-f16") {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    assert!(out.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    let storage: Vec<&str> = rows
        .iter()
        .map(|r| r["storage"].as_str().unwrap())
        .collect();
    assert_eq!(storage, ["f32", "f32", "f16", "f16"]);
    // The first precision is the baseline of the second; each precision has its own dense row.
    assert_eq!(rows[0]["vs_first_precision"].as_f64().unwrap(), 1.0);
    assert!(rows[2]["vs_first_precision"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[2]["speedup"].as_f64().unwrap(), 1.0);
    assert_eq!(rows[3]["policy"], "zero-tprune");
}

#[test]
fn bench_rejects_batch_zero() {
    let out = zeroprune()
        .args(["bench", "--batch", "0", "--model"])
        .arg(fixture("tiny-timm"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--batch"));
}

#[test]
fn bench_rejects_zero_runs_and_a_batch_past_the_limit_before_allocating() {
    for (args, named) in [
        (vec!["--runs", "0"], "--runs"),
        (vec!["--batch", "100000"], "--batch"),
        (vec!["--batch", "1,100000000"], "--batch"),
        (vec!["--soak", "0"], "--soak"),
        (vec!["--soak", "50"], "at least 108"),
    ] {
        let out = zeroprune()
            .arg("bench")
            .args(&args)
            .arg("--model")
            .arg(fixture("tiny-timm"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
}

#[test]
fn a_short_soak_stays_bounded() {
    // Six batch sizes times up to six schedules, more than a session keeps: programs and activations
    // are evicted and rebuilt, and GPU memory and RSS must not grow after the warm-up.
    let v = json(
        zeroprune()
            .args(["bench", "--soak", "144", "--json", "--model"])
            .arg(fixture("tiny-timm")),
    );
    assert_eq!(v["forwards"], 144);
    let samples = v["samples"].as_array().unwrap();
    assert!(samples.len() >= 10, "{v}");
    for s in samples {
        assert!(s["programs"].as_u64().unwrap() <= zeroprune::session::KEEP_PROGRAMS as u64);
        assert!(s["batch_sizes"].as_u64().unwrap() <= zeroprune::session::KEEP_BATCH_SIZES as u64);
        assert!(s["gpu_mb"].as_f64().unwrap() > 0.0, "{s}");
    }
    // Rounds of 6 batch sizes x 6 schedules; four of them.
    assert_eq!(v["round"], 36, "{v}");
    assert_eq!(v["round_peaks"].as_array().unwrap().len(), 4, "{v}");
    assert_eq!(v["bounded"], true, "{v:#}");
}
