//! The `zeroprune` binary end to end: a command with a clean environment, its outcome, and small
//! inputs to run it on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary this build made, without a model from the environment (`ZEROPRUNE_MODEL`).
pub fn zeroprune() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_zeroprune"));
    c.env_remove("ZEROPRUNE_MODEL");
    c
}

/// Run `c`: (success, stdout, stderr).
pub fn run(c: &mut Command) -> (bool, String, String) {
    let out = c.output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Run `c`, which must succeed: its stdout, as JSON.
pub fn json(c: &mut Command) -> serde_json::Value {
    let out = c.output().expect("the binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// `zeroprune ARGS...` must succeed: its stdout, as JSON.
pub fn run_ok(args: &[&str]) -> serde_json::Value {
    let out = zeroprune().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `zeroprune ARGS...` must fail: its stderr.
pub fn run_err(args: &[&str]) -> String {
    let out = zeroprune().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// `zeroprune ARGS...` (paths among them) must fail: its stderr.
pub fn fails(args: &[&OsStr]) -> String {
    let out = zeroprune().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

/// Three small PNG images in `dir` (`img0.png` .. `img2.png`), different in every channel.
pub fn images(dir: &Path) -> Vec<PathBuf> {
    (0..3)
        .map(|i| {
            let img = image::RgbImage::from_fn(50, 40, |x, y| {
                image::Rgb([(x * 5 + i * 40) as u8, (y * 6) as u8, (i * 70) as u8])
            });
            let p = dir.join(format!("img{i}.png"));
            img.save(&p).unwrap();
            p
        })
        .collect()
}
