//! `infra lint [ENV...]`: the lint rules over environment files, offline; text, JSON or SARIF.

use anyhow::Result;

use crate::cli::{DenyLevel, LintFormat};
use crate::config;
use crate::exit::ExitStatus;
use crate::lint::{self, Severity};
use crate::ops::Globals;
use crate::render;

pub fn run(
    globals: &Globals,
    envs: &[String],
    format: LintFormat,
    deny: DenyLevel,
) -> Result<ExitStatus> {
    let names = if envs.is_empty() {
        config::list_environments(&globals.dir)?
    } else {
        envs.to_vec()
    };
    let mut findings = Vec::new();
    for name in &names {
        // A file that does not validate has errors to fix first: `validate` says which.
        let env = crate::ops::load_env(globals, name)?;
        findings.extend(lint::lint(&env));
    }
    match format {
        LintFormat::Text => {
            render::print(&render::lint_text(&findings));
            render::print(&render::lint_summary(&findings));
        }
        LintFormat::Json => render::print(
            &(serde_json::to_string_pretty(
                &serde_json::json!({"format_version": 1, "findings": findings}),
            )? + "\n"),
        ),
        LintFormat::Sarif => {
            render::print(&(serde_json::to_string_pretty(&lint::sarif(&findings))? + "\n"))
        }
    }
    let deny = match deny {
        DenyLevel::Warning => Severity::Warning,
        DenyLevel::Error => Severity::Error,
    };
    Ok(if findings.iter().any(|f| lint::denied(f, deny)) {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
