//! A fuzzing harness on stable Rust: a mutation loop over seed inputs, for the paths a user's files
//! and options take (`fuzz/targets.rs`). Nightly-only tools (cargo-fuzz, libFuzzer) cannot be
//! installed here, so instead of coverage feedback the loop keeps every input whose outcome (Ok or
//! an error message, digits masked) it has not seen before: a new message means a new check reached.
//!
//! `cargo run --release --example fuzz -- TARGET --seconds S --out DIR [--seed N]` fuzzes one target;
//! `fuzz/run.sh` runs every target under a memory cap and restarts after an abort. A panic or an
//! input that runs for over `HANG_SECONDS` is saved under `DIR/failures/`; an abort (a failed
//! allocation) kills the process, and `run.sh` saves `DIR/current-TARGET.bin`, the input it was
//! running. `--replay FILE` runs one saved input; `--summary DIR` prints the totals of a run.
//! `FUZZ_SHOW=1` prints each new outcome as it is found (to see what the loop reaches).

#[path = "targets.rs"]
mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Counts the bytes allocated, so that the largest footprint of any one input can be reported
/// (the process's RSS would mostly show the corpus).
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        ALLOCATED.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// An input running longer than this is a hang.
const HANG_SECONDS: u64 = 10;
/// Corpus entries kept at most (new outcomes past this replace random entries).
const MAX_CORPUS: usize = 4000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(dir) = flag("--summary") {
        summary(Path::new(&dir));
        return;
    }
    let Some(target) = args
        .first()
        .filter(|t| targets::TARGETS.contains(&t.as_str()))
    else {
        eprintln!(
            "usage: fuzz TARGET [--seconds S] [--seed N] [--out DIR] | fuzz TARGET --replay FILE | fuzz --summary DIR\n\
             targets: {}",
            targets::TARGETS.join(", ")
        );
        std::process::exit(2);
    };
    if let Some(file) = flag("--replay") {
        let input = std::fs::read(&file).expect("the input file");
        println!("{:?}", targets::run(target, &input));
        return;
    }
    let seconds: u64 = flag("--seconds").map_or(60, |s| s.parse().expect("--seconds N"));
    let seed: u64 = flag("--seed").map_or(1, |s| s.parse().expect("--seed N"));
    let out = PathBuf::from(flag("--out").unwrap_or_else(|| "target/fuzz".into()));
    std::fs::create_dir_all(out.join("failures")).expect("the output folder");
    fuzz(target, seconds, seed, &out);
}

/// The last panic's location and message, from the panic hook.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

