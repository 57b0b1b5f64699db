//! The pruning options every command takes: a policy and one schedule.

use std::path::PathBuf;

use clap::builder::{PossibleValue, PossibleValuesParser};
use clap::Args;
use zeroprune::model::{Dropped, TokenGeometry};
use zeroprune::prune::{read_thresholds, Policy, PruneRequest, Pruner, ScheduleFile};
use zeroprune::{Error, Result};

/// `--policy` accepts the registered policies, each listed with its help in `--help`.
fn policies() -> PossibleValuesParser {
    PossibleValuesParser::new(
        Policy::all()
            .iter()
            .map(|p| PossibleValue::new(p.name()).help(p.def().help())),
    )
}

#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Token pruning")]
pub struct PruneArgs {
    /// Token pruning policy (default: none, the dense model; with a schedule and no policy: the
    /// recommended one, for --flops by the nearest measured level: on images tome-protect at 0.8,
    /// zero-tprune-merge at 0.65 and 0.5, zero-tprune-merge for --keep and --tokens; on texts
    /// zero-tprune-merge at 0.8, tome-protect at 0.65 and 0.5 and for --keep and --tokens). With a policy and no schedule:
    /// --flops 0.8 in the policy's default shape (threshold: 0.5 at blocks 2, 4, 6, 8, 10 for 12
    /// blocks; zero-tprune-adaptive: 0.14 at blocks 3 to 11).
    #[arg(long, value_parser = policies(), ignore_case = true)]
    pub policy: Option<String>,
    /// A schedule file written by `zeroprune tune`: its policy, the tokens kept after each block,
    /// and its options (options given here override the file's).
    #[arg(long, group = "one_schedule", value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// Keep rates: RATE@BLOCKS, e.g. 0.7@3,6,9 keeps 70% of the patch tokens entering blocks 3, 6
    /// and 9 (blocks count from 0); groups join with ';', e.g. "0.8@2;0.6@6".
    #[arg(long, group = "one_schedule")]
    pub keep: Option<String>,
    /// Exact patch-token counts: BLOCK:COUNT,..., e.g. 3:138,6:96,9:67.
    #[arg(long, group = "one_schedule")]
    pub tokens: Option<String>,
    /// Target fraction of the dense FLOPs, e.g. 0.65, in the policy's default shape: the first of
    /// its schedule families that reaches the target (for tome, tome-protect, wpr-merge,
    /// token-transforming and zero-tprune-merge the same removal at every block from a quarter of
    /// the depth on, where that reaches it; the published keep rate at 2, 4, 6, 8, 10 for zero-tprune below 80%, wpr, evit and random;
    /// docs/pruning.md, "Default schedules"). With --at, the same keep rate at those blocks, the
    /// largest that fits. For the per-image policies (threshold, zero-tprune-adaptive) a mean:
    /// their thresholds are scaled to meet it on calibration data (eval, sweep: data not
    /// evaluated; classify, embed, explain: the images or texts given).
    #[arg(long, group = "one_schedule")]
    pub flops: Option<f64>,
    /// Per-image policies: THETA@BLOCKS (groups join with ';'). threshold: patch tokens whose
    /// received attention, scaled so that uniform attention is 1, is below THETA are dropped.
    /// zero-tprune-adaptive: less-attended tokens whose key is within cosine distance THETA of an
    /// attended token's merge into their most similar survivor. The count differs per image.
    #[arg(long, group = "one_schedule")]
    pub threshold: Option<String>,
    /// Per-image policies: per-block thresholds from a JSON file, an array with one value per block
    /// (or {"thresholds": [...]}), in --threshold's units; 0 skips a block. With --flops they are
    /// scaled together to meet the target (calibrated first, on data that is not evaluated).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep", "tokens", "threshold", "schedule"])]
    pub thresholds: Option<PathBuf>,
    /// Blocks a --flops target prunes at, e.g. 3,6,9 (default: the policy's blocks).
    #[arg(long, requires = "flops")]
    pub at: Option<String>,
    /// Models that mean-pool (text encoders): a token a dropping policy removes stays in the mean
    /// with its state at the pruning point, re-affined to the last layer's LayerNorm (restate, the
    /// default: better accuracy and agreement downstream), or leaves it (omit: the embedding stays
    /// closer to the dense one by cosine).
    #[arg(long, value_name = "restate|omit")]
    pub dropped: Option<Dropped>,
    #[command(flatten)]
    pub options: OptionArgs,
}

/// The options of the policies (each reads the ones it lists; another is an error).
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Token pruning")]
pub struct OptionArgs {
    /// Zero-TPrune: share of each step's drop done by the similarity stage (0 to 1; default 0.5).
    #[arg(long)]
    pub sim: Option<f32>,
    /// Policies that use Weighted PageRank (zero-tprune, wpr, tome-protect, wpr-merge,
    /// token-transforming, zero-tprune-merge): how
    /// per-head scores combine: mean, rms or band (RMS over heads whose score variance is in
    /// [0.01, 0.7]; the default).
    #[arg(long)]
    pub heads: Option<String>,
    /// Policies that use Weighted PageRank: iterations at every pruning block (default: 30 in
    /// blocks 0-2, 1 in the last three, 10 between; iteration also stops once scores change by
    /// < 1e-6).
    #[arg(long)]
    pub iters: Option<u32>,
    /// Random policy seed (default 0).
    #[arg(long)]
    pub seed: Option<u32>,
    /// tome-protect: the share of patch tokens, most important by Weighted PageRank, that never
    /// merge away (0 to 1; default 0.1).
    #[arg(long)]
    pub protect: Option<f64>,
}

impl PruneArgs {
    /// The same settings as the library's request, which the browser fills in too.
    pub fn request(&self) -> Result<PruneRequest> {
        Ok(PruneRequest {
            policy: self.policy.clone(),
            keep: self.keep.clone(),
            tokens: self.tokens.clone(),
            flops: self.flops,
            threshold: self.threshold.clone(),
            at: self.at.clone(),
            sim: self.options.sim,
            heads: self.options.heads.clone(),
            iters: self.options.iters,
            seed: self.options.seed,
            protect: self.options.protect,
            schedule: self
                .schedule
                .as_deref()
                .map(ScheduleFile::read)
                .transpose()?,
            // Set where the request meets a model (`Pruner::new`).
            modality: Default::default(),
        })
    }

    /// The request bound to a model whose largest geometry is `g` (every limit checked now).
    pub fn pruner(&self, g: &TokenGeometry) -> Result<Pruner> {
        let thresholds = self
            .thresholds
            .as_deref()
            .map(|p| read_thresholds(p, g.depth))
            .transpose()?;
        Pruner::new(self.request()?, thresholds, g)
    }

    /// `--dropped`, which only a model that mean-pools reads.
    pub fn dropped(&self, pools: bool) -> Result<Dropped> {
        match self.dropped {
            Some(_) if !pools => Err(Error::param(
                "--dropped",
                "this model classifies from its class token and pools nothing: --dropped applies \
                 to text encoders that mean-pool",
            )),
            d => Ok(d.unwrap_or_default()),
        }
    }
}
