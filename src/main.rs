//! The `infra` binary: parse arguments, set up output and logging, run the command, and turn
//! errors into `error:` / `caused by:` / `hint:` lines and an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use infra::cli::Cli;
use infra::config::ConfigError;
use infra::exit::ExitStatus;
use infra::ops::Hinted;
use infra::render;

fn main() -> ExitCode {
    // A shell asking for completions (`COMPLETE=<shell>`, set by the registration script that
    // `infra completions` prints): answer and exit.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).complete();
    // A usage mistake exits 1 like any other bad input (clap's own 2 would read as "changes"
    // to a pipeline running `plan --detailed-exitcode`); help and version exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    if cli.no_color {
        anstream::ColorChoice::Never.write_global();
    }
    let level = match cli.verbose {
        0 => "warn",
        1 => "info,infra=debug",
        _ => "debug,infra=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            !cli.no_color
                && std::env::var_os("NO_COLOR").is_none()
                && std::io::stderr().is_terminal(),
        )
        .with_target(false)
        .init();
    let policy = policy_command(&cli);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let status = match runtime.block_on(infra::commands::run(cli)) {
        Ok(status) => status,
        Err(e) => {
            report(&e, policy.as_ref());
            ExitStatus::Failure
        }
    };
    status.into()
}

/// The environment and the `infra policy --for` a command's credentials need, for the hint an
/// access denied gets.
fn policy_command(cli: &Cli) -> Option<(String, &'static str)> {
    use infra::cli::{Command, StateCommand};
    Some(match &cli.command {
        Command::Plan(a) => (a.env.clone(), "plan"),
        Command::Apply(a) => (a.env.clone()?, "apply"),
        Command::Destroy(a) => (a.env.clone(), "destroy"),
        Command::Deploy(a) => (a.env.clone(), "deploy"),
        Command::Output(a) => (a.env.clone(), "plan"),
        Command::Status { env, .. } => (env.clone(), "plan"),
        Command::Rollback { env, .. } | Command::Import { env, .. } => (env.clone(), "apply"),
        Command::State(
            StateCommand::List { env, .. }
            | StateCommand::Show { env, .. }
            | StateCommand::Versions { env, .. }
            | StateCommand::Pull { env, .. },
        ) => (env.clone(), "plan"),
        Command::State(
            StateCommand::Forget { env, .. }
            | StateCommand::Unlock { env, .. }
            | StateCommand::Recover { env, .. }
            | StateCommand::Push { env, .. }
            | StateCommand::Restore { env, .. },
        ) => (env.clone(), "apply"),
        _ => return None,
    })
}

/// `<service> <Operation> failed: <code>` of an AWS error refusing the credentials, anywhere in
/// a message: the service and operation.
fn denied(text: &str) -> Option<(String, String)> {
    const CODES: [&str; 4] = [
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthorizationError",
    ];
    let at = CODES
        .iter()
        .filter_map(|c| text.find(&format!(" failed: {c}")))
        .min()?;
    let mut words = text[..at].rsplit(' ');
    let operation = words.next()?.to_string();
    let service = words.next()?.trim_start_matches('`').to_string();
    Some((service, operation))
}

fn report(e: &anyhow::Error, policy: Option<&(String, &'static str)>) {
    if let Some(ConfigError::Invalid { diagnostics, file }) = e.downcast_ref::<ConfigError>() {
        render::eprint(&diagnostics.render());
        let n = diagnostics.diagnostics.len();
        render::eprint(&format!(
            "error: {} has {n} error{}; nothing was sent to AWS\n",
            file.display(),
            if n == 1 { "" } else { "s" }
        ));
        return;
    }
    let mut text = format!("error: {e}\n");
    for cause in e.chain().skip(1) {
        text.push_str(&format!("  caused by: {cause}\n"));
    }
    if let Some(h) = e.chain().find_map(|c| c.downcast_ref::<Hinted>()) {
        for line in h.hint.lines() {
            text.push_str(&format!("  hint: {line}\n"));
        }
    }
    if let (Some((service, operation)), Some((env, command))) = (denied(&text), policy) {
        let action = infra::policy::action_of(&service, &operation);
        text.push_str(&format!(
            "  hint: the credentials may not call `{action}` ({service} {operation}): give them the policy `infra policy {env} --for {command}` prints\n"
        ));
    }
    render::eprint(&text);
}
