//! One chart: series of several runs drawn as lines (or points), decimated to the pixels
//! shown, with units on the axes and exact values on hover.
//!
//! Each frame draws only what is visible: the x-range is last frame's (or the data's while the
//! chart follows the run), each series is sliced to it and reduced to min/max per pixel column
//! ([`crate::history::decimate`]). egui_plot has no log axis: a log chart plots log10(y) and
//! labels its ticks with the real values.

use crate::history::{Series, XAxis, decimate};
use egui::{Color32, Id, Ui};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints, Points};

/// What a chart's y values measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// 0..1, shown as a percentage.
    Fraction,
    /// Bytes (B, KB, MB, GB: powers of 1000).
    Bytes,
    /// Milliseconds.
    Ms,
    /// A plain number.
    Plain,
    /// A ratio (×).
    Ratio,
}

impl Unit {
    /// `v` with its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Unit::Fraction => format!("{:.2}%", v * 100.0),
            Unit::Bytes => {
                let a = v.abs();
                let (d, u) = match a {
                    a if a >= 1e9 => (1e9, "GB"),
                    a if a >= 1e6 => (1e6, "MB"),
                    a if a >= 1e3 => (1e3, "KB"),
                    _ => (1.0, "B"),
                };
                format!("{:.3} {u}", v / d)
            }
            Unit::Ms if v.abs() >= 10.0 => format!("{v:.1} ms"),
            Unit::Ms => format!("{v:.3} ms"),
            Unit::Plain => format!("{v:.4}"),
            Unit::Ratio => format!("{v:.3}×"),
        }
    }
}

/// One series of one run in a chart.
pub struct Trace<'a> {
    /// Legend name (also the accessibility label of its legend entry).
    pub name: String,
    /// The run's colour.
    pub colour: Color32,
    /// The values.
    pub series: &'a Series,
    /// Drawn up to this x (a replay's cursor), or everywhere.
    pub until: f64,
    /// Dashed (planner, smoothed, …) rather than solid.
    pub dashed: bool,
    /// Points (evaluations) rather than a line.
    pub points: bool,
}

/// A chart's settings.
pub struct Chart<'a> {
    /// Unique id (also links the x-axes of charts sharing `group`).
    pub id: &'a str,
    /// y-axis label, unit included.
    pub y_label: &'a str,
    /// How y values are shown.
    pub unit: Unit,
    /// log10 y.
    pub log_y: bool,
    /// Height in points.
    pub height: f32,
    /// The x-axis.
    pub axis: XAxis,
    /// Charts whose x-axes move together.
    pub group: Id,
}

fn x_label(axis: XAxis) -> &'static str {
    match axis {
        XAxis::Step => "step",
        XAxis::Time => "time (s)",
    }
}

/// Draws `traces`; returns how many points were drawn (for tests and the status line).
pub fn show(ui: &mut Ui, c: &Chart<'_>, traces: Vec<Trace<'_>>) -> usize {
    let (unit, log_y, axis) = (c.unit, c.log_y, c.axis);
    let to_y = move |y: f64| if log_y { y.max(1e-12).log10() } else { y };
    let from_y = move |y: f64| if log_y { 10f64.powf(y) } else { y };
    let data_range = traces
        .iter()
        .filter_map(|t| {
            let first = t.series.buckets(axis, f64::NEG_INFINITY).first()?;
            let last = t.series.last()?;
            Some((axis.of(first), axis.of(last).min(t.until)))
        })
        .fold(None, |acc: Option<(f64, f64)>, (a, b)| {
            Some(acc.map_or((a, b), |(x, y)| (x.min(a), y.max(b))))
        });
    let mut drawn = 0;
    Plot::new(c.id)
        .height(c.height)
        .legend(Legend::default().follow_insertion_order(true))
        .x_axis_label(x_label(axis))
        .y_axis_label(c.y_label)
        .link_axis(c.group, [true, false])
        .link_cursor(c.group, [true, false])
        .y_axis_formatter(move |mark, _| unit.format(from_y(mark.value)))
        .label_formatter(move |pos| {
            let (name, p) = match pos {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
            };
            let x = match axis {
                XAxis::Step => format!("step {:.0}", p.x),
                XAxis::Time => format!("{:.2} s", p.x),
            };
            Some(format!("{name}\n{x}\n{}", unit.format(from_y(p.y))))
        })
        .show(ui, |plot_ui| {
            let Some((lo, hi)) = data_range else {
                return;
            };
            let b = plot_ui.plot_bounds();
            let (lo, hi) = if plot_ui.auto_bounds().x || b.width() <= 0.0 {
                (lo, hi)
            } else {
                (b.min()[0], b.max()[0])
            };
            let columns = plot_ui.response().rect.width().max(1.0) as usize;
            for t in traces {
                let s = t.series.buckets(axis, lo);
                let pts = decimate(s, axis, (lo, hi.min(t.until)), columns, to_y);
                let pts: Vec<[f64; 2]> = pts.into_iter().filter(|p| p[0] <= t.until).collect();
                drawn += pts.len();
                if t.points {
                    plot_ui.add(
                        Points::new(t.name, PlotPoints::new(pts))
                            .color(t.colour)
                            .radius(3.0),
                    );
                } else {
                    let style = if t.dashed {
                        LineStyle::dashed_loose()
                    } else {
                        LineStyle::Solid
                    };
                    plot_ui.add(
                        Line::new(t.name, PlotPoints::new(pts))
                            .color(t.colour)
                            .style(style),
                    );
                }
            }
        });
    drawn
}

/// A run's colour, lighter or darker by `shade` (−1 ..= 1) for its per-table series.
pub fn shade(c: Color32, shade: f32) -> Color32 {
    let f = |v: u8| {
        let v = v as f32;
        let t = if shade >= 0.0 { 255.0 } else { 0.0 };
        (v + (t - v) * shade.abs() * 0.6) as u8
    };
    Color32::from_rgb(f(c.r()), f(c.g()), f(c.b()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(Unit::Bytes.format(1_500_000.0), "1.500 MB");
        assert_eq!(Unit::Fraction.format(0.9731), "97.31%");
        assert_eq!(Unit::Ms.format(2.5), "2.500 ms");
        assert_eq!(Unit::Ratio.format(3.098), "3.098×");
    }
}
