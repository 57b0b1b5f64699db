//! `zeroprune bench --soak N`: a long run in miniature. N forward passes over changing batch sizes
//! and pruning policies (more combinations than a session keeps compiled, so programs and
//! activations are evicted and rebuilt), sampling the GPU buffer memory and the process's resident
//! memory as it goes. After the warm-up both must stop growing; the output says whether they did:
//! the peaks of the later half of the rounds after the warm-up are compared with the earlier half's.

use std::fmt;

use serde::Serialize;
use zeroprune::gpu::GpuContext;
use zeroprune::prune::{PruneRequest, Pruning};
use zeroprune::session::{KEEP_BATCH_SIZES, KEEP_PROGRAMS};
use zeroprune::{Error, ModelWeights, Result, Session};

use crate::common::{emit, progress};

/// One sample of the run.
#[derive(Serialize)]
struct Sample {
    forwards: usize,
    gpu_buffers: usize,
    gpu_mb: f64,
    /// The process's resident memory (Linux; null elsewhere).
    rss_mb: Option<f64>,
    programs: usize,
    batch_sizes: usize,
}

/// The peaks of one round (every batch size and schedule combination once), taken at every forward.
#[derive(Serialize, Clone, Copy)]
struct RoundPeak {
    gpu_mb: f64,
    rss_mb: Option<f64>,
}

#[derive(Serialize)]
struct SoakOutput {
    adapter: String,
    model: String,
    forwards: usize,
    /// The schedules cycled through, and the batch sizes.
    schedules: Vec<String>,
    batches: Vec<usize>,
    /// Forwards in one round: every (batch, schedule) combination once. The first round is the
    /// warm-up (caches fill from empty); the rounds after it must stop growing.
    round: usize,
    samples: Vec<Sample>,
    /// The largest GPU memory and RSS of each complete round.
    round_peaks: Vec<RoundPeak>,
    /// Whether the later half of the rounds after the warm-up stayed within the earlier half's peaks
    /// (GPU memory exactly; RSS within 1 MB or 1%).
    bounded: bool,
}

impl fmt::Display for SoakOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "adapter: {}", self.adapter)?;
        writeln!(
            f,
            "{} forwards over batch sizes {:?} and {} schedules, in rounds of {} (a session keeps \
             {KEEP_PROGRAMS} programs and {KEEP_BATCH_SIZES} batch sizes)",
            self.forwards,
            self.batches,
            self.schedules.len(),
            self.round
        )?;
        writeln!(
            f,
            "{:>9} {:>11} {:>9} {:>9} {:>9} {:>12}",
            "forwards", "gpu buffers", "gpu MB", "rss MB", "programs", "batch sizes"
        )?;
        let rss = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}"));
        for s in &self.samples {
            writeln!(
                f,
                "{:>9} {:>11} {:>9.1} {:>9} {:>9} {:>12}",
                s.forwards,
                s.gpu_buffers,
                s.gpu_mb,
                rss(s.rss_mb),
                s.programs,
                s.batch_sizes
            )?;
        }
        let peaks: Vec<String> = self
            .round_peaks
            .iter()
            .map(|p| format!("{:.1}/{}", p.gpu_mb, rss(p.rss_mb)))
            .collect();
        write!(
            f,
            "peak GPU MB / RSS MB per round (the first is the warm-up): {}: {}",
            peaks.join(", "),
            if self.bounded { "bounded" } else { "GROWING" }
        )
    }
}

/// Resident memory of this process in MB (Linux), from `/proc/self/statm`.
fn rss_mb() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1 << 20) as f64)
}

