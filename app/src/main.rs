//! `rowflow-studio [FILE.jsonl …]`: the desktop app (recordings given on the command line are
//! replayed side by side); `rowflow-studio bench`: the UI's cost to training, measured headless.

use anyhow::Result;
use clap::{Parser, Subcommand};
use rowflow::device::BackendChoice;
use rowflow_studio::bench::{BenchOptions, run as bench};
use rowflow_studio::{Settings, StudioApp};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rowflow-studio",
    version,
    about = "Watch rowflow train: the embedding cache at work, live"
)]
struct Args {
    /// Recordings to replay side by side (`rowflow train --telemetry FILE.jsonl`).
    files: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Samples/s of one run with no UI, with the UI attached and with a slow UI; then the
    /// memory of a long replay.
    Bench {
        /// Steps of the timed run (the app's default run otherwise).
        #[arg(long, default_value_t = 2000)]
        steps: u64,
        /// Repetitions of each mode (alternating).
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// The slow UI's pause after each frame, in milliseconds.
        #[arg(long, default_value_t = 2000)]
        slow_ms: u64,
        /// Steps of the replay whose memory is measured (0: skip).
        #[arg(long, default_value_t = 1_000_000)]
        replay_steps: u64,
        /// Backend of the timed run.
        #[arg(long, default_value = "cpu")]
        backend: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::Bench {
            steps,
            reps,
            slow_ms,
            replay_steps,
            backend,
            json,
        }) => {
            let mut config = Settings::default()
                .form
                .to_config()
                .map_err(|e| anyhow::anyhow!(e.message))?;
            config.steps = Some(steps);
            config.backend = backend.parse::<BackendChoice>().map_err(|_| {
                anyhow::anyhow!("invalid --backend {backend}: expected auto, cpu, wgpu or cuda")
            })?;
            let o = BenchOptions {
                config,
                reps,
                slow: Duration::from_millis(slow_ms),
                replay_steps,
            };
            let (rows, replay) = bench(&o)?;
            for r in &rows {
                if json {
                    println!("{}", serde_json::to_string(r)?);
                } else {
                    println!(
                        "{:8} {:>10.0} samples/s  ×{:.3} of no UI  ({} UI frames, {} dropped)",
                        r.mode, r.samples_per_sec, r.ratio_to_none, r.ui_frames, r.dropped_frames
                    );
                }
            }
            if let Some(r) = replay {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "replay   {} steps in {:.1} s: histories {} KB after a tenth, {} KB at the end",
                        r.steps,
                        r.seconds,
                        r.history_bytes_at_tenth / 1000,
                        r.history_bytes / 1000
                    );
                }
            }
            Ok(())
        }
        None => app(args.files),
    }
}

fn app(files: Vec<PathBuf>) -> Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("rowflow-studio")
            .with_inner_size([1600.0, 1000.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "rowflow-studio",
        options,
        Box::new(move |cc| {
            let settings: Settings = cc
                .storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default();
            let mut app = StudioApp::new(settings, rowflow::device::probe_backends());
            for f in &files {
                app.open_path(f, rowflow_studio::ui::waker(&cc.egui_ctx));
            }
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
