//! The real DeiT-Tiny from `../shared/models` on real ImageNet images from `../shared/data`, against the
//! independent NumPy forward pass in `tests/reference/numpy_deit.py` (fixtures in tests/fixtures).

use crate::common::{fixture, gpu, max_rel_err, read_tensor, shared};
use zeroprune::prune::Pruning;
use zeroprune::{preprocess, ModelWeights, Session};

fn deit_tiny() -> ModelWeights {
    let dir = shared().join("models/deit-tiny-patch16-224");
    ModelWeights::load(&dir).unwrap_or_else(|e| panic!("the real model is needed here: {e}"))
}

/// The first `n` lines of the NumPy predictions: (file, label, NumPy top-1).
fn numpy_predictions(n: usize) -> Vec<(String, usize, usize)> {
    let text = std::fs::read_to_string(fixture("deit-tiny-numpy-resize.tsv")).unwrap();
    text.lines()
        .take(n)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn logits_match_numpy_on_the_same_input() {
    let weights = deit_tiny();
    let mut session = Session::new(gpu(), &weights).unwrap();
    let refs = fixture("deit-tiny-numpy-first8.safetensors");
    let (_, input0) = read_tensor(&refs, "input0");
    let (_, logits) = read_tensor(&refs, "logits");
    let got = session.run(&input0, &Pruning::dense()).unwrap().logits();
    let err = max_rel_err(&got, &logits[..1000]);
    eprintln!("DeiT-Tiny on the PIL-preprocessed image: max relative logit error {err:.2e}");
    assert!(err < 1e-4, "logits differ from NumPy by {err}");
}

#[test]
fn f16_storage_matches_numpy_on_the_same_input() {
    if !gpu().has_f16() {
        eprintln!("skipped: the adapter has no shader-f16");
        return;
    }
    let weights = deit_tiny();
    let mut session =
        Session::with_precision(gpu(), &weights, zeroprune::model::Precision::F16).unwrap();
    let refs = fixture("deit-tiny-numpy-first8.safetensors");
    let (_, input0) = read_tensor(&refs, "input0");
    let (_, logits) = read_tensor(&refs, "logits");
    let got = session.run(&input0, &Pruning::dense()).unwrap().logits();
    let err = max_rel_err(&got, &logits[..1000]);
    eprintln!("DeiT-Tiny with f16 storage: max relative logit error {err:.2e}");
    assert!(err < 1e-2, "f16 logits differ from NumPy by {err}");
    let top = |l: &[f32]| zeroprune::session::top_k(l, 1).top[0].0;
    assert_eq!(top(&got), top(&logits[..1000]));
}

#[test]
fn predictions_match_numpy_on_real_images() {
    let weights = deit_tiny();
    let mut session = Session::new(gpu(), &weights).unwrap();
    let expected = numpy_predictions(8);
    let paths: Vec<_> = expected
        .iter()
        .map(|(f, _, _)| shared().join("data/imagenet-val-1300/images").join(f))
        .collect();
    let batch = preprocess::load_batch(&paths, &weights.config.preprocess).unwrap();
    let got: Vec<Vec<f32>> = session
        .run(&batch, &Pruning::dense())
        .unwrap()
        .items
        .into_iter()
        .map(|o| o.logits)
        .collect();
    let (_, numpy_logits) = read_tensor(&fixture("deit-tiny-numpy-first8.safetensors"), "logits");
    for (i, ((file, _, numpy_top1), logits)) in expected.iter().zip(&got).enumerate() {
        let top1 = zeroprune::session::top_k(logits, 1).top[0].0;
        // JPEG decoders differ by a few levels (image crate vs PIL), so logits are close, not equal.
        let err = max_rel_err(logits, &numpy_logits[i * 1000..(i + 1) * 1000]);
        eprintln!("{file}: ours {top1}, NumPy {numpy_top1}, logit error {err:.2e}");
        assert_eq!(top1, *numpy_top1, "{file}: top-1 differs from NumPy");
        assert!(err < 0.05, "{file}: logits differ from NumPy by {err}");
    }
}
