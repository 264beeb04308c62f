//! Drawing: the top bar (files, exports, x-axis), the run panel on the left, the views in the
//! middle. Nothing here trains or reads files; it draws the state and turns clicks into calls
//! on [`StudioApp`].

pub mod chart;
pub mod heatmap;
pub mod run_panel;
pub mod views;

use crate::app::StudioApp;
use crate::history::XAxis;
use crate::link::Waker;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A waker for `ctx`: the UI repaints within `WAKE` of being asked, never once per frame.
pub fn waker(ctx: &egui::Context) -> Waker {
    let ctx = ctx.clone();
    Arc::new(move || ctx.request_repaint_after(crate::link::WAKE))
}

impl StudioApp {
    /// Moves arrived frames into histories and handles dropped files (eframe's `logic`).
    pub fn logic_pass(&mut self, ctx: &egui::Context) {
        if self.pump() {
            // Frames are waiting: come back soon, without spinning.
            ctx.request_repaint_after(Duration::from_millis(16));
        }
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for path in dropped {
            self.open_path(&path, waker(ctx));
        }
        if let Ok(mut inbox) = self.inbox.lock() {
            self.notices.append(&mut inbox);
        }
    }

    /// A file given on the command line or dropped: a recording (`.jsonl`, `.json`, `.gz`
    /// holding JSON lines) is replayed; anything else becomes the Criteo data file.
    pub fn open_path(&mut self, path: &std::path::Path, wake: Waker) {
        let name = path.to_string_lossy();
        if name.ends_with(".jsonl") || name.ends_with(".json") || name.ends_with(".jsonl.gz") {
            self.open_recording(path, wake);
        } else {
            self.settings.form.data = crate::form::DataKind::Criteo;
            self.settings.form.criteo_path = path.display().to_string();
        }
    }

    /// Writes a screenshot of the window to `path` once the next frame is rendered.
    pub fn export_png(&self, ctx: &egui::Context, path: PathBuf) {
        let inbox = self.inbox.clone();
        ctx.request_screenshot(move |img| {
            let msg = match crate::export::write_png(&path, &img) {
                Ok(()) => format!("wrote {}", path.display()),
                Err(e) => e,
            };
            if let Ok(mut i) = inbox.lock() {
                i.push(msg);
            }
        });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        ui.horizontal_wrapped(|ui| {
            ui.strong("rowflow-studio");
            ui.separator();
            if ui.button("Open recording…").clicked()
                && let Some(p) = rfd::FileDialog::new()
                    .add_filter("telemetry", &["jsonl", "json", "gz"])
                    .pick_file()
            {
                self.open_recording(&p, waker(&ctx));
            }
            if ui.button("Export PNG…").clicked()
                && let Some(p) = rfd::FileDialog::new()
                    .set_file_name("rowflow-studio.png")
                    .save_file()
            {
                self.export_png(&ctx, p);
            }
            if ui.button("Export CSV…").clicked()
                && let Some(dir) = rfd::FileDialog::new().pick_folder()
            {
                let msg = match self.export_csv(&dir) {
                    Ok(files) => format!("wrote {} CSV files into {}", files.len(), dir.display()),
                    Err(e) => format!("{}: cannot write CSV: {e}", dir.display()),
                };
                self.notices.push(msg);
            }
            ui.separator();
            ui.label("x-axis");
            ui.radio_value(&mut self.settings.view.axis, XAxis::Step, "step");
            ui.radio_value(&mut self.settings.view.axis, XAxis::Time, "wall time");
            let dropped: u64 = self.runs.iter().map(|r| r.dropped()).sum();
            ui.separator();
            ui.label(format!("dropped frames: {dropped}"));
        });
        let mut clear = false;
        for n in &self.notices {
            ui.horizontal(|ui| {
                ui.label(n);
                clear |= ui.small_button("dismiss").clicked();
            });
        }
        if clear {
            self.notices.clear();
        }
    }

    /// Draws the whole window.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let wake = waker(ui.ctx());
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        egui::Panel::left("run panel")
            .resizable(true)
            .default_size(290.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    run_panel::panel(ui, self, wake);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                let view = &mut self.settings.view;
                ui.columns(2, |cols| {
                    views::hit_rate(&mut cols[0], &self.runs, view);
                    views::transfer(&mut cols[1], &self.runs, view);
                });
                ui.separator();
                ui.columns(2, |cols| {
                    heatmap::view(&mut cols[0], &mut self.runs, view);
                    views::pipeline(&mut cols[1], &self.runs, view);
                });
                ui.separator();
                ui.columns(2, |cols| {
                    views::memory(&mut cols[0], &self.runs, view);
                    views::loss(&mut cols[1], &self.runs, view);
                });
            });
        });
    }
}

impl eframe::App for StudioApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic_pass(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }

    fn on_exit(&mut self) {
        self.stop_all();
    }
}
