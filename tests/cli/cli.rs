//! The `zeroprune` binary end to end, on a tiny fixture model and on generated images.

use std::path::Path;

use crate::common::cli::{images, run, zeroprune};
use crate::common::fixture;

/// `eval --json --batch 2` of the tiny fixture model on `images` with `labels`, plus `extra`.
fn eval_tiny(images: &Path, labels: &Path, extra: &[&str]) -> (bool, String, String) {
    run(zeroprune()
        .args(["eval", "--json", "--batch", "2", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(images)
        .arg("--labels")
        .arg(labels)
        .args(extra))
}

#[test]
fn info_prints_the_adapter() {
    let (ok, out, err) = run(zeroprune().args(["info", "--json"]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["adapter"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        v["limits"]["max_storage_buffer_binding_size"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn classify_json_lists_top_classes() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let model = fixture("tiny-hf-vit");
    let (ok, out, err) = run(zeroprune()
        .args(["classify", "--json", "--top", "3", "--model"])
        .arg(&model)
        .args(&imgs));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let list = v["images"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    let top = list[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 3);
    // Class names come from the HF config's id2label.
    assert!(top[0]["name"].as_str().unwrap().starts_with("class-"));
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2] && p[0] <= 1.0);
}

#[test]
fn eval_json_reports_accuracy_and_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    // Top-1 must agree with the per-image predictions the command lists.
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\nimg1.png\t2\nimg2.png\t3\n").unwrap();
    let (ok, out, err) = run(zeroprune()
        .args(["eval", "--json", "--batch", "2", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(ok, "{err}");
    assert_eq!(imgs.len(), 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 3);
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let right = preds.iter().filter(|p| p["pred"] == p["label"]).count();
    assert!((v["top1"].as_f64().unwrap() - right as f64 / 3.0).abs() < 1e-9);
    assert!(v["gflops_per_image"].as_f64().unwrap() > 0.0);
    assert!(v["top5"].as_f64().unwrap() >= v["top1"].as_f64().unwrap());
}

#[test]
fn eval_skip_leaves_out_the_first_images_in_file_name_order() {
    // The calibration images a schedule was tuned on are skipped, so a report sees only the others.
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let labels = dir.path().join("labels.tsv");
    // Listed out of order on purpose: --skip counts in file-name order.
    std::fs::write(&labels, "img2.png\t3\nimg0.png\t1\nimg1.png\t2\n").unwrap();
    let eval = |extra: &[&str]| eval_tiny(dir.path(), &labels, extra);
    let (ok, out, err) = eval(&["--skip", "1"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 2);
    let files: Vec<_> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(files, ["img1.png", "img2.png"]);
    let (ok, out, err) = eval(&["--skip", "1", "--limit", "1"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["predictions"][0]["file"], "img1.png");
    assert_eq!(v["images"], 1);
    let (ok, _, err) = eval(&["--skip", "3"]);
    assert!(!ok);
    assert!(
        err.contains("--skip") && err.contains("lists 3 images"),
        "{err}"
    );
}

#[test]
fn bad_arguments_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    // A labels file naming an image that is not there.
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "nope.png\t1\n").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["eval", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(!ok);
    assert!(err.contains("nope.png"), "{err}");
    // A file that is not an image.
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&txt));
    assert!(!ok);
    assert!(err.contains("notes.txt"), "{err}");
    // --top 0.
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--top", "0", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(err.contains("--top"), "{err}");
    // A batch over the stated limit is refused before anything is allocated (a batch beyond a
    // small device's buffers, naming the largest that fits: tests/robustness/errors.rs and
    // device_faults.rs).
    std::fs::write(&labels, "img0.png\t1\n").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["eval", "--batch", "100000000", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels));
    assert!(!ok);
    assert!(
        err.contains("--batch") && err.contains("over the limit of 4096"),
        "{err}"
    );
}

#[test]
fn without_a_model_and_offline_the_message_says_what_to_do() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let (ok, _, err) = run(zeroprune()
        .env("HF_HOME", cache.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .arg("classify")
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(
        err.contains("--model") && err.contains("ZEROPRUNE_MODEL"),
        "{err}"
    );
}

#[test]
fn classify_json_with_a_policy_lists_the_kept_patches() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let (ok, out, err) = run(zeroprune()
        .args([
            "classify",
            "--json",
            "--policy",
            "zero-tprune",
            "--keep",
            "0.6@0;0.5@1",
        ])
        .arg("--model")
        .arg(fixture("tiny-timm"))
        .args(&imgs[..2]));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["policy"], "zero-tprune");
    assert_eq!(v["schedule"], "0:15,1:8");
    for image in v["images"].as_array().unwrap() {
        let kept = image["kept"].as_array().unwrap();
        assert_eq!(kept.len(), 2, "one list per pruning step");
        assert_eq!(kept[0].as_array().unwrap().len(), 15);
        assert_eq!(kept[1].as_array().unwrap().len(), 8);
        let first: Vec<u64> = kept[0]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_u64().unwrap())
            .collect();
        assert!(first.windows(2).all(|w| w[0] < w[1]) && first[14] < 25);
    }
}

#[test]
fn classify_calibrates_a_per_image_budget_on_the_images_given() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let classify = |extra: &[&str]| {
        let (ok, out, err) = run(zeroprune()
            .args(["classify", "--json", "--policy", "zero-tprune-adaptive"])
            .args(extra)
            .arg("--model")
            .arg(fixture("tiny-timm-distilled"))
            .args(&imgs));
        assert!(ok, "{extra:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let dense: f64 = {
        let (ok, out, err) = run(zeroprune()
            .args(["classify", "--json", "--model"])
            .arg(fixture("tiny-timm-distilled"))
            .arg(&imgs[0]));
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["images"][0]["gflops"].as_f64().unwrap()
    };
    // --flops is the mean over the images given: the calibration reports it, and the images'
    // own FLOPs average to it.
    let v = classify(&["--flops", "0.75"]);
    let cal = &v["calibration"];
    assert_eq!(cal["images"], imgs.len());
    let reached = cal["flops"].as_f64().unwrap();
    assert!(reached <= 0.75 && reached > 0.3, "{cal}");
    let images = v["images"].as_array().unwrap();
    let mean = images
        .iter()
        .map(|i| i["gflops"].as_f64().unwrap())
        .sum::<f64>()
        / images.len() as f64;
    assert!(
        (mean / dense - reached).abs() < 1e-6,
        "{mean} / {dense} vs {reached}"
    );
    // A threshold given directly runs as given, without calibration.
    let v = classify(&["--threshold", "0.8@0,1"]);
    assert!(v.get("calibration").is_none(), "{v}");
    assert_eq!(v["schedule"], "0:<0.8,1:<0.8");
}

#[test]
fn eval_with_a_policy_reports_agreement_and_counted_flops() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\nimg1.png\t2\nimg2.png\t3\n").unwrap();
    let eval = |policy: &[&str]| {
        let (ok, out, err) = run(zeroprune()
            .args(["eval", "--json", "--batch", "2", "--model"])
            .arg(fixture("tiny-timm"))
            .arg("--images")
            .arg(dir.path())
            .arg("--labels")
            .arg(&labels)
            .args(policy));
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let dense = eval(&[]);
    let keep_all = eval(&["--policy", "evit", "--keep", "1.0@0"]);
    assert_eq!(keep_all["agreement"], 1.0);
    assert_eq!(keep_all["top1"], dense["top1"]);
    let pruned = eval(&["--policy", "random", "--keep", "0.2@0"]);
    let a = pruned["agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&a));
    assert!(
        pruned["gflops_per_image"].as_f64().unwrap()
            < 0.8 * dense["gflops_per_image"].as_f64().unwrap()
    );
    let agree = pruned["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["pred"] == p["dense_pred"])
        .count();
    assert!((a - agree as f64 / 3.0).abs() < 1e-9);
}

#[test]
fn sweep_prints_a_table_and_writes_a_plot() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\nimg1.png\t2\nimg2.png\t3\n").unwrap();
    let plot = dir.path().join("sweep.png");
    // The threshold policy calibrates its FLOPs target on images that are not evaluated.
    let calibration = dir.path().join("calibration");
    std::fs::create_dir(&calibration).unwrap();
    images(&calibration);
    let (ok, out, err) = run(zeroprune()
        .args([
            "sweep",
            "--json",
            "--policies",
            "zero-tprune,tome,threshold,zero-tprune-adaptive,random",
        ])
        .arg("--calibration")
        .arg(&calibration)
        .args(["--targets", "0.9,0.75", "--model"])
        .arg(fixture("tiny-timm-distilled"))
        .arg("--images")
        .arg(dir.path())
        .arg("--labels")
        .arg(&labels)
        .arg("--plot")
        .arg(&plot));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1 + 5 * 2, "dense + 5 policies x 2 targets");
    for r in &rows[1..] {
        let ratio = r["flops_ratio"].as_f64().unwrap();
        let target = r["target"].as_f64().unwrap();
        // The per-image policies meet the target on the calibration images, not these.
        if r["policy"] != "threshold" && r["policy"] != "zero-tprune-adaptive" {
            assert!(ratio <= target + 1e-9, "{r}");
        }
        assert!(r["agreement"].as_f64().unwrap() <= 100.0);
    }
    let png = image::open(&plot).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
}

#[test]
fn explain_draws_one_panel_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let picture = |steps: &str| {
        let out = dir.path().join(format!("explain{}.png", steps.len()));
        let (ok, stdout, err) = run(zeroprune()
            .args([
                "explain", "--json", "--policy", "evit", "--keep", steps, "--model",
            ])
            .arg(fixture("tiny-timm"))
            .arg(&imgs[0])
            .arg("--out")
            .arg(&out));
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(
            v["kept"].as_array().unwrap().len(),
            steps.split(',').count()
        );
        image::open(&out).unwrap().width()
    };
    let one = picture("0.5@1");
    let two = picture("0.5@0,1");
    assert!(two > one, "a second step adds a panel ({one} -> {two})");
    // Without a policy there is nothing to explain.
    let (ok, _, err) = run(zeroprune()
        .args(["explain", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok && err.contains("policy"), "{err}");
}

#[test]
fn bad_pruning_arguments_name_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    for (args, needle) in [
        (vec!["--policy", "bogus"], "policy"),
        (vec!["--policy", "evit", "--keep", "1.5@0"], "keep"),
        (vec!["--policy", "evit", "--keep", "0.5@7"], "block 7"),
        (vec!["--policy", "tome", "--keep", "0.3@0"], "at most half"),
        (vec!["--policy", "evit", "--flops", "0.01"], "flops"),
        (
            vec!["--policy", "threshold", "--keep", "0.5@0"],
            "threshold",
        ),
        (
            vec!["--policy", "zero-tprune-adaptive", "--tokens", "0:10"],
            "decided per image",
        ),
        (
            vec!["--policy", "evit", "--threshold", "0.5@0"],
            "--policy zero-tprune-adaptive",
        ),
        (vec!["--sim", "0.5"], "policy"),
    ] {
        let (ok, _, err) = run(zeroprune()
            .arg("classify")
            .args(&args)
            .arg("--model")
            .arg(fixture("tiny-timm"))
            .arg(&imgs[0]));
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // Two schedules at once.
    let (ok, _, err) = run(zeroprune()
        .args([
            "classify", "--policy", "evit", "--keep", "0.5@0", "--flops", "0.8",
        ])
        .arg("--model")
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok && err.contains("cannot be used with"), "{err}");
}

#[test]
fn classify_trace_writes_every_step_output() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let trace = dir.path().join("trace.safetensors");
    let (ok, out, err) = run(zeroprune()
        .args(["classify", "--json", "--policy", "tome", "--keep", "0.6@0"])
        .arg("--model")
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0])
        .arg("--trace")
        .arg(&trace));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bytes = std::fs::read(&trace).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    // Every step in order: `NNN.LABEL.SLOT`, from the patch embedding to the head.
    assert!(names[0].starts_with("000.patch_embed."), "{names:?}");
    assert!(names
        .iter()
        .any(|n| n.ends_with(".block0.prune.merge.m_out")));
    let sizes = names
        .iter()
        .find(|n| n.ends_with(".block0.prune.merge.m_size_out"));
    assert_eq!(
        st.tensor(sizes.unwrap()).unwrap().dtype(),
        safetensors::Dtype::F32
    );
    let src = names
        .iter()
        .find(|n| n.ends_with(".block0.prune.compact.cp_src"));
    assert_eq!(
        st.tensor(src.unwrap()).unwrap().dtype(),
        safetensors::Dtype::U32
    );
    // The head's output is the logits the JSON reports.
    let head = names.iter().find(|n| n.ends_with(".head.c")).unwrap();
    let logits: Vec<f32> = st
        .tensor(head)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let best = logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .unwrap()
        .0;
    assert_eq!(v["images"][0]["top"][0]["class"], best);
}

#[test]
fn tune_writes_a_schedule_that_every_command_takes() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let model = fixture("prune/tiny-timm-deep");
    let file = dir.path().join("schedule.json");
    let (ok, out, err) = run(zeroprune()
        .args([
            "tune", "--json", "--flops", "0.7", "--rounds", "1", "--batch", "2",
        ])
        .args(["--policy", "tome-protect", "--protect", "0.2", "--model"])
        .arg(&model)
        .arg("--images")
        .arg(dir.path())
        .arg("--out")
        .arg(&file));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"], 3);
    assert!(v["flops_ratio"].as_f64().unwrap() <= 0.7);
    assert!(v["tried"].as_array().unwrap().len() >= 2);
    let schedule = v["schedule"].as_str().unwrap().to_string();
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["policy"], "tome-protect");
    assert_eq!(saved["tokens"], schedule);
    assert_eq!(saved["protect"], 0.2);
    assert_eq!(
        (saved["depth"].as_u64(), saved["patches"].as_u64()),
        (Some(4), Some(64))
    );

    // classify and bench take it; the kept counts follow it.
    let imgs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("img{i}.png")))
        .collect();
    let (ok, out, err) = run(zeroprune()
        .args(["classify", "--json", "--model"])
        .arg(&model)
        .arg("--schedule")
        .arg(&file)
        .arg(&imgs[0]));
    assert!(ok, "{err}");
    let c: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(c["policy"], "tome-protect");
    assert_eq!(c["schedule"], schedule);
    let (ok, out, err) = run(zeroprune()
        .args(["bench", "--json", "--runs", "1", "--batch", "1", "--model"])
        .arg(&model)
        .args(["--policy", "tome", "--flops", "0.8", "--schedules"])
        .arg(&file));
    assert!(ok, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    let policies: Vec<&str> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["none", "tome", "tome-protect"]);

    // A schedule for another model, for another policy, or beside another schedule is refused.
    for (args, needle) in [
        (vec!["--model", "tiny-timm"], "64 patch tokens"),
        (vec!["--policy", "tome"], "for policy tome-protect"),
        (vec!["--flops", "0.8"], "cannot be used with"),
    ] {
        let mut cmd = zeroprune();
        cmd.arg("classify");
        if args[0] == "--model" {
            cmd.arg("--model").arg(fixture(args[1]));
        } else {
            cmd.arg("--model").arg(&model).args(&args);
        }
        let (ok, _, err) = run(cmd.arg("--schedule").arg(&file).arg(&imgs[0]));
        assert!(!ok && err.contains(needle), "{args:?}: {err}");
    }
    std::fs::write(&file, "{\"policy\": \"tome\", \"tokens\": 3}").unwrap();
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--model"])
        .arg(&model)
        .arg("--schedule")
        .arg(&file)
        .arg(&imgs[0]));
    assert!(
        !ok && err.contains("schedule.json") && err.contains("tokens"),
        "{err}"
    );
}

