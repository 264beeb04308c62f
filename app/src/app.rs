//! The app's state: settings (persisted), the runs being watched (live or replayed) and the
//! frames they send; `pump` moves frames into the runs' histories within a budget per frame.
//! Drawing lives in [`crate::ui`]; training and reading in [`crate::worker`] and
//! [`crate::replay`].

use crate::form::{FieldError, RunForm};
use crate::history::XAxis;
use crate::hotness::HotOrder;
use crate::link::{Link, Outcome, Waker};
use crate::run::RunHistory;
use egui::Color32;
use rowflow::device::BackendReport;
use rowflow::train::TrainSummary;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Messages from callbacks that finish later (a screenshot written).
pub type Inbox = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Frames moved into histories per UI frame and run, at most.
pub const BUDGET: usize = 2048;
/// Time spent moving frames per UI frame, at most.
pub const BUDGET_TIME: Duration = Duration::from_millis(8);
/// Runs shown at once (live and replayed).
pub const MAX_RUNS: usize = 4;
/// One colour per run.
pub const COLOURS: [Color32; MAX_RUNS] = [
    Color32::from_rgb(66, 150, 250),
    Color32::from_rgb(250, 120, 50),
    Color32::from_rgb(80, 200, 120),
    Color32::from_rgb(210, 90, 210),
];

/// How the views look (persisted).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewOptions {
    /// Steps or seconds on every x-axis.
    pub axis: XAxis,
    /// Transfer volume on a log scale.
    pub log_transfer: bool,
    /// Memory on a log scale.
    pub log_memory: bool,
    /// Heatmap rows by rank or by id.
    pub hot_order: HotOrder,
    /// The table whose hotness is shown.
    pub hot_table: usize,
    /// Hit rates per table too (each can then be hidden from its legend entry).
    pub per_table: bool,
}

/// What the user chose, saved between sessions (never runtime handles).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The run panel.
    pub form: RunForm,
    /// The views.
    pub view: ViewOptions,
}

/// Where a run is.
#[derive(Debug)]
pub enum Status {
    /// Training (or paused).
    Running,
    /// Reading a recording.
    Loading,
    /// Done: every step, or stopped early (the summary says how many).
    Finished(Box<TrainSummary>),
    /// Read to its end; malformed lines listed.
    Replayed(crate::replay::Loaded),
    /// Failed, with rowflow's message.
    Failed(String),
}

/// One run in the views.
pub struct Run {
    /// `run 1`, or the recording's file name.
    pub name: String,
    /// What it trains (policy, precision, cache, backend).
    pub description: String,
    /// Its colour in every view.
    pub colour: Color32,
    /// What it sent so far.
    pub history: RunHistory,
    /// Where it is.
    pub status: Status,
    /// A recording's path.
    pub recording: Option<PathBuf>,
    /// A recording's scrub position (a step): the views show the run up to it.
    pub cursor: Option<f64>,
    /// The worker or reader sending its frames (`None` once finished).
    pub link: Option<Link>,
    /// Frames the worker dropped because the UI was behind.
    pub dropped_total: u64,
    /// The heatmap texture and what it was drawn from.
    pub texture: Option<(egui::TextureHandle, (usize, usize, HotOrder, u64))>,
    /// The cached-rows strip beside the heatmap.
    pub strip: Option<egui::TextureHandle>,
}

impl Run {
    /// The last x the views show for this run (a replay's cursor, or everything).
    pub fn until(&self, axis: XAxis) -> f64 {
        match (self.cursor, axis) {
            (None, _) => f64::INFINITY,
            (Some(step), XAxis::Step) => step,
            (Some(step), XAxis::Time) => self
                .history
                .loss
                .value_at(XAxis::Step, step)
                .map_or(f64::INFINITY, |b| b.time),
        }
    }

    /// A finished run made of histories built elsewhere (pictures, tests).
    pub fn scripted(name: &str, history: RunHistory) -> Run {
        let steps = history.last_step();
        Run {
            name: name.into(),
            description: "scripted".into(),
            colour: COLOURS[0],
            history,
            status: Status::Replayed(crate::replay::Loaded {
                steps,
                ..Default::default()
            }),
            recording: None,
            cursor: None,
            link: None,
            dropped_total: 0,
            texture: None,
            strip: None,
        }
    }

    /// Frames the worker dropped (the UI was behind).
    pub fn dropped(&self) -> u64 {
        self.link.as_ref().map_or(self.dropped_total, Link::dropped)
    }

    /// Whether frames still arrive.
    pub fn is_live(&self) -> bool {
        matches!(self.status, Status::Running | Status::Loading)
    }
}

/// rowflow-studio's state.
pub struct StudioApp {
    /// Persisted settings.
    pub settings: Settings,
    /// Backends probed at start (with why each absent one is absent).
    pub backends: Vec<BackendReport>,
    /// The runs shown.
    pub runs: Vec<Run>,
    /// Messages for the user (a file that could not be opened, an export written).
    pub notices: Vec<String>,
    /// Messages from callbacks that finish later, moved into `notices` each frame.
    pub inbox: Inbox,
    started: u64,
}

impl StudioApp {
    /// The app with `settings`, offering `backends`.
    pub fn new(settings: Settings, backends: Vec<BackendReport>) -> Self {
        StudioApp {
            settings,
            backends,
            runs: Vec::new(),
            notices: Vec::new(),
            inbox: Default::default(),
            started: 0,
        }
    }

