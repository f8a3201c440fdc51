//! `amlops-dev`: the development commands (`cargo run -- demo` runs this binary). The
//! operator's own commands are in the `amlops` binary.

use std::process::ExitCode;

use amlops::cli::{exit_code, runtime};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "amlops-dev",
    version,
    about = "amlops development commands: the demo, the benchmark, the Azure emulator and the fake Kubernetes API server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator's engine on the examples against the built-in Azure emulator.
    Demo {
        /// Emulated duration of each Azure operation, in seconds.
        #[arg(long, default_value_t = 2.0)]
        op_seconds: f64,
    },
    /// Run the Azure emulator (loopback by default).
    Emulator(amlops_emulator::EmulatorArgs),
    /// Benchmark the engine at scale against the emulator (see BENCHMARKS.md).
    Bench(amlops_dev::bench::BenchArgs),
    /// Serve the in-memory fake Kubernetes API server (the child of `bench --controller`).
    #[command(hide = true)]
    FakeApiServer(amlops_fake_kube::FakeApiServerArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Demo { op_seconds } => {
            runtime().and_then(|rt| rt.block_on(amlops_dev::demo::run_cli(op_seconds)))
        }
        Command::Emulator(args) => {
            runtime().and_then(|rt| rt.block_on(amlops_emulator::run_cli(args)).map(|()| true))
        }
        Command::Bench(args) => amlops_dev::bench::run_cli(args),
        Command::FakeApiServer(args) => {
            runtime().and_then(|rt| rt.block_on(amlops_fake_kube::run_cli(args)).map(|()| true))
        }
    };
    exit_code(result)
}
