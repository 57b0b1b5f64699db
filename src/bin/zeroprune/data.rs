//! The data options `eval`, `sweep`, `bench` and `tune` share, and the data they load: labelled
//! images (`--images`, `--labels`) for an image model, labelled sentences (`--texts`, `--split`) for
//! a text encoder, and where the threshold policy calibrates (never the data evaluated).

use std::path::{Path, PathBuf};

use clap::Args;
use zeroprune::eval::data::{encode_labelled, labelled_images, labelled_texts, Labelled};
use zeroprune::eval::head::Head;
use zeroprune::eval::report::Unit;
use zeroprune::eval::task::Task;
use zeroprune::model::bert::BertWeights;
use zeroprune::model::VisionTransformer;
use zeroprune::model::{Family, Preprocess};
use zeroprune::session::TextEncoder;
use zeroprune::text::{Encoded, TextTokenizer};
use zeroprune::{preprocess, Error, Result};

/// What the evaluation commands read.
#[derive(Args, Clone, Debug, Default)]
#[command(next_help_heading = "Data")]
pub struct DataArgs {
    /// Folder of images (an image model).
    #[arg(long, conflicts_with = "texts")]
    pub images: Option<PathBuf>,
    /// With --images: `name<TAB>class-index` lines, one per image.
    #[arg(long, requires = "images")]
    pub labels: Option<PathBuf>,
    /// Labelled sentences instead (a text encoder): a `split<TAB>label<TAB>sentence` file, e.g.
    /// ../shared/data/sentence-polarity/sentences.tsv.
    #[arg(long, value_name = "FILE")]
    pub texts: Option<PathBuf>,
    /// With --texts: the split evaluated.
    #[arg(long, requires = "texts")]
    pub split: Option<String>,
    /// Leave out the first N items (file-name order for images, file order for texts), e.g. those
    /// a schedule was tuned on; they are where the threshold policy calibrates by default.
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Use only the first N items (after --skip).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Items per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// What to score: classify (top-1 against the labels, agreement with the dense class) or
    /// embed (cosine to the dense embedding, nearest-neighbour agreement, label recall@1).
    #[arg(long, default_value = "classify")]
    pub task: Task,
    /// A linear head on the pooled embedding (safetensors, `weight [C, D]`, `bias [C]`) instead
    /// of the model's own classifier (bench/fit_text_head.py fits one on a text encoder).
    #[arg(long, value_name = "FILE")]
    pub head: Option<PathBuf>,
    /// Where the threshold policy calibrates a --flops target: a folder of images, or with
    /// --texts a split of the same file (default: the split `train`; for images the items
    /// --skip leaves out). Never the data evaluated.
    #[arg(long, value_name = "DIR|SPLIT")]
    pub calibration: Option<String>,
    /// How many items calibration runs on.
    #[arg(long, default_value_t = 200)]
    pub calibration_limit: usize,
}

/// One item's name in predictions: an image's file, a text's line.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemId {
    File(String),
    Line(usize),
}

/// Data of one family: items, labels, and how to load any batch of them.
pub trait Source<F: Family> {
    fn unit(&self) -> Unit;
    fn len(&self) -> usize;
    fn labels(&self) -> Option<&[usize]>;
    fn id(&self, i: usize) -> ItemId;
    /// The batches the items run in (at most `batch` each).
    fn batches(&self, model: &F, batch: usize) -> Vec<Vec<usize>>;
    fn load(&self, items: &[usize]) -> Result<<F::Input as ToOwned>::Owned>;
    /// The one geometry every item has, where they share one (images): schedules are shown
    /// resolved for it.
    fn fixed_geometry(&self, _model: &F) -> Option<zeroprune::model::TokenGeometry> {
        None
    }
}

/// Labelled images of a folder.
pub struct Images {
    pub names: Vec<String>,
    pub labels: Option<Vec<usize>>,
    pub paths: Vec<PathBuf>,
    pub preprocess: Preprocess,
}

