//! The file-system edge of `config`: listing environment files and reading one, with `${VAR}`
//! taken from the process environment. Everything after the read is pure (`parse`).

use std::path::Path;

use super::{ConfigError, Environment, env_path, parse};
use crate::diag::FileDiagnostics;

/// Every environment name in `dir` (files ending in `.yaml`), sorted.
pub fn list_environments(dir: &Path) -> Result<Vec<String>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            (path.extension()? == "yaml")
                .then(|| path.file_stem()?.to_str().map(str::to_string))
                .flatten()
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Reads and validates `dir/<name>.yaml`, expanding variables from the process environment.
pub fn load(dir: &Path, name: &str) -> Result<Environment, ConfigError> {
    let path = env_path(dir, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::NotFound {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                path,
            });
        }
        Err(source) => return Err(ConfigError::Io { path, source }),
    };
    let lookup = |var: &str| std::env::var(var).ok();
    parse(&path, &text, &lookup).map_err(|diagnostics| ConfigError::Invalid {
        file: path.clone(),
        diagnostics: FileDiagnostics {
            source: text,
            diagnostics,
        },
    })
}
