//! Exports: a run's histories as CSV, the window as PNG.

use crate::history::XAxis;
use crate::run::RunHistory;
use std::io::Write;
use std::path::Path;

/// A file-name-safe version of a run's name.
pub fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes every series of `h`, one row per point held (full resolution where the recent window
/// covers the run, else the compacted buckets with their min and max):
/// `series,unit,step,time_s,value,min,max`.
pub fn write_csv(path: &Path, h: &RunHistory) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "series,unit,step,time_s,value,min,max")?;
    for (name, unit, s) in h.named_series() {
        for b in s.buckets(XAxis::Step, f64::NEG_INFINITY) {
            writeln!(
                out,
                "{name},{unit},{},{},{},{},{}",
                b.step, b.time, b.last, b.min, b.max
            )?;
        }
    }
    for (t, table) in h.hotness.iter().enumerate() {
        for c in &table.columns {
            for (i, v) in c.by_id.iter().enumerate() {
                writeln!(
                    out,
                    "table{t}_id_range{i}_accesses_per_step,1/step,{},{},{v},{v},{v}",
                    c.step, c.time
                )?;
            }
        }
    }
    out.flush()
}

/// Writes an RGBA image (a screenshot of the window) as PNG.
pub fn write_png(path: &Path, image: &egui::ColorImage) -> Result<(), String> {
    let [w, h] = image.size;
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    image::save_buffer(path, &bytes, w as u32, h as u32, image::ColorType::Rgba8)
        .map_err(|e| format!("{}: cannot write the PNG: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_holds_every_series_and_png_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut acc = crate::feed::Accumulator::default();
        let mut h = RunHistory::default();
        for step in 1..=5 {
            h.ingest(acc.push(&crate::feed::tests::snapshot(step, 4, step == 5)));
            acc.delivered();
        }
        let csv = dir.path().join("run.csv");
        write_csv(&csv, &h).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        assert!(text.starts_with("series,unit,step,time_s,value,min,max\n"));
        assert_eq!(
            text.lines().filter(|l| l.starts_with("hit_rate,")).count(),
            5
        );
        assert!(text.contains("\ntest_auc,,5,0.05,0.7,0.7,0.7\n"), "{text}");

        let img = egui::ColorImage::filled([3, 2], egui::Color32::RED);
        let png = dir.path().join("shot.png");
        write_png(&png, &img).unwrap();
        let back = image::open(&png).unwrap().to_rgba8();
        assert_eq!((back.width(), back.height()), (3, 2));
        assert_eq!(back.get_pixel(1, 1).0, [255, 0, 0, 255]);
        assert_eq!(file_stem("run 1 · x"), "run_1___x");
    }
}
