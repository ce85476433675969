//! `infra output ENV [NAME] [--json]`: values from state.

use anyhow::{Result, bail};

use crate::cli::OutputArgs;
use crate::exit::ExitStatus;
use crate::ops::{self, Globals};
use crate::outputs::outputs;
use crate::render;

pub async fn run(globals: &Globals, args: OutputArgs) -> Result<ExitStatus> {
    let env = ops::load_env(globals, &args.env)?;
    let session = ops::open_env(globals, &env).await;
    let Some((doc, _)) = ops::read_state(&session, &env.name).await? else {
        return Err(ops::hinted(
            format!("environment `{}` has no state yet", env.name),
            format!("run `infra apply {}` first", env.name),
        ));
    };
    let domain = env
        .load_balancer
        .as_ref()
        .and_then(|lb| lb.domain.as_ref())
        .map(|d| d.name.as_str());
    let all = outputs(&doc, domain, &env.region);
    let text = match &args.name {
        Some(name) => {
            let Some(v) = all.get(name.as_str()) else {
                bail!(
                    "no output `{name}`; outputs are: {}",
                    all.keys().copied().collect::<Vec<_>>().join(", ")
                );
            };
            if args.json {
                serde_json::to_string_pretty(v)? + "\n"
            } else {
                match v {
                    serde_json::Value::String(s) => format!("{s}\n"),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string())
                                + "\n"
                        })
                        .collect(),
                    other => format!("{other}\n"),
                }
            }
        }
        None if args.json => serde_json::to_string_pretty(&all)? + "\n",
        None => all
            .iter()
            .map(|(k, v)| format!("{k} = {}\n", render::show(v)))
            .collect(),
    };
    render::print(&text);
    Ok(ExitStatus::Success)
}

/// `infra status ENV [--json] [--watch]`: the services read live; exit 0 healthy, 3 degraded
/// (with `--watch`, as of the last reading when interrupted).
pub async fn status(globals: &Globals, env: &str, json: bool, watch: bool) -> Result<ExitStatus> {
    let env = ops::load_env(globals, env)?;
    let session = ops::open_env(globals, &env).await;
    let mut last = String::new();
    loop {
        let status = ops::status(&session, &env).await?;
        let text = match json {
            true => render::status_json(&env.name, &status),
            false => render::status_text(&env.name, &status),
        };
        let verdict = if status.problems.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Degraded
        };
        if !watch {
            render::print(&text);
            return Ok(verdict);
        }
        if text != last {
            render::print(&render::status_stamp(&text, json));
            last = text;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(verdict),
        }
    }
}
