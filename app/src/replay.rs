//! Replay of a recorded run: a `--telemetry` JSON-lines file from `rowflow train`, streamed
//! on a reader thread into the same frames a live run sends.
//!
//! The file is read a line at a time (a million-step recording never sits in memory whole);
//! a malformed line is reported as `PATH:LINE: what was wrong` and skipped, and the rest still
//! loads. Unlike a live run, the reader waits for the UI: nothing is dropped.

use crate::feed::{Accumulator, Frame};
pub use crate::link::Loaded;
use crate::link::{Link, Outcome, QUEUE, Waker, link};
use rowflow::telemetry::Snapshot;
use std::io::BufRead;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

/// Malformed lines reported per file (the rest are counted).
pub const MAX_REPORTED: usize = 20;

/// Reads `path`, calling `frame` with each snapshot's frame (all delivered) until it answers
/// `Break`. A file that cannot be opened or read is an error naming it.
pub fn read(
    path: &Path,
    frame: &mut dyn FnMut(Frame) -> ControlFlow<()>,
) -> Result<Loaded, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("{}: cannot open the recording: {e}", path.display()))?;
    let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut acc = Accumulator::default();
    let mut out = Loaded::default();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("{}:{}: cannot read: {e}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Snapshot>(&line) {
            Ok(s) => {
                out.steps += 1;
                let f = acc.push(&s);
                acc.delivered();
                if frame(f).is_break() {
                    break;
                }
            }
            Err(e) => {
                out.bad_lines += 1;
                if out.errors.len() < MAX_REPORTED {
                    out.errors
                        .push(format!("{}:{}: {e}", path.display(), i + 1));
                }
            }
        }
    }
    if out.steps == 0 && out.bad_lines == 0 {
        return Err(format!(
            "{}: empty: no telemetry lines (record one with `rowflow train --telemetry FILE.jsonl`)",
            path.display()
        ));
    }
    Ok(out)
}

/// Starts reading `path` on a thread; frames and the outcome arrive on the returned link.
pub fn start(path: PathBuf, wake: Waker) -> Link {
    // A reader may wait for the UI, so its queue is deep and it wakes the UI often.
    let (sink, mut link) = link(wake.clone(), 16 * QUEUE);
    let handle = std::thread::Builder::new()
        .name("rowflow-studio replay".into())
        .spawn(move || {
            let (frames, control) = (sink.frames.clone(), sink.control.clone());
            let mut sent = 0u64;
            let result = read(&path, &mut |f| {
                if control.is_stopped() || frames.send(f).is_err() {
                    return ControlFlow::Break(());
                }
                sent += 1;
                if sent % 256 == 0 {
                    wake();
                }
                ControlFlow::Continue(())
            });
            sink.finish(match result {
                Ok(l) => Outcome::Replayed(l),
                Err(e) => Outcome::Failed(e),
            });
        });
    link.attach(handle);
    link
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_malformed_line_is_reported_with_path_and_line_and_the_rest_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl");
        let mut f = std::fs::File::create(&path).unwrap();
        for step in 1..=3 {
            let s = crate::feed::tests::snapshot(step, 4, false);
            writeln!(f, "{}", serde_json::to_string(&s).unwrap()).unwrap();
            if step == 2 {
                writeln!(f, "{{\"schema\": 1, \"step\": \"two\"}}").unwrap();
            }
        }
        drop(f);
        let mut steps = Vec::new();
        let loaded = read(&path, &mut |fr| {
            steps.push(fr.step);
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!((loaded.steps, loaded.bad_lines), (3, 1));
        let want = format!("{}:3: ", path.display());
        assert!(loaded.errors[0].starts_with(&want), "{:?}", loaded.errors);
        let missing = read(&dir.path().join("none.jsonl"), &mut |_| {
            ControlFlow::Continue(())
        });
        assert!(
            missing
                .unwrap_err()
                .contains("none.jsonl: cannot open the recording")
        );
    }
}
