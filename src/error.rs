//! Errors that carry what a user needs to act on an AWS failure: service, operation, error code,
//! HTTP status and request id. Built from SDK errors in `aws`; plain data here so every layer can
//! name it without depending on the SDK.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    pub code: Option<String>,
    pub message: String,
    pub status: Option<u16>,
    pub request_id: Option<String>,
    /// The call may have been carried out although it failed (a timeout, a dropped connection,
    /// an unreadable answer, a 5xx): the caller must look before trying again.
    pub outcome_unknown: bool,
}

impl AwsError {
    /// An error raised by infra itself while talking to a service (e.g. a waiter gave up).
    pub fn local(
        service: &'static str,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        AwsError {
            service,
            operation,
            code: None,
            message: message.into(),
            status: None,
            request_id: None,
            outcome_unknown: false,
        }
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The one "not found" classification every adapter uses: EC2's `*.NotFound`, ELBv2's
    /// `*NotFound`, ECS/ECR/Logs' `*NotFoundException`, IAM's `NoSuchEntity`, S3's `NoSuchKey`.
    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
            || self.code.as_deref().is_some_and(|c| {
                c.ends_with("NotFound")
                    || c.ends_with("NotFoundException")
                    || c == "NoSuchEntity"
                    || c == "NoSuchKey"
            })
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} failed", self.service, self.operation)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        let mut extra = Vec::new();
        if let Some(s) = self.status {
            extra.push(format!("HTTP {s}"));
        }
        if let Some(r) = &self.request_id {
            extra.push(format!("request id {r}"));
        }
        if !extra.is_empty() {
            write!(f, " ({})", extra.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}
