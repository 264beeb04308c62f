//! The `rowflow` command line: train, info, bench, shard. The commands and their flags live in
//! [`cli`]; the library (`rowflow`) knows nothing of clap.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
