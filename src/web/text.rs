//! The browser's entry points for text models: `TextModel.create(modelBytes, configJson,
//! tokenizerJson, files?)` and `textModel.embed(texts)`, a thin face on [`crate::text`], which is
//! the code `zeroprune embed` runs.
//!
//! ```js
//! const m = await TextModel.create(modelBytes, configJson, tokenizerJson,
//!   { modules, pooling, sentenceBert });  // the sentence-transformers files' texts, where present
//! const r = await m.embed(["a triumph", "a dull film"]);
//! r.embeddings[0]; r.tokens; r.truncated; r.gflopsPerText; r.latencyMs;
//! // Pruned: the same request as the CLI's flags, plus per-layer `thresholds`.
//! const p = await m.embed(texts, { policy: "tome", flops: 0.65 });
//! p.kept[0][1];   // text 0, step 1: the positions of the tokens kept
//! p.pieces[0];    // text 0's tokens ("[CLS]", "a", "triumph", "[SEP]")
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{check_model_bytes, js_error, now_ms, to_js};
use crate::gpu::{AdapterChoice, GpuContext};
use crate::model::bert::{BertWeights, TextModelFiles};
use crate::prune::PruneRequest;
use crate::text::{Dropped, TextPruning, TextSession, TextTokenizer};

/// The sentence-transformers files of a folder, as texts (all optional).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExtraFiles {
    modules: Option<String>,
    pooling: Option<String>,
    sentence_bert: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TextInfo {
    adapter: String,
    layers: usize,
    hidden: usize,
    heads: usize,
    vocab: usize,
    max_tokens: usize,
    pooling: crate::model::bert::Pooling,
    normalized: bool,
    labels: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedResult {
    embeddings: Vec<Vec<f32>>,
    tokens: Vec<usize>,
    truncated: Vec<bool>,
    gflops_per_text: Vec<f64>,
    /// A sequence classifier's logits per text (empty lists without one).
    logits: Vec<Vec<f32>>,
    /// Wall time of the forward pass (upload, GPU work, readback), in ms.
    latency_ms: f64,
    /// `dense`, or the policy and its schedule.
    policy: String,
    /// Each text's tokens.
    pieces: Vec<Vec<String>>,
    /// Per text and pruning step, the positions of the tokens kept ([CLS] and [SEP] always stay).
    kept: Vec<Vec<Vec<u32>>>,
    dense_gflops_per_text: Vec<f64>,
}

/// The pruning options of `embed`: a pruning request as `classify` takes it, plus `thresholds`
/// (one per layer, for the threshold policy).
fn text_pruning(
    options: JsValue,
    c: &crate::model::bert::BertConfig,
) -> Result<TextPruning, JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(TextPruning::dense());
    }
    let mut map = match serde_wasm_bindgen::from_value::<serde_json::Value>(options) {
        Ok(serde_json::Value::Object(m)) => m,
        Ok(_) => {
            return Err(JsError::new(
                "options must be an object, e.g. {policy: \"tome\", flops: 0.65}",
            ))
        }
        Err(e) => return Err(JsError::new(&format!("options: {e}"))),
    };
    map.retain(|_, v| !v.is_null());
    let thresholds = match map.remove("thresholds") {
        None => None,
        Some(v) => Some(
            crate::text::pruning::parse_thresholds(
                &v.to_string(),
                "options.thresholds",
                c.num_layers,
            )
            .map_err(js_error)?,
        ),
    };
    let dropped = match map.remove("dropped") {
        None => Dropped::default(),
        Some(serde_json::Value::String(s)) => s.parse().map_err(js_error)?,
        Some(v) => {
            return Err(JsError::new(&format!(
                "options.dropped must be \"restate\" or \"omit\", got {v}"
            )))
        }
    };
    let request: PruneRequest = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| JsError::new(&format!("options: {e}")))?;
    let mut pruning = TextPruning::new(request, thresholds, c).map_err(js_error)?;
    pruning.dropped = dropped;
    Ok(pruning)
}

struct Inner {
    session: TextSession,
    tokenizer: TextTokenizer,
}

/// A text encoder (BERT family) on the page's GPU.
#[wasm_bindgen]
pub struct TextModel {
    inner: Rc<RefCell<Option<Inner>>>,
    info: JsValue,
}