thread_local! {
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn fuzz(target: &str, seconds: u64, seed: u64, out: &Path) {
    // Inside a target a panic is a finding (kept quiet, saved); anywhere else a harness bug.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !IN_TARGET.get() {
            return default_hook(info);
        }
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        *PANIC.lock().unwrap() = Some(format!("panic at {at}: {msg}"));
    }));
    let current = out.join(format!("current-{target}.bin"));
    // A watchdog: an input running past HANG_SECONDS is saved and the process ends (run.sh restarts).
    let started = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    {
        let started = started.clone();
        let (current, failures) = (current.clone(), out.join("failures"));
        let target = target.to_string();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let s = started.load(Ordering::Relaxed);
            if s > 0 && epoch.elapsed().as_millis() as u64 - s > HANG_SECONDS * 1000 {
                let to = failures.join(format!("{target}-hang-{s}.bin"));
                let _ = std::fs::copy(&current, &to);
                eprintln!(
                    "hang: an input ran over {HANG_SECONDS} s; saved as {}",
                    to.display()
                );
                std::process::exit(3);
            }
        });
    }

    let mut rng = StdRng::seed_from_u64(seed);
    let mut corpus = seeds(target);
    let seeds = corpus.len();
    let mut seen: HashSet<String> = HashSet::new();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut execs = 0u64;
    let mut peak_ms = 0f64;
    // The most bytes allocated at once while running one input, and that input's size.
    let mut largest = (0usize, 0usize);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut next_report = Instant::now() + Duration::from_secs(10);
    // Seeds first, as they are; then mutants of the corpus.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    while Instant::now() < deadline {
        let input = queue.pop().unwrap_or_else(|| {
            let base = &corpus[rng.random_range(0..corpus.len())];
            let other = &corpus[rng.random_range(0..corpus.len())];
            mutate(target, base, other, &mut rng)
        });
        std::fs::write(&current, &input).expect("the current input file");
        let t = Instant::now();
        started.store(epoch.elapsed().as_millis().max(1) as u64, Ordering::Relaxed);
        let before = ALLOCATED.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        IN_TARGET.set(true);
        let result = std::panic::catch_unwind(|| targets::run(target, &input));
        IN_TARGET.set(false);
        let footprint = PEAK.load(Ordering::Relaxed).saturating_sub(before);
        if footprint > largest.0 {
            largest = (footprint, input.len());
        }
        started.store(0, Ordering::Relaxed);
        peak_ms = peak_ms.max(t.elapsed().as_secs_f64() * 1e3);
        execs += 1;
        let outcome = match result {
            Ok(Ok(_)) => "ok".to_string(),
            Ok(Err(e)) => mask(&e.to_string()),
            Err(_) => {
                let what = PANIC.lock().unwrap().take().unwrap_or_default();
                let sig = mask(&what);
                if !failures.contains_key(&sig) {
                    let file = out
                        .join("failures")
                        .join(format!("{target}-panic-{}.bin", failures.len()));
                    std::fs::write(&file, &input).unwrap();
                    eprintln!("{what}\n  saved as {}", file.display());
                    failures.insert(sig.clone(), file.display().to_string());
                }
                sig
            }
        };
        if std::env::var_os("FUZZ_SHOW").is_some() && !seen.contains(&outcome) {
            eprintln!("new outcome: {outcome}");
        }
        if seen.insert(outcome) {
            if corpus.len() < MAX_CORPUS {
                corpus.push(input);
            } else {
                // The seeds stay: they are the valid inputs everything else is a step from.
                let i = rng.random_range(seeds..corpus.len());
                corpus[i] = input;
            }
        }
        if Instant::now() > next_report {
            eprintln!(
                "{target}: {execs} executions, {} outcomes, {} failures",
                seen.len(),
                failures.len()
            );
            next_report += Duration::from_secs(10);
        }
    }
    let stats = json!({
        "target": target,
        "seed": seed,
        "seconds": seconds,
        "executions": execs,
        "distinct_outcomes": seen.len(),
        "corpus": corpus.len(),
        "slowest_ms": peak_ms,
        "peak_rss_mb": peak_rss_mb(),
        "largest_input_footprint_mb": largest.0 as f64 / (1 << 20) as f64,
        "largest_footprint_input_bytes": largest.1,
        "failures": failures.values().collect::<Vec<_>>(),
    });
    println!("{stats}");
    use std::io::Write;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("stats.jsonl"))
        .unwrap();
    writeln!(log, "{stats}").unwrap();
}

/// An outcome's signature: the message before its first quote and after its last, digits masked.
/// Messages quote the input (`'0.7x' is not a number`), and quoted input may hold quotes itself;
/// without the mask every input would look new.
fn mask(s: &str) -> String {
    let digits = |t: &str| {
        let mut out = String::new();
        for c in t.chars().take(80) {
            if !c.is_ascii_digit() {
                out.push(c);
            } else if !out.ends_with('#') {
                out.push('#');
            }
        }
        out
    };
    let quote = |c: char| matches!(c, '\'' | '`' | '"');
    match (s.find(quote), s.rfind(quote)) {
        (Some(a), Some(b)) => format!("{}…{}", digits(&s[..a]), digits(&s[b + 1..])),
        _ => digits(s),
    }
}

