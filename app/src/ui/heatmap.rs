//! The row-hotness view: per run, a heatmap of row buckets (by rank or by id) × time, coloured
//! by accesses per step on a log scale and drawn as one texture; a strip beside it marks the
//! share of each bucket's rows resident on the device; the hottest rows with their residency.

use crate::app::{Run, ViewOptions};
use crate::hotness::{HotColumn, HotOrder, RANK_BUCKETS, image};
use egui::{Color32, ColorImage, RichText, TextureOptions, Ui};
use egui_plot::{Plot, PlotImage, PlotPoint};
use rowflow::embedding::hotness::ID_BUCKETS;

/// Which rows bucket `b` holds, in words.
fn bucket_words(order: HotOrder, b: usize, rows: u64) -> String {
    match order {
        HotOrder::Rank => format!("ranks {}–{}", 1u64 << b, (2u64 << b) - 1),
        HotOrder::Id => {
            let lo = b as u64 * rows / ID_BUCKETS as u64;
            let hi = ((b as u64 + 1) * rows / ID_BUCKETS as u64).max(lo + 1) - 1;
            format!("rows {lo}–{hi}")
        }
    }
}

/// The share of each bucket's rows on the device at column `c` (`None`: not known).
fn cached_share(c: &HotColumn, order: HotOrder, rows: u64) -> Vec<Option<f32>> {
    match order {
        HotOrder::Id => (0..ID_BUCKETS)
            .map(|b| {
                let in_bucket = ((b as u64 + 1) * rows / ID_BUCKETS as u64)
                    .saturating_sub(b as u64 * rows / ID_BUCKETS as u64)
                    .max(1);
                Some(match &c.cached_by_id {
                    Some(v) => v.get(b).copied().unwrap_or(0) as f32 / in_bucket as f32,
                    None => 1.0,
                })
            })
            .collect(),
        HotOrder::Rank => (0..RANK_BUCKETS)
            .map(|j| {
                let ranks = (1usize << j)..(2usize << j);
                (ranks.end - 1 <= c.top.len()).then(|| {
                    let top = &c.top[ranks.start - 1..ranks.end - 1];
                    top.iter().filter(|r| r.cached).count() as f32 / top.len() as f32
                })
            })
            .collect(),
    }
}

fn strip(shares: &[Option<f32>]) -> ColorImage {
    let mut img = ColorImage::filled([1, shares.len()], Color32::from_gray(60));
    for (y, s) in shares.iter().enumerate() {
        if let Some(s) = s {
            img.pixels[y] = Color32::from_rgb(20, (40.0 + 200.0 * s) as u8, 60);
        }
    }
    img
}

/// The view for every run.
pub fn view(ui: &mut Ui, runs: &mut [Run], o: &mut ViewOptions) {
    ui.heading("Row hotness");
    let tables = runs
        .iter()
        .map(|r| r.history.hotness.len())
        .max()
        .unwrap_or(0);
    ui.label(
        RichText::new(format!(
            "accesses per step (log colour) · green strip: share of rows cached · {tables} tables"
        ))
        .small()
        .weak(),
    );
    ui.horizontal(|ui| {
        ui.radio_value(&mut o.hot_order, HotOrder::Rank, "by rank");
        ui.radio_value(&mut o.hot_order, HotOrder::Id, "by id");
        let mut t = o.hot_table.min(tables.saturating_sub(1));
        if tables > 0 {
            ui.add(egui::Slider::new(&mut t, 0..=tables - 1).text("table"));
        }
        o.hot_table = t;
    });
    for run in runs.iter_mut() {
        table(ui, run, o.hot_table, o.hot_order);
    }
}

