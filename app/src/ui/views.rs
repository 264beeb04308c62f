//! The live views: hit rate, transfer volume, pipeline lanes, memory, loss and evaluations.
//! Every run is drawn in its own colour in every view; per-table and planner series are
//! shades and dashes of it (click a legend entry to hide or show it).

use super::chart::{Chart, Trace, Unit, shade, show};
use crate::app::{Run, ViewOptions};
use crate::history::{Series, XAxis};
use egui::{Id, RichText, Ui};

/// Every x-axis moves with the others.
fn group() -> Id {
    Id::unique("rowflow-studio x")
}

fn chart<'a>(id: &'a str, y_label: &'a str, unit: Unit, log_y: bool, o: &ViewOptions) -> Chart<'a> {
    Chart {
        id,
        y_label,
        unit,
        log_y,
        height: 190.0,
        axis: o.axis,
        group: group(),
    }
}

fn trace<'a>(run: &Run, axis: XAxis, what: &str, s: &'a Series) -> Trace<'a> {
    Trace {
        name: format!("{} · {what}", run.name),
        colour: run.colour,
        series: s,
        until: run.until(axis),
        dashed: false,
        points: false,
    }
}

/// A view's heading and a one-line caption (what is drawn, how much).
fn heading(ui: &mut Ui, title: &str, caption: String) {
    ui.heading(title);
    ui.label(RichText::new(caption).small().weak());
}

/// Hit rate over steps: train stage and planner, overall and per table.
pub fn hit_rate(ui: &mut Ui, runs: &[Run], o: &mut ViewOptions) {
    let points: usize = runs.iter().map(|r| r.history.hit_rate.held()).sum();
    heading(
        ui,
        "Hit rate",
        format!("unique rows found on the device, per step · {points} points"),
    );
    ui.checkbox(&mut o.per_table, "per table");
    let mut traces = Vec::new();
    for r in runs {
        let h = &r.history;
        traces.push(trace(r, o.axis, "overall", &h.hit_rate));
        if !h.planner_hit_rate.is_empty() {
            traces.push(Trace {
                dashed: true,
                ..trace(r, o.axis, "planner overall", &h.planner_hit_rate)
            });
        }
        if !o.per_table {
            continue;
        }
        let n = h.table_hit_rate.len().max(1) as f32;
        for (t, s) in h.table_hit_rate.iter().enumerate() {
            traces.push(Trace {
                colour: shade(r.colour, t as f32 / n - 0.5),
                ..trace(r, o.axis, &format!("table {t}"), s)
            });
        }
        for (t, s) in h.table_planner_hit_rate.iter().enumerate() {
            traces.push(Trace {
                colour: shade(r.colour, t as f32 / n - 0.5),
                dashed: true,
                ..trace(r, o.axis, &format!("planner table {t}"), s)
            });
        }
    }
    show(
        ui,
        &chart("hit rate", "hit rate (%)", Unit::Fraction, false, o),
        traces,
    );
}

