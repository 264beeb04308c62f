//! The one-way link from a thread that makes frames (training, a recording's reader) to the UI,
//! and the controls that travel back.
//!
//! A training worker never waits for the UI: each step's [`Frame`] goes over a bounded channel
//! with `try_send`; a full channel drops the frame and counts it ([`Link::dropped`]), which
//! loses resolution only (frames carry running totals, see [`crate::feed`]). The UI is woken
//! with a repaint request at most every `WAKE` (never one per frame). Pause and Stop reach the
//! worker through [`Control`], checked after every step; the outcome travels on its own
//! channel, so it is never dropped.

use crate::feed::{Accumulator, Frame};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use rowflow::telemetry::Snapshot;
use rowflow::train::TrainSummary;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a replay read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// Snapshots read.
    pub steps: u64,
    /// Malformed lines: the first few as `PATH:LINE: …`.
    pub errors: Vec<String>,
    /// Malformed lines in all.
    pub bad_lines: u64,
}

/// Frames queued between a worker and the UI.
pub const QUEUE: usize = 256;
/// Shortest time between two repaint requests from a worker.
pub const WAKE: Duration = Duration::from_millis(100);

/// Asks the UI to repaint soon (egui: `request_repaint_after`); called from the worker.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Pause and Stop, set by the UI, read by the worker after each step.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    paused: Mutex<bool>,
    resumed: Condvar,
}

impl Control {
    /// Ends the run after the current step (a paused run too).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.resumed.notify_all();
    }

    /// Pauses or resumes after the current step.
    pub fn set_paused(&self, paused: bool) {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = paused;
        self.resumed.notify_all();
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Whether a pause was asked for.
    pub fn is_paused(&self) -> bool {
        *self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks while paused; `Break` once a stop was asked for.
    fn checkpoint(&self) -> ControlFlow<()> {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        while *paused && !self.stop.load(Ordering::Relaxed) {
            paused = self
                .resumed
                .wait_timeout(paused, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if self.stop.load(Ordering::Relaxed) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// It trained every step, or was stopped (the summary counts the steps that ran).
    Finished(Box<TrainSummary>),
    /// It failed: the error and its causes, as the CLI prints them.
    Failed(String),
    /// A recording was read to its end.
    Replayed(Loaded),
}

/// The worker's end: frames out, control in.
pub struct Sink {
    pub(crate) frames: Sender<Frame>,
    outcome: Sender<Outcome>,
    dropped: Arc<AtomicU64>,
    pub(crate) control: Arc<Control>,
    wake: Waker,
    acc: Accumulator,
    last_wake: Option<Instant>,
}

impl Sink {
    /// Sends one step's frame without waiting, wakes the UI now and then, and says whether to
    /// go on (waiting here while paused).
    pub fn step(&mut self, s: &Snapshot) -> ControlFlow<()> {
        match self.frames.try_send(self.acc.push(s)) {
            Ok(()) => self.acc.delivered(),
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The UI let go of the run: nobody is watching, so stop.
            Err(TrySendError::Disconnected(_)) => return ControlFlow::Break(()),
        }
        if self.last_wake.is_none_or(|t| t.elapsed() >= WAKE) {
            (self.wake)();
            self.last_wake = Some(Instant::now());
        }
        self.control.checkpoint()
    }

    /// Reports how the run ended and wakes the UI.
    pub fn finish(self, outcome: Outcome) {
        let _ = self.outcome.send(outcome);
        (self.wake)();
    }
}

/// The UI's end of a run: frames in, control out.
pub struct Link {
    /// Frames from the worker.
    pub frames: Receiver<Frame>,
    /// The outcome, once.
    pub outcome: Receiver<Outcome>,
    /// Frames the worker dropped because the queue was full.
    pub dropped: Arc<AtomicU64>,
    /// Pause and Stop.
    pub control: Arc<Control>,
    thread: Option<JoinHandle<()>>,
}

impl Link {
    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Keeps the thread feeding this link, to join at the end.
    pub(crate) fn attach(&mut self, thread: std::io::Result<JoinHandle<()>>) {
        match thread {
            Ok(t) => self.thread = Some(t),
            Err(e) => {
                // No thread: report it as the run's outcome.
                let (tx, rx) = unbounded();
                let _ = tx.send(Outcome::Failed(format!("cannot start a thread: {e}")));
                self.outcome = rx;
            }
        }
    }

    /// Stops the run and waits for its thread (the app's exit, a test's end).
    pub fn stop_and_join(&mut self) {
        self.control.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // A dropped receiver already makes the worker stop at its next step.
        self.control.stop();
    }
}

/// A connected pair: the worker's [`Sink`] and the UI's [`Link`].
pub fn link(wake: Waker, queue: usize) -> (Sink, Link) {
    let (tx, rx) = bounded(queue);
    let (otx, orx) = unbounded();
    let dropped = Arc::new(AtomicU64::new(0));
    let control = Arc::new(Control::default());
    let sink = Sink {
        frames: tx,
        outcome: otx,
        dropped: dropped.clone(),
        control: control.clone(),
        wake,
        acc: Accumulator::default(),
        last_wake: None,
    };
    let link = Link {
        frames: rx,
        outcome: orx,
        dropped,
        control,
        thread: None,
    };
    (sink, link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_frames_without_waiting_and_counts_them() {
        let (mut sink, link) = link(Arc::new(|| {}), 2);
        let s = crate::feed::tests::snapshot;
        for step in 1..=5 {
            assert!(sink.step(&s(step, 4, step == 4)).is_continue());
        }
        assert_eq!(link.dropped(), 3);
        let got: Vec<Frame> = link.frames.try_iter().collect();
        assert_eq!(got.len(), 2);
        link.control.stop();
        assert!(sink.step(&s(6, 4, false)).is_break());
        // The frame after the drops carries the evaluation of step 4 (dropped).
        let last = link.frames.try_recv().unwrap();
        assert_eq!(last.evals.len(), 1);
    }
}