fn table(ui: &mut Ui, run: &mut Run, t: usize, order: HotOrder) {
    let until = run.cursor.map_or(u64::MAX, |c| c as u64);
    let Some(hot) = run.history.hotness.get(t) else {
        ui.label(format!("{}: no hotness reported yet", run.name));
        return;
    };
    let cols = hot.until(until);
    let Some(last) = cols.last() else {
        ui.label(format!("{}: no hotness reported yet", run.name));
        return;
    };
    let key = (t, cols.len(), order, last.step);
    if run.texture.as_ref().is_none_or(|(_, k)| *k != key) {
        let Some((img, _, _)) = image(cols, order) else {
            ui.label(format!("{}: no accesses yet", run.name));
            return;
        };
        let name = format!("hotness {}", run.name);
        match &mut run.texture {
            Some((h, k)) => {
                h.set(img, TextureOptions::NEAREST);
                *k = key;
            }
            None => {
                let h = ui.ctx().load_texture(name, img, TextureOptions::NEAREST);
                run.texture = Some((h, key));
            }
        }
    }
    let rows = hot.rows;
    let shares = strip(&cached_share(last, order, rows));
    match &mut run.strip {
        Some(h) => h.set(shares, TextureOptions::NEAREST),
        None => {
            let name = format!("cached {}", run.name);
            run.strip = Some(ui.ctx().load_texture(name, shares, TextureOptions::NEAREST));
        }
    }
    let (Some((tex, _)), Some(strip_tex)) = (&run.texture, &run.strip) else {
        return;
    };
    let height = crate::hotness::values(last, order).len().max(1) as f64;
    let (x0, x1) = (cols[0].step as f64 - cols[0].steps as f64, last.step as f64);
    let width = (x1 - x0).max(1.0);
    ui.label(RichText::new(format!("{} · table {t}", run.name)).color(run.colour));
    Plot::new(("hotness", run.name.as_str()))
        .height(170.0)
        .x_axis_label("step")
        .y_axis_label(match order {
            HotOrder::Rank => "rank (hottest at top)",
            HotOrder::Id => "row id",
        })
        .show_grid(false)
        .y_axis_formatter(move |mark, _| {
            let b = -mark.value;
            if b < 0.0 || b.fract() != 0.0 {
                return String::new();
            }
            match order {
                HotOrder::Rank => format!("{}", 1u64 << (b as u32).min(63)),
                HotOrder::Id => format!("{}", b as u64 * rows / ID_BUCKETS as u64),
            }
        })
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .label_formatter(move |pos| {
            let p = match pos {
                egui_plot::HoverPosition::NearDataPoint { position, .. }
                | egui_plot::HoverPosition::Elsewhere { position } => *position,
            };
            let b = (-p.y).floor();
            if b < 0.0 || b >= height || p.x < x0 || p.x > x1 {
                return None;
            }
            let i = cols.partition_point(|c| (c.step as f64) < p.x);
            let c = cols.get(i.min(cols.len() - 1))?;
            let v = crate::hotness::values(c, order).get(b as usize)?;
            Some(format!(
                "step {}\n{}\n{v:.4} accesses per step",
                c.step,
                bucket_words(order, b as usize, rows)
            ))
        })
        .show(ui, |p| {
            p.add(PlotImage::new(
                "accesses",
                tex.id(),
                PlotPoint::new(x0 + width / 2.0, -height / 2.0),
                egui::vec2(width as f32, height as f32),
            ));
            let w = width * 0.03;
            p.add(PlotImage::new(
                "cached rows",
                strip_tex.id(),
                PlotPoint::new(x1 + 2.0 * w, -height / 2.0),
                egui::vec2(w as f32, height as f32),
            ));
        });
    egui::CollapsingHeader::new(format!("hottest rows · {} · table {t}", run.name))
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new(("top", run.name.as_str(), t))
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("rank");
                    ui.strong("row");
                    ui.strong("accesses");
                    ui.strong("where");
                    ui.end_row();
                    for (i, r) in last.top.iter().enumerate() {
                        ui.label((i + 1).to_string());
                        ui.label(r.row.to_string());
                        ui.label(r.count.to_string());
                        ui.label(if r.cached { "device" } else { "host" });
                        ui.end_row();
                    }
                });
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_named_in_rows_and_ranks() {
        assert_eq!(bucket_words(HotOrder::Rank, 4, 0), "ranks 16–31");
        assert_eq!(bucket_words(HotOrder::Id, 1, 6400), "rows 100–199");
    }
}
