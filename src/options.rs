//! A call's options as one JSON object, the way the browser passes them
//! (`{policy: "tome", flops: 0.65, top: 5}`): the pruning request (the command line's flags, by the
//! same names), `thresholds` (per block) and `dropped` (mean pooling), and the run settings a call
//! may take (`top`, `runs`, `batch`, `compareDense`, `name`). The one parser the page's calls, the
//! text options and the fuzz targets go through; each call names the settings it takes, and
//! another is an error, not ignored.

use crate::error::{Error, Result};
use crate::model::{Dropped, TokenGeometry};
use crate::prune::{parse_thresholds, PruneRequest, Pruner};

/// The run settings beside the pruning request.
pub const RUN_KEYS: [&str; 5] = ["top", "runs", "batch", "compareDense", "name"];

/// A browser call that takes options: the TypeScript type its options have in `zeroprune.d.ts`
/// (the pruning request and the run settings it takes, `Pick`ed from [`CallSettings`]) and the
/// run settings it takes, as [`CallOptions::parse`] is given them. A test keeps the declarations in
/// src/web/mod.rs equal to these.
pub struct Call {
    pub ts_type: &'static str,
    pub takes: &'static [&'static str],
    /// The other [`CallSettings`] it reads: per-block `thresholds`; `dropped` for text.
    pub reads: &'static [&'static str],
}

/// `session.classify`.
pub const CLASSIFY: Call = Call {
    ts_type: "ClassifyOptions",
    takes: &["top", "runs", "compareDense", "name"],
    reads: &["thresholds"],
};
/// `session.classifyBatch`.
pub const CLASSIFY_BATCH: Call = Call {
    ts_type: "ClassifyBatchOptions",
    takes: &["top", "batch"],
    reads: &["thresholds"],
};
/// `session.evaluate`.
pub const EVALUATE: Call = Call {
    ts_type: "EvaluateOptions",
    takes: &["batch"],
    reads: &["thresholds"],
};
/// `session.bench`.
pub const BENCH: Call = Call {
    ts_type: "BenchOptions",
    takes: &["runs", "batch"],
    reads: &["thresholds"],
};
/// `textModel.embed` (and `zeroprune embed`'s options object).
pub const EMBED: Call = Call {
    ts_type: "EmbedOptions",
    takes: &[],
    reads: &["thresholds", "dropped"],
};
/// `session.embed` (image embeddings).
pub const EMBED_IMAGES: Call = Call {
    ts_type: "ImageEmbedOptions",
    takes: &["batch"],
    reads: &["thresholds"],
};
/// Every call, for the test.
pub const CALLS: [&Call; 6] = [
    &CLASSIFY,
    &CLASSIFY_BATCH,
    &EVALUATE,
    &BENCH,
    &EMBED,
    &EMBED_IMAGES,
];

/// What an options object holds beside the pruning request ([`PruneRequest`]), as the browser's
/// TypeScript declarations list it (`CallSettings`); [`CallOptions::parse`] reads these keys.
#[derive(Debug, Default, serde::Serialize)]
#[cfg_attr(target_arch = "wasm32", derive(tsify::Tsify))]
#[serde(rename_all = "camelCase")]
pub struct CallSettings {
    /// Classes listed per image (5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top: Option<usize>,
    /// Timed runs; the median is reported (1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<usize>,
    /// Images per GPU pass (each call has its default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Also run the dense model and report both (false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compare_dense: Option<bool>,
    /// The input's name in error messages ("input").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The threshold policy's threshold per block (one value per block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Vec<f32>>,
    /// Mean pooling over pruned tokens: "restate" (default) or "omit".
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(target_arch = "wasm32", tsify(type = "\"restate\" | \"omit\""))]
    pub dropped: Option<String>,
}

