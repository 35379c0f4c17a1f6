//! The `domvia-calls` command: a thin shell over the library. It reads files and flags, calls the
//! pure core, prints, and sets the exit code (0 success, 1 a check failed, 2 bad usage or I/O).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
