//! The `domvia-calls` command: a thin shell over the library. It reads files and flags, calls the
//! pure core, prints, and sets the exit code (0 success, 1 a check failed, 2 bad usage or I/O).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if args.only_prints() {
        restore_sigpipe();
    }
    match cli::run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Output piped into `head` ends quietly when the reader goes away, as with every Unix tool,
/// instead of a panic on the broken pipe (Rust ignores SIGPIPE by default). Only for commands
/// that do nothing but print ([`cli::Cli::only_prints`]).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called in main before any other thread exists; SIG_DFL is a valid disposition for
    // SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