/// One call's options, parsed and checked.
#[derive(Clone, Debug)]
pub struct CallOptions {
    pub prune: PruneRequest,
    pub thresholds: Option<Vec<f32>>,
    pub dropped: Option<Dropped>,
    pub top: usize,
    pub runs: usize,
    /// Images per GPU pass where the call named it; each call has its own default.
    pub batch: Option<usize>,
    pub compare_dense: bool,
    pub name: String,
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

impl CallOptions {
    /// `options` (`null`: every default), taking only the run settings in `takes`; `depth` is the
    /// model's, for per-block thresholds.
    pub fn parse(options: &serde_json::Value, takes: &[&str], depth: usize) -> Result<Self> {
        debug_assert!(takes.iter().all(|k| RUN_KEYS.contains(k)));
        let bad = |reason: String| Error::param("options", reason);
        let mut map = match options {
            serde_json::Value::Null => serde_json::Map::new(),
            serde_json::Value::Object(m) => m.clone(),
            other => {
                return Err(bad(format!(
                "must be an object, e.g. {{\"policy\": \"zero-tprune\", \"flops\": 0.65}}, not {}",
                kind(other)
            )))
            }
        };
        // JavaScript leaves unset fields undefined or null: both mean "default".
        map.retain(|_, v| !v.is_null());
        if let Some(key) = map
            .keys()
            .find(|k| RUN_KEYS.contains(&k.as_str()) && !takes.contains(&k.as_str()))
        {
            let takes = if takes.is_empty() {
                "no run settings".to_string()
            } else {
                takes.join(", ")
            };
            return Err(bad(format!(
                "{key} does not apply to this call (it takes {takes})"
            )));
        }
        // A count where the options name one: None where they do not.
        let mut count = |key: &str, max: usize| -> Result<Option<usize>> {
            map.remove(key)
                .map(|v| {
                    v.as_u64()
                        .filter(|&n| n >= 1 && n as usize <= max)
                        .map(|n| n as usize)
                        .ok_or_else(|| {
                            Error::param(
                                format!("options.{key}"),
                                format!("must be an integer from 1 to {max}, got {v}"),
                            )
                        })
                })
                .transpose()
        };
        let top = count("top", 1000)?.unwrap_or(5);
        let runs = count("runs", 1000)?.unwrap_or(1);
        let batch = count("batch", crate::limits::MAX_BATCH)?;
        let compare_dense = match map.remove("compareDense") {
            None => false,
            Some(serde_json::Value::Bool(b)) => b,
            Some(v) => {
                return Err(bad(format!(
                    "compareDense must be true or false, not {}",
                    kind(&v)
                )))
            }
        };
        let name = match map.remove("name") {
            None => "input".to_string(),
            Some(serde_json::Value::String(s)) => s,
            Some(v) => return Err(bad(format!("name must be a string, not {}", kind(&v)))),
        };
        let thresholds = map
            .remove("thresholds")
            .map(|v| parse_thresholds(&v.to_string(), "options.thresholds", depth))
            .transpose()?;
        let dropped = match map.remove("dropped") {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.parse()?),
            Some(v) => {
                return Err(bad(format!(
                    "dropped must be \"restate\" or \"omit\", not {}",
                    kind(&v)
                )))
            }
        };
        // A schedule file may come as its text or as the parsed object.
        if let Some(serde_json::Value::String(text)) = map.get("schedule") {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| bad(format!("schedule is not JSON: {e}")))?;
            map.insert("schedule".into(), value);
        }
        // Sliders give numbers; the textual fields of the request are strings.
        if let Some(v) = map.get_mut("at") {
            if let Some(list) = v.as_array() {
                *v = serde_json::Value::String(
                    list.iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                );
            }
        }
        let prune: PruneRequest = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| bad(e.to_string()))?;
        Ok(CallOptions {
            prune,
            thresholds,
            dropped,
            top,
            runs,
            batch,
            compare_dense,
            name,
        })
    }

    /// The request bound to a model whose largest geometry is `g`.
    pub fn pruner(&self, g: &TokenGeometry) -> Result<Pruner> {
        Pruner::new(self.prune.clone(), self.thresholds.clone(), g)
    }

    /// `dropped`, which only a model that mean-pools reads.
    pub fn dropped(&self, pools: bool) -> Result<Dropped> {
        match self.dropped {
            Some(_) if !pools => Err(Error::param(
                "options.dropped",
                "applies to models that mean-pool (text encoders); this one classifies from its \
                 class token",
            )),
            d => Ok(d.unwrap_or_default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys `CallSettings` declares to TypeScript are the ones the parser reads beside the
    /// pruning request.
    #[test]
    fn call_settings_are_the_keys_the_parser_reads() {
        let all = CallSettings {
            top: Some(1),
            runs: Some(1),
            batch: Some(1),
            compare_dense: Some(true),
            name: Some("a".into()),
            thresholds: Some(vec![0.5]),
            dropped: Some("omit".into()),
        };
        let value = serde_json::to_value(&all).unwrap();
        let mut declared: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut read: Vec<&str> = RUN_KEYS
            .iter()
            .copied()
            .chain(["thresholds", "dropped"])
            .collect();
        declared.sort();
        read.sort();
        assert_eq!(declared, read);
        // And the parser takes every one of them.
        let mut object = value;
        object["thresholds"] = serde_json::json!(vec![0.5; 12]);
        CallOptions::parse(&object, &RUN_KEYS, 12).unwrap();
    }

    /// Each call's options type in src/web/mod.rs (the wasm-only entry points, which declare them to
    /// TypeScript) picks exactly the settings the call reads: the two cannot drift apart.
    #[test]
    fn the_typescript_options_types_are_what_each_call_reads() {
        let web = include_str!("web/mod.rs");
        for call in CALLS {
            let decl = format!(
                "export type {} = PruneRequest & Pick<CallSettings, ",
                call.ts_type
            );
            let start = web
                .find(&decl)
                .unwrap_or_else(|| panic!("{} is not declared in src/web/mod.rs", call.ts_type))
                + decl.len();
            let end = start + web[start..].find('>').unwrap();
            let mut listed: Vec<&str> = web[start..end].split('"').skip(1).step_by(2).collect();
            let mut reads: Vec<&str> = call.takes.iter().chain(call.reads).copied().collect();
            listed.sort();
            reads.sort();
            assert_eq!(listed, reads, "{}", call.ts_type);
        }
    }
}