#[test]
fn tune_under_a_latency_budget_fills_every_gemm_tile() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let file = dir.path().join("fast.json");
    let (ok, out, err) = run(zeroprune()
        .args([
            "tune",
            "--json",
            "--latency",
            "100000",
            "--rounds",
            "0",
            "--batch",
            "8",
        ])
        .args(["--policy", "tome", "--model"])
        .arg(fixture("prune/tiny-timm-deep"))
        .arg("--images")
        .arg(dir.path())
        .arg("--out")
        .arg(&file));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Every GEMM tile has 32 or 64 rows: at batch 8, 1 + kept is a multiple of 4.
    for step in v["schedule"].as_str().unwrap().split(',') {
        let kept: usize = step.split(':').nth(1).unwrap().parse().unwrap();
        assert_eq!((1 + kept) % 4, 0, "{step}");
    }
}

#[test]
fn eval_compares_f16_storage_with_an_f32_reference() {
    let dir = tempfile::tempdir().unwrap();
    images(dir.path());
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\nimg1.png\t2\nimg2.png\t3\n").unwrap();
    let eval = |extra: &[&str]| eval_tiny(dir.path(), &labels, extra);
    let (ok, out, err) = eval(&["--precision", "f16", "--reference-precision", "f32"]);
    if err.contains("shader-f16") {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["storage"], "f16");
    assert_eq!(v["reference_storage"], "f32");
    // No policy, yet the reference ran: agreement (with its standard error) and a speed ratio.
    let agreement = v["agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    assert!(v["agreement_se"].as_f64().is_some());
    assert!(v["speedup"].as_f64().unwrap() > 0.0);
    let preds = v["predictions"].as_array().unwrap();
    let agree = preds
        .iter()
        .filter(|p| p["pred"] == p["dense_pred"])
        .count();
    assert!((agreement - agree as f64 / 3.0).abs() < 1e-9);
    // The same precision as reference is no comparison.
    let (ok, out, err) = eval(&["--precision", "f32", "--reference-precision", "f32"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["agreement"].is_null());
}

#[test]
fn an_unknown_precision_names_the_choices() {
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--precision", "half", "--model"])
        .arg(fixture("tiny-timm"))
        .arg("x.png"));
    assert!(!ok);
    assert!(err.contains("--precision") && err.contains("f16"), "{err}");
}

#[test]
fn hostile_arguments_name_the_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    // --limit 0 is about --limit, not about the labels.
    let labels = dir.path().join("labels.tsv");
    std::fs::write(&labels, "img0.png\t1\n").unwrap();
    let (ok, _, err) = eval_tiny(dir.path(), &labels, &["--limit", "0"]);
    assert!(!ok);
    assert!(
        err.contains("--limit") && !err.contains("--labels"),
        "{err}"
    );
    // A backend name that is none: the message names the variable and the choices.
    let (ok, _, err) = run(zeroprune()
        .env("WGPU_BACKEND", "bogus")
        .args(["classify", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(
        err.contains("WGPU_BACKEND=\"bogus\"") && err.contains("vulkan"),
        "{err}"
    );
    assert!(!err.contains("Backends(0x0)"), "{err}");
    // An empty schedule is not a dense run.
    let (ok, _, err) = run(zeroprune()
        .args([
            "classify",
            "--policy",
            "zero-tprune",
            "--keep",
            "",
            "--model",
        ])
        .arg(fixture("tiny-timm"))
        .arg(&imgs[0]));
    assert!(!ok);
    assert!(err.contains("keep") && err.contains("empty"), "{err}");
    // A directory or a FIFO as an image.
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--model"])
        .arg(fixture("tiny-timm"))
        .arg(dir.path()));
    assert!(!ok);
    assert!(err.contains("regular file"), "{err}");
}

/// `embed` and `similarity` with an image model (a folder without tokenizer.json): one pooled
/// embedding per image; with a policy, each image's cosine to its dense embedding; `similarity`
/// gives the cosine of the two images' embeddings.
#[test]
fn embed_and_similarity_take_images_with_an_image_model() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let model = fixture("tiny-timm-reg");
    let (ok, out, err) = run(zeroprune()
        .args(["embed", "--json", "--model"])
        .arg(&model)
        .args(&imgs));
    assert!(ok, "{err}");
    let dense: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dense["dim"], 32);
    let vectors: Vec<Vec<f64>> = dense["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert!(i["cosine_to_dense"].is_null());
            i["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 32));

    let (ok, out, err) = run(zeroprune()
        .args([
            "embed", "--json", "--policy", "tome", "--keep", "0.7@0", "--model",
        ])
        .arg(&model)
        .args(&imgs));
    assert!(ok, "{err}");
    let pruned: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(pruned["policy"].as_str().unwrap().starts_with("tome"));
    for i in pruned["images"].as_array().unwrap() {
        let c = i["cosine_to_dense"].as_f64().unwrap();
        assert!(c > 0.0 && c <= 1.0 + 1e-6, "{c}");
        assert_eq!(i["kept"][0].as_array().unwrap().len(), 7, "ceil(0.7 * 9)");
    }

    let (ok, out, err) = run(zeroprune()
        .args(["similarity", "--json", "--model"])
        .arg(&model)
        .args(&imgs[..2]));
    assert!(ok, "{err}");
    let sim: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (a, b) = (&vectors[0], &vectors[1]);
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let want = dot / (norm(a) * norm(b));
    assert!((sim["cosine"].as_f64().unwrap() - want).abs() < 1e-4);

    // Text-only flags, and a missing image, are errors naming them.
    let (ok, _, err) = run(zeroprune()
        .args(["embed", "--file", "list.txt", "--model"])
        .arg(&model)
        .args(&imgs));
    assert!(!ok && err.contains("--file"), "{err}");
    let (ok, _, err) = run(zeroprune()
        .args(["embed", "--model"])
        .arg(&model)
        .arg(dir.path().join("missing.png")));
    assert!(!ok && err.contains("missing.png"), "{err}");
}

/// A backbone (no classifier head) embeds and cannot classify: `classify` says so and names what
/// to use instead.
#[test]
fn a_backbone_embeds_and_cannot_classify() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = images(dir.path());
    let model = fixture("tiny-hf-dinov2-reg");
    let (ok, _, err) = run(zeroprune()
        .args(["classify", "--model"])
        .arg(&model)
        .args(&imgs));
    assert!(
        !ok && err.contains("backbone") && err.contains("zeroprune embed"),
        "{err}"
    );
    let (ok, out, err) = run(zeroprune()
        .args([
            "embed",
            "--json",
            "--policy",
            "zero-tprune",
            "--keep",
            "0.7@1",
            "--model",
        ])
        .arg(&model)
        .args(&imgs));
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 3);
    assert_eq!(
        v["images"][0]["kept"][0].as_array().unwrap().len(),
        18,
        "ceil(0.7 * 25)"
    );
}
