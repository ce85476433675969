//! `infra validate [ENV...]`: offline checks; every error of every file, then exit 0 or 1.

use anyhow::Result;

use crate::config::{self, ConfigError};
use crate::exit::ExitStatus;
use crate::ops::Globals;
use crate::render;

pub fn run(globals: &Globals, envs: &[String]) -> Result<ExitStatus> {
    let names = if envs.is_empty() {
        let names = config::list_environments(&globals.dir)?;
        if names.is_empty() {
            anyhow::bail!("no environment files (*.yaml) in {}", globals.dir.display());
        }
        names
    } else {
        envs.to_vec()
    };
    let mut status = ExitStatus::Success;
    for name in &names {
        match config::load(&globals.dir, name) {
            Ok(_) => render::print(&render::valid_file(&config::env_path(&globals.dir, name))),
            Err(ConfigError::Invalid { diagnostics, .. }) => {
                render::eprint(&diagnostics.render());
                status = ExitStatus::Failure;
            }
            Err(e) => {
                render::eprint(&render::error_line(&e));
                status = ExitStatus::Failure;
            }
        }
    }
    Ok(status)
}