    /// The run panel's config, or what is wrong with it.
    pub fn config(&self) -> Result<rowflow::config::RunConfig, FieldError> {
        self.settings.form.to_config()
    }

    fn colour(&self) -> Color32 {
        COLOURS
            .iter()
            .copied()
            .find(|c| self.runs.iter().all(|r| r.colour != *c))
            .unwrap_or(COLOURS[0])
    }

    /// Room for another run: the oldest finished one is let go when all slots are taken.
    fn make_room(&mut self) -> bool {
        if self.runs.len() < MAX_RUNS {
            return true;
        }
        match self.runs.iter().position(|r| !r.is_live()) {
            Some(i) => {
                self.runs.remove(i);
                true
            }
            None => {
                self.notices.push(format!(
                    "{MAX_RUNS} runs are already live: stop one before starting another"
                ));
                false
            }
        }
    }

    /// Starts training the run panel's config on a worker thread.
    pub fn start_run(&mut self, wake: Waker) {
        match self.config() {
            Ok(cfg) => self.start_with(cfg, wake),
            Err(e) => self.notices.push(e.message),
        }
    }

    /// Starts training `cfg` on a worker thread.
    pub fn start_with(&mut self, cfg: rowflow::config::RunConfig, wake: Waker) {
        if !self.make_room() {
            return;
        }
        self.started += 1;
        let description = format!(
            "{} · {} · cache {} · {} · {} steps",
            cfg.policy,
            cfg.precision,
            if let Some(f) = cfg
                .policy
                .is_cached()
                .then_some(cfg.cache_fraction.as_ref())
                .flatten()
            {
                serde_json::to_string(f).unwrap_or_default()
            } else {
                "all rows".into()
            },
            cfg.backend,
            cfg.steps.unwrap_or(0)
        );
        self.runs.push(Run {
            name: format!("run {}", self.started),
            description,
            colour: self.colour(),
            history: RunHistory::default(),
            status: Status::Running,
            recording: None,
            cursor: None,
            link: Some(crate::worker::start(cfg, wake)),
            dropped_total: 0,
            texture: None,
            strip: None,
        });
    }

    /// Opens a recorded `--telemetry` file as a run to scrub through.
    pub fn open_recording(&mut self, path: &Path, wake: Waker) {
        if !self.make_room() {
            return;
        }
        let name = path
            .file_name()
            .map_or("recording".into(), |n| n.to_string_lossy().into_owned());
        self.runs.push(Run {
            name,
            description: format!("recording {}", path.display()),
            colour: self.colour(),
            history: RunHistory::default(),
            status: Status::Loading,
            recording: Some(path.to_path_buf()),
            cursor: None,
            link: Some(crate::replay::start(path.to_path_buf(), wake)),
            dropped_total: 0,
            texture: None,
            strip: None,
        });
    }

    /// Moves the frames that arrived into the runs' histories, within the budget; true when
    /// some are left for the next frame.
    pub fn pump(&mut self) -> bool {
        let started = Instant::now();
        let mut more = false;
        for run in &mut self.runs {
            let Some(link) = &run.link else { continue };
            run.dropped_total = link.dropped();
            let mut n = 0;
            while n < BUDGET && started.elapsed() < BUDGET_TIME {
                match link.frames.try_recv() {
                    Ok(f) => run.history.ingest(f),
                    Err(_) => break,
                }
                n += 1;
            }
            // A reader waits for the UI: keep draining while it reads.
            if !link.frames.is_empty() || matches!(run.status, Status::Loading) {
                more = true;
            }
            if !link.frames.is_empty() {
                continue;
            }
            if let Ok(outcome) = link.outcome.try_recv() {
                // Frames sent before the outcome are all in (the channel is empty).
                run.status = match outcome {
                    Outcome::Finished(s) => Status::Finished(s),
                    Outcome::Failed(e) => Status::Failed(e),
                    Outcome::Replayed(l) => {
                        run.cursor = Some(run.history.last_step() as f64);
                        Status::Replayed(l)
                    }
                };
                if let Some(mut l) = run.link.take() {
                    l.stop_and_join();
                }
            }
        }
        more
    }

    /// Stops every live run and waits for its thread (the app closing).
    pub fn stop_all(&mut self) {
        for run in &mut self.runs {
            if let Some(l) = run.link.as_mut() {
                l.stop_and_join();
            }
        }
    }

    /// Writes every run's histories as CSV files into `dir`; returns the files written.
    pub fn export_csv(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        self.runs
            .iter()
            .map(|r| {
                let file = dir.join(format!("{}.csv", crate::export::file_stem(&r.name)));
                crate::export::write_csv(&file, &r.history)?;
                Ok(file)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_persist_and_old_files_fill_in_defaults() {
        let mut s = Settings::default();
        s.form.batch_size = "512".into();
        s.view.axis = XAxis::Time;
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        // A file from an older version, with fewer keys, still loads.
        let old: Settings = serde_json::from_str(r#"{"form": {"lr": "0.1"}}"#).unwrap();
        assert_eq!(old.form.lr, "0.1");
        assert_eq!(old.form.steps, RunForm::default().steps);
    }
}
