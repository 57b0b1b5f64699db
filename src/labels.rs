//! Ground-truth labels files (`name<TAB>class-index`) and class-name lists.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};

fn labels_error(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::Labels {
        file: file.to_string(),
        line,
        reason: reason.into(),
    }
}

/// Reads a UTF-8 text file, without the byte-order mark some Windows editors add.
fn read_text(path: &Path) -> Result<String> {
    let text = crate::limits::read_text(path, "a labels file")?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Reads a labels file: one `name<TAB>class-index` per line (see [`parse_labels`]).
pub fn read_labels(path: &Path) -> Result<Vec<(String, usize)>> {
    parse_labels(&read_text(path)?, &path.display().to_string())
}

/// Parses `name<TAB>class-index` lines; blank lines and `#` comments are skipped, and columns after
/// the index are ignored. Errors name `file` and the 1-based line.
pub fn parse_labels(text: &str, file: &str) -> Result<Vec<(String, usize)>> {
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.trim_start().is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: String| labels_error(file, i + 1, reason);
        let (name, rest) = line
            .split_once('\t')
            .ok_or_else(|| err(format!("expected `name<TAB>class-index`, got `{line}`")))?;
        if name.is_empty() {
            return Err(err("empty name".into()));
        }
        let index = rest.split('\t').next().unwrap_or("").trim();
        let index = index.parse().map_err(|_| {
            err(format!(
                "class index `{index}` is not a non-negative integer"
            ))
        })?;
        labels.push((name.to_string(), index));
    }
    Ok(labels)
}

/// The 1000 ImageNet-1k class names, in index order (bundled with the crate).
pub fn imagenet_class_names() -> Vec<String> {
    serde_json::from_str(include_str!("../assets/imagenet1k-class-names.json"))
        .expect("the bundled ImageNet class names are a JSON array of strings")
}

/// A model's own class names, else ImageNet's for a 1000-class model, else `class N`.
pub fn model_class_names(c: &crate::ViTConfig) -> Vec<String> {
    match &c.class_names {
        Some(n) => n.clone(),
        None if c.num_classes == 1000 => imagenet_class_names(),
        None => (0..c.num_classes).map(|i| format!("class {i}")).collect(),
    }
}

/// Reads class names in index order from a JSON array of strings, a JSON object
/// `{"0": "name", ...}` (Hugging Face `id2label`, bare or inside a `config.json`),
/// or a text file with one name per line.
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    let file = path.display().to_string();
    let names = match text.trim_start().chars().next() {
        Some('[' | '{') => parse_json_names(&text, &file)?,
        _ => parse_text_names(&text, &file)?,
    };
    if names.is_empty() {
        return Err(Error::config(file, "no class names"));
    }
    Ok(names)
}

/// A JSON array of names, or an `id2label`-style object (ids must be 0..n without gaps).
fn parse_json_names(text: &str, file: &str) -> Result<Vec<String>> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| labels_error(file, e.line(), format!("invalid JSON: {e}")))?;
    let value = match value {
        Value::Object(mut obj) => obj.remove("id2label").unwrap_or(Value::Object(obj)),
        v => v,
    };
    let not_a_name = |what: &str| Error::config(file, format!("class name {what} is not a string"));
    match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| as_string(v).ok_or_else(|| not_a_name(&format!("#{i}"))))
            .collect(),
        Value::Object(map) => {
            let mut by_id = BTreeMap::new();
            for (key, v) in map {
                let id: usize = key.trim().parse().map_err(|_| {
                    Error::config(file, format!("class id `{key}` is not an integer"))
                })?;
                let name = as_string(v).ok_or_else(|| not_a_name(&format!("for id {key}")))?;
                by_id.insert(id, name);
            }
            // Ids iterate in order, so they are exactly 0..n when each equals its position.
            let mut names = Vec::with_capacity(by_id.len());
            for (pos, (id, name)) in by_id.into_iter().enumerate() {
                if id != pos {
                    return Err(Error::config(file, format!("class id {pos} is missing")));
                }
                names.push(name);
            }
            Ok(names)
        }
        _ => Err(Error::config(
            file,
            "expected a JSON array of strings or an {\"0\": \"name\", ...} object",
        )),
    }
}

fn as_string(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// One name per line; trailing blank lines are ignored, blank lines inside would shift indices.
fn parse_text_names(text: &str, file: &str) -> Result<Vec<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let used = lines
        .iter()
        .rposition(|l| !l.is_empty())
        .map_or(0, |i| i + 1);
    lines[..used]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if name.is_empty() {
                Err(labels_error(file, i + 1, "empty class name"))
            } else {
                Ok(name.to_string())
            }
        })
        .collect()
}
