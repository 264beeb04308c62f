//! The real UI driven by egui_kittest: fields, Start, live runs, replay, failures, and two small
//! image snapshots rendered with wgpu (lavapipe in CI).

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use rowflow::config::RunConfig;
use rowflow::device::{BackendKind, BackendReport};
use rowflow::telemetry::TelemetryWriter;
use rowflow_studio::app::Status;
use rowflow_studio::form::RunForm;
use rowflow_studio::{Settings, StudioApp};
use std::path::Path;
use std::time::{Duration, Instant};

/// The same backends on every machine, so pictures and labels do not depend on the host.
fn backends() -> Vec<BackendReport> {
    vec![
        BackendReport {
            backend: BackendKind::Cuda,
            available: false,
            auto_eligible: false,
            detail: "no CUDA driver".into(),
        },
        BackendReport {
            backend: BackendKind::Cpu,
            available: true,
            auto_eligible: true,
            detail: "the CPU".into(),
        },
    ]
}

/// A quick run of the synthetic generator on the CPU.
fn small_form() -> RunForm {
    RunForm {
        backend: rowflow::device::BackendChoice::Cpu,
        tables: "3".into(),
        table_rows: "4000".into(),
        train_samples: "20000".into(),
        dim: "8".into(),
        bottom_mlp: "16,8".into(),
        top_mlp: "16".into(),
        batch_size: "64".into(),
        steps: "60".into(),
        eval_every: "20".into(),
        hotness_every: "10".into(),
        cache_fraction: "0.2".into(),
        ..RunForm::default()
    }
}

fn harness(app: StudioApp, size: [f32; 2]) -> Harness<'static, StudioApp> {
    Harness::builder().with_size(size).build_ui_state(
        |ui, app: &mut StudioApp| {
            app.logic_pass(ui.ctx());
            app.draw(ui);
        },
        app,
    )
}

/// Steps the UI until every run has finished (or fails the test after a minute).
fn until_done(h: &mut Harness<'_, StudioApp>) {
    let t0 = Instant::now();
    while h.state().runs.iter().any(|r| r.is_live()) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "runs did not finish"
        );
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.run_steps(3);
}

#[test]
fn an_invalid_field_shows_rowflows_message_and_disables_start() {
    let settings = Settings::default();
    let mut h = harness(StudioApp::new(settings, backends()), [1600.0, 1200.0]);
    h.run();
    assert!(!h.get_by_label("Start").accesskit_node().is_disabled());
    let field = h.get_by_role_and_label(Role::TextInput, "Batch size");
    field.click();
    h.run();
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_role_and_label(Role::TextInput, "Batch size")
        .type_text("0");
    h.run();
    let want = RunConfig {
        batch_size: 0,
        ..RunConfig::default()
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(
        h.query_by_label(&want).is_some(),
        "the CLI's message: {want}"
    );
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());
    // The absent backend says why.
    assert!(h.query_by_label("cuda (absent): no CUDA driver").is_some());
}

