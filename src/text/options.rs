//! A text request's pruning options as one JSON object, the way the browser passes them
//! (`{policy: "tome", flops: 0.65}`, plus per-layer `thresholds` and `dropped`): parsed and checked
//! against the model here, so that the browser and the fuzz targets meet the same checks as the
//! command line's flags.

use crate::error::{Error, Result};
use crate::model::bert::BertConfig;
use crate::model::Dropped;
use crate::prune::{parse_thresholds, PruneRequest, Pruner};

/// `options` (a JSON object; `null` is the dense model): a pruning request's fields, `thresholds`
/// (one per layer, as a thresholds file holds them) and `dropped` (`"restate"` or `"omit"`),
/// resolved for a model of config `c`. Null fields are left out; an unknown field is an error.
pub fn text_pruner(options: &serde_json::Value, c: &BertConfig) -> Result<(Pruner, Dropped)> {
    let bad = |reason: String| Error::param("options", reason);
    let mut map = match options {
        serde_json::Value::Null => return Ok((Pruner::dense(), Dropped::default())),
        serde_json::Value::Object(m) => m.clone(),
        other => {
            return Err(bad(format!(
                "must be an object, e.g. {{\"policy\": \"tome\", \"flops\": 0.65}}, not {}",
                kind(other)
            )))
        }
    };
    map.retain(|_, v| !v.is_null());
    let thresholds = map
        .remove("thresholds")
        .map(|v| parse_thresholds(&v.to_string(), "options.thresholds", c.num_layers))
        .transpose()?;
    let dropped = match map.remove("dropped") {
        None => Dropped::default(),
        Some(serde_json::Value::String(s)) => s.parse()?,
        Some(v) => {
            return Err(bad(format!(
                "dropped must be \"restate\" or \"omit\", not {}",
                kind(&v)
            )))
        }
    };
    let request: PruneRequest =
        serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| bad(e.to_string()))?;
    let pruner = Pruner::new(request, thresholds, &c.largest_geometry())?;
    Ok((pruner, dropped))
}

/// A JSON value's kind, for messages (the value itself may be long).
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
