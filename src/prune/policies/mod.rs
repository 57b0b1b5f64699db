//! The registry: every policy, one file each. Adding a policy is a file here (its facts and its GPU
//! steps), its WGSL if it needs new kernels, and one line below (see docs/adding-a-policy.md).

use super::policy::Policy;

mod evit;
mod matching;
mod none;
mod pitome;
mod random;
mod threshold;
mod tome;
mod tome_protect;
mod wpr;
mod wpr_merge;
mod zero_tprune;

/// Every policy, `none` first; the order of `--help`, `sweep` and the page.
pub static ALL: &[Policy] = &[
    Policy(&none::Dense),
    Policy(&zero_tprune::ZeroTPrune),
    Policy(&wpr::Wpr),
    Policy(&tome::Tome),
    Policy(&tome_protect::TomeProtect),
    Policy(&pitome::Pitome),
    Policy(&wpr_merge::WprMerge),
    Policy(&evit::Evit),
    Policy(&threshold::Threshold),
    Policy(&random::Random),
];

/// What `--flops F` without `--policy` runs: chosen on the calibration images by agreement with
/// dense (then KL) among the tuned policies, and confirmed on the held-out images of both sets
/// (docs/pruning.md, "Recommended"; README, "Pruning quality").
pub static RECOMMENDED: Policy = Policy(&tome_protect::TomeProtect);