impl Source<VisionTransformer> for Images {
    fn unit(&self) -> Unit {
        Unit::Image
    }
    fn len(&self) -> usize {
        self.paths.len()
    }
    fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref()
    }
    fn id(&self, i: usize) -> ItemId {
        ItemId::File(self.names[i].clone())
    }
    fn batches(&self, _: &VisionTransformer, batch: usize) -> Vec<Vec<usize>> {
        (0..self.paths.len())
            .collect::<Vec<_>>()
            .chunks(batch.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
    fn load(&self, items: &[usize]) -> Result<Vec<f32>> {
        let paths: Vec<PathBuf> = items.iter().map(|&i| self.paths[i].clone()).collect();
        preprocess::load_batch(&paths, &self.preprocess)
    }
    fn fixed_geometry(&self, model: &VisionTransformer) -> Option<zeroprune::model::TokenGeometry> {
        Some(model.largest_geometry())
    }
}

/// Labelled sentences, tokenised.
pub struct Texts {
    pub items: Vec<Labelled>,
    pub labels: Vec<usize>,
    pub enc: Encoded,
}

impl Source<TextEncoder> for Texts {
    fn unit(&self) -> Unit {
        Unit::Text
    }
    fn len(&self) -> usize {
        self.enc.ids.len()
    }
    fn labels(&self) -> Option<&[usize]> {
        Some(&self.labels)
    }
    fn id(&self, i: usize) -> ItemId {
        ItemId::Line(self.items[i].line)
    }
    /// Texts of similar length together: a dense batch pads to its longest.
    fn batches(&self, model: &TextEncoder, batch: usize) -> Vec<Vec<usize>> {
        model.batches(&self.enc, batch, false)
    }
    fn load(&self, items: &[usize]) -> Result<Encoded> {
        Ok(Encoded {
            ids: items.iter().map(|&i| self.enc.ids[i].clone()).collect(),
            truncated: items.iter().map(|&i| self.enc.truncated[i]).collect(),
        })
    }
}

impl DataArgs {
    /// Checks that need no file: ranges, and the options a family does not take.
    pub fn check(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::param("--batch", "must be at least 1"));
        }
        if self.batch > zeroprune::limits::MAX_BATCH {
            return Err(Error::param(
                "--batch",
                format!(
                    "{} is over the limit of {}",
                    self.batch,
                    zeroprune::limits::MAX_BATCH
                ),
            ));
        }
        if self.limit == Some(0) {
            return Err(Error::param(
                "--limit",
                "must be at least 1 (leave it out for every item)",
            ));
        }
        if self.calibration_limit == 0 {
            return Err(Error::param("--calibration-limit", "must be at least 1"));
        }
        if self.head.is_some() && self.task == Task::Embed {
            return Err(Error::param(
                "--head",
                "a head classifies: it goes with --task classify, not --task embed",
            ));
        }
        if self.images.is_none() && self.texts.is_none() {
            return Err(Error::param(
                "--images",
                "give --images (and --labels) for an image model, or --texts for a text encoder",
            ));
        }
        Ok(())
    }

    pub fn is_text(&self) -> bool {
        self.texts.is_some()
    }

    /// The split evaluated (texts).
    pub fn split(&self) -> &str {
        self.split.as_deref().unwrap_or("test")
    }

    /// The labelled images, `--skip` and `--limit` applied; labels required unless `optional`.
    pub fn images(&self, c: &zeroprune::ViTConfig, labels_optional: bool) -> Result<Images> {
        if self.task == Task::Classify {
            c.check_classifies("--model")?;
        }
        let dir = self
            .images
            .as_deref()
            .ok_or_else(|| Error::param("--images", "an image model needs --images"))?;
        match &self.labels {
            Some(file) => {
                let (items, paths) =
                    labelled_images(c.num_classes, dir, file, (self.skip, self.limit))?;
                Ok(Images {
                    names: items.iter().map(|(n, _)| n.clone()).collect(),
                    labels: Some(items.iter().map(|(_, l)| *l).collect()),
                    paths,
                    preprocess: c.preprocess.clone(),
                })
            }
            None if labels_optional => {
                let mut paths = zeroprune::eval::data::folder_images(dir)?;
                let listed = paths.len();
                paths.drain(..self.skip.min(listed));
                if let Some(n) = self.limit {
                    paths.truncate(n);
                }
                if paths.is_empty() {
                    return Err(Error::param(
                        "--images",
                        format!(
                            "{} has {listed} images; none left after --skip {}",
                            dir.display(),
                            self.skip
                        ),
                    ));
                }
                Ok(Images {
                    names: paths
                        .iter()
                        .map(|p| {
                            p.file_name()
                                .map_or_else(String::new, |f| f.to_string_lossy().into())
                        })
                        .collect(),
                    labels: None,
                    paths,
                    preprocess: c.preprocess.clone(),
                })
            }
            None => Err(Error::param(
                "--labels",
                "an evaluation on images needs --labels (name<TAB>class-index lines)",
            )),
        }
    }

    /// The labelled sentences of the split evaluated, tokenised, `--skip` and `--limit` applied.
    pub fn texts(&self, tokenizer: &TextTokenizer, max_tokens: usize) -> Result<Texts> {
        let file = self
            .texts
            .as_deref()
            .ok_or_else(|| Error::param("--texts", "a text encoder needs --texts"))?;
        let items = labelled_texts(file, self.split(), (self.skip, self.limit))?;
        let enc = encode_labelled(tokenizer, &items, file)?;
        warn_cut(&enc, max_tokens);
        Ok(Texts {
            labels: items.iter().map(|t| t.label).collect(),
            items,
            enc,
        })
    }

    /// Images the threshold policy calibrates on: `--calibration DIR`, else the first
    /// `--calibration-limit` of those `--skip` leaves out. Never the images evaluated.
    pub fn image_calibration(&self, c: &zeroprune::ViTConfig) -> Result<Vec<f32>> {
        let paths =
            match &self.calibration {
                Some(dir) => {
                    let dir = Path::new(dir);
                    let mut p = zeroprune::eval::data::folder_images(dir)?;
                    if self.images.as_deref() == Some(dir) {
                        return Err(Error::param(
                        "--calibration",
                        "calibrating on the folder evaluated would tune on the test data; give \
                         another folder, or --skip N to calibrate on the first N images",
                    ));
                    }
                    p.truncate(self.calibration_limit);
                    p
                }
                None if self.skip > 0 => {
                    let dir = self.images.as_deref().unwrap_or(Path::new("."));
                    let mut names: Vec<String> = match &self.labels {
                        Some(file) => zeroprune::labels::read_labels(file)?
                            .into_iter()
                            .map(|(n, _)| n)
                            .collect(),
                        None => zeroprune::eval::data::folder_images(dir)?
                            .iter()
                            .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into()))
                            .collect(),
                    };
                    names.sort();
                    names.truncate(self.skip.min(self.calibration_limit));
                    names.iter().map(|n| dir.join(n)).collect()
                }
                None => return Err(Error::param(
                    "--calibration",
                    "the threshold policy meets a FLOPs target by calibrating on images that are \
                     not evaluated: give --skip N (the first N images calibrate) or \
                     --calibration DIR",
                )),
            };
        if paths.is_empty() {
            return Err(Error::param("--calibration", "no images to calibrate on"));
        }
        eprintln!("calibrating on {} images", paths.len());
        preprocess::load_batch(&paths, &c.preprocess)
    }

    /// Sentences the threshold policy calibrates on: the first `--calibration-limit` of split
    /// `--calibration` (default `train`), never the split evaluated.
    pub fn text_calibration(&self, tokenizer: &TextTokenizer) -> Result<Encoded> {
        let file = self
            .texts
            .as_deref()
            .ok_or_else(|| Error::param("--texts", "a text encoder needs --texts"))?;
        let split = self.calibration.as_deref().unwrap_or("train");
        if split == self.split() {
            return Err(Error::param(
                "--calibration",
                "calibrating on the split evaluated would tune on the test data; name another",
            ));
        }
        let limit = self.calibration_limit.min(zeroprune::limits::MAX_TEXTS);
        let cal = labelled_texts(file, split, (0, Some(limit)))?;
        eprintln!("calibrating on {} texts of split {split}", cal.len());
        encode_labelled(tokenizer, &cal, file)
    }

    /// The `--head` file, checked against the embedding width `d`.
    pub fn head(&self, d: usize) -> Result<Option<Head>> {
        self.head.as_deref().map(|p| Head::load(p, d)).transpose()
    }

    /// What classifies a text evaluation: `--head`, else the model's classifier; every label of
    /// the data must be one of its classes (an embedding task reads no classifier).
    pub fn text_head(&self, w: &BertWeights, data: &Texts) -> Result<Option<Head>> {
        let head = self.head(w.config.hidden_size)?;
        if self.task == Task::Classify {
            let file = self.texts.as_deref().unwrap_or(Path::new("--texts"));
            zeroprune::eval::head::check_labels(head.as_ref(), w, &data.items, file)?;
        }
        Ok(head)
    }

    /// `--head` for an image model, checked against the embedding width and the labels.
    pub fn image_head(&self, c: &zeroprune::ViTConfig, data: &Images) -> Result<Option<Head>> {
        let head = self.head(c.embed_dim)?;
        if let (Some(h), Some(labels)) = (&head, &data.labels) {
            if let Some(l) = labels.iter().find(|&&l| l >= h.classes()) {
                return Err(Error::param(
                    "--labels",
                    format!(
                        "label {l} is not a class of the head {}, which has {} classes",
                        self.head.as_deref().unwrap_or(Path::new("")).display(),
                        h.classes()
                    ),
                ));
            }
        }
        Ok(head)
    }
}