#[test]
fn two_runs_train_side_by_side_and_fill_every_view() {
    let settings = Settings {
        form: RunForm {
            policy: rowflow::embedding::Policy::Lru,
            ..small_form()
        },
        ..Settings::default()
    };
    let mut h = harness(StudioApp::new(settings, backends()), [1600.0, 2600.0]);
    h.run();
    h.get_by_label("per table").click();
    h.get_by_label("Start").click();
    h.run_steps(2);
    // The second: lookahead at the same cache size, started while the first trains.
    h.state_mut().settings.form.policy = rowflow::embedding::Policy::Lookahead;
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert_eq!(h.state().runs.len(), 2);
    until_done(&mut h);
    for run in &h.state().runs {
        assert!(
            matches!(run.status, Status::Finished(_)),
            "{:?}",
            run.status
        );
        assert_eq!(run.history.last_step(), 60);
    }
    // Every view has both runs (legend entries are named after the series).
    for name in ["run 1", "run 2"] {
        for series in [
            "overall",
            "table 2",
            "H2D per step",
            "D2H total",
            "device busy",
            "loader waiting",
            "device idle",
            "host store",
            "FP32 equivalent",
            "loss (smoothed)",
            "test AUC",
        ] {
            let label = format!("{name} · {series}");
            assert!(
                h.query_by_label(&label).is_some(),
                "no legend entry {label}"
            );
        }
        assert!(
            h.query_by_label(&format!("hottest rows · {name} · table 0"))
                .is_some()
        );
    }
    // Only the lookahead run has a planner.
    assert!(h.query_by_label("run 2 · planner overall").is_some());
    assert!(h.query_by_label("run 1 · planner overall").is_none());
    let lookahead = &h.state().runs[1].history;
    assert!(
        lookahead.hit_rate.last().unwrap().last == 1.0,
        "lookahead's step always hits"
    );
    assert!(!lookahead.hotness.is_empty() && !lookahead.hotness[0].columns.is_empty());
    assert_eq!(
        h.query_all_by_label_contains("finished · 60 steps").count(),
        2
    );
}

