//! `zeroprune bench` end to end on a tiny fixture model: dense and pruned in one run, the JSON
//! fields the issue names, the per-kernel breakdown, and `--kernels`.

use crate::common::cli::{json, zeroprune};
use crate::common::fixture;

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
