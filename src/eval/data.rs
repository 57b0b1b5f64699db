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
    let file = path.display().to_string();
    let bad = |line: usize, reason: String| {
        Error::param("--texts", format!("{file} line {line}: {reason}"))
    };
    let mut out = Vec::new();
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
        if s == split {
            out.push(Labelled {
                line: i + 1,
                label,
                text: sentence.to_string(),
            });
        }
    }
    if out.is_empty() {
        return Err(Error::param(
            "--split",
            format!("{file} has no line of split `{split}`"),
        ));
    }
    Ok(out)
}
