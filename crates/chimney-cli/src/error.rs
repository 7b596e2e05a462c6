//! The CLI's one error type: what went wrong, in one line naming the command, and the exit
//! status it stands for. Every command reports bad input and failures to run through it
//! (exit 2); a run that completes but finds a mismatch or a violation exits 1 on its own.

use std::fmt::Display;
use std::process::ExitCode;

/// A command's error: printed as `chimney CMD: MSG`, exit status 2.
#[derive(Debug)]
pub struct CliError {
    /// The command, e.g. `demo` or `bench engine`.
    pub cmd: &'static str,
    /// What went wrong and, where we know, what to do about it.
    pub msg: String,
}

impl CliError {
    /// An error of command `cmd`.
    pub fn new(cmd: &'static str, msg: impl Display) -> CliError {
        CliError { cmd, msg: msg.to_string() }
    }

    /// Prints the error to stderr and returns exit status 2.
    pub fn exit(self) -> ExitCode {
        eprintln!("{self}");
        ExitCode::from(2)
    }
}

/// Prints every error of command `cmd`, in order; exit status 2 when there was one.
pub fn exit_all(cmd: &'static str, errors: Vec<String>) -> Option<ExitCode> {
    let any = !errors.is_empty();
    for e in errors {
        eprintln!("{}", CliError::new(cmd, e));
    }
    any.then(|| ExitCode::from(2))
}

impl Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chimney {}: {}", self.cmd, self.msg)
    }
}

impl std::error::Error for CliError {}
