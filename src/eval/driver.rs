//! The one evaluation loop, for every family and task: each batch is loaded once and every setting
//! (dense, then each pruning schedule) runs on it back to back, so quality figures pair the same
//! items and speed figures pair the same moment of the machine.

use super::head::Head;
use super::task::{Answer, Answers};
use crate::error::Result;
use crate::model::{Dropped, Family};
use crate::prune::{Policy, Pruner, Pruning};
use crate::session::{Run, Schedule, Session};

/// Where a setting's schedule comes from.
#[derive(Clone, Debug)]
pub enum SettingSchedule {
    /// One schedule, resolved for the model (images).
    Fixed(Pruning),
    /// A request resolved per geometry (texts: per length).
    Request(Box<Pruner>),
}

/// One setting an evaluation runs: the dense model or a pruning schedule, on one of the
/// evaluation's sessions (another precision's copy of the model, say).
#[derive(Clone, Debug)]
pub struct Setting {
    pub schedule: SettingSchedule,
    pub dropped: Dropped,
    /// Index of the session it runs on.
    pub session: usize,
}

impl Setting {
    /// The dense model on session 0.
    pub fn dense() -> Self {
        Setting::fixed(Pruning::dense())
    }

    pub fn fixed(p: Pruning) -> Self {
        Setting {
            schedule: SettingSchedule::Fixed(p),
            dropped: Dropped::default(),
            session: 0,
        }
    }

    pub fn request(p: Pruner, dropped: Dropped) -> Self {
        Setting {
            schedule: SettingSchedule::Request(Box::new(p)),
            dropped,
            session: 0,
        }
    }

    pub fn on_session(self, session: usize) -> Self {
        Setting { session, ..self }
    }

    pub fn run(&self) -> Run<'_> {
        let schedule = match &self.schedule {
            SettingSchedule::Fixed(p) => Schedule::Fixed(p),
            SettingSchedule::Request(p) => Schedule::Request(p),
        };
        Run::new(schedule).dropped(self.dropped)
    }

    pub fn is_dense(&self) -> bool {
        match &self.schedule {
            SettingSchedule::Fixed(p) => p.is_dense(),
            SettingSchedule::Request(p) => p.is_dense().unwrap_or(true),
        }
    }

    pub fn policy(&self) -> Policy {
        match &self.schedule {
            SettingSchedule::Fixed(p) => p.policy,
            SettingSchedule::Request(p) => p.policy().unwrap_or_else(|_| Policy::none()),
        }
    }

    /// The schedule in a few words: `3:138,6:96` for a fixed one, the request for the others
    /// (`zero-tprune, flops 0.65`), with `dropped omitted` where a dropping policy leaves the
    /// dropped tokens out of a mean.
    pub fn describe(&self) -> String {
        let mut s = match &self.schedule {
            SettingSchedule::Fixed(p) => p.describe(),
            SettingSchedule::Request(p) => p.describe(),
        };
        let policy = self.policy();
        if self.dropped == Dropped::Omit && !policy.is_none() && !policy.def().merges() {
            s += ", dropped omitted";
        }
        s
    }

    /// [`Setting::describe`], with a request resolved at `g` where the model has that one
    /// geometry (an image model): its token counts, `3:138,6:96`.
    pub fn describe_at(&self, g: Option<&crate::model::TokenGeometry>) -> String {
        match (&self.schedule, g) {
            (SettingSchedule::Request(p), Some(g)) => match p.schedule(g) {
                Ok(resolved) => Setting {
                    schedule: SettingSchedule::Fixed(resolved),
                    ..self.clone()
                }
                .describe(),
                Err(_) => self.describe(),
            },
            _ => self.describe(),
        }
    }

    /// The pruner, where the threshold policy must calibrate it.
    pub fn pruner_mut(&mut self) -> Option<&mut Pruner> {
        match &mut self.schedule {
            SettingSchedule::Request(p) => Some(p),
            SettingSchedule::Fixed(_) => None,
        }
    }
}

