//! The `hookrelay` binary: logging, command line, and the chosen subcommand.

use clap::Parser;

/// mimalloc instead of glibc's malloc: hookrelay allocates on one thread and
/// frees on another all the time (bodies, jobs, messages between actors),
/// which glibc's arenas handle poorly. See BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    hookrelay::cli::run(hookrelay::config::Cli::parse())
}
