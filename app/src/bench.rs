//! `rowflow-studio bench`: does watching slow training down? The same run is timed with no UI,
//! with the app's whole UI attached (frames drained, every view laid out and tessellated each
//! time the worker wakes it, as eframe would, without the GPU's part) and with a deliberately
//! slow UI (a pause after every frame, so the queue fills and frames are dropped). Modes
//! alternate within each repetition, each repetition starting with the next mode; samples/s is rowflow's own (training time only). Then a
//! long replay checks that the histories stay bounded.

use crate::app::{Settings, Status, StudioApp};
use crate::feed::Accumulator;
use crate::link::Waker;
use crate::run::RunHistory;
use crate::worker::train_run;
use rowflow::config::RunConfig;
use rowflow::telemetry::Snapshot;
use serde::Serialize;
use std::ops::ControlFlow;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// The run timed in every mode.
    pub config: RunConfig,
    /// Repetitions of each mode.
    pub reps: usize,
    /// The slow UI's pause after each frame.
    pub slow: Duration,
    /// Steps of the replay whose memory is measured (0: none).
    pub replay_steps: u64,
}

/// One mode's result.
#[derive(Clone, Debug, Serialize)]
pub struct ModeRow {
    /// `none`, `ui` or `slow-ui`.
    pub mode: &'static str,
    /// Median samples/s over the repetitions.
    pub samples_per_sec: f64,
    /// Median over repetitions of this mode's samples/s over `none`'s in the same repetition.
    pub ratio_to_none: f64,
    /// Every repetition's samples/s.
    pub runs: Vec<f64>,
    /// UI frames drawn (median).
    pub ui_frames: u64,
    /// Frames the worker dropped (median).
    pub dropped_frames: u64,
}

/// The replay's memory.
#[derive(Clone, Debug, Serialize)]
pub struct ReplayRow {
    /// `replay`.
    pub mode: &'static str,
    /// Steps replayed.
    pub steps: u64,
    /// History bytes after a tenth of them.
    pub history_bytes_at_tenth: usize,
    /// History bytes at the end.
    pub history_bytes: usize,
    /// Seconds to ingest them all.
    pub seconds: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `cfg` with the UI attached; `slow` pauses after each frame. Returns samples/s, frames
/// drawn and frames dropped.
fn with_ui(cfg: &RunConfig, slow: Option<Duration>) -> anyhow::Result<(f64, u64, u64)> {
    let settings = Settings::default();
    let mut app = StudioApp::new(settings, Vec::new());
    let ctx = egui::Context::default();
    // The worker's wake-ups, as eframe turns `request_repaint_after` into frames.
    let woken = Arc::new((Mutex::new(false), Condvar::new()));
    let w = woken.clone();
    let wake: Waker = Arc::new(move || {
        *w.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
        w.1.notify_one();
    });
    app.start_with(cfg.clone(), wake);
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1600.0, 1000.0),
        )),
        ..Default::default()
    };
    let mut frames = 0;
    loop {
        {
            let (lock, cv) = &*woken;
            let mut flag = lock.lock().unwrap_or_else(|e| e.into_inner());
            while !*flag {
                flag = cv
                    .wait_timeout(flag, Duration::from_millis(200))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                if app.runs[0]
                    .link
                    .as_ref()
                    .is_some_and(|l| !l.outcome.is_empty())
                {
                    break;
                }
            }
            *flag = false;
        }
        let out = ctx.run_ui(input(), |ui| {
            app.logic_pass(ui.ctx());
            app.draw(ui);
        });
        let _ = ctx.tessellate(out.shapes, out.pixels_per_point);
        frames += 1;
        if let Some(d) = slow {
            std::thread::sleep(d);
        }
        if !app.runs[0].is_live() {
            break;
        }
    }
    let dropped = app.runs[0].dropped_total;
    match &app.runs[0].status {
        Status::Finished(s) => Ok((s.samples_per_sec, frames, dropped)),
        Status::Failed(e) => anyhow::bail!("{e}"),
        _ => anyhow::bail!("the run ended without an outcome"),
    }
}

/// Times every mode; returns one row per mode.
pub fn run(o: &BenchOptions) -> anyhow::Result<(Vec<ModeRow>, Option<ReplayRow>)> {
    let modes: [(&str, Option<Option<Duration>>); 3] = [
        ("none", None),
        ("ui", Some(None)),
        ("slow-ui", Some(Some(o.slow))),
    ];
    let mut results: Vec<Vec<(f64, u64, u64)>> = vec![Vec::new(); 3];
    let mut last = None;
    for rep in 0..o.reps.max(1) {
        // Each repetition starts with the next mode, so no mode always runs first.
        for k in 0..modes.len() {
            let i = (rep + k) % modes.len();
            let r = match modes[i].1 {
                None => {
                    // On its own thread, as the UI modes' worker is.
                    let cfg = o.config.clone();
                    let (s, snapshot) = std::thread::spawn(move || {
                        let mut last = None;
                        let mut keep = |s: &Snapshot| {
                            if s.hotness.is_some() {
                                last = Some(s.clone());
                            }
                            ControlFlow::Continue(())
                        };
                        train_run(&cfg, &mut keep).map(|s| (s, last))
                    })
                    .join()
                    .map_err(|_| anyhow::anyhow!("the timed run panicked"))??;
                    last = snapshot.or(last);
                    (s.samples_per_sec, 0, 0)
                }
                Some(slow) => with_ui(&o.config, slow)?,
            };
            results[i].push(r);
        }
    }
    let base: Vec<f64> = results[0].iter().map(|r| r.0).collect();
    let rows = modes
        .iter()
        .zip(&results)
        .map(|((mode, _), r)| ModeRow {
            mode,
            samples_per_sec: median(r.iter().map(|x| x.0).collect()),
            ratio_to_none: median(r.iter().zip(&base).map(|(x, b)| x.0 / b).collect()),
            runs: r.iter().map(|x| x.0).collect(),
            ui_frames: median(r.iter().map(|x| x.1 as f64).collect()) as u64,
            dropped_frames: median(r.iter().map(|x| x.2 as f64).collect()) as u64,
        })
        .collect();
    let replay = match (o.replay_steps, last) {
        (0, _) | (_, None) => None,
        (n, Some(template)) => Some(replay(n, template)),
    };
    Ok((rows, replay))
}

/// Replays `steps` snapshots shaped like `template` (a real run's last one, hotness included
/// every 100 steps) through the same path a recording takes.
fn replay(steps: u64, mut s: Snapshot) -> ReplayRow {
    let mut acc = Accumulator::default();
    let mut h = RunHistory::default();
    let hot = s.hotness.take();
    let t0 = Instant::now();
    let mut at_tenth = 0;
    for step in 1..=steps {
        s.step = step;
        s.samples = step * 256;
        s.elapsed_s = step as f64 * 1e-3;
        s.loss = 0.5 + 0.1 * ((step % 97) as f64 / 97.0);
        s.hotness = (step % 100 == 0).then(|| hot.clone()).flatten();
        h.ingest(acc.push(&s));
        acc.delivered();
        if step == steps / 10 {
            at_tenth = h.heap_bytes();
        }
    }
    ReplayRow {
        mode: "replay",
        steps,
        history_bytes_at_tenth: at_tenth,
        history_bytes: h.heap_bytes(),
        seconds: t0.elapsed().as_secs_f64(),
    }
}
