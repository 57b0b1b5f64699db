//! The registry: every policy, one file each. Adding a policy is a file here (its facts and its GPU
//! steps), its WGSL if it needs new kernels, and one line below (see docs/adding-a-policy.md).

use super::policy::Policy;

mod evit;
mod matching;
mod none;
mod pitome;
mod random;
mod threshold;
mod token_transforming;
mod tome;
mod tome_protect;
mod wpr;
mod wpr_merge;
mod zero_tprune;
mod zero_tprune_adaptive;
mod zero_tprune_merge;

/// Every policy, `none` first; the order of `--help`, `sweep` and the page.
pub static ALL: &[Policy] = &[
    Policy(&none::Dense),
    Policy(&zero_tprune::ZeroTPrune),
    Policy(&zero_tprune_merge::ZeroTPruneMerge),
    Policy(&zero_tprune_adaptive::ZeroTPruneAdaptive),
    Policy(&wpr::Wpr),
    Policy(&tome::Tome),
    Policy(&tome_protect::TomeProtect),
    Policy(&pitome::Pitome),
    Policy(&wpr_merge::WprMerge),
    Policy(&token_transforming::TokenTransforming),
    Policy(&evit::Evit),
    Policy(&threshold::Threshold),
    Policy(&random::Random),
];

/// What a FLOPs target without `--policy` runs, by the level it is nearest (fractions of the dense
/// FLOPs): chosen on the 400 calibration images by agreement with dense (then KL), and confirmed
/// on the held-out images of both image sets (docs/pruning.md, "Recommended").
pub static RECOMMENDED: &[(f64, Policy)] = &[
    (0.8, Policy(&tome_protect::TomeProtect)),
    (0.65, Policy(&zero_tprune_merge::ZeroTPruneMerge)),
    (0.5, Policy(&zero_tprune_merge::ZeroTPruneMerge)),
];

/// What a schedule of token counts or keep rates without `--policy` runs: the policy that was
/// among the best at every level.
pub static RECOMMENDED_ANY: Policy = Policy(&zero_tprune_merge::ZeroTPruneMerge);

/// The same for text encoders: chosen on 1000 train sentences of the polarity set with
/// all-MiniLM-L6-v2 by agreement with the dense model's class (then the cosine to the dense
/// embedding), and reported on the test sentences (docs/pruning.md, "Recommended for text").
pub static RECOMMENDED_TEXT: &[(f64, Policy)] = &[
    (0.8, Policy(&zero_tprune_merge::ZeroTPruneMerge)),
    (0.65, Policy(&tome_protect::TomeProtect)),
    (0.5, Policy(&tome_protect::TomeProtect)),
];

/// What a text schedule of token counts or keep rates without `--policy` runs.
pub static RECOMMENDED_ANY_TEXT: Policy = Policy(&tome_protect::TomeProtect);