/// One warning for the texts cut to the model's length.
pub fn warn_cut(enc: &Encoded, max_tokens: usize) {
    let cut = enc.truncated.iter().filter(|&&t| t).count();
    if cut > 0 {
        eprintln!(
            "warning: {cut} texts were cut to the model's {} tokens",
            max_tokens
        );
    }
}

/// A text model folder's weights and tokenizer.
pub fn text_model(dir: &Path) -> Result<(BertWeights, TextTokenizer)> {
    let w = BertWeights::load(dir)?;
    let t = TextTokenizer::load(
        &dir.join("tokenizer.json"),
        w.config.max_tokens,
        w.config.vocab_size,
    )?;
    Ok((w, t))
}

/// Run `settings` on every item of `data` in batches of `batch`, with a progress bar counting
/// `what`: one outcome per setting ([`run_settings_blocking`]).
pub fn run_source<F: Family, S: Source<F>>(
    sessions: &mut [zeroprune::Session<F>],
    settings: &[zeroprune::eval::driver::Setting],
    data: &S,
    batch: usize,
    head: Option<&Head>,
    what: &str,
) -> Result<Vec<zeroprune::eval::driver::Outcome>>
where
    F::Output: zeroprune::eval::task::Answers,
{
    let n = data.len();
    let batches = data.batches(sessions[0].model(), batch);
    let bar = crate::common::progress(n * settings.len(), what);
    let out = zeroprune::eval::driver::run_settings_blocking(
        sessions,
        settings,
        n,
        &batches,
        |items| data.load(items),
        head,
        |k| bar.inc(k as u64),
    );
    bar.finish_and_clear();
    out
}

