//! The kernel choice on disk (native only): measuring the GEMM tiles and the attention paths takes
//! about a second on a CPU adapter, so the first process on a machine measures and the others read
//! the result. An entry is keyed by everything that can change the answer: the adapter (name,
//! vendor, device, type, backend), its driver and driver version, this crate's version and the text
//! of every WGSL file. A missing, unreadable or stale cache only means measuring again.
//!
//! Each entry keeps, with the choice, every candidate's timings ([`TuneReport`]): what `zeroprune
//! info` shows, and what [`super::Kernels::note_forward`] predicts forwards from. An entry without
//! timings (written before they were kept, by a measurement that could count shader compiling as
//! run time) is measured again and replaced; so is an entry marked stale ([`mark_stale`]).
//!
//! Where: `$ZEROPRUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/zeroprune`, else `~/.cache/zeroprune`
//! (`%LOCALAPPDATA%\zeroprune` on Windows), file `kernel-choices.json`. `ZEROPRUNE_RETUNE=1` (the
//! CLI's `--retune`) measures again and rewrites the entry.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::kernels::{GemmKernel, FAMILIES};
use super::tune::TuneReport;
use super::{GpuContext, KernelChoice};

const FILE: &str = "kernel-choices.json";
/// Entries kept (the most recent): one per adapter and build a machine has run.
const MAX_ENTRIES: usize = 32;

static RETUNE: AtomicBool = AtomicBool::new(false);

/// Measure again in this process even where the cache has an entry (the CLI's `--retune`).
pub fn set_retune(on: bool) {
    RETUNE.store(on, Ordering::Relaxed);
}

fn retune() -> bool {
    RETUNE.load(Ordering::Relaxed)
        || std::env::var("ZEROPRUNE_RETUNE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The cache folder, if this machine has one.
pub fn dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("ZEROPRUNE_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("zeroprune")))
        .or_else(|| env("LOCALAPPDATA").map(|d| d.join("zeroprune")))
        .or_else(|| env("HOME").map(|d| d.join(".cache").join("zeroprune")))
}

/// The cache file, if this machine has a cache folder.
pub fn file() -> Option<PathBuf> {
    dir().map(|d| d.join(FILE))
}

/// Entries stay JSON values until one is needed: an entry another version of zeroprune wrote (a
/// different choice structure) neither breaks reading nor is lost when this one rewrites the file.
#[derive(Serialize, Deserialize, Default)]
struct CacheFile {
    entries: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize, Clone)]
struct Entry {
    /// FNV-1a of `what`, the shader text and the crate version, in hex.
    key: String,
    /// The adapter and driver, for a person reading the file.
    what: String,
    choice: KernelChoice,
    /// The timings the choice was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timings: Option<TuneReport>,
    /// Why the choice is to be measured again (none: it stands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale: Option<String>,
}

/// This adapter's entry as the file holds it, usable or not.
#[derive(Clone, Debug)]
pub struct Cached {
    pub choice: KernelChoice,
    pub timings: Option<TuneReport>,
    pub stale: Option<String>,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a, continuing from `h`: a hash that stays the same across Rust releases and
/// platforms (std's hasher makes no such promise), for a key that lives on disk. A few lines, so
/// no dependency.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The adapter and driver, as the cache file shows them.
fn adapter_id(gpu: &GpuContext) -> String {
    let i = gpu.info();
    format!(
        "{} [{:04x}:{:04x}] {:?} {:?}, driver {} {}",
        i.name, i.vendor, i.device, i.device_type, i.backend, i.driver, i.driver_info
    )
}

fn key(what: &str) -> String {
    let mut parts: Vec<&[u8]> = vec![what.as_bytes(), env!("CARGO_PKG_VERSION").as_bytes()];
    for f in FAMILIES {
        parts.push(f.name.as_bytes());
        parts.push(f.source.as_bytes());
        parts.extend(f.libs.iter().map(|l| l.as_bytes()));
    }
    // The generated variants' pieces that no family lists.
    parts.push(super::kernel::REDUCE_SUBGROUP.as_bytes());
    parts.push(super::kernels::gemm::GEMM_RB_VEC4.as_bytes());
    // Each part is followed by its length, so that moving text between parts changes the key.
    let h = parts.iter().fold(FNV_OFFSET, |h, p| {
        fnv1a(fnv1a(h, p), &(p.len() as u64).to_le_bytes())
    });
    format!("{h:016x}")
}

fn read(path: &Path) -> Option<CacheFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            eprintln!(
                "note: kernel-choice cache {}: {e}; measuring",
                path.display()
            );
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "note: kernel-choice cache {} is not valid ({e}); measuring and rewriting it",
                path.display()
            );
            None
        }
    }
}

