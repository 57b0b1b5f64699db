//! `zeroprune tune`: search a policy's schedule (which blocks prune, how many tokens each keeps)
//! under a FLOPs or latency budget, scored by agreement with the dense model on calibration
//! images (no labels needed), and write it as a schedule file that every command accepts.

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use serde::Serialize;
use zeroprune::eval::task::Task;
use zeroprune::prune::search::{flops_ratio, Candidate, Score, Space};
use zeroprune::prune::{Policy, PruneRequest, Pruning, ScheduleFile};
use zeroprune::{preprocess, Error, Result, Session};

use crate::common::{emit, open_gpu, progress};
use crate::data::DataArgs;
use crate::prune_args::OptionArgs;
use crate::{model_source, ModelArgs};

#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The calibration images (--images DIR, optionally --labels to pick which, --skip, --limit);
    /// candidates are scored against the dense model, so labels are not read.
    #[command(flatten)]
    data: DataArgs,
    /// The budget: at most this fraction of the dense FLOPs.
    #[arg(long, group = "budget", required = true)]
    flops: Option<f64>,
    /// The budget: at most this forward latency in milliseconds at --batch, measured on this
    /// adapter; token counts are snapped so every GEMM tile is full.
    #[arg(long, group = "budget", required = true)]
    latency: Option<f64>,
    /// The policy whose schedule to search.
    #[arg(long, default_value = "tome-protect")]
    policy: String,
    /// Rounds of local search after the families.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Where to write the schedule (default: schedule-POLICY-BUDGET.json).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    options: OptionArgs,
}

#[derive(Serialize)]
struct Tried {
    how: String,
    schedule: String,
    cost: f64,
    agreement: f64,
    kl: f64,
}

#[derive(Serialize)]
struct TuneOutput {
    model: String,
    adapter: String,
    policy: Policy,
    images: usize,
    budget: String,
    schedule: String,
    found_by: String,
    flops_ratio: f64,
    cost: f64,
    agreement: f64,
    kl: f64,
    written: PathBuf,
    tried: Vec<Tried>,
}

impl fmt::Display for TuneOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} under {} on {} images: {} ({})",
            self.policy, self.budget, self.images, self.schedule, self.found_by
        )?;
        writeln!(
            f,
            "agreement with dense {:.2}%, mean KL {:.4}, {:.3} of the dense FLOPs",
            100.0 * self.agreement,
            self.kl,
            self.flops_ratio
        )?;
        writeln!(
            f,
            "{} candidates tried; wrote {}",
            self.tried.len(),
            self.written.display()
        )
    }
}

/// Mean over images of KL(dense || pruned) from their logits.
fn kl(dense: &[f32], pruned: &[f32]) -> f64 {
    let log_softmax = |l: &[f32]| -> Vec<f64> {
        let m = l.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let z: f64 = l.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        l.iter().map(|&v| v as f64 - z).collect()
    };
    let (p, q) = (log_softmax(dense), log_softmax(pruned));
    p.iter().zip(&q).map(|(a, b)| a.exp() * (a - b)).sum()
}

fn top1(l: &[f32]) -> usize {
    l.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i)
}

