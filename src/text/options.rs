//! A text request's pruning options as one JSON object, the way the browser passes them
//! (`{policy: "tome", flops: 0.65}`, plus per-layer `thresholds` and `dropped`), through the one
//! options parser ([`crate::options::CallOptions`]): the browser and the fuzz targets meet the same
//! checks as the command line's flags.

use crate::error::Result;
use crate::model::bert::BertConfig;
use crate::model::Dropped;
use crate::options::{CallOptions, EMBED};
use crate::prune::Pruner;

/// `options` (a JSON object; `null` is the dense model) resolved for a model of config `c`: the
/// pruner and what the mean does with dropped tokens. Null fields are left out; an unknown field,
/// or a run setting (`top`, `batch`, ...), is an error.
pub fn text_pruner(options: &serde_json::Value, c: &BertConfig) -> Result<(Pruner, Dropped)> {
    let o = CallOptions::parse(options, EMBED.takes, c.num_layers)?;
    Ok((o.pruner(&c.largest_geometry())?, o.dropped(true)?))
}
