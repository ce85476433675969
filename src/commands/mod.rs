//! One module per command: parse → call `ops` → print through `render` → pick an exit status.

pub mod apply;
pub mod graph;
pub mod import;
mod lint;
pub mod output;
pub mod plan;
pub mod state;
pub mod validate;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::exit::ExitStatus;
use crate::ops::Globals;

pub async fn run(cli: Cli) -> Result<ExitStatus> {
    let globals = Globals {
        dir: cli.dir.clone(),
        parallelism: usize::from(cli.parallelism),
        max_rps: cli.max_rps,
    };
    match cli.command {
        Command::Validate { envs } => validate::run(&globals, &envs),
        Command::Plan(args) => plan::run(&globals, args).await,
        Command::Apply(args) => apply::apply(&globals, args).await,
        Command::Destroy(args) => apply::destroy(&globals, args).await,
        Command::Deploy(args) => apply::deploy(&globals, args).await,
        Command::Status { env, json, watch } => output::status(&globals, &env, json, watch).await,
        Command::Output(args) => output::run(&globals, args).await,
        Command::State(cmd) => state::run(&globals, cmd).await,
        Command::Graph(args) => graph::run(&globals, args),
        Command::Import {
            env,
            id,
            physical_id,
            auto_approve,
        } => import::run(&globals, &env, &id, &physical_id, auto_approve).await,
        Command::Rollback {
            env,
            service,
            auto_approve,
            no_wait,
        } => import::rollback(&globals, &env, &service, auto_approve, !no_wait).await,
        Command::Completions { shell } => {
            // The registration calls `infra` back as the user types (`COMPLETE=<shell>`, handled
            // first thing in `main`), so environment names come from the files of the moment.
            let mut out = Vec::new();
            let shells = clap_complete::env::Shells::builtins();
            let completer = shells
                .completer(&shell.to_string())
                .ok_or_else(|| anyhow::anyhow!("no completion support for {shell}"))?;
            completer.write_registration("COMPLETE", "infra", "infra", "infra", &mut out)?;
            crate::render::print(&String::from_utf8_lossy(&out));
            Ok(ExitStatus::Success)
        }
        Command::Init {
            env,
            region,
            zones,
            ci,
        } => {
            let path = crate::config::env_path(&globals.dir, &env);
            if path.exists() {
                return Err(crate::ops::hinted(
                    format!("{} already exists", path.display()),
                    "edit it, or name another environment: `infra init NAME`",
                ));
            }
            let workflow = std::path::PathBuf::from(format!(".github/workflows/infra-{env}.yml"));
            if ci && workflow.exists() {
                return Err(crate::ops::hinted(
                    format!("{} already exists", workflow.display()),
                    "edit it, or leave out `--ci`",
                ));
            }
            std::fs::create_dir_all(&globals.dir)?;
            std::fs::write(
                &path,
                crate::config::starter(&env, &region, usize::from(zones), ci),
            )?;
            // What the starter's first line points editors at, for this version of infra.
            std::fs::write(
                globals.dir.join(crate::config::SCHEMA_FILE),
                serde_json::to_string_pretty(&crate::config::schema::json_schema())? + "\n",
            )?;
            crate::render::print(&crate::render::initialised(&path, &env));
            if ci {
                std::fs::create_dir_all(".github/workflows")?;
                std::fs::write(&workflow, crate::config::workflow(&env))?;
                crate::render::print(&crate::render::workflow_written(&workflow, &env));
            }
            Ok(ExitStatus::Success)
        }
        Command::Lint { envs, format, deny } => lint::run(&globals, &envs, format, deny),
        Command::Policy { env, for_, split } => {
            let env = crate::ops::load_env(&globals, &env)?;
            let statements = crate::policy::statements(&env, for_);
            let text = if split {
                let docs = crate::policy::split(&statements, crate::policy::MANAGED_POLICY_LIMIT);
                serde_json::to_string_pretty(&docs)?
            } else {
                let doc = crate::policy::document(&statements);
                let size = crate::policy::size(&doc);
                if size > crate::policy::MANAGED_POLICY_LIMIT {
                    return Err(crate::ops::hinted(
                        format!(
                            "the policy is {size} characters, over IAM's {} for a managed policy",
                            crate::policy::MANAGED_POLICY_LIMIT
                        ),
                        "add `--split` for several documents that each fit",
                    ));
                }
                serde_json::to_string_pretty(&doc)?
            };
            crate::render::print(&(text + "\n"));
            Ok(ExitStatus::Success)
        }
        Command::Cost { envs, json } => {
            let mut estimates = Vec::new();
            let mut regions = Vec::new();
            for name in &envs {
                let env = crate::ops::load_env(&globals, name)?;
                let estimate = crate::cost::of_file(&env).ok_or_else(|| {
                    crate::ops::hinted(
                        format!("no prices for region {} in infra's table", env.region),
                        format!(
                            "the table covers {}",
                            crate::cost::TABLE
                                .iter()
                                .map(|(r, _)| *r)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                })?;
                regions.push(env.region.clone());
                estimates.push((env.name.clone(), env.region.clone(), estimate));
            }
            if json {
                let environments: Vec<serde_json::Value> = estimates
                    .iter()
                    .map(|(name, region, e)| {
                        serde_json::json!({
                            "name": name,
                            "region": region,
                            "monthly_total": e.monthly_total,
                            "monthly_total_max": e.monthly_total_max,
                            "lines": e.lines,
                        })
                    })
                    .collect();
                crate::render::print(
                    &(serde_json::to_string_pretty(&serde_json::json!({
                        "format_version": 1,
                        "prices_date": crate::cost::PRICES_DATE,
                        "prices_source": crate::cost::PRICES_SOURCE,
                        "environments": environments,
                    }))? + "\n"),
                );
            } else {
                let estimates: Vec<(String, crate::cost::Estimate)> =
                    estimates.into_iter().map(|(n, _, e)| (n, e)).collect();
                crate::render::print(&crate::render::cost_table(&estimates, &regions));
            }
            Ok(ExitStatus::Success)
        }
        Command::Schema => {
            let schema = crate::config::schema::json_schema();
            crate::render::print(&(serde_json::to_string_pretty(&schema)? + "\n"));
            Ok(ExitStatus::Success)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut out)?;
            crate::render::print(&String::from_utf8_lossy(&out));
            Ok(ExitStatus::Success)
        }
    }
}