fn entry_key(e: &serde_json::Value) -> Option<&str> {
    e.get("key")?.as_str()
}

/// A choice this build could have measured (a hand-edited file may say anything).
fn plausible(c: &KernelChoice) -> bool {
    GemmKernel::CANDIDATES.contains(&c.gemm)
        && GemmKernel::CANDIDATES.contains(&c.gemm_small)
        && c.gemm_small.fits_small_products()
}

/// This adapter and build's entry, whether or not a session would use it (`zeroprune info`); none
/// where there is no entry or its choice is not one this build could have measured.
pub fn entry(gpu: &GpuContext) -> Option<Cached> {
    let path = file()?;
    let k = key(&adapter_id(gpu));
    let file = read(&path)?;
    let raw = file.entries.iter().find(|e| entry_key(e) == Some(&k))?;
    let entry: Entry = serde_json::from_value(raw.clone()).ok()?;
    plausible(&entry.choice).then_some(Cached {
        choice: entry.choice,
        timings: entry.timings,
        stale: entry.stale,
    })
}

/// The cached choice for this adapter and build with its timings, unless retuning, there is none,
/// it has no timings or it is stale.
pub fn lookup_report(gpu: &GpuContext) -> Option<(KernelChoice, TuneReport)> {
    if retune() {
        return None;
    }
    let e = entry(gpu)?;
    match (e.stale, e.timings) {
        (None, Some(t)) => Some((e.choice, t)),
        _ => None,
    }
}

/// The cached choice a session would use (see [`lookup_report`]).
pub fn lookup(gpu: &GpuContext) -> Option<KernelChoice> {
    lookup_report(gpu).map(|(c, _)| c)
}

/// Record `choice`, measured as `timings` say, for this adapter and build. Failure is a note on
/// stderr, never an error: the cache only saves time.
pub fn store(gpu: &GpuContext, choice: KernelChoice, timings: &TuneReport) {
    let what = adapter_id(gpu);
    let entry = Entry {
        key: key(&what),
        what,
        choice,
        timings: Some(timings.clone()),
        stale: None,
    };
    let k = entry.key.clone();
    update(&k, |_| Some(entry));
}

/// Mark this adapter's entry stale, `reason` saying why: the next process measures again. A note
/// on stderr says so once.
pub fn mark_stale(gpu: &GpuContext, reason: &str) {
    let k = key(&adapter_id(gpu));
    let mut marked = false;
    update(&k, |old| {
        let mut e: Entry = serde_json::from_value(old?.clone()).ok()?;
        if e.stale.is_some() {
            return None;
        }
        e.stale = Some(reason.to_string());
        marked = true;
        Some(e)
    });
    if marked {
        eprintln!("note: {reason}; the kernel choice will be measured again by the next process");
    }
}

/// Replace this adapter's entry by what `f` makes of the current one (none: leave the file).
fn update(k: &str, f: impl FnOnce(Option<&serde_json::Value>) -> Option<Entry>) {
    let Some(dir) = dir() else { return };
    if let Err(e) = write(&dir, k, f) {
        eprintln!(
            "note: could not write the kernel-choice cache in {}: {e}",
            dir.display()
        );
    }
}

/// Rewrite the file with the entry keyed `k` replaced by what `f` makes of it (none: unchanged).
fn write(
    dir: &Path,
    k: &str,
    f: impl FnOnce(Option<&serde_json::Value>) -> Option<Entry>,
) -> std::io::Result<()> {
    // First, so that a cache folder that cannot be made fails before reading says anything.
    std::fs::create_dir_all(dir)?;
    let path = dir.join(FILE);
    let mut file = read(&path).unwrap_or_default();
    let Some(entry) = f(file.entries.iter().find(|e| entry_key(e) == Some(k))) else {
        return Ok(());
    };
    file.entries.retain(|e| entry_key(e) != Some(k));
    file.entries
        .push(serde_json::to_value(entry).map_err(std::io::Error::other)?);
    let drop = file.entries.len().saturating_sub(MAX_ENTRIES);
    file.entries.drain(..drop);
    let text = serde_json::to_string_pretty(&file).map_err(std::io::Error::other)?;
    // Write then rename: a process reading at the same time sees the old file or the new one.
    let tmp = dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::{fnv1a, key, FNV_OFFSET};

    #[test]
    fn fnv1a_is_the_published_hash() {
        // The FNV reference values of "" and "a" and "foobar".
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_key_depends_on_the_adapter() {
        assert_eq!(key("llvmpipe"), key("llvmpipe"));
        assert_ne!(key("llvmpipe"), key("llvmpipe "));
        assert_eq!(key("x").len(), 16);
    }
}