/// What one setting gave: an answer per item (in item order) and the forward seconds of each
/// batch (paired across settings by batch).
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub answers: Vec<Answer>,
    pub seconds: Vec<f64>,
}

/// Wall-clock seconds since some fixed point (the page's clock in the browser).
fn now() -> f64 {
    crate::gpu::program::now_s()
}

/// Run every setting on every batch: `batches` lists the items of each batch, `load` makes a
/// batch's input, `done` hears how many items each setting finished. Every setting first runs the
/// first batch once untimed, so that building programs is not timed. Returns an outcome per
/// setting.
#[allow(clippy::too_many_arguments)]
pub async fn run_settings<F, L>(
    sessions: &mut [Session<F>],
    settings: &[Setting],
    items: usize,
    batches: &[Vec<usize>],
    mut load: L,
    head: Option<&Head>,
    mut done: impl FnMut(usize),
) -> Result<Vec<Outcome>>
where
    F: Family,
    F::Output: Answers,
    L: FnMut(&[usize]) -> Result<<F::Input as ToOwned>::Owned>,
{
    let mut answers: Vec<Vec<Option<Answer>>> = settings
        .iter()
        .map(|_| (0..items).map(|_| None).collect())
        .collect();
    let mut seconds = vec![Vec::with_capacity(batches.len()); settings.len()];
    for (i, batch) in batches.iter().enumerate() {
        let input = load(batch)?;
        let input: &F::Input = std::borrow::Borrow::borrow(&input);
        if i == 0 {
            for s in settings {
                sessions[s.session].run_async(input, s.run()).await?;
            }
        }
        for (k, s) in settings.iter().enumerate() {
            let t = now();
            let out = sessions[s.session].run_async(input, s.run()).await?;
            seconds[k].push(now() - t);
            for (&item, o) in batch.iter().zip(&out.items) {
                answers[k][item] = Some(o.answer(head));
            }
            done(batch.len());
        }
    }
    Ok(answers
        .into_iter()
        .zip(seconds)
        .map(|(a, seconds)| Outcome {
            answers: a.into_iter().map(Option::unwrap_or_default).collect(),
            seconds,
        })
        .collect())
}

/// [`run_settings`] for native callers.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::too_many_arguments)]
pub fn run_settings_blocking<F, L>(
    sessions: &mut [Session<F>],
    settings: &[Setting],
    items: usize,
    batches: &[Vec<usize>],
    load: L,
    head: Option<&Head>,
    done: impl FnMut(usize),
) -> Result<Vec<Outcome>>
where
    F: Family,
    F::Output: Answers,
    L: FnMut(&[usize]) -> Result<<F::Input as ToOwned>::Owned>,
{
    pollster::block_on(run_settings(
        sessions, settings, items, batches, load, head, done,
    ))
}

/// Calibrate every threshold setting with a FLOPs target on `calibration` (data the evaluation
/// never scores): its thresholds' scale, by bisection ([`Session::calibrate`]). Returns, per
/// setting calibrated, its index, the scale and the FLOPs fraction reached.
pub async fn calibrate<F: Family>(
    sessions: &mut [Session<F>],
    settings: &mut [Setting],
    calibration: &F::Input,
    batch: usize,
    mut done: impl FnMut(usize),
) -> Result<Vec<(usize, f32, f64)>> {
    let mut out = Vec::new();
    for (i, s) in settings.iter_mut().enumerate() {
        let session = s.session;
        let Some(p) = s.pruner_mut() else { continue };
        if !p.needs_calibration()? {
            continue;
        }
        let (scale, reached) = sessions[session]
            .calibrate_async(calibration, p, batch, &mut done)
            .await?;
        out.push((i, scale, reached));
    }
    Ok(out)
}

/// Whether any setting must be calibrated before it runs.
pub fn needs_calibration(settings: &[Setting]) -> Result<bool> {
    for s in settings {
        if let SettingSchedule::Request(p) = &s.schedule {
            if p.needs_calibration()? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
