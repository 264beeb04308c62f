//! Training on a worker thread, as `rowflow train` trains, its frames sent over a
//! [`crate::link`] to the UI.

use crate::link::{Link, Outcome, QUEUE, Waker, link};
use rowflow::config::RunConfig;
use rowflow::device::{BackendKind, select_backend};
use rowflow::telemetry::Snapshot;
use rowflow::train::{Faults, TrainSummary, open_dataset, train_model};
use std::ops::ControlFlow;

/// Starts training `cfg` on a worker thread; the run's frames and outcome arrive on the
/// returned link. Every failure, a panic included, becomes an [`Outcome::Failed`].
pub fn start(cfg: RunConfig, wake: Waker) -> Link {
    let (mut sink, mut link) = link(wake, QUEUE);
    let thread = std::thread::Builder::new()
        .name("rowflow-studio training".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                train_run(&cfg, &mut |s| sink.step(s))
            }));
            let outcome = match result {
                Ok(Ok(summary)) => Outcome::Finished(Box::new(summary)),
                Ok(Err(e)) => Outcome::Failed(rowflow::report::describe(e.as_ref())),
                Err(panic) => Outcome::Failed(format!(
                    "the run stopped on an internal error (please report it): {}",
                    panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("unknown panic")
                )),
            };
            sink.finish(outcome);
        });
    link.attach(thread);
    link
}

/// One training run as `rowflow train` makes it: the backend `cfg` asks for, its dataset, and
/// `on_step` after each step.
pub fn train_run(
    cfg: &RunConfig,
    on_step: &mut dyn FnMut(&Snapshot) -> ControlFlow<()>,
) -> anyhow::Result<TrainSummary> {
    let backend: BackendKind = select_backend(cfg.backend)?.backend;
    let data = open_dataset(cfg)?;
    let faults = Faults::default();
    Ok(rowflow::on_device!(backend, |dev| {
        train_model(dev, cfg, data.as_ref(), &faults, on_step)?.0
    }))
}
