//! The `rowflow` command line: argument types (clap lives here, never in the library), the
//! subcommands, and how errors reach the user.

mod bench;
mod check;
mod distributed;
mod eval;
mod info;
mod serve;
mod shard;
mod train;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::process::ExitCode;
use std::str::FromStr;

#[derive(Parser)]
#[command(
    name = "rowflow",
    version,
    about = "Train DLRM-style models whose embeddings exceed device memory"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of `train`'s flags costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train a DLRM model (synthetic data by default) and evaluate it on the test split.
    Train(train::TrainArgs),
    /// Score a saved model (`train --save DIR`) on a test set: AUC and log loss.
    Eval(eval::EvalArgs),
    /// List the backends present on this machine, and why the others are not usable.
    Info {
        /// One JSON object per backend instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every kernel of a backend against the CPU on fresh random inputs, then training parity
    /// and lookahead against all rows on the device; non-zero exit on any failure.
    Check(check::CheckArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Serve saved models through MP-Rec's path scheduler under a generated load: throughput,
    /// correct predictions within the SLA per second, tail latency (`--sweep`: every policy).
    Serve(serve::ServeArgs),
    /// Sharding of sequence embeddings over many devices (planners and traffic simulator).
    Shard {
        #[command(subcommand)]
        which: shard::ShardCommand,
    },
}

/// A value parser for one of the library's enums: its spellings are listed by `--help` and by
/// the error for a bad value, and parsed by the enum's own `FromStr`.
pub fn choice<T>() -> impl TypedValueParser<Value = T>
where
    T: strum::VariantNames + FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(T::VARIANTS).try_map(|s| s.parse::<T>())
}

/// `base` with the flags the user gave laid over it: `flags` serializes (flags not given left
/// out) under the names of `base`'s fields, nested structs merged field by field. A flag whose
/// name is not a field is an error (`T` refuses unknown fields), which the CLI tests would meet.
pub fn overlay<T: Serialize + DeserializeOwned>(base: &T, flags: &impl Serialize) -> Result<T> {
    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(into), Value::Object(from)) => {
                for (key, value) in from {
                    merge(into.entry(key).or_insert(Value::Null), value);
                }
            }
            (slot, value) => *slot = value,
        }
    }
    let mut merged = serde_json::to_value(base)?;
    merge(&mut merged, serde_json::to_value(flags)?);
    Ok(serde_json::from_value(merged)?)
}

pub(crate) use rowflow::on_device;

/// Resolves `--backend`, printing why each backend was picked or skipped.
pub fn select(
    choice: rowflow::device::BackendChoice,
) -> Result<rowflow::device::BackendKind, rowflow::device::DeviceError> {
    let selection = rowflow::device::select_backend(choice)?;
    for reason in &selection.reasons {
        eprintln!("backend {reason}");
    }
    Ok(selection.backend)
}

/// Restores the default SIGPIPE action (Rust ignores it), so `rowflow … | head` ends quietly
/// when the reader closes the pipe instead of panicking on the next print.
#[allow(unsafe_code)] // one signal(2) call
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line and runs the command; the exit code is 1 on any error.
pub fn main() -> ExitCode {
    default_sigpipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Info { json } => info::run(json),
        Command::Check(args) => check::run(args),
        Command::Bench { which } => bench::run(which),
        Command::Serve(args) => serve::run(args),
        Command::Shard { which } => shard::run(which),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", rowflow::report::describe(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
