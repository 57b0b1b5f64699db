//! The data an evaluation reads: labelled image folders (`name<TAB>class` files) and labelled
//! sentences (`split<TAB>label<TAB>sentence` files), checked before anything runs; errors name the
//! file and line at fault.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::labels;

/// `(file name, class index)` pairs.
pub type LabelledImages = Vec<(String, usize)>;

/// A labelled image list in file-name order, checked against the model: (file name, class) and
/// the paths; the first `skip` images are left out, then all but the first `limit`.
pub fn labelled_images(
    classes: usize,
    image_dir: &Path,
    labels_file: &Path,
    (skip, limit): (usize, Option<usize>),
) -> Result<(LabelledImages, Vec<PathBuf>)> {
    if limit == Some(0) {
        return Err(Error::param(
            "--limit",
            "must be at least 1 (leave it out for every image)",
        ));
    }
    let mut items = labels::read_labels(labels_file)?;
    items.sort();
    let listed = items.len();
    items.drain(..skip.min(listed));
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() && listed > 0 {
        return Err(Error::param(
            "--skip",
            format!(
                "{} lists {listed} images; skipping {skip} leaves none",
                labels_file.display()
            ),
        ));
    }
    if items.is_empty() {
        return Err(Error::param(
            "--labels",
            format!("{} lists no images", labels_file.display()),
        ));
    }
    if let Some((name, label)) = items.iter().find(|(_, l)| *l >= classes) {
        return Err(Error::param(
            "--labels",
            format!("{name} has class {label}, but the model has {classes} classes"),
        ));
    }
    let paths: Vec<PathBuf> = items.iter().map(|(n, _)| image_dir.join(n)).collect();
    if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
        return Err(Error::param(
            "--images",
            format!(
                "{} (listed in {}) does not exist",
                missing.display(),
                labels_file.display()
            ),
        ));
    }
    Ok((items, paths))
}

/// Image files of a folder, by name.
pub fn folder_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["jpg", "jpeg", "png", "webp", "bmp", "gif"]
                        .contains(&e.to_lowercase().as_str())
                })
        })
        .collect();
    paths.sort();
    Ok(paths)
}

/// One labelled text of the file.
pub struct Labelled {
    pub line: usize,
    pub label: usize,
    pub text: String,
}

/// The lines of `split` in a `split<TAB>label<TAB>sentence` file (a header line is skipped).
pub fn read_labelled(path: &Path, split: &str) -> Result<Vec<Labelled>> {
    let text = crate::limits::read_text(path, "a labelled text file")?;
    parse_labelled(&text, &path.display().to_string(), split)
}

/// [`read_labelled`] on a file's contents; `file` names it in errors. A label must be a class
/// index and a sentence must not be empty; a split that no line has is an error listing those
/// there are.
pub fn parse_labelled(text: &str, file: &str, split: &str) -> Result<Vec<Labelled>> {
    let bad = |line: usize, reason: String| {
        Error::param("--texts", format!("{file} line {line}: {reason}"))
    };
    let mut out = Vec::new();
    let mut splits: Vec<&str> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || (i == 0 && line.starts_with("split\t")) {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (Some(s), Some(label), Some(sentence)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(i + 1, "expected split<TAB>label<TAB>sentence".into()));
        };
        let label: usize = label
            .trim()
            .parse()
            .map_err(|_| bad(i + 1, format!("label `{label}` is not a class index")))?;
        if sentence.trim().is_empty() {
            return Err(bad(i + 1, "the sentence is empty".into()));
        }
        if s == split {
            out.push(Labelled {
                line: i + 1,
                label,
                text: sentence.to_string(),
            });
        } else if splits.len() < 20 && !splits.contains(&s) {
            splits.push(s);
        }
    }
    if out.is_empty() {
        return Err(Error::param(
            "split",
            format!(
                "{file} has no line of split `{split}` (its splits: {})",
                if splits.is_empty() {
                    "none".to_string()
                } else {
                    splits
                        .iter()
                        .map(|s| format!("`{s}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        ));
    }
    Ok(out)
}

/// The texts of `split` to evaluate: the first `skip` left out, then all but the first `limit`,
/// at most [`crate::limits::MAX_TEXTS`] (as [`labelled_images`] for images).
pub fn labelled_texts(
    path: &Path,
    split: &str,
    (skip, limit): (usize, Option<usize>),
) -> Result<Vec<Labelled>> {
    if limit == Some(0) {
        return Err(Error::param(
            "--limit",
            "must be at least 1 (leave it out for every text)",
        ));
    }
    let mut items = read_labelled(path, split)?;
    let listed = items.len();
    items.drain(..skip.min(listed));
    if let Some(n) = limit {
        items.truncate(n);
    }
    if items.is_empty() {
        return Err(Error::param(
            "--skip",
            format!(
                "{} has {listed} texts of split `{split}`; skipping {skip} leaves none",
                path.display()
            ),
        ));
    }
    let max = crate::limits::MAX_TEXTS;
    if items.len() > max {
        return Err(Error::param(
            "--limit",
            format!(
                "{} has {} texts of split `{split}`, over the limit of {max} in one run: \
                 evaluate them in parts (--skip, --limit)",
                path.display(),
                items.len()
            ),
        ));
    }
    Ok(items)
}

/// Every label of `items` (from `file`) must be a class `classifier` (a head, the model's own
/// classifier, named in the message) can predict: one of its `classes`. A label beyond them would
/// count as wrong whatever the model does.
pub fn check_labels(
    items: &[Labelled],
    classes: usize,
    file: &Path,
    classifier: &str,
) -> Result<()> {
    match items.iter().find(|t| t.label >= classes) {
        Some(t) => Err(Error::param(
            "--texts",
            format!(
                "{} line {}: label {} is not a class of {classifier}, which has {classes} \
                 (0 to {})",
                file.display(),
                t.line,
                t.label,
                classes.saturating_sub(1)
            ),
        )),
        None => Ok(()),
    }
}

/// The token ids of `items` (read from `file`); an error names the text's line in the file.
pub fn encode_labelled(
    tokenizer: &crate::text::TextTokenizer,
    items: &[Labelled],
    file: &Path,
) -> Result<crate::text::Encoded> {
    let texts: Vec<&str> = items.iter().map(|t| t.text.as_str()).collect();
    tokenizer.encode_named(&texts, |i| {
        format!("{} line {}", file.display(), items[i].line)
    })
}
