//! `amlops` command line: thin dispatch to the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "amlops",
    version,
    about = "Kubernetes operator for Azure Machine Learning inference clusters"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the current Kubernetes cluster (in-cluster or KUBECONFIG).
    Run(Box<amlops::controller::RunArgs>),
    /// Run the operator's engine on the examples against the built-in Azure emulator.
    Demo {
        /// Emulated duration of each Azure operation, in seconds.
        #[arg(long, default_value_t = 2.0)]
        op_seconds: f64,
    },
    /// Run the Azure emulator (loopback by default).
    Emulator(amlops::emulator::EmulatorArgs),
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD with --out).
    Crds {
        /// Directory to write `<plural>.<group>.yaml` files into (e.g. `crds/`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check manifests offline with the same rules as admission; exit 1 on any error.
    Validate(amlops::validate::ValidateArgs),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Benchmark the engine at scale against the emulator (see BENCHMARKS.md).
    Bench(amlops::bench::BenchArgs),
    /// Serve the in-memory fake Kubernetes API server (the child of `bench --controller`).
    #[command(hide = true)]
    FakeApiServer(amlops::fake_kube::FakeApiServerArgs),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write cert.pem and key.pem of a cluster's azuremlfessl (verified) to a directory.
    Backup(amlops::tls::BackupArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => {
            runtime().and_then(|rt| rt.block_on(amlops::controller::run_cli(*args)))
        }
        Command::Demo { op_seconds } => {
            runtime().and_then(|rt| rt.block_on(amlops::demo::run_cli(op_seconds)))
        }
        Command::Emulator(args) => {
            runtime().and_then(|rt| rt.block_on(amlops::emulator::run_cli(args)).map(|()| true))
        }
        Command::Crds { out } => print_crds(out),
        Command::Validate(args) => amlops::validate::run_cli(&args, &mut std::io::stdout().lock()),
        Command::Tls(TlsCommand::Backup(args)) => {
            runtime().and_then(|rt| rt.block_on(amlops::tls::run_cli(args)))
        }
        Command::Bench(args) => amlops::bench::run_cli(args),
        Command::FakeApiServer(args) => {
            runtime().and_then(|rt| rt.block_on(amlops::fake_kube::run_cli(args)).map(|()| true))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_crds(out: Option<std::path::PathBuf>) -> anyhow::Result<bool> {
    for (file, yaml) in amlops::crd::crd_files()? {
        match &out {
            Some(dir) => std::fs::write(dir.join(&file), yaml)?,
            None => println!("---\n{yaml}"),
        }
    }
    Ok(true)
}
