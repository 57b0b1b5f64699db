//! Typed JSON with errors that name the file and the field: the text is parsed once into a value
//! (syntax errors give the line and column), then deserialized into the typed struct with
//! `serde_path_to_error` (type errors give the field path, e.g. `model_args.img_size`). Going
//! through the value keeps one copy of the text parser for every struct, which keeps the browser
//! package small.

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// `text` as a `T`; `file` names it in errors.
pub(crate) fn parse<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::config(file, e.to_string()))?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        };
        Error::config(file, reason)
    })
}
