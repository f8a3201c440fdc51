//! The `amlops` command line. Every clap type of the operator lives in this module (the
//! flags, their environment fallbacks and the commands that only the binary runs); the rest
//! of the crate takes plain values (`controller::Options`, `engine::EngineConfig`,
//! `azure::ArmClientConfig`).

mod azure;
mod run;
mod throttling;
pub mod tls;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use azure::AzureArgs;
pub use run::{LogFormat, RunArgs, parse_duration, run};
pub use throttling::{ArmThrottlingArgs, ResyncArgs};
pub use tls::BackupArgs;
pub use validate::ValidateArgs;

/// `amlops`: the operator's commands (the demo and the benchmark are `amlops-dev`'s).
#[derive(Parser)]
#[command(
    name = "amlops",
    version,
    about = "Kubernetes operator for Azure Machine Learning inference compute"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the current Kubernetes cluster (in-cluster or KUBECONFIG).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (or write one file per CRD with --out).
    Crds {
        /// Directory to write `<plural>.<group>.yaml` files into (e.g. `crds/`).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Check manifests offline with the same rules as admission; exit 1 on any error.
    Validate(ValidateArgs),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write cert.pem and key.pem of a cluster's azuremlfessl (verified) to a directory.
    Backup(BackupArgs),
}

/// Parse the process's arguments and run the command: exit 0 on success, 1 when the
/// command reports failure (`validate` found errors), 2 on an error (printed to stderr).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(*args))),
        Command::Crds { out } => print_crds(out),
        Command::Validate(args) => validate::run(&args, &mut std::io::stdout().lock()),
        Command::Tls(TlsCommand::Backup(args)) => {
            runtime().and_then(|rt| rt.block_on(tls::run(args)))
        }
    };
    exit_code(result)
}

/// The process exit code of a command's result (shared with `amlops-dev`): 0 for
/// `Ok(true)`, 1 for `Ok(false)`, 2 for an error, printed to stderr.
pub fn exit_code(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        // The reader went away (`amlops crds | head`): nothing left to say, as for `cat`.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A multi-threaded Tokio runtime for a command.
///
/// # Errors
/// The runtime could not be built (no threads or I/O driver available).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn print_crds(out: Option<std::path::PathBuf>) -> anyhow::Result<bool> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for (file, yaml) in crate::crd::crd_files()? {
        match &out {
            Some(dir) => std::fs::write(dir.join(&file), yaml)?,
            None => writeln!(stdout, "---\n{yaml}")?,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A closed pipe ends a command quietly; any other failure is exit code 2.
    #[test]
    fn exit_codes() {
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let table: [(anyhow::Result<bool>, ExitCode); 5] = [
            (Ok(true), ExitCode::SUCCESS),
            (Ok(false), ExitCode::FAILURE),
            (Err(pipe().into()), ExitCode::SUCCESS),
            (
                Err(anyhow::Error::from(pipe()).context("writing")),
                ExitCode::SUCCESS,
            ),
            (Err(anyhow::anyhow!("no such file")), ExitCode::from(2)),
        ];
        for (result, want) in table {
            let shown = format!("{result:?}");
            assert_eq!(exit_code(result), want, "{shown}");
        }
    }
}
