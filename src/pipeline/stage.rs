//! The plumbing every stage shares: its thread, its ends of the channels, and its clock.
//!
//! A stage's time is measured here, once, from the channels (rerun's `re_smart_channel` does
//! the same): time blocked receiving its input, sending to a full queue downstream, or waiting
//! for another stage ([`Ports::wait`]) is *waiting*; the rest of the wall time between two laps
//! is *busy*. No stage reads a clock itself.
//!
//! A stage that fails returns its error from its thread; its channels close, the stages after
//! it stop for want of input, and [`Stages::join`] reports the first failure in the data's
//! order, naming a stage that panicked.

use super::PipelineError;
use crate::telemetry::StageTime;
use crossbeam_channel::{Receiver, Sender};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Instant;

/// A stage's clock: busy and waiting seconds since the last lap.
pub struct Clock {
    stage: &'static str,
    since: Instant,
    waiting_s: f64,
}

impl Clock {
    /// A clock for the stage named `stage` (as telemetry names it), started now.
    pub fn new(stage: &'static str) -> Self {
        Clock {
            stage,
            since: Instant::now(),
            waiting_s: 0.0,
        }
    }

    /// Restarts the lap now, forgetting what passed since the last one (the device stage's
    /// evaluation and reporting are not the step's).
    pub fn restart(&mut self) {
        self.since = Instant::now();
        self.waiting_s = 0.0;
    }

    /// Runs `f`, counting its time as waiting.
    pub fn wait<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.waiting_s += t.elapsed().as_secs_f64();
        out
    }

    /// Runs `f` without counting its time at all (the device stage's evaluation and reporting
    /// are not the step's).
    pub fn exclude<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.since += t.elapsed();
        out
    }

    /// The lap since the last one (busy = wall − waiting), and a new lap begins.
    pub fn lap(&mut self) -> StageTime {
        let wall = self.since.elapsed().as_secs_f64();
        let lap = StageTime {
            stage: self.stage.into(),
            busy_s: (wall - self.waiting_s).max(0.0),
            waiting_s: self.waiting_s,
        };
        self.restart();
        lap
    }
}

/// A stage's ends of its input and output channels, timed by its [`Clock`].
pub struct Ports<I, O> {
    input: Receiver<I>,
    output: Sender<O>,
    /// The stage's clock.
    pub clock: Clock,
}

impl<I, O> Ports<I, O> {
    /// The ports of stage `stage`.
    pub fn new(stage: &'static str, input: Receiver<I>, output: Sender<O>) -> Self {
        Ports {
            input,
            output,
            clock: Clock::new(stage),
        }
    }

    /// Another handle on the input (for a helper thread of the stage).
    pub fn input(&self) -> Receiver<I> {
        self.input.clone()
    }

    /// The next input, or `None` when the stage before has finished or stopped.
    pub fn recv(&mut self) -> Option<I> {
        let input = &self.input;
        self.clock.wait(|| input.recv().ok())
    }

    /// Sends downstream; `false` when the stage after has stopped.
    pub fn send(&mut self, item: O) -> bool {
        let output = &self.output;
        self.clock.wait(|| output.send(item).is_ok())
    }

    /// Runs `f` (a wait for another stage), counting its time as waiting.
    pub fn wait<T>(&mut self, f: impl FnOnce() -> T) -> T {
        self.clock.wait(f)
    }

    /// The stage's lap (see [`Clock::lap`]).
    pub fn lap(&mut self) -> StageTime {
        self.clock.lap()
    }
}

/// Something that carries the laps of the stages it went through: a batch on its way.
pub trait Laps {
    /// The laps so far, in the data's order.
    fn laps(&mut self) -> &mut Vec<StageTime>;
}

impl<I, O: Laps> Ports<I, O> {
    /// Ends the stage's lap on `item` and sends it downstream; `false` when the stage after
    /// has stopped.
    pub fn finish(&mut self, mut item: O) -> bool {
        let lap = self.lap();
        item.laps().push(lap);
        self.send(item)
    }
}

/// The host stages of a run, on their own named threads.
pub struct Stages<'scope> {
    running: Vec<(
        &'static str,
        ScopedJoinHandle<'scope, Result<(), PipelineError>>,
    )>,
}

impl<'scope> Stages<'scope> {
    /// No stage yet.
    pub fn new() -> Self {
        Stages {
            running: Vec::new(),
        }
    }

    /// Starts stage `name` on a thread of that name. Stages are started in the data's order,
    /// which is the order [`Stages::join`] reports failures in.
    pub fn spawn<'env>(
        &mut self,
        scope: &'scope Scope<'scope, 'env>,
        name: &'static str,
        body: impl FnOnce() -> Result<(), PipelineError> + Send + 'scope,
    ) -> Result<(), PipelineError> {
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(scope, move || {
                super::priority::background();
                body()
            })
            .map_err(|source| PipelineError::Spawn {
                stage: name,
                source,
            })?;
        self.running.push((name, handle));
        Ok(())
    }

    /// Waits for every stage; the first failure in the data's order, if any.
    pub fn join(self) -> Result<(), PipelineError> {
        let mut first = Ok(());
        for (stage, handle) in self.running {
            let outcome = handle
                .join()
                .unwrap_or(Err(PipelineError::StageDied { stage }));
            if first.is_ok() {
                first = outcome;
            }
        }
        first
    }
}