fn record(path: &Path, steps: u64) {
    let cfg = small_form().to_config().unwrap();
    let cfg = RunConfig {
        steps: Some(steps),
        ..cfg
    };
    let mut w = TelemetryWriter::create(path).unwrap();
    rowflow_studio::worker::train_run(&cfg, &mut |s| {
        w.write(s).unwrap();
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    w.finish().unwrap();
}

#[test]
fn a_recording_replays_and_reports_its_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    record(&path, 30);
    let mut text = std::fs::read_to_string(&path).unwrap();
    let second = text.match_indices('\n').nth(1).unwrap().0;
    text.insert_str(second + 1, "{\"schema\": 1, \"step\": oops}\n");
    std::fs::write(&path, text).unwrap();

    let mut h = harness(
        StudioApp::new(Settings::default(), backends()),
        [1600.0, 2600.0],
    );
    let wake = rowflow_studio::ui::waker(&h.ctx);
    h.state_mut().open_path(&path, wake);
    until_done(&mut h);
    let run = &h.state().runs[0];
    assert!(
        matches!(run.status, Status::Replayed(_)),
        "{:?}",
        run.status
    );
    assert_eq!(
        run.history.last_step(),
        30,
        "the lines after the bad one load"
    );
    assert!(
        h.query_by_label_contains("replayed 30 steps · 1 malformed line")
            .is_some()
    );
    let line = format!("{}:3: ", path.display());
    assert!(
        h.query_by_label_contains(&line).is_some(),
        "error names {line}"
    );
    assert!(h.query_by_label("run.jsonl · overall").is_some());
    // Scrubbing back shows the run up to the cursor.
    h.state_mut().runs[0].cursor = Some(10.0);
    h.run_steps(2);
    let until = h.state().runs[0].until(rowflow_studio::history::XAxis::Step);
    assert_eq!(until, 10.0);

    // Export: CSV per run.
    let files = h.state().export_csv(dir.path()).unwrap();
    let csv = std::fs::read_to_string(&files[0]).unwrap();
    assert!(csv.lines().filter(|l| l.starts_with("loss,")).count() == 30);
}

#[test]
fn a_failing_run_shows_its_error_and_the_app_goes_on() {
    let settings = Settings {
        form: RunForm {
            data: rowflow_studio::form::DataKind::Criteo,
            criteo_path: "/nonexistent/criteo.tsv".into(),
            ..small_form()
        },
        ..Settings::default()
    };
    let mut h = harness(StudioApp::new(settings, backends()), [1600.0, 1200.0]);
    h.run();
    h.get_by_label("Start").click();
    h.run_steps(2);
    until_done(&mut h);
    assert!(matches!(h.state().runs[0].status, Status::Failed(_)));
    assert!(
        h.query_by_label_contains("failed: /nonexistent/criteo.tsv")
            .is_some(),
        "the failure is shown, naming the file: {:?}",
        h.state().runs[0].status
    );
    // Start still works afterwards.
    assert!(!h.get_by_label("Start").accesskit_node().is_disabled());
}

#[test]
fn the_run_panel_with_an_error_looks_right() {
    let mut form = RunForm {
        lr: "fast".into(),
        ..RunForm::default()
    };
    let mut h = Harness::builder()
        .with_size([330.0, 580.0])
        .wgpu()
        .build_ui(move |ui| {
            rowflow_studio::ui::run_panel::form(ui, &mut form, &backends());
        });
    h.run();
    h.snapshot("run_panel_invalid_lr");
}

#[test]
fn a_hotness_heatmap_looks_right() {
    // A scripted run: a hot set drifting across the ids, half of each range cached.
    let mut app = StudioApp::new(Settings::default(), backends());
    app.settings.view.hot_order = rowflow_studio::hotness::HotOrder::Id;
    let mut run = rowflow_studio::run::RunHistory::default();
    let mut acc = rowflow_studio::feed::Accumulator::default();
    let mut ids = vec![0u64; 64];
    for step in 1..=40u64 {
        for (b, c) in ids.iter_mut().enumerate() {
            let hot = (b as u64 + 64 - step % 64) % 64 < 6;
            *c += if hot { 400 } else { 3 + b as u64 % 5 };
        }
        let hotness = rowflow::telemetry::Hotness {
            table: 0,
            histogram: vec![4000, 300, 40, 6, 1],
            top: (0..10)
                .map(|i| rowflow::telemetry::HotRow {
                    row: i * 7,
                    count: 500 - 20 * i as u64,
                    cached: i % 3 != 0,
                })
                .collect(),
            rows: 6400,
            id_buckets: ids.clone(),
            cached_buckets: Some((0..64).map(|b| 50 * (b % 3)).collect()),
        };
        let snap = rowflow::telemetry::Snapshot {
            schema: rowflow::telemetry::SCHEMA_VERSION,
            step,
            samples: step * 64,
            elapsed_s: step as f64 * 0.01,
            step_s: 0.01,
            samples_per_sec: 6400.0,
            loss: 0.5,
            test_auc: None,
            test_logloss: None,
            tables: Vec::new(),
            total: Default::default(),
            cumulative: Default::default(),
            hotness: Some(vec![hotness]),
            stages: Vec::new(),
            device_idle_fraction: None,
            memory: Default::default(),
            link_gbps: None,
            window_shrinks: None,
            overlapped: false,
        };
        run.ingest(acc.push(&snap));
        acc.delivered();
    }
    let mut h = Harness::builder()
        .with_size([520.0, 300.0])
        .wgpu()
        .build_ui_state(
            move |ui, app: &mut StudioApp| {
                let mut view = app.settings.view.clone();
                rowflow_studio::ui::heatmap::view(ui, &mut app.runs, &mut view);
            },
            app,
        );
    h.state_mut()
        .runs
        .push(rowflow_studio::app::Run::scripted("scripted", run));
    h.run();
    h.snapshot("hotness_heatmap");
}

#[test]
fn export_png_writes_the_window_as_rendered() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("studio.png");
    let mut h = Harness::builder()
        .with_size([640.0, 480.0])
        .wgpu()
        .build_ui_state(
            |ui, app: &mut StudioApp| {
                app.logic_pass(ui.ctx());
                app.draw(ui);
            },
            StudioApp::new(Settings::default(), backends()),
        );
    h.run();
    let ctx = h.ctx.clone();
    h.state().export_png(&ctx, path.clone());
    h.run_steps(2);
    let _ = h.render();
    h.run_steps(2);
    let img = image::open(&path).expect("the PNG was written").to_rgba8();
    assert_eq!((img.width(), img.height()), (640, 480));
    let wrote = format!("wrote {}", path.display());
    assert!(
        h.state().notices.contains(&wrote),
        "{:?}",
        h.state().notices
    );
}
