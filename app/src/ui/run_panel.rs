//! The run panel: what to train (backend, data, model, batch, learning rate, precision, cache,
//! policy, lookahead, rounding, steps), Start, and the runs being watched with Pause / Stop.

use crate::app::{Run, Status, StudioApp};
use crate::form::{DataKind, Field, FieldError, RunForm};
use crate::link::Waker;
use egui::{Color32, RichText, TextEdit, Ui};
use rowflow::device::{BackendChoice, BackendKind, BackendReport};
use std::str::FromStr;
use strum::VariantNames;

/// The colour of error text.
pub const ERROR: Color32 = Color32::from_rgb(230, 80, 70);

/// A labelled text field, with the error for `field` under it.
fn text(ui: &mut Ui, label: &str, value: &mut String, field: Field, err: &Option<FieldError>) {
    ui.horizontal(|ui| {
        let l = ui.label(label);
        ui.add(TextEdit::singleline(value).desired_width(110.0))
            .labelled_by(l.id);
    });
    if let Some(e) = err.as_ref().filter(|e| e.field == field) {
        ui.label(RichText::new(&e.message).color(ERROR).small());
    }
}

/// A combo box over a rowflow value enum, by its spellings.
fn choice<T>(ui: &mut Ui, label: &str, value: &mut T)
where
    T: VariantNames + FromStr + Copy + PartialEq + std::fmt::Display,
{
    egui::ComboBox::from_label(label)
        .selected_text(value.to_string())
        .show_ui(ui, |ui| {
            for name in T::VARIANTS {
                if let Ok(v) = T::from_str(name) {
                    ui.selectable_value(value, v, *name);
                }
            }
        });
}

fn backend(ui: &mut Ui, value: &mut BackendChoice, reports: &[BackendReport]) {
    let present = |k: BackendKind| reports.iter().any(|r| r.backend == k && r.available);
    egui::ComboBox::from_label("Backend")
        .selected_text(value.to_string())
        .show_ui(ui, |ui| {
            ui.selectable_value(value, BackendChoice::Auto, "auto");
            for (k, c) in [
                (BackendKind::Cpu, BackendChoice::Cpu),
                (BackendKind::Wgpu, BackendChoice::Wgpu),
                (BackendKind::Cuda, BackendChoice::Cuda),
            ] {
                ui.add_enabled_ui(present(k), |ui| {
                    ui.selectable_value(value, c, k.to_string());
                });
            }
        });
    for r in reports.iter().filter(|r| !r.available || !r.auto_eligible) {
        let status = if r.available { "" } else { " (absent)" };
        ui.label(
            RichText::new(format!("{}{status}: {}", r.backend, r.detail))
                .small()
                .weak(),
        );
    }
}

/// Draws the panel; returns true when Start was clicked.
pub fn form(ui: &mut Ui, f: &mut RunForm, reports: &[BackendReport]) -> bool {
    let err = f.to_config().err();
    backend(ui, &mut f.backend, reports);
    ui.horizontal(|ui| {
        ui.label("Data");
        ui.radio_value(&mut f.data, DataKind::Synthetic, "synthetic");
        ui.radio_value(&mut f.data, DataKind::Criteo, "Criteo file");
    });
    match f.data {
        DataKind::Synthetic => {
            text(ui, "Tables", &mut f.tables, Field::Tables, &err);
            text(
                ui,
                "Rows per table",
                &mut f.table_rows,
                Field::TableRows,
                &err,
            );
            text(ui, "Pooling factor", &mut f.pooling, Field::Pooling, &err);
            text(ui, "Zipf exponent", &mut f.zipf_alpha, Field::Zipf, &err);
            text(
                ui,
                "Training samples",
                &mut f.train_samples,
                Field::TrainSamples,
                &err,
            );
        }
        DataKind::Criteo => {
            text(
                ui,
                "Criteo file",
                &mut f.criteo_path,
                Field::CriteoPath,
                &err,
            );
            if ui.button("Browse…").clicked()
                && let Some(p) = rfd::FileDialog::new().pick_file()
            {
                f.criteo_path = p.display().to_string();
            }
            ui.label(RichText::new("or drop a file on the window").small().weak());
            text(
                ui,
                "Rows per table",
                &mut f.table_rows,
                Field::TableRows,
                &err,
            );
        }
    }
    ui.separator();
    text(ui, "Embedding dim", &mut f.dim, Field::Dim, &err);
    text(ui, "Bottom MLP", &mut f.bottom_mlp, Field::Mlp, &err);
    text(ui, "Top MLP", &mut f.top_mlp, Field::Mlp, &err);
    text(ui, "Batch size", &mut f.batch_size, Field::BatchSize, &err);
    text(ui, "Learning rate", &mut f.lr, Field::Lr, &err);
    ui.separator();
    choice(ui, "Policy", &mut f.policy);
    choice(ui, "Precision", &mut f.precision);
    text(
        ui,
        "Cache fraction",
        &mut f.cache_fraction,
        Field::Cache,
        &err,
    );
    text(ui, "Lookahead W", &mut f.lookahead, Field::Lookahead, &err);
    choice(ui, "Rounding", &mut f.rounding);
    text(ui, "Steps", &mut f.steps, Field::Steps, &err);
    text(
        ui,
        "Evaluate every",
        &mut f.eval_every,
        Field::EvalEvery,
        &err,
    );
    text(
        ui,
        "Hotness every",
        &mut f.hotness_every,
        Field::HotnessEvery,
        &err,
    );
    text(ui, "Seed", &mut f.seed, Field::Seed, &err);
    if let Some(e) = err.as_ref().filter(|e| e.field == Field::Other) {
        ui.label(RichText::new(&e.message).color(ERROR).small());
    }
    ui.add_space(6.0);
    ui.add_enabled(err.is_none(), egui::Button::new("Start"))
        .on_disabled_hover_text("fix the settings marked in red first")
        .clicked()
}

