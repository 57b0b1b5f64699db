//! The browser's text models: `TextModel.create(modelBytes, configJson, tokenizerJson, files?)`
//! and `textModel.embed(texts, options?)`, on the page's shared GPU: the code `zeroprune embed`
//! runs.
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

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{
    check_model_bytes, js_error, now_ms, runtime, to_js, Guarded, Options, PolicyList, WebError,
};
use crate::error::ErrorCode;
use crate::eval::driver::Setting;
use crate::model::bert::{BertWeights, TextModelFiles};
use crate::model::Precision;
use crate::session::{TextEncoder, TextSession};
use crate::text::TextTokenizer;

/// The sentence-transformers files of a folder, as texts (all optional): `modules.json`,
/// `1_Pooling/config.json`, `sentence_bert_config.json`.
#[derive(Deserialize, Default, tsify::Tsify)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct SentenceTransformerFiles {
    modules: Option<String>,
    pooling: Option<String>,
    sentence_bert: Option<String>,
}

#[derive(Serialize, tsify::Tsify)]
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
    /// What the weights are stored as: "f32" or "f16".
    storage: crate::gpu::kernel::Elem,
    /// Every registered policy (default blocks for this model's layers) and the recommended one
    /// by FLOPs level, as `Session.info` lists them.
    policies: Vec<crate::prune::PolicyInfo>,
    recommended: Vec<super::Recommended>,
}

#[derive(Serialize, tsify::Tsify)]
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

struct Inner {
    session: TextSession,
    tokenizer: TextTokenizer,
}

/// A text encoder (BERT family) on the page's GPU.
#[wasm_bindgen]
pub struct TextModel {
    state: Guarded<Inner>,
    info: JsValue,
}

#[wasm_bindgen]
impl TextModel {
    /// `TextModel.create(modelBytes, configJson, tokenizerJson, files?, precision?)`: parse the
    /// model (its `config.json` text and `tokenizer.json` text; `files` holds the
    /// sentence-transformers texts `{modules, pooling, sentenceBert}` where the folder has them),
    /// open the page's WebGPU device (or share the one another model opened) and upload the
    /// weights as `precision` says (`"f32"`, the default, `"f16"` or `"auto"`). Resolves to a
    /// TextModel.
    pub async fn create(
        #[wasm_bindgen(js_name = modelBytes)] model_bytes: Vec<u8>,
        #[wasm_bindgen(js_name = configJson)] config_json: String,
        #[wasm_bindgen(js_name = tokenizerJson)] tokenizer_json: String,
        #[wasm_bindgen(unchecked_optional_param_type = "SentenceTransformerFiles")] files: Option<
            JsValue,
        >,
        #[wasm_bindgen(unchecked_optional_param_type = "Precision")] precision: Option<String>,
    ) -> Result<TextModel, WebError> {
        check_model_bytes(model_bytes.len())?;
        let precision: Precision = match precision.as_deref() {
            None => Precision::default(),
            Some(p) => p.parse().map_err(js_error)?,
        };
        let extra: SentenceTransformerFiles =
            match files.filter(|f| !f.is_undefined() && !f.is_null()) {
                None => SentenceTransformerFiles::default(),
                Some(files) => serde_wasm_bindgen::from_value(files)
                    .map_err(|e| WebError::new(ErrorCode::BadModel, format!("files: {e}")))?,
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
        let kernels = runtime().await?;
        let session = TextSession::create_with(&kernels, &weights, precision)
            .await
            .map_err(js_error)?;
        let list = PolicyList::of(c.num_layers, crate::model::Modality::Text);
        let info = to_js(&TextInfo {
            adapter: kernels.gpu().describe(),
            layers: c.num_layers,
            hidden: c.hidden_size,
            heads: c.num_heads,
            vocab: c.vocab_size,
            max_tokens: c.max_tokens,
            pooling: c.pooling,
            normalized: c.normalize,
            labels: c.labels.clone(),
            storage: session.storage(),
            policies: list.policies,
            recommended: list.recommended,
        })?;
        Ok(TextModel {
            state: Guarded::new(Inner { session, tokenizer }),
            info,
        })
    }

    /// `{adapter, layers, hidden, heads, vocab, maxTokens, pooling, normalized, labels, storage,
    /// policies, recommended}`.
    #[wasm_bindgen(getter, unchecked_return_type = "TextInfo")]
    pub fn info(&self) -> JsValue {
        self.info.clone()
    }

    /// `textModel.embed(texts, options?)`: dense, one padded batch; with a pruning request in
    /// `options` (`{policy, flops, keep, threshold, thresholds, at, sim, heads, iters, seed,
    /// protect, dropped: "restate" | "omit"}`, as `classify` takes it), texts of equal length
    /// together. Resolves to `{embeddings, tokens, truncated, gflopsPerText, denseGflopsPerText,
    /// logits, latencyMs, policy, pieces, kept}`, in input order. The threshold policy with a
    /// FLOPs target calibrates on the texts given.
    #[wasm_bindgen(unchecked_return_type = "Promise<EmbedResult>")]
    pub fn embed(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string[]")] texts: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "EmbedOptions")] options: Option<JsValue>,
    ) -> js_sys::Promise {
        self.state.call(move |mut state| async move {
            let result = embed(&mut state, texts, options).await;
            (state, result)
        })
    }
}

async fn embed(
    state: &mut Inner,
    texts: JsValue,
    options: Option<JsValue>,
) -> Result<JsValue, WebError> {
    let texts: Vec<String> = serde_wasm_bindgen::from_value(texts).map_err(|e| {
        WebError::new(
            ErrorCode::BadText,
            format!("texts must be an array of strings: {e}"),
        )
    })?;
    let c = state.session.config().clone();
    let o = Options::parse(options, &crate::options::EMBED, c.num_layers)?;
    if texts.is_empty() {
        return Err(WebError::new(
            ErrorCode::BadText,
            "texts is empty: give at least one text",
        ));
    }
    let setting = Setting::request(
        o.pruner(&c.largest_geometry()).map_err(js_error)?,
        o.dropped(true).map_err(js_error)?,
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let enc = state.tokenizer.encode(&refs).map_err(js_error)?;
    let mut settings = vec![setting];
    crate::eval::driver::calibrate(
        std::slice::from_mut(&mut state.session),
        &mut settings,
        &enc,
        texts.len(),
        |_| {},
    )
    .await
    .map_err(js_error)?;
    let setting = &settings[0];
    let t = now_ms();
    // Batches of 32 texts of similar length, as `zeroprune embed` runs them (padding never
    // changes a text's result; one pass holds at most MAX_BATCH texts).
    let out = state
        .session
        .run_all_async(&enc, setting.run(), 32, |_| {})
        .await
        .map_err(js_error)?;
    let latency_ms = now_ms() - t;
    let tokens = enc.lengths();
    to_js(&EmbedResult {
        gflops_per_text: out.iter().map(|o| o.flops / 1e9).collect(),
        dense_gflops_per_text: tokens
            .iter()
            .map(|&n| TextEncoder::flops(&c, n) / 1e9)
            .collect(),
        tokens,
        truncated: enc.truncated.clone(),
        logits: out.iter().map(|o| o.logits.clone()).collect(),
        policy: setting.describe(),
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
