//! The one place exit codes are decided.

/// How `infra` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done; or, with `--detailed-exitcode`, no changes.
    Success,
    /// Invalid input, an AWS or state error, a refused or failed apply.
    Failure,
    /// `plan --detailed-exitcode` found changes.
    Changes,
    /// `status`: the environment runs, but something in it is not healthy.
    Degraded,
}

impl ExitStatus {
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Changes => 2,
            ExitStatus::Degraded => 3,
        }
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(s: ExitStatus) -> Self {
        std::process::ExitCode::from(s.code())
    }
}
