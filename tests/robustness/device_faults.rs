//! Device faults: a device too small for what is asked, a destroyed device, a destroyed buffer. Each
//! gives an error (never a hang, an abort or a panic), and a session made afterwards works.
//! Every test opens its own device, since it breaks it.

use std::sync::mpsc;
use std::time::Duration;

use crate::common::fixture;
use zeroprune::gpu::kernels::{Gemm, MatView};
use zeroprune::gpu::{AdapterChoice, GpuContext, GpuTensor, Kernels, Program};
use zeroprune::prune::Pruning;
use zeroprune::{Error, ModelWeights, Session};

fn open(max_buffer: Option<u64>) -> GpuContext {
    pollster::block_on(GpuContext::with_max_buffer(
        &AdapterChoice::from_env(),
        max_buffer,
    ))
    .expect("a GPU adapter")
}

fn tiny() -> ModelWeights {
    ModelWeights::load(&fixture("tiny-timm")).expect("the tiny model loads")
}

/// `f` on another thread, which must finish within a minute: a hang is a failure, not a stuck test.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("finished within a minute (no hang)")
}

#[test]
fn a_device_too_small_for_the_weights_is_an_error_naming_the_layer() {
    // DeiT-Tiny's random weights: the qkv weight alone is 442 KB.
    let weights = zeroprune::model::random::random_model("deit-tiny").expect("random DeiT-Tiny");
    let gpu = open(Some(256 << 10));
    let Err(e) = Session::new(&gpu, &weights) else {
        panic!("a 256 KB device cannot hold DeiT-Tiny");
    };
    let msg = e.to_string();
    assert!(msg.contains("block0.qkv weight"), "{msg}");
    assert!(msg.contains("262144 bytes"), "{msg}");
}

#[test]
fn a_batch_over_a_small_device_is_refused_before_allocating() {
    let weights = tiny();
    let gpu = open(Some(64 << 10));
    let mut session = Session::new(&gpu, &weights).expect("the tiny model fits 64 KB");
    let max = session.max_batch();
    assert!(max >= 1);
    let images = vec![0.1f32; (max + 1) * session.image_len()];
    match session.run(&images, &Pruning::dense()) {
        Err(Error::BatchTooLarge { batch, max: m, .. }) => {
            assert_eq!((batch, m), (max + 1, max));
        }
        other => panic!("expected BatchTooLarge, got {other:?}"),
    }
    // The session still runs what fits.
    let fits = vec![0.1f32; max * session.image_len()];
    let out = session
        .run(&fits, &Pruning::dense())
        .expect("a batch that fits runs");
    assert_eq!(out.items.len(), max);
}

#[test]
fn a_destroyed_device_gives_an_error_and_a_new_session_runs() {
    let weights = tiny();
    let image_len = 3 * 40 * 40;
    let err = within_a_minute(move || {
        let gpu = open(None);
        let mut session = Session::new(&gpu, &weights).expect("session");
        let input = vec![0.2f32; image_len];
        session.run(&input, &Pruning::dense()).expect("runs before");
        gpu.device.destroy();
        let after = session.run(&input, &Pruning::dense());
        after.map(|_| ()).map_err(|e| e.to_string())
    });
    let msg = err.expect_err("a run on a destroyed device fails");
    assert!(msg.contains("GPU device lost"), "{msg}");
    // A fresh device and session work.
    let weights = tiny();
    let gpu = open(None);
    let mut session = Session::new(&gpu, &weights).expect("a new session");
    let out = session
        .run(&vec![0.2f32; image_len], &Pruning::dense())
        .expect("runs on a new device");
    assert!(out.items[0].logits.iter().all(|v| v.is_finite()));
}

#[test]
fn a_destroyed_buffer_is_a_validation_error_not_a_panic() {
    let gpu = open(None);
    let k = Kernels::new(&gpu);
    let (m, n, kk) = (8, 8, 8);
    let a = GpuTensor::from_slice(&gpu, "a", &vec![1.0f32; m * kk]);
    let b = GpuTensor::from_slice(&gpu, "b", &vec![1.0f32; kk * n]);
    let c = GpuTensor::zeros(&gpu, "c", m * n);
    let step = k
        .gemm(
            "destroyed input",
            MatView::rows(&a, kk),
            MatView::rows(&b, n),
            MatView::rows(&c, n),
            Gemm::new(m, n, kk),
        )
        .expect("step");
    let program = Program { steps: vec![step] };
    zeroprune::gpu::time_program_blocking(&gpu, &program).expect("runs before");
    a.buffer.destroy();
    let err = within_a_minute(move || {
        zeroprune::gpu::time_program_blocking(&gpu, &program)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    let msg = err.expect_err("a destroyed buffer fails the submit");
    assert!(
        msg.contains("destroyed") || msg.contains("Destroyed") || msg.contains("invalid"),
        "{msg}"
    );
}
