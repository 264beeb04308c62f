//! rowflow-studio: start a training run and watch its embedding cache at work — hit rates, row
//! hotness, transfer volume, pipeline stalls, memory, loss — live, side by side with another run
//! or a recording.
//!
//! Three parts, as in egui's demo app and rerun: **state** ([`app`]: settings, runs, their
//! [`run::RunHistory`]), **UI** ([`ui`]: draws the state, nothing else) and **workers**
//! ([`worker`] trains, [`replay`] reads a recording) that send [`feed::Frame`]s of running
//! totals over a [`link`] (bounded channels) and never wait for the UI.

pub mod app;
pub mod bench;
pub mod export;
pub mod feed;
pub mod form;
pub mod history;
pub mod hotness;
pub mod link;
pub mod replay;
pub mod run;
pub mod ui;
pub mod worker;

pub use app::{Settings, StudioApp};
