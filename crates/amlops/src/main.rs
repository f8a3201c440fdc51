//! `amlops`: the operator's binary; the command line is [`amlops::cli`].

fn main() -> std::process::ExitCode {
    amlops::cli::main()
}