pub fn run(args: &TuneArgs) -> Result<()> {
    let weights = model_source::load(&args.model)?;
    let c = weights.config.clone();
    let g = c.geometry();
    let policy = Policy::named(&args.policy)?;
    if policy.is_none() {
        return Err(Error::param(
            "policy",
            "tune searches a pruning policy's schedule, not none",
        ));
    }
    // The options, checked as any command's would be.
    let request = PruneRequest {
        policy: Some(args.policy.clone()),
        sim: args.options.sim,
        heads: args.options.heads.clone(),
        iters: args.options.iters,
        seed: args.options.seed,
        protect: args.options.protect,
        ..Default::default()
    };
    let options = request.resolve(&g)?.options;
    args.data.check()?;
    for (given, flag) in [
        (args.data.texts.is_some(), "--texts"),
        (args.data.head.is_some(), "--head"),
        (args.data.calibration.is_some(), "--calibration"),
        (args.data.task != Task::Classify, "--task"),
    ] {
        if given {
            return Err(Error::param(
                flag,
                "tune searches an image model's schedule, scored by agreement with the dense \
                 model on the --images given: this option does not apply",
            ));
        }
    }
    let paths = args.data.images(&c, true)?.paths;
    if let Some(f) = args.flops {
        if !(f > 0.0 && f < 1.0) {
            return Err(Error::param("--flops", format!("{f} is outside (0, 1)")));
        }
    }
    if let Some(ms) = args.latency {
        if !(ms > 0.0 && ms.is_finite()) {
            return Err(Error::param(
                "--latency",
                format!("{ms} ms is not a positive time"),
            ));
        }
    }
    let gpu = open_gpu()?;
    let mut session = crate::common::session(&gpu, &weights, &args.model)?;
    session.check_batch_fits(args.data.batch)?;

    eprintln!("preprocessing {} calibration images", paths.len());
    let batches: Vec<Vec<f32>> = paths
        .chunks(args.data.batch)
        .map(|chunk| preprocess::load_batch(chunk, &c.preprocess))
        .collect::<Result<_>>()?;
    let dense: Vec<Vec<f32>> = {
        let mut all = vec![];
        for input in &batches {
            all.extend(
                session
                    .run(input, &Pruning::dense())?
                    .items
                    .into_iter()
                    .map(|o| o.logits),
            );
        }
        all
    };
    let n = dense.len();

    let (limit, granularity, budget) = match (args.flops, args.latency) {
        (Some(f), _) => (f, 1, format!("{f} of the dense FLOPs")),
        (None, Some(ms)) => {
            let tile = session.kernel_choice().gemm.tile_rows();
            (
                ms,
                tile / gcd(tile, args.data.batch),
                format!("{ms} ms at batch {}", args.data.batch),
            )
        }
        _ => unreachable!("clap requires one budget"),
    };
    let space = Space {
        policy,
        options,
        config: &g,
        limit,
        granularity,
        rounds: args.rounds,
    };
    // The search asks for costs and scores in turn; both run on the one session.
    let evaluator = std::cell::RefCell::new(Evaluator {
        session: &mut session,
        timing_input: args
            .latency
            .map(|_| vec![0.1f32; args.data.batch * image_len(&c)]),
        batches: &batches,
        dense: &dense,
    });
    let bar = progress(0, "candidates");
    let mut tried = vec![];
    let mut cost = |p: &Pruning| evaluator.borrow_mut().cost(p, &g);
    let mut score = |p: &Pruning| evaluator.borrow_mut().score(p);
    let mut report = |cand: &Candidate| {
        bar.inc_length(1);
        bar.inc(1);
        bar.println(format!(
            "{:<26} {:<64} cost {:.3}  agreement {:.2}%  KL {:.4}",
            cand.how,
            cand.pruning.describe(),
            cand.cost,
            100.0 * cand.score.agreement(),
            cand.score.kl
        ));
        tried.push(Tried {
            how: cand.how.clone(),
            schedule: cand.pruning.describe(),
            cost: cand.cost,
            agreement: cand.score.agreement(),
            kl: cand.score.kl,
        });
    };
    let best = space.search(&mut cost, &mut score, &mut report)?;
    bar.finish_and_clear();

    let out = args.out.clone().unwrap_or_else(|| {
        let b = match (args.flops, args.latency) {
            (Some(f), _) => format!("flops{f}"),
            (_, Some(ms)) => format!("{ms}ms-b{}", args.data.batch),
            _ => String::new(),
        };
        PathBuf::from(format!("schedule-{}-{b}.json", policy.name()))
    });
    let mut file = ScheduleFile::from_pruning(&best.pruning, &g)?;
    file.found_by = Some(serde_json::json!({
        "command": "zeroprune tune",
        "budget": budget,
        "family_or_move": best.how,
        "images": n,
        "agreement": best.score.agreement(),
        "kl": best.score.kl,
        "candidates": tried.len(),
        "adapter": gpu.describe(),
    }));
    std::fs::write(&out, file.to_json()).map_err(|e| Error::io(&out, e))?;
    let result = TuneOutput {
        model: weights.source.clone(),
        adapter: gpu.describe(),
        policy,
        images: n,
        budget,
        schedule: best.pruning.describe(),
        found_by: best.how.clone(),
        flops_ratio: flops_ratio(&best.pruning, &g),
        cost: best.cost,
        agreement: best.score.agreement(),
        kl: best.score.kl,
        written: out,
        tried,
    };
    emit(&result, args.json)
}

/// What a candidate costs (the FLOPs ratio, or the median of 3 timed forward passes) and how it
/// scores (agreement with the dense model, and mean KL, on the calibration images).
struct Evaluator<'a> {
    session: &'a mut Session,
    /// A batch to time, for a latency budget.
    timing_input: Option<Vec<f32>>,
    batches: &'a [Vec<f32>],
    dense: &'a [Vec<f32>],
}

impl Evaluator<'_> {
    fn cost(&mut self, p: &Pruning, g: &zeroprune::model::TokenGeometry) -> Result<f64> {
        let Some(input) = &self.timing_input else {
            return Ok(flops_ratio(p, g));
        };
        self.session.run(input, p)?; // compiles and warms the program
        let mut t = vec![];
        for _ in 0..3 {
            let s = Instant::now();
            self.session.run(input, p)?;
            t.push(s.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(f64::total_cmp);
        Ok(t[1])
    }

    fn score(&mut self, p: &Pruning) -> Result<Score> {
        let (mut agree, mut kl_sum, mut i) = (0, 0.0, 0);
        for input in self.batches {
            for o in self.session.run(input, p)?.items {
                let d = &self.dense[i];
                agree += usize::from(top1(d) == top1(&o.logits));
                kl_sum += kl(d, &o.logits);
                i += 1;
            }
        }
        Ok(Score {
            agree,
            images: i,
            kl: kl_sum / i.max(1) as f64,
        })
    }
}

fn image_len(c: &zeroprune::ViTConfig) -> usize {
    c.in_chans * c.image_size.0 * c.image_size.1
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
