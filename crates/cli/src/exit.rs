//! Exit codes, as documented in `pons --help`.

use std::fmt;
use std::process::ExitCode;

/// A failed command: the error to print and the exit code it maps to.
pub struct Failure {
    /// 1 runtime failure, 2 usage or validation error, 3 integrity failure.
    pub code: u8,
    /// What went wrong, printed with its causes.
    pub error: anyhow::Error,
}

/// What every command returns.
pub type Outcome = Result<(), Failure>;

impl Failure {
    /// The input was refused: bad flags, a report that fails validation (exit 2).
    pub fn invalid(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 2,
            error: error.into(),
        }
    }

    /// Something failed an integrity check: a signature, a chain, a journal (exit 3).
    pub fn integrity(error: impl Into<anyhow::Error>) -> Self {
        Self {
            code: 3,
            error: error.into(),
        }
    }

    /// The exit code for the process.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

/// Any other error is a runtime failure (exit 1).
impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self {
            code: 1,
            error: error.into(),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

/// Marks any error as a validation failure in one call.
pub trait ResultExt<T> {
    /// Marks an error as a validation failure (exit 2).
    fn invalid(self) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> ResultExt<T> for Result<T, E> {
    fn invalid(self) -> Result<T, Failure> {
        self.map_err(Failure::invalid)
    }
}