/// A model of either family ready to evaluate: its data, head, and sessions (the last the dense
/// reference where it differs), with the settings calibrated where the threshold policy needs it.
pub struct Prepared<F: Family, S> {
    pub model: String,
    pub data: S,
    pub head: Option<Head>,
    pub sessions: Vec<zeroprune::Session<F>>,
    pub settings: Vec<zeroprune::eval::driver::Setting>,
}

/// How the sessions of an evaluation are opened.
pub struct Opening {
    /// Whether `--calibration` was given: an error where no setting calibrates.
    pub calibration_given: bool,
    pub precision: zeroprune::model::Precision,
    /// The dense reference's precision, where it may differ.
    pub reference: Option<zeroprune::model::Precision>,
    pub batch: usize,
}

/// The settings of an evaluation for a model's largest geometry and its number of sessions.
pub type SettingsFor<'a> = Box<
    dyn FnOnce(
            &zeroprune::model::TokenGeometry,
            usize,
        ) -> Result<Vec<zeroprune::eval::driver::Setting>>
        + 'a,
>;

impl<F: Family, S: Source<F>> Prepared<F, S>
where
    F::Output: zeroprune::eval::task::Answers,
{
    /// Every setting on every item, with a progress bar counting `what`.
    pub fn run(
        &mut self,
        batch: usize,
        what: &str,
    ) -> Result<Vec<zeroprune::eval::driver::Outcome>> {
        run_source(
            &mut self.sessions,
            &self.settings,
            &self.data,
            batch,
            self.head.as_ref(),
            what,
        )
    }
}

/// Open the GPU and `weights` (and a second copy at the reference precision where it stores
/// differently), build the settings for the model's largest geometry, and calibrate them on
/// `calibration()` where one needs it.
pub fn prepare<W, S>(
    weights: &W,
    (data, head): (S, Option<Head>),
    how: &Opening,
    settings: SettingsFor,
    calibration: impl FnOnce() -> Result<<<W::Family as Family>::Input as ToOwned>::Owned>,
) -> Result<Prepared<W::Family, S>>
where
    W: zeroprune::model::family::Weights,
{
    let (precision, reference, batch) = (how.precision, how.reference, how.batch);
    let gpu = crate::common::open_gpu()?;
    let mut sessions = vec![zeroprune::Session::with_precision(
        &gpu, weights, precision,
    )?];
    if let Some(p) = reference {
        if p.storage(&gpu, sessions[0].kernel_choice())? != sessions[0].storage() {
            sessions.push(zeroprune::Session::with_precision(&gpu, weights, p)?);
        }
    }
    sessions[0].check_batch_fits(batch)?;
    let largest = sessions[0].model().largest_geometry();
    let settings = settings(&largest, sessions.len())?;
    if how.calibration_given && !zeroprune::eval::driver::needs_calibration(&settings)? {
        return Err(Error::param(
            "--calibration",
            "nothing calibrates here: the threshold policy with --flops does (the other \
             policies' schedules are set by their FLOPs alone)",
        ));
    }
    let settings = crate::common::calibrated(&mut sessions, settings, batch, calibration)?;
    Ok(Prepared {
        model: weights.source().to_string(),
        data,
        head,
        sessions,
        settings,
    })
}