fn status_line(run: &Run) -> (String, Option<Color32>) {
    let h = &run.history;
    let step = h.last_step();
    let sps = h.last_frame().map_or(0.0, |f| f.samples_per_sec);
    match &run.status {
        Status::Running => {
            let paused = run.link.as_ref().is_some_and(|l| l.control.is_paused());
            let what = if paused { "paused" } else { "running" };
            (format!("{what} · step {step} · {sps:.0} samples/s"), None)
        }
        Status::Loading => (format!("loading · step {step}"), None),
        Status::Finished(s) => {
            let auc = s.test_auc.map_or("n/a".into(), |a| format!("{a:.4}"));
            (
                format!(
                    "finished · {} steps · {:.0} samples/s · test AUC {auc}",
                    s.steps, s.samples_per_sec
                ),
                None,
            )
        }
        Status::Replayed(l) => {
            let bad = match l.bad_lines {
                0 => String::new(),
                1 => " · 1 malformed line".into(),
                n => format!(" · {n} malformed lines"),
            };
            (format!("replayed {} steps{bad}", l.steps), None)
        }
        Status::Failed(e) => (format!("failed: {e}"), Some(ERROR)),
    }
}

/// The runs, each with its colour, status and controls.
pub fn runs(ui: &mut Ui, app: &mut StudioApp) {
    let mut remove = None;
    for (i, run) in app.runs.iter_mut().enumerate() {
        ui.horizontal(|ui| {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(12.0, 12.0), egui::Sense::hover());
            ui.painter().rect_filled(rect, 2.0, run.colour);
            ui.strong(&run.name);
        });
        ui.label(RichText::new(&run.description).small().weak());
        let (line, colour) = status_line(run);
        match colour {
            Some(c) => ui.label(RichText::new(line).color(c)),
            None => ui.label(line),
        };
        if let Status::Replayed(l) = &run.status {
            for e in &l.errors {
                ui.label(RichText::new(e).color(ERROR).small());
            }
        }
        if run.dropped() > 0 {
            ui.label(
                RichText::new(format!(
                    "{} frames dropped (the UI fell behind)",
                    run.dropped()
                ))
                .small()
                .weak(),
            );
        }
        ui.horizontal(|ui| {
            if let (Status::Running, Some(link)) = (&run.status, &run.link) {
                let paused = link.control.is_paused();
                if ui.button(if paused { "Resume" } else { "Pause" }).clicked() {
                    link.control.set_paused(!paused);
                }
                if ui.button("Stop").clicked() {
                    link.control.stop();
                }
            }
            if !run.is_live() && ui.button("Remove").clicked() {
                remove = Some(i);
            }
        });
        if let (Some(cursor), Status::Replayed(_)) = (run.cursor.as_mut(), &run.status) {
            let last = run.history.last_step().max(1) as f64;
            ui.add(egui::Slider::new(cursor, 1.0..=last).text("step").integer());
        }
        ui.separator();
    }
    if let Some(i) = remove {
        app.runs.remove(i);
    }
}

/// The whole left panel.
pub fn panel(ui: &mut Ui, app: &mut StudioApp, wake: Waker) {
    ui.heading("Run");
    let reports = app.backends.clone();
    if form(ui, &mut app.settings.form, &reports) {
        app.start_run(wake);
    }
    ui.separator();
    ui.heading("Runs");
    if app.runs.is_empty() {
        ui.label(
            RichText::new(
                "Start a run, or open a recording (Open recording… above, or drop a .jsonl file).",
            )
            .weak(),
        );
    }
    runs(ui, app);
}