/// The process's peak resident memory in MB (Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

/// Valid inputs to start from: every fixture model with and without its config; small images in
/// every format; pruning requests of every policy and a schedule file.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "loader" => [
            "tiny-timm",
            "tiny-timm-distilled",
            "tiny-hf-vit",
            "tiny-hf-deit-distilled",
            // The architecture variants: layer scale, registers, average pooling without a class
            // token, DINOv2, CLIP, SigLIP.
            "tiny-timm-deit3",
            "tiny-timm-reg",
            "tiny-timm-gap",
            "tiny-hf-dinov2-reg",
            "tiny-hf-clip",
            "tiny-hf-siglip",
        ]
        .iter()
        .flat_map(|m| {
            let model = fixture(&format!("{m}/model.safetensors"));
            let config = fixture(&format!("{m}/config.json"));
            [targets::join(&config, &model), targets::join(&[], &model)]
        })
        .collect(),
        "image" => {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
            });
            let mut out = Vec::new();
            for (i, format) in [
                image::ImageFormat::Png,
                image::ImageFormat::Jpeg,
                image::ImageFormat::Bmp,
                image::ImageFormat::Gif,
                image::ImageFormat::WebP,
            ]
            .into_iter()
            .enumerate()
            {
                let mut bytes = std::io::Cursor::new(Vec::new());
                if image::DynamicImage::ImageRgb8(img.clone())
                    .write_to(&mut bytes, format)
                    .is_ok()
                {
                    let mut input = vec![((i as u8) << 3) | if i % 2 == 1 { 4 } else { 0 }];
                    input.extend(bytes.into_inner());
                    out.push(input);
                }
            }
            let mut rgba = vec![1u8, 20, 0, 10, 0];
            rgba.extend((0..20 * 10 * 4).map(|i| (i * 3) as u8));
            out.push(rgba);
            out
        }
        "options" => {
            let labels = b"img0.png\t1\nimg1.jpg\t3\n# a comment\n";
            let mut requests: Vec<String> = [
                r#"{"policy": "zero-tprune", "flops": 0.65}"#,
                r#"{"policy": "wpr", "keep": "0.7@1;0.5@2", "iters": 30, "heads": "band"}"#,
                r#"{"policy": "threshold", "threshold": "0.8@1,2"}"#,
                r#"{"policy": "tome", "tokens": "1:10,2:6"}"#,
                r#"{"policy": "random", "keep": "0.5@1", "seed": 3}"#,
                r#"{"policy": "zero-tprune", "flops": 0.8, "at": "1,2", "sim": 0.3}"#,
                r#"{"policy": "tome-protect", "flops": 0.7, "protect": 0.2}"#,
                r#"{"policy": "evit", "keep": "0.6@2"}"#,
                r#"{}"#,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // A schedule file as `zeroprune tune` writes it.
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-timm");
            let c = zeroprune::ModelWeights::load(&dir)
                .unwrap()
                .config
                .geometry();
            let request: zeroprune::prune::PruneRequest =
                serde_json::from_str(r#"{"policy": "zero-tprune", "flops": 0.7}"#).unwrap();
            let pruning = request.resolve(&c).unwrap();
            let file = zeroprune::prune::ScheduleFile::from_pruning(&pruning, &c).unwrap();
            requests.push(format!(r#"{{"schedule": {}}}"#, file.to_json()));
            requests
                .iter()
                .map(|r| targets::join(labels, r.as_bytes()))
                .collect()
        }
        "text-loader" => {
            let tiny = fixture("tiny-bert/tokenizer.json");
            let st = fixture("tiny-bert-st/tokenizer.json");
            let config = fixture("tiny-bert/config.json");
            let st_config = fixture("tiny-bert-st/config.json");
            let st_bert = fixture("tiny-bert-st/sentence_bert_config.json");
            let cls_config = fixture("tiny-bert-cls/config.json");
            let head = |classes: usize| {
                let t: Vec<(String, Vec<usize>, Vec<u8>)> = vec![
                    (
                        "weight".into(),
                        vec![classes, 32],
                        (0..classes * 32)
                            .flat_map(|i| (i as f32 * 0.01).to_le_bytes())
                            .collect(),
                    ),
                    ("bias".into(), vec![classes], vec![0u8; 4 * classes]),
                ];
                let views: Vec<(&str, safetensors::tensor::TensorView)> = t
                    .iter()
                    .map(|(n, shape, data)| {
                        (
                            n.as_str(),
                            safetensors::tensor::TensorView::new(
                                safetensors::Dtype::F32,
                                shape.clone(),
                                data,
                            )
                            .unwrap(),
                        )
                    })
                    .collect();
                safetensors::serialize(views, None).unwrap()
            };
            let long = "a dull , overlong film . an inspired , heartfelt triumph ! ".repeat(350);
            let x = format!("{} end", "x".repeat(3000));
            [
                [&tiny[..], &config, b"", &head(2), b"a fine film"],
                [&st[..], &st_config, &st_bert, &head(3), long.as_bytes()],
                [
                    &tiny[..],
                    &cls_config,
                    b"",
                    &head(2),
                    "日本語の文章 and words".as_bytes(),
                ],
                [
                    &tiny[..],
                    &config,
                    br#"{"max_seq_length": 8}"#,
                    &head(1),
                    x.as_bytes(),
                ],
            ]
            .iter()
            .map(|parts| targets::join_n(parts))
            .collect()
        }
        "text-options" => {
            let data = b"split\tlabel\tsentence\ntest\t1\tgood\ntrain\t0\tbad\r\ntest\t0\tdull\n";
            [
                r#"{"policy": "tome", "flops": 0.7}"#,
                r#"{"policy": "threshold", "thresholds": [0.5, 0]}"#,
                r#"{"policy": "threshold", "flops": 0.7, "thresholds": {"thresholds": [1, 1]}}"#,
                r#"{"policy": "zero-tprune", "keep": "0.7@1", "dropped": "omit", "sim": 0.3}"#,
                r#"{"policy": "evit", "keep": "0.5@0,1", "dropped": "restate"}"#,
                r#"{"policy": "wpr-merge", "flops": 0.65, "iters": 5, "heads": "band"}"#,
                r#"{"policy": "tome-protect", "tokens": "1:10", "protect": 0.2}"#,
                r#"{"policy": "random", "keep": "0.5@1", "seed": 3}"#,
                r#"{"policy": "pitome", "flops": 0.8, "at": "1"}"#,
                r#"{"threshold": "0.9@1"}"#,
                "null",
            ]
            .iter()
            .map(|o| targets::join_n(&[o.as_bytes(), data, b"test"]))
            .collect()
        }
        _ => unreachable!(),
    }
}

/// Values that find edges: zero, signs, powers of two around integer widths, huge and tiny floats.
const NUMBERS: [&str; 18] = [
    "0",
    "-1",
    "1",
    "2",
    "-0",
    "0.5",
    "1e-30",
    "1e309",
    "-1e309",
    "NaN",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "9007199254740993",
    "1.5",
    "100000",
];
/// Tokens of the JSON these inputs hold, to splice in.
const TOKENS: [&str; 22] = [
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "[]",
    "{}",
    "\"dtype\"",
    "\"shape\"",
    "\"data_offsets\"",
    "\"F16\"",
    "\"BF16\"",
    "\"I64\"",
    "@",
    ";",
    "\\u0000",
    "\t",
    "\n",
];

/// One mutant of `base` (`other` is another corpus entry, for splicing). For the two-part inputs,
/// one part is mutated; the loader's model bytes are mostly mutated in their JSON header, where
/// the shapes and offsets are (the data past it is just numbers).
fn mutate(target: &str, base: &[u8], other: &[u8], rng: &mut StdRng) -> Vec<u8> {
    if target == "image" {
        let mut v = base.to_vec();
        for _ in 0..rng.random_range(1..=4) {
            mutate_bytes(&mut v, other, 0..base.len(), rng);
        }
        return v;
    }
    if targets::parts_of(target) > 2 {
        return mutate_parts(target, base, other, rng);
    }
    let (first, rest) = targets::split(base);
    let (mut first, mut rest) = (first.to_vec(), rest.to_vec());
    let in_model = target == "loader" && rng.random_bool(0.6);
    let part = if in_model || (target != "loader" && rng.random_bool(0.6)) {
        &mut rest
    } else {
        &mut first
    };
    mutate_part(part, other, in_model, rng);
    targets::join(&first, &rest)
}

/// One to three mutations of one part of an input. A safetensors part is mutated within its header
/// (8-byte length + JSON) most of the time, and its header length is kept consistent with the
/// edited header most of the time.
fn mutate_part(part: &mut Vec<u8>, other: &[u8], safetensors: bool, rng: &mut StdRng) {
    let end = if safetensors && part.len() >= 8 && rng.random_bool(0.8) {
        (u64::from_le_bytes(part[..8].try_into().unwrap()) as usize)
            .saturating_add(8)
            .min(part.len())
    } else {
        part.len()
    };
    for _ in 0..rng.random_range(1..=3) {
        mutate_bytes(part, other, 0..end.min(part.len()), rng);
    }
    if safetensors && part.len() >= 8 && rng.random_bool(0.7) {
        fix_header_length(part, end);
    }
}

/// One mutant of a many-part input: one part mutated, the others as they were. A safetensors
/// part (the text loader's head) is mostly mutated in its header, as the loader's model is.
fn mutate_parts(target: &str, base: &[u8], other: &[u8], rng: &mut StdRng) -> Vec<u8> {
    let n = targets::parts_of(target);
    let mut parts: Vec<Vec<u8>> = targets::split_n(base, n)
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let i = rng.random_range(0..n);
    let safetensors = target == "text-loader" && i == 3;
    mutate_part(&mut parts[i], other, safetensors, rng);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    targets::join_n(&refs)
}

/// Set the 8-byte header length to where the JSON object now ends (the last `}` before `around`
/// plus the safetensors padding spaces).
fn fix_header_length(model: &mut [u8], around: usize) {
    let limit = (around + 64).min(model.len());
    if let Some(end) = model[8..limit].iter().rposition(|&b| b == b'}') {
        let n = (end + 1) as u64;
        model[..8].copy_from_slice(&n.to_le_bytes());
    }
}

fn mutate_bytes(v: &mut Vec<u8>, other: &[u8], range: std::ops::Range<usize>, rng: &mut StdRng) {
    // Earlier mutations may have shortened the input.
    let hi = range.end.min(v.len());
    let lo = range.start.min(hi);
    let pos = |rng: &mut StdRng| {
        if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo.min(v.len())
        }
    };
    match rng.random_range(0..9) {
        // Flip a bit.
        0 if hi > lo => {
            let i = pos(rng);
            v[i] ^= 1 << rng.random_range(0..8);
        }
        // An interesting byte.
        1 if hi > lo => {
            let i = pos(rng);
            v[i] = [0u8, 0xff, 0x7f, 0x80, b'0', b'9', b'-', b'.', b'e', b' ']
                [rng.random_range(0..10)];
        }
        // A number in text replaced by an edge value.
        2 => {
            let digits: Vec<usize> = (lo..hi.min(v.len()))
                .filter(|&i| v[i].is_ascii_digit())
                .collect();
            if let Some(&i) = digits.get(rng.random_range(0..digits.len().max(1))) {
                let end = (i..v.len())
                    .find(|&j| !(v[j].is_ascii_digit() || v[j] == b'.'))
                    .unwrap_or(v.len());
                let start = (0..i)
                    .rev()
                    .find(|&j| !v[j].is_ascii_digit() && v[j] != b'.')
                    .map_or(0, |j| j + 1);
                let n = NUMBERS[rng.random_range(0..NUMBERS.len())];
                v.splice(start..end, n.bytes());
            }
        }
        // A JSON token spliced in.
        3 => {
            let i = pos(rng);
            let t = TOKENS[rng.random_range(0..TOKENS.len())];
            v.splice(i..i, t.bytes());
        }
        // A range deleted.
        4 if hi > lo => {
            let i = pos(rng);
            let n = rng.random_range(1..=16.min(v.len() - i));
            v.drain(i..i + n);
        }
        // A range repeated.
        5 if hi > lo => {
            let i = pos(rng);
            let n = rng.random_range(1..=32.min(v.len() - i));
            let chunk = v[i..i + n].to_vec();
            v.splice(i..i, chunk);
        }
        // A 2-, 4- or 8-byte integer overwritten with an edge value (image headers, lengths).
        6 if hi > lo => {
            let i = pos(rng);
            let value: u64 = [
                0,
                1,
                0xff,
                0xffff,
                0x7fff_ffff,
                0xffff_ffff,
                u64::MAX,
                1 << 16,
                60000,
            ][rng.random_range(0..9)];
            let width = [2, 4, 8][rng.random_range(0..3)];
            let bytes = if rng.random_bool(0.5) {
                value.to_le_bytes()
            } else {
                value.to_be_bytes()
            };
            let src = if bytes[0] == 0 && width < 8 {
                &bytes[8 - width..]
            } else {
                &bytes[..width]
            };
            for (k, b) in src.iter().enumerate() {
                if let Some(x) = v.get_mut(i + k) {
                    *x = *b;
                }
            }
        }
        // A piece of another input spliced in.
        7 if !other.is_empty() => {
            let a = rng.random_range(0..other.len());
            let n = rng.random_range(1..=64.min(other.len() - a));
            let i = pos(rng);
            v.splice(i..i, other[a..a + n].iter().copied());
        }
        // Truncated.
        _ => {
            if hi > lo {
                let i = pos(rng);
                v.truncate(i.max(1));
            }
        }
    }
}

/// Totals over the runs logged in `DIR/stats.jsonl`, per target, and every failure saved.
fn summary(dir: &Path) {
    let text = std::fs::read_to_string(dir.join("stats.jsonl")).unwrap_or_default();
    let mut totals: BTreeMap<String, (u64, u64, u64, f64)> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let t = totals
            .entry(v["target"].as_str().unwrap_or("?").to_string())
            .or_default();
        t.0 += v["executions"].as_u64().unwrap_or(0);
        t.1 += v["seconds"].as_u64().unwrap_or(0);
        t.2 = t.2.max(v["distinct_outcomes"].as_u64().unwrap_or(0));
        t.3 =
            t.3.max(v["largest_input_footprint_mb"].as_f64().unwrap_or(0.0));
    }
    let mut failures: Vec<String> = std::fs::read_dir(dir.join("failures"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    failures.sort();
    println!(
        "{:<12} {:>12} {:>9} {:>10} {:>13} {:>9}",
        "target", "executions", "seconds", "execs/s", "max outcomes", "worst MB"
    );
    for (t, (execs, secs, outcomes, rss)) in &totals {
        println!(
            "{t:<12} {execs:>12} {secs:>9} {:>10.0} {outcomes:>13} {rss:>9.2}",
            *execs as f64 / (*secs).max(1) as f64
        );
    }
    println!("(worst MB: the most memory one input had allocated at once)");
    println!(
        "{} failures saved in {}",
        failures.len(),
        dir.join("failures").display()
    );
    for f in failures {
        println!("  {f}");
    }
}
