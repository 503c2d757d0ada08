//! The `hookrelay` binary: logging, command line, and the chosen subcommand.

use clap::Parser;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    hookrelay::cli::run(hookrelay::config::Cli::parse())
}