/// Bytes moved per step (H2D, D2H), in total, and per sample.
pub fn transfer(ui: &mut Ui, runs: &[Run], o: &mut ViewOptions) {
    let per_sample = runs
        .iter()
        .filter_map(|r| {
            let b = r.history.bytes_per_sample.last()?;
            Some(format!("{}: {}/sample", r.name, Unit::Bytes.format(b.last)))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    heading(
        ui,
        "Transfer volume",
        format!("embedding rows moved · {per_sample}"),
    );
    ui.checkbox(&mut o.log_transfer, "log scale (transfer)");
    let mut per_step = Vec::new();
    let mut total = Vec::new();
    for r in runs {
        let h = &r.history;
        per_step.push(trace(r, o.axis, "H2D per step", &h.h2d_per_step));
        per_step.push(Trace {
            dashed: true,
            ..trace(r, o.axis, "D2H per step", &h.d2h_per_step)
        });
        per_step.push(Trace {
            colour: shade(r.colour, 0.5),
            ..trace(r, o.axis, "bytes per sample", &h.bytes_per_sample)
        });
        total.push(trace(r, o.axis, "H2D total", &h.h2d_total));
        total.push(Trace {
            dashed: true,
            ..trace(r, o.axis, "D2H total", &h.d2h_total)
        });
    }
    let log = o.log_transfer;
    show(
        ui,
        &chart("transfer per step", "bytes per step", Unit::Bytes, log, o),
        per_step,
    );
    show(
        ui,
        &chart("transfer total", "bytes since start", Unit::Bytes, log, o),
        total,
    );
}

/// Each stage's busy and waiting time per step, one lane per stage; the device's idle share.
pub fn pipeline(ui: &mut Ui, runs: &[Run], o: &ViewOptions) {
    let idle = runs
        .iter()
        .filter_map(|r| {
            let b = r.history.device_idle.last()?;
            Some(format!(
                "{}: device idle {}",
                r.name,
                Unit::Fraction.format(b.last)
            ))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    heading(
        ui,
        "Pipeline",
        format!("busy (solid) and waiting (dashed) per step · {idle}"),
    );
    let mut stages: Vec<String> = Vec::new();
    for r in runs {
        for s in &r.history.stages {
            if !stages.contains(&s.stage) {
                stages.push(s.stage.clone());
            }
        }
    }
    for stage in &stages {
        let mut traces = Vec::new();
        for r in runs {
            if let Some(s) = r.history.stages.iter().find(|s| &s.stage == stage) {
                traces.push(trace(r, o.axis, &format!("{stage} busy"), &s.busy_ms));
                traces.push(Trace {
                    dashed: true,
                    ..trace(r, o.axis, &format!("{stage} waiting"), &s.waiting_ms)
                });
            }
        }
        let c = Chart {
            height: 90.0,
            ..chart(stage, "ms per step", Unit::Ms, false, o)
        };
        show(ui, &c, traces);
    }
    let traces = runs
        .iter()
        .map(|r| trace(r, o.axis, "device idle", &r.history.device_idle))
        .collect();
    let c = Chart {
        height: 110.0,
        ..chart("device idle", "device idle (%)", Unit::Fraction, false, o)
    };
    show(ui, &c, traces);
}

/// Host store, device cache and FP32-equivalent bytes; the memory reduction.
pub fn memory(ui: &mut Ui, runs: &[Run], o: &mut ViewOptions) {
    let reduction = runs
        .iter()
        .filter_map(|r| {
            let b = r.history.memory_reduction.last()?;
            Some(format!(
                "{}: {} less than FP32",
                r.name,
                Unit::Ratio.format(b.last)
            ))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    heading(ui, "Memory", format!("bytes held · {reduction}"));
    ui.checkbox(&mut o.log_memory, "log scale (memory)");
    let mut traces = Vec::new();
    for r in runs {
        let h = &r.history;
        traces.push(trace(r, o.axis, "host store", &h.host_store));
        traces.push(Trace {
            colour: shade(r.colour, 0.5),
            ..trace(r, o.axis, "device cache", &h.device_cache)
        });
        traces.push(Trace {
            dashed: true,
            ..trace(r, o.axis, "FP32 equivalent", &h.fp32_equivalent)
        });
    }
    let log = o.log_memory;
    show(ui, &chart("memory", "bytes", Unit::Bytes, log, o), traces);
}

/// Loss (raw and smoothed) and test AUC / log loss at each evaluation.
pub fn loss(ui: &mut Ui, runs: &[Run], o: &ViewOptions) {
    let last = runs
        .iter()
        .filter_map(|r| {
            let a = r.history.auc.last()?;
            Some(format!(
                "{}: test AUC {:.4} at step {:.0}",
                r.name, a.last, a.step
            ))
        })
        .collect::<Vec<_>>()
        .join(" · ");
    heading(
        ui,
        "Loss and evaluation",
        format!("training loss, test AUC and log loss · {last}"),
    );
    let mut losses = Vec::new();
    let mut evals = Vec::new();
    for r in runs {
        let h = &r.history;
        losses.push(Trace {
            colour: shade(r.colour, 0.6),
            ..trace(r, o.axis, "loss", &h.loss)
        });
        losses.push(trace(r, o.axis, "loss (smoothed)", &h.loss_smoothed));
        evals.push(Trace {
            points: true,
            ..trace(r, o.axis, "test AUC", &h.auc)
        });
        evals.push(Trace {
            points: true,
            colour: shade(r.colour, -0.5),
            ..trace(r, o.axis, "test log loss", &h.logloss)
        });
    }
    show(ui, &chart("loss", "loss", Unit::Plain, false, o), losses);
    show(
        ui,
        &chart("evaluation", "AUC, log loss", Unit::Plain, false, o),
        evals,
    );
}