/// Run `forwards` forward passes of `weights` on `gpu`, cycling batch sizes and schedules.
pub fn run(
    gpu: &GpuContext,
    weights: &ModelWeights,
    session: &mut Session,
    forwards: usize,
    json: bool,
) -> Result<()> {
    let c = &weights.config;
    let request = |policy: &str, flops: Option<f64>, threshold: Option<&str>| PruneRequest {
        policy: Some(policy.into()),
        flops,
        threshold: threshold.map(str::to_string),
        ..Default::default()
    };
    let mut schedules = vec![Pruning::dense()];
    for r in [
        request("zero-tprune", Some(0.65), None),
        request("tome", Some(0.65), None),
        request("wpr-merge", Some(0.65), None),
        request("random", Some(0.5), None),
        request("threshold", None, Some("0.8@1")),
    ] {
        // A model too shallow for a policy's schedule just leaves it out.
        if let Ok(p) = r.resolve(&c.geometry()) {
            schedules.push(p);
        }
    }
    let max = session.max_batch().max(1);
    let mut batches: Vec<usize> = [1, 3, 8, 2, 5, 6].iter().map(|&b| b.min(max)).collect();
    batches.dedup();
    let round = batches.len() * schedules.len();
    if forwards < 3 * round {
        return Err(Error::param(
            "--soak",
            format!(
                "{forwards} forwards are too few to tell: {} batch sizes x {} schedules make rounds \
                 of {round}, and it takes three (the warm-up, then two to compare): at least {}",
                batches.len(),
                schedules.len(),
                3 * round
            ),
        ));
    }
    let every = (forwards / 20).max(1);
    let bar = progress(forwards, "forwards");
    let image = session.image_len();
    let mut samples = Vec::new();
    let mut round_peaks = Vec::new();
    let mut peak = RoundPeak {
        gpu_mb: 0.0,
        rss_mb: None,
    };
    for i in 0..forwards {
        // Every combination comes round; consecutive forwards differ in batch and schedule.
        let b = batches[i % batches.len()];
        let p = &schedules[(i / batches.len() + i) % schedules.len()];
        let input: Vec<f32> = (0..b * image)
            .map(|j| ((j * 7 + i) % 255) as f32 / 128.0 - 1.0)
            .collect();
        session.run(&input, p)?;
        bar.inc(1);
        // The counters and /proc are cheap: the peaks see every forward, the table every `every`.
        let (buffers, bytes) = gpu.buffer_memory();
        let gpu_mb = bytes as f64 / (1 << 20) as f64;
        let rss = rss_mb();
        peak.gpu_mb = peak.gpu_mb.max(gpu_mb);
        peak.rss_mb = match (peak.rss_mb, rss) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if (i + 1) % round == 0 {
            round_peaks.push(peak);
            peak = RoundPeak {
                gpu_mb: 0.0,
                rss_mb: None,
            };
        }
        if (i + 1) % every == 0 || i + 1 == forwards {
            let (programs, batch_sizes) = session.cached();
            samples.push(Sample {
                forwards: i + 1,
                gpu_buffers: buffers,
                gpu_mb,
                rss_mb: rss,
                programs,
                batch_sizes,
            });
        }
    }
    bar.finish_and_clear();
    // The rounds after the warm-up, in two halves: the later must not go above the earlier. GPU
    // memory is counted exactly; RSS moves with the allocator's free lists, so it gets a slack of
    // 1 MB or 1%, whichever is larger (a leak shows as growth in every round of a longer soak).
    let (earlier, later) = round_peaks[1..].split_at(round_peaks[1..].len().div_ceil(2));
    let gpu_max = |h: &[RoundPeak]| h.iter().map(|p| p.gpu_mb).fold(0.0, f64::max);
    let rss_max = |h: &[RoundPeak]| h.iter().filter_map(|p| p.rss_mb).reduce(f64::max);
    let bounded = gpu_max(later) <= gpu_max(earlier)
        && match (rss_max(earlier), rss_max(later)) {
            (Some(a), Some(b)) => b <= a + (a * 0.01).max(1.0),
            _ => true,
        };
    emit(
        &SoakOutput {
            adapter: gpu.describe(),
            model: weights.source.clone(),
            forwards,
            schedules: schedules
                .iter()
                .map(|p| format!("{} {}", p.policy, p.describe()))
                .collect(),
            batches,
            round,
            samples,
            round_peaks,
            bounded,
        },
        json,
    )
}