#[wasm_bindgen]
impl TextModel {
    /// `TextModel.create(modelBytes, configJson, tokenizerJson, files?)`: parse the model (its
    /// `config.json` text and `tokenizer.json` text; `files` holds the sentence-transformers texts
    /// `{modules, pooling, sentenceBert}` where the folder has them), open the page's WebGPU
    /// adapter and upload the weights. Resolves to a TextModel.
    pub async fn create(
        model_bytes: Vec<u8>,
        config_json: String,
        tokenizer_json: String,
        files: JsValue,
    ) -> Result<TextModel, JsError> {
        check_model_bytes(model_bytes.len())?;
        let extra: ExtraFiles = if files.is_undefined() || files.is_null() {
            ExtraFiles::default()
        } else {
            serde_wasm_bindgen::from_value(files)
                .map_err(|e| JsError::new(&format!("files: {e}")))?
        };
        let text_files = TextModelFiles {
            config: Some(&config_json),
            modules: extra.modules.as_deref(),
            pooling: extra.pooling.as_deref(),
            sentence_bert: extra.sentence_bert.as_deref(),
        };
        let weights =
            BertWeights::from_bytes("model.safetensors", &model_bytes, &text_files, "model")
                .map_err(js_error)?;
        drop(model_bytes);
        let c = &weights.config;
        let tokenizer = TextTokenizer::from_bytes(
            tokenizer_json.as_bytes(),
            "tokenizer.json",
            c.max_tokens,
            c.vocab_size,
        )
        .map_err(js_error)?;
        let choice = AdapterChoice {
            backends: Some(wgpu::Backends::BROWSER_WEBGPU),
            name: None,
        };
        let gpu = GpuContext::new(&choice).await.map_err(js_error)?;
        let session = TextSession::create(&gpu, &weights)
            .await
            .map_err(js_error)?;
        let info = to_js(&TextInfo {
            adapter: gpu.describe(),
            layers: c.num_layers,
            hidden: c.hidden_size,
            heads: c.num_heads,
            vocab: c.vocab_size,
            max_tokens: c.max_tokens,
            pooling: c.pooling,
            normalized: c.normalize,
            labels: c.labels.clone(),
        })?;
        Ok(TextModel {
            inner: Rc::new(RefCell::new(Some(Inner { session, tokenizer }))),
            info,
        })
    }

    /// `{adapter, layers, hidden, heads, vocab, maxTokens, pooling, normalized, labels}`.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// `textModel.embed(texts, options?)`: dense, one padded batch; with a pruning request in
    /// `options` (`{policy, flops, keep, threshold, thresholds, at, sim, heads, iters, seed,
    /// protect, dropped: "restate" | "omit"}`), texts of equal length together. Resolves to `{embeddings, tokens, truncated,
    /// gflopsPerText, denseGflopsPerText, logits, latencyMs, policy, pieces, kept}`, in input
    /// order. The threshold policy with a FLOPs target calibrates on the texts given.
    pub fn embed(&self, texts: JsValue, options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let texts: Vec<String> = serde_wasm_bindgen::from_value(texts)
                .map_err(|e| JsError::new(&format!("texts must be an array of strings: {e}")))?;
            let mut state = inner.borrow_mut().take().ok_or_else(|| {
                JsError::new(
                    "the model is busy with another call: await it before starting the next",
                )
            })?;
            let result = match text_pruning(options, state.session.config()) {
                Ok(mut pruning) => embed(&mut state, &texts, &mut pruning).await,
                Err(e) => Err(e),
            };
            inner.borrow_mut().replace(state);
            result.map_err(JsValue::from)
        })
    }
}

async fn embed(
    state: &mut Inner,
    texts: &[String],
    pruning: &mut TextPruning,
) -> Result<JsValue, JsError> {
    if texts.is_empty() {
        return Err(JsError::new("texts is empty: give at least one text"));
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = state.tokenizer.encode(&refs).map_err(js_error)?;
    if pruning.needs_calibration().map_err(js_error)? {
        state
            .session
            .calibrate_async(&enc, pruning, texts.len(), |_| {})
            .await
            .map_err(js_error)?;
    }
    let t = now_ms();
    let out = state
        .session
        .run_async(&enc, pruning)
        .await
        .map_err(js_error)?;
    let latency_ms = now_ms() - t;
    let c = state.session.config();
    let tokens = enc.lengths();
    to_js(&EmbedResult {
        gflops_per_text: out.iter().map(|o| o.flops / 1e9).collect(),
        dense_gflops_per_text: tokens
            .iter()
            .map(|&n| TextSession::flops(c, n) / 1e9)
            .collect(),
        tokens,
        truncated: enc.truncated.clone(),
        logits: out.iter().map(|o| o.logits.clone()).collect(),
        policy: pruning.describe(),
        pieces: enc
            .ids
            .iter()
            .map(|ids| state.tokenizer.pieces(ids))
            .collect(),
        kept: out.iter().map(|o| o.kept.clone()).collect(),
        embeddings: out.into_iter().map(|o| o.embedding).collect(),
        latency_ms,
    })
}
